"""Read access to the entity catalogue (workflows, plays, releases, models, ...) and model data.

The generator stores every non-fact entity as its exact API JSON in ``<store>.entities`` (one row
per workspace, kind and UUID; ``body`` is camelCase JSON), so list/get endpoints serve those bodies
as they are. Model rows live in ``<store>.model_<uuid hex>`` tables. Both may be absent (a store
the generator has not filled yet): reads then see an empty catalogue instead of failing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson

from ..store import ClickHouseStore
from .common import lit, uuid_lit

ENTITIES_DDL = (
    "CREATE TABLE IF NOT EXISTS {database}.entities (workspace_uuid UUID, kind LowCardinality(String), "
    "uuid UUID, parent_uuid Nullable(UUID), created_at DateTime64(3, 'UTC'), body String) "
    "ENGINE = ReplacingMergeTree ORDER BY (workspace_uuid, kind, uuid)"
)
"""The catalogue's layout (owned by the generator; repeated here for test fixtures)."""

_MISSING_TABLE = re.compile(r"Code: (60|81)\.")


@dataclass(frozen=True)
class Entity:
    """One catalogue row with its decoded API body."""

    uuid: str
    parent_uuid: str | None
    created_at: str
    body: dict[str, Any]


def _missing_table(exc: Exception) -> bool:
    return bool(_MISSING_TABLE.search(str(exc)))


def safe_rows(store: ClickHouseStore, sql: str) -> list[dict[str, Any]]:
    """``store.rows`` that reads a missing table as empty (the catalogue is filled by the generator)."""
    try:
        return store.rows(sql)
    except Exception as exc:
        if _missing_table(exc):
            return []
        raise


def _entities_sql(store: ClickHouseStore, workspace_uuid: str, kind: str, extra: str = "") -> str:
    return (
        "SELECT toString(uuid) AS entity_uuid, toString(parent_uuid) AS entity_parent, "
        "toString(created_at) AS entity_created, body "
        f"FROM {store.database}.entities FINAL "
        f"WHERE workspace_uuid = toUUID({lit(workspace_uuid)}) AND kind = {lit(kind)}{extra} "
        "ORDER BY created_at, uuid"
    )


def _entity(row: dict[str, Any]) -> Entity:
    body = orjson.loads(row["body"]) if row.get("body") else {}
    return Entity(
        uuid=row["entity_uuid"],
        parent_uuid=row.get("entity_parent"),
        created_at=row["entity_created"],
        body=body if isinstance(body, dict) else {},
    )


def list_entities(
    store: ClickHouseStore, workspace_uuid: str, kind: str, *, parent_uuid: str | None = None
) -> list[Entity]:
    """All entities of ``kind`` in the workspace, oldest first (optionally of one parent)."""
    extra = f" AND parent_uuid = {uuid_lit(parent_uuid)}" if parent_uuid is not None else ""
    return [_entity(row) for row in safe_rows(store, _entities_sql(store, workspace_uuid, kind, extra))]


def get_entity(store: ClickHouseStore, workspace_uuid: str, kind: str, uuid: str) -> Entity | None:
    """One entity by UUID, or None (also for a malformed UUID)."""
    rows = safe_rows(store, _entities_sql(store, workspace_uuid, kind, f" AND uuid = {uuid_lit(uuid)}"))
    return _entity(rows[0]) if rows else None


def bodies(entities: list[Entity]) -> list[dict[str, Any]]:
    return [entity.body for entity in entities]


def model_table(store: ClickHouseStore, model_uuid: str) -> str:
    """Physical table holding a model's rows."""
    return f"{store.database}.model_{model_uuid.replace('-', '')}"


def model_table_exists(store: ClickHouseStore, model_uuid: str) -> bool:
    name = "model_" + model_uuid.replace("-", "")
    found = store.scalar(
        f"SELECT count() FROM system.tables WHERE database = {lit(store.database)} AND name = {lit(name)}"
    )
    return bool(found)


def deployed_release(store: ClickHouseStore, workspace_uuid: str, workflow_uuid: str) -> Entity | None:
    """The workflow's deployed release (the newest one if several claim to be)."""
    releases = list_entities(store, workspace_uuid, "release", parent_uuid=workflow_uuid)
    deployed = [r for r in releases if r.body.get("status") == "deployed"]
    return deployed[-1] if deployed else None


def workflow_play(store: ClickHouseStore, workspace_uuid: str, workflow_uuid: str) -> Entity | None:
    """The play that owns a workflow, if any (plays carry the model their records come from)."""
    for play in list_entities(store, workspace_uuid, "play"):
        if play.body.get("workflowUuid") == workflow_uuid:
            return play
    return None


def flatten_nodes(nodes: Any) -> list[dict[str, Any]]:
    """Workflow/release nodes depth-first, group children included (workflow nodes nest in ``nodes``)."""
    result: list[dict[str, Any]] = []
    if not isinstance(nodes, list):
        return result
    for node in nodes:
        if isinstance(node, dict):
            result.append(node)
            result.extend(flatten_nodes(node.get("nodes")))
    return result
