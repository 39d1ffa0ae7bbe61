"""Per-workflow context for synthesized node payloads: release node configs and the records' data.

Run get, run output exports and batch exports all need, per run, the first node's output (the
record) and the node configs of the run's release. ``WorkflowContext`` looks both up once per
workflow (releases cached by UUID; records fetched per page of runs in one ``IN`` query), so an
export of thousands of runs costs a handful of catalogue queries, not one per run.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from ..store import ClickHouseStore
from . import catalog, synth
from .common import iso, lit


def model_columns(model_body: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A model's declared columns (original + additional), in order."""
    columns: list[dict[str, Any]] = []
    for key in ("columns", "additionalColumns"):
        value = model_body.get(key)
        if isinstance(value, list):
            columns.extend(c for c in value if isinstance(c, dict) and isinstance(c.get("slug"), str))
    return columns


def record_value(value: Any, column_type: str | None) -> Any:
    """A model-table value as the API shows it (JSON text of object/array columns decoded, ISO times)."""
    if isinstance(value, str) and column_type in ("object", "array", "any"):
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            return value
    if isinstance(value, str) and column_type == "date" and len(value) > 10:
        return iso(value)
    return value


def model_record(row: Mapping[str, Any], types: Mapping[str, str]) -> dict[str, Any]:
    """One model row (``SELECT *`` of its table) as a record object: system columns, then the model's."""
    result: dict[str, Any] = {}
    for key, value in row.items():
        result[key] = iso(value) if key == "_emitted_at" else record_value(value, types.get(key))
    return result


class WorkflowContext:
    """What synthesizing one workflow's node payloads needs, looked up lazily and cached."""

    def __init__(self, store: ClickHouseStore, workspace_uuid: str, workflow_uuid: str, seed: int) -> None:
        self.store = store
        self.workspace_uuid = workspace_uuid
        self.workflow_uuid = workflow_uuid
        self.seed = seed
        self._releases: dict[str | None, dict[str, Any]] = {}
        play = catalog.workflow_play(store, workspace_uuid, workflow_uuid)
        model_uuid = play.body.get("modelUuid") if play is not None else None
        self.model: catalog.Entity | None = None
        if isinstance(model_uuid, str):
            self.model = catalog.get_entity(store, workspace_uuid, "model", model_uuid)
        self.column_types: dict[str, str] = {}
        if self.model is not None:
            self.column_types = {c["slug"]: str(c.get("type")) for c in model_columns(self.model.body)}
        self._has_table = self.model is not None and catalog.model_table_exists(store, self.model.uuid)

    def input_columns(self) -> list[str]:
        """Columns of a record as the first node sees it (the model's, else ``id``/``title``)."""
        if self.model is None:
            return ["id", "title"]
        return ["_id", "_title", *(c for c in self.column_types if c not in ("_id", "_title"))]

    def node_configs(self, release_uuid: str | None) -> dict[str, Any]:
        """Node configs by slug from the run's release (the deployed one when the run names none)."""
        if release_uuid not in self._releases:
            release = (
                catalog.get_entity(self.store, self.workspace_uuid, "release", release_uuid)
                if release_uuid is not None
                else catalog.deployed_release(self.store, self.workspace_uuid, self.workflow_uuid)
            )
            nodes = catalog.flatten_nodes(release.body.get("nodes")) if release is not None else []
            self._releases[release_uuid] = {
                str(n.get("slug")): n.get("config") or {} for n in nodes if isinstance(n.get("slug"), str)
            }
        return self._releases[release_uuid]

    def records(self, record_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Model rows by ``_id`` for the given record ids (one query)."""
        ids = sorted(set(record_ids))
        if not ids or self.model is None or not self._has_table:
            return {}
        rows = self.store.rows(
            f"SELECT * FROM {catalog.model_table(self.store, self.model.uuid)} "
            f"WHERE _id IN ({', '.join(lit(i) for i in ids)})"
        )
        return {str(row["_id"]): model_record(row, self.column_types) for row in rows}

    def first_output(self, run: Mapping[str, Any], records: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
        """The record a run processed, as its first node's output."""
        record_id = str(run.get("recordId", run.get("id", "")))
        found = records.get(record_id)
        if found is not None:
            return found
        title = run.get("recordTitle", run.get("title"))
        if self.model is not None:
            return {"_id": record_id, "_title": title}
        return {"id": record_id, "title": title}

    def payloads(
        self, run: Mapping[str, Any], records: Mapping[str, dict[str, Any]]
    ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        """``(first output, runContext, runComputedConfigs)`` of one run (API JSON)."""
        first = self.first_output(run, records)
        context = synth.run_context(self.seed, run, first)
        release_uuid = run.get("releaseUuid")
        configs = synth.computed_configs(
            run, self.node_configs(release_uuid if isinstance(release_uuid, str) else None), context, first
        )
        return first, context, configs
