"""The workspace catalogue: the names behind the uuids of the fact tables (dimension resources).

Each dimension is read whole from its list endpoint on every sync (they are small: tens to
thousands of rows), flattened to typed columns, and merged on its key. Why whole reads rather than
incremental ones: the list endpoints have no time filter, and a whole read is the only way to see
that a row *disappeared* upstream. Such a row is not deleted from the warehouse (facts still point
at it) but re-emitted once with ``removed_at`` set, so it no longer looks current. To re-emit it with
its last values, the resource state keeps each key's last row (compact JSON, committed with the
load); a row that comes back is simply current again.

Free-form or secret-bearing parts are dropped (a tool's public form holds a captcha secret) or kept
as JSON text columns (filters, schedules, node graphs).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import dlt
import orjson
import pyarrow as pa
from dlt.common.data_types import TDataType
from dlt.common.schema.typing import TColumnSchema, TTableSchemaColumns
from dlt.extract.resource import DltResource

from .arrow import to_arrow
from .client import CargoClient
from .errors import CargoProtocolError
from .extract import TableStats

Row = dict[str, Any]
Body = Mapping[str, Any]
SkipSink = Callable[[int, str, str], None]
"""Where rows that cannot be loaded are counted (``TableStats.skip``: rows, reason, where)."""

logger = logging.getLogger(__name__)

REMOVED_AT = "removed_at"
"""Set on a dimension row when its key stopped being listed by the API; null while it is listed."""

RELEASES_PAGE = 100
"""Page size of ``releases/list`` (limit/offset, no total count): stop at the first short page."""


def _json(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


def _get(body: Body, *path: str) -> Any:
    value: Any = body
    for key in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


COLUMN_TYPES: dict[str, TDataType] = {
    **dict.fromkeys(
        ("is_enabled", "is_read_only", "public_form_enabled", "is_paused", "from_play", "is_terminal"), "bool"
    ),
    **dict.fromkeys(
        ("plays_count", "segments_count", "records_count", "limit", "nodes_count", "position_index", "graph_depth"),
        "bigint",
    ),
    **dict.fromkeys(("health_threshold", "position_x", "position_y"), "double"),
}
"""Non-text columns of the catalogue tables (by name: the same name has the same type everywhere)."""


@dataclass(frozen=True)
class DimensionSpec:
    """One catalogue table: where it is listed, its key, and how an API object becomes a row."""

    name: str
    path: str
    wrapper: str
    key: tuple[str, ...]
    to_rows: Callable[[Body], list[Row]]
    timestamps: tuple[str, ...] = ("created_at", "updated_at", "deleted_at")
    json_columns: tuple[str, ...] = ()
    paged: bool = False
    description: str = ""
    extra_columns: tuple[str, ...] = field(default=())

    def column_names(self) -> list[str]:
        """Every column of the table (what ``to_rows`` emits, plus derived ones and ``removed_at``)."""
        probe = {"uuid": "", "nodes": [{"uuid": ""}]}
        names = list(self.to_rows(probe)[0])
        return [*names, *(c for c in self.extra_columns if c not in names), REMOVED_AT]

    def columns(self) -> TTableSchemaColumns:
        """dlt hints for every column, so a column that is null in every row still exists and has its
        type: keys not null, timestamps typed (ISO text otherwise), JSON columns as JSON."""
        hints: TTableSchemaColumns = {
            name: {"name": name, "data_type": COLUMN_TYPES.get(name, "text")} for name in self.column_names()
        }
        for name in self.key:
            hints[name] = {"name": name, "nullable": False, "data_type": "text"}
        for name in (*self.timestamps, REMOVED_AT):
            hints[name] = {"name": name, "data_type": "timestamp", "timezone": True}
        for name in self.json_columns:
            column: TColumnSchema = {"name": name, "data_type": "json"}
            hints[name] = column
        return hints


def _times(body: Body) -> Row:
    return {
        "created_at": body.get("createdAt"),
        "updated_at": body.get("updatedAt"),
        "deleted_at": body.get("deletedAt"),
    }


def workflow_rows(body: Body) -> list[Row]:
    return [
        {
            "uuid": body["uuid"],
            "play_uuid": body.get("playUuid"),
            "tool_uuid": body.get("toolUuid"),
            "folder_uuid": body.get("folderUuid"),
            "template_slug": _get(body, "template", "slug"),
            "deployed_release_uuid": _get(body, "deployedRelease", "uuid"),
            "last_batch_uuid": _get(body, "lastBatch", "uuid"),
            "last_batch_status": _get(body, "lastBatch", "status"),
            "nodes": _json(body.get("nodes")),
            **_times(body),
        }
    ]


def play_rows(body: Body) -> list[Row]:
    return [
        {
            "uuid": body["uuid"],
            "workflow_uuid": body.get("workflowUuid"),
            "name": body.get("name"),
            "description": body.get("description"),
            "model_uuid": body.get("modelUuid"),
            "segment_uuid": body.get("segmentUuid"),
            "is_enabled": body.get("isEnabled"),
            "run_creation_rule": body.get("runCreationRule"),
            "schedule_type": _get(body, "schedule", "type"),
            "schedule": _json(body.get("schedule")),
            "change_kinds": _json(body.get("changeKinds")),
            "health_threshold": body.get("healthThreshold"),
            "folder_uuid": body.get("folderUuid"),
            "user_uuid": body.get("userUuid"),
            **_times(body),
        }
    ]


def tool_rows(body: Body) -> list[Row]:
    # ``publicForm`` is dropped on purpose: it carries ``spam.captchaSecret`` (REFERENCE.md 5.12)
    return [
        {
            "uuid": body["uuid"],
            "workflow_uuid": body.get("workflowUuid"),
            "name": body.get("name"),
            "description": body.get("description"),
            "is_read_only": body.get("isReadOnly"),
            "credits_cost_kind": _get(body, "creditsCost", "kind"),
            "public_form_enabled": _get(body, "publicForm", "isEnabled"),
            "folder_uuid": body.get("folderUuid"),
            "user_uuid": body.get("userUuid"),
            **_times(body),
        }
    ]


def named_rows(*fields: tuple[str, str]) -> Callable[[Body], list[Row]]:
    """Rows of the small named entities (agents, connectors, datasets): uuid, the given fields, times."""

    def to_rows(body: Body) -> list[Row]:
        return [{"uuid": body["uuid"], **{column: body.get(key) for column, key in fields}, **_times(body)}]

    return to_rows


def model_rows(body: Body) -> list[Row]:
    return [
        {
            "uuid": body["uuid"],
            "slug": body.get("slug"),
            "name": body.get("name"),
            "description": body.get("description"),
            "kind": body.get("kind"),
            "dataset_uuid": body.get("datasetUuid"),
            "connector_uuid": body.get("connectorUuid"),
            "extractor_slug": body.get("extractorSlug"),
            "id_column_slug": body.get("idColumnSlug"),
            "title_column_slug": body.get("titleColumnSlug"),
            "time_column_slug": body.get("timeColumnSlug"),
            "is_paused": body.get("isPaused"),
            "plays_count": body.get("playsCount"),
            "segments_count": body.get("segmentsCount"),
            "last_emitted_at": body.get("lastEmittedAt"),
            "columns": _json(body.get("columns")),
            **_times(body),
        }
    ]


def segment_rows(body: Body) -> list[Row]:
    return [
        {
            "uuid": body["uuid"],
            "model_uuid": body.get("modelUuid"),
            "slug": body.get("slug"),
            "name": body.get("name"),
            "from_play": body.get("fromPlay"),
            "records_count": body.get("recordsCount"),
            "limit": body.get("limit"),
            "filter": _json(body.get("filter")),
            "sort": _json(body.get("sort")),
            "synced_at": body.get("syncedAt"),
            **_times(body),
        }
    ]


def release_rows(body: Body) -> list[Row]:
    return [
        {
            "uuid": body["uuid"],
            "workflow_uuid": body.get("workflowUuid"),
            "parent_uuid": body.get("parentUuid"),
            "version": body.get("version"),
            "status": body.get("status"),
            "description": body.get("description"),
            "template_slug": body.get("templateSlug"),
            "user_uuid": body.get("userUuid"),
            "nodes_count": len(body.get("nodes") or []),
            "deployed_at": body.get("deployedAt"),
            **_times(body),
        }
    ]


def graph_order(nodes: Sequence[Body]) -> dict[str, tuple[int, bool]]:
    """Each node's depth from the graph's roots (breadth first) and whether it is terminal.

    Roots are the nodes no other node points at; a terminal node has no children. Nodes the walk
    does not reach (a broken graph) get depth -1 rather than being dropped.
    """
    by_uuid = {str(n.get("uuid")): n for n in nodes if n.get("uuid")}
    children = {u: [str(c) for c in (n.get("childrenUuids") or []) if c] for u, n in by_uuid.items()}
    pointed = {c for cs in children.values() for c in cs}
    depth: dict[str, int] = {}
    frontier = [u for u in by_uuid if u not in pointed]
    level = 0
    while frontier:
        following: list[str] = []
        for u in frontier:
            if u in depth:
                continue
            depth[u] = level
            following.extend(c for c in children.get(u, []) if c in by_uuid and c not in depth)
        frontier, level = following, level + 1
    return {u: (depth.get(u, -1), not children.get(u)) for u in by_uuid}


def release_node_rows(body: Body) -> list[Row]:
    """One row per node of a release; a node without a uuid keeps a null key (``current_rows`` skips it)."""
    nodes = [n if isinstance(n, Mapping) else {} for n in (body.get("nodes") or [])]
    order = graph_order(nodes)
    rows = []
    for index, node in enumerate(nodes):
        node_uuid = node.get("uuid") if isinstance(node.get("uuid"), str) and node.get("uuid") else None
        depth, terminal = order.get(str(node_uuid), (-1, False))
        rows.append(
            {
                "release_uuid": body["uuid"],
                "node_uuid": node_uuid,
                "workflow_uuid": body.get("workflowUuid"),
                "slug": node.get("slug"),
                "name": node.get("name"),
                "kind": node.get("kind"),
                "action_slug": node.get("actionSlug"),
                "integration_slug": node.get("integrationSlug"),
                "connector_uuid": node.get("connectorUuid"),
                "tool_uuid": node.get("toolUuid"),
                "agent_uuid": node.get("agentUuid"),
                "node_release_uuid": node.get("releaseUuid"),
                "position_index": index,
                "graph_depth": depth,
                "is_terminal": terminal,
                "position_x": _get(node, "position", "x"),
                "position_y": _get(node, "position", "y"),
                "children_uuids": _json(node.get("childrenUuids")),
                "fallback_child_uuid": node.get("fallbackChildUuid"),
            }
        )
    return rows


DIMENSIONS: dict[str, DimensionSpec] = {
    spec.name: spec
    for spec in (
        DimensionSpec(
            "workflows",
            "orchestration/workflows/list",
            "workflows",
            ("uuid",),
            workflow_rows,
            json_columns=("nodes",),
            description="one row per workflow; its name is its play's or tool's (join on play_uuid / tool_uuid)",
            extra_columns=("name", "owner_kind"),
        ),
        DimensionSpec(
            "plays",
            "orchestration/plays/list",
            "plays",
            ("uuid",),
            play_rows,
            json_columns=("schedule", "change_kinds"),
        ),
        DimensionSpec("tools", "orchestration/tools/list", "tools", ("uuid",), tool_rows),
        DimensionSpec("agents", "ai/agents/list", "agents", ("uuid",), named_rows(("name", "name"), ("slug", "slug"))),
        DimensionSpec(
            "connectors",
            "connection/connectors/list",
            "connectors",
            ("uuid",),
            named_rows(("name", "name"), ("slug", "slug"), ("integration_slug", "integrationSlug")),
        ),
        DimensionSpec(
            "datasets",
            "storage/datasets/list",
            "datasets",
            ("uuid",),
            named_rows(("slug", "slug"), ("kind", "kind"), ("connector_uuid", "connectorUuid")),
        ),
        DimensionSpec(
            "models",
            "storage/models/list",
            "models",
            ("uuid",),
            model_rows,
            timestamps=("created_at", "updated_at", "deleted_at", "last_emitted_at"),
            json_columns=("columns",),
        ),
        DimensionSpec(
            "segments",
            "segmentation/segments/list",
            "segments",
            ("uuid",),
            segment_rows,
            timestamps=("created_at", "updated_at", "deleted_at", "synced_at"),
            json_columns=("filter", "sort"),
        ),
        DimensionSpec(
            "releases",
            "orchestration/releases/list",
            "releases",
            ("uuid",),
            release_rows,
            timestamps=("created_at", "updated_at", "deleted_at", "deployed_at"),
            paged=True,
        ),
        DimensionSpec(
            "release_nodes",
            "orchestration/releases/list",
            "releases",
            ("release_uuid", "node_uuid"),
            release_node_rows,
            timestamps=(),
            json_columns=("children_uuids",),
            paged=True,
        ),
    )
}

DIMENSION_NAMES: tuple[str, ...] = tuple(DIMENSIONS)


def list_entities(client: CargoClient, spec: DimensionSpec, skip: SkipSink | None = None) -> Iterator[Body]:
    """Every object of a list endpoint (paged by limit/offset where the endpoint pages).

    An item that is not an object with a uuid cannot be loaded or merged: it goes to ``skip`` (counted
    and logged), or, when the caller reads the list only to find its own rows, is logged.
    """
    if not spec.paged:
        body = client.call("GET", spec.path)
        yield from _entities(_items(body, spec), spec, skip)
        return
    offset = 0
    while True:
        body = client.call("GET", spec.path, params={"limit": RELEASES_PAGE, "offset": offset})
        items = _items(body, spec)
        yield from _entities(items, spec, skip)
        if len(items) < RELEASES_PAGE:  # a short page as sent, whether or not each item was usable
            return
        offset += RELEASES_PAGE


def _items(body: Mapping[str, Any], spec: DimensionSpec) -> list[Any]:
    items = body.get(spec.wrapper)
    if not isinstance(items, list):
        raise CargoProtocolError(f"{spec.path} answered without a {spec.wrapper!r} list: keys {sorted(body)[:10]}")
    return items


def _entities(items: list[Any], spec: DimensionSpec, skip: SkipSink | None) -> Iterator[Body]:
    for index, item in enumerate(items):
        if isinstance(item, Mapping) and isinstance(item.get("uuid"), str) and item["uuid"]:
            yield item
            continue
        reason = f"an item of {spec.path} that is not an object with a uuid"
        where = f"{spec.wrapper}[{index}]: {type(item).__name__}" + (
            f" with keys {sorted(map(str, item))[:10]}" if isinstance(item, Mapping) else ""
        )
        if skip is not None:
            skip(1, reason, where)
        else:
            logger.warning("%s (%s): it is left out", reason, where)


def workflow_names(client: CargoClient) -> dict[str, tuple[str, str]]:
    """Workflow uuid -> (name, owner kind) from the plays and tools that own workflows.

    Workflows have no name of their own (REFERENCE.md 3.9); carrying the owner's name on the
    workflow row saves every report a two-way join.
    """
    names: dict[str, tuple[str, str]] = {}
    for kind, spec in (("tool", DIMENSIONS["tools"]), ("play", DIMENSIONS["plays"])):
        for body in list_entities(client, spec):
            workflow = body.get("workflowUuid")
            if isinstance(workflow, str):
                names[workflow] = (str(body.get("name") or ""), kind)
    return names


def _key(row: Row, spec: DimensionSpec) -> str:
    return "|".join(str(row[k]) for k in spec.key)


def current_rows(client: CargoClient, spec: DimensionSpec, skip: SkipSink | None = None) -> list[Row]:
    """The dimension's rows as listed now, with ``removed_at`` null; rows without a key go to ``skip``."""
    rows = []
    for body in list_entities(client, spec, skip):
        for row in spec.to_rows(body):
            if all(row.get(k) for k in spec.key):
                rows.append(row)
                continue
            reason = f"a row of {spec.name} without its key {list(spec.key)}"
            where = f"{spec.path}, {spec.wrapper} {body.get('uuid')}"
            if skip is None:
                raise CargoProtocolError(f"{reason} ({where})")
            skip(1, reason, where)
    if spec.name == "workflows":
        names = workflow_names(client)
        for row in rows:
            name, kind = names.get(str(row["uuid"]), (None, None))
            row["name"], row["owner_kind"] = name, kind
    for row in rows:
        row[REMOVED_AT] = None
    return rows


def reconcile(state: dict[str, Any], rows: list[Row], spec: DimensionSpec, now: datetime) -> list[Row]:
    """The rows to load: every current row, plus, once, each row that disappeared since last time.

    ``state["rows"]`` maps each key to its last loaded row (JSON text); ``state["removed"]`` the keys
    already marked removed, so they are not marked again every sync.
    """
    known: dict[str, str] = state.setdefault("rows", {})
    removed: dict[str, str] = state.setdefault("removed", {})
    out = list(rows)
    seen: set[str] = set()
    for row in rows:
        key = _key(row, spec)
        seen.add(key)
        known[key] = orjson.dumps(row, default=str).decode()
        removed.pop(key, None)
    stamp = now.astimezone(UTC).isoformat().replace("+00:00", "Z")
    for key in sorted(set(known) - seen - set(removed)):
        last = orjson.loads(known[key])
        last[REMOVED_AT] = stamp
        out.append(last)
        removed[key] = stamp
        known[key] = orjson.dumps(last).decode()
    return out


def dimension_resource(
    spec: DimensionSpec,
    open_client: Callable[[], CargoClient],
    on_rows: Callable[[int, int, float], None] | None = None,
    stats: TableStats | None = None,
) -> DltResource:
    """A dlt resource loading one catalogue table with ``merge`` on its key.

    With ``stats``, listed items that cannot be loaded are counted there as skipped (and the read fails
    past the table's allowance); without, such an item fails the read."""

    def read() -> Iterator[pa.Table]:
        state = dlt.current.resource_state()
        started = time.monotonic()
        with open_client() as client:
            rows = current_rows(client, spec, stats.skip if stats is not None else None)
            calls = int(client.stats_snapshot().get("calls", 0))
        if stats is not None:
            stats.enforce_skip_limit()
        out = reconcile(state, rows, spec, datetime.now(UTC))
        if on_rows is not None:
            on_rows(len(out), calls, time.monotonic() - started)
        if out:
            # arrow (loaded through parquet): every warehouse takes it in bulk, and types are the declared ones
            yield to_arrow(out, spec.columns())

    read.__name__ = spec.name
    return dlt.resource(
        read,
        name=spec.name,
        primary_key=list(spec.key),
        write_disposition={"disposition": "merge", "strategy": "delete-insert"},
        columns=spec.columns(),
    )
