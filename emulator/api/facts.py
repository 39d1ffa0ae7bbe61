"""The orchestration fact tables as API JSON: row -> Run/Batch/Span/Record, and shared filters.

The fact tables hold snake_case columns (``emulator/schema.py``); the API speaks camelCase with the
key sets of REFERENCE.md section 5 (nullable keys present as ``null``, ISO timestamps with
milliseconds and ``Z``). Reads always go through ``FINAL`` (latest version per key) and are scoped
to the caller's workspace.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..schema import BATCHES, EXECUTION_FIELDS, RECORDS, RUNS, SPANS
from ..store import ClickHouseStore
from .common import camel, contains_sql, iso, json_or_none, lit
from .payloads import ExecutionsFilter

_TS_COLUMNS = frozenset(
    {
        "created_at",
        "updated_at",
        "finished_at",
        "deleted_at",
        "execution_started_at",
        "execution_updated_at",
        "execution_finished_at",
        "started_at",
    }
)
_INT_COLUMNS = frozenset(
    {"runs_count", "executed_runs_count", "failed_runs_count", "execution_index", "node_child_index"}
)

RUN_KEYS: tuple[str, ...] = (
    "uuid",
    "workspace_uuid",
    "workflow_uuid",
    "user_uuid",
    "release_uuid",
    "nodes",
    "batch_uuid",
    "trace_uuid",
    "temporal_workflow_id",
    "record_id",
    "record_title",
    "context_s3_filename",
    "computed_configs_s3_filename",
    "parent_uuid",
    "parent_node_uuid",
    "parent_batch_uuid",
    "parent_agent_uuid",
    "parent_chat_uuid",
    "parent_message_uuid",
    "is_group_parent",
    "status",
    "error_message",
    "executions",
    "created_at",
    "updated_at",
    "finished_at",
    "deleted_at",
)
"""API ``Run`` keys in the order of the type (``executions`` is built from the Nested columns)."""

RECORD_KEYS: tuple[str, ...] = (
    "workspace_uuid",
    "workflow_uuid",
    "user_uuid",
    "id",
    "title",
    "run_uuid",
    "trace_uuid",
    "release_uuid",
    "nodes",
    "batch_uuid",
    "temporal_workflow_id",
    "context_s3_filename",
    "computed_configs_s3_filename",
    "parent_run_uuid",
    "parent_node_uuid",
    "parent_batch_uuid",
    "parent_agent_uuid",
    "parent_chat_uuid",
    "parent_message_uuid",
    "is_group_parent",
    "status",
    "error_message",
    "executions",
    "created_at",
    "updated_at",
    "finished_at",
)
"""API ``Record`` keys in the order of the type (no ``creditsUsedCount`` on the API object)."""

BATCH_KEYS: tuple[str, ...] = (
    "uuid",
    "workspace_uuid",
    "workflow_uuid",
    "user_uuid",
    "release_uuid",
    "nodes",
    "temporal_workflow_id",
    "trace_uuid",
    "data",
    "error_message",
    "status",
    "runs_status",
    "runs_count",
    "executed_runs_count",
    "failed_runs_count",
    "credits_used_count",
    "created_at",
    "updated_at",
    "finished_at",
)
"""API ``Batch`` keys in the order of the type (the parent lineage columns are SQL-only)."""

SPAN_KEYS: tuple[str, ...] = tuple(name for name, _ in SPANS.columns if name != "_version")
"""API ``Span`` keys: the camelCase of every ``spans`` column."""

EXECUTION_COMMON: tuple[str, ...] = (
    "node_uuid",
    "node_slug",
    "node_batch_uuid",
    "node_run_uuid",
    "node_message_uuid",
    "node_child_index",
    "next_node_uuid",
    "status",
    "error_message",
    "title",
    "icon_url",
    "credits_used_count",
    "started_at",
    "updated_at",
    "finished_at",
    "node_wait_until_finished",
)
EXECUTION_BY_KIND: dict[str, tuple[str, ...]] = {
    "native": ("node_action_slug",),
    "connector": ("node_action_slug", "node_connector_uuid", "node_integration_slug"),
    "tool": ("node_tool_uuid", "node_release_uuid"),
    "agent": ("node_agent_uuid", "node_release_uuid"),
}
"""The ``Execution`` union: common fields, then ``nodeKind`` and the fields of that kind only."""

_EXECUTION_NAMES = tuple(name for name, _ in EXECUTION_FIELDS)


def _value(column: str, value: Any) -> Any:
    if column in _TS_COLUMNS:
        return iso(value)
    if column in ("nodes", "data"):
        return json_or_none(value)
    if column in _INT_COLUMNS and value is not None:
        return int(value)
    if column.endswith("credits_used_count") and value is not None:
        return float(value) if not float(value).is_integer() else int(float(value))
    return value


def executions(row: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``executions`` Nested columns of a runs/records row as API ``Execution`` objects."""
    columns = {name: row.get(f"executions.{name}") or [] for name in _EXECUTION_NAMES}
    count = len(columns["node_uuid"])
    result = []
    for index in range(count):
        item = {name: columns[name][index] if index < len(columns[name]) else None for name in _EXECUTION_NAMES}
        kind = item.get("node_kind") or "native"
        execution = {camel(name): _value(name, item.get(name)) for name in EXECUTION_COMMON}
        execution["nodeKind"] = kind
        for name in EXECUTION_BY_KIND.get(kind, ()):
            execution[camel(name)] = _value(name, item.get(name))
        result.append(execution)
    return result


def _entity(row: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key in keys:
        result[camel(key)] = executions(row) if key == "executions" else _value(key, row.get(key))
    return result


def run_json(row: dict[str, Any]) -> dict[str, Any]:
    return _entity(row, RUN_KEYS)


def record_json(row: dict[str, Any]) -> dict[str, Any]:
    return _entity(row, RECORD_KEYS)


def batch_json(row: dict[str, Any]) -> dict[str, Any]:
    return _entity(row, BATCH_KEYS)


def span_json(row: dict[str, Any]) -> dict[str, Any]:
    return _entity(row, SPAN_KEYS)


def table(store: ClickHouseStore, name: str) -> str:
    """A fact table read with ``FINAL`` (one row per key, its latest version)."""
    return f"{store.table(name)} FINAL"


RUN_TABLE, RECORD_TABLE, BATCH_TABLE, SPAN_TABLE = RUNS.name, RECORDS.name, BATCHES.name, SPANS.name


def executions_filter_sql(flt: ExecutionsFilter) -> str:
    """SQL over the ``executions`` Nested columns for an ``executionsFilter`` (REFERENCE.md 3.1).

    A filter or group without ``conjonction`` (e.g. the misspelling ``conjunction``, silently dropped)
    matches nothing, as Cargo's filters do.
    """
    if flt.conjonction is None:
        return "0"
    groups = []
    for group in flt.groups:
        if group.conjonction is None:
            groups.append("0")
            continue
        conditions = [_node_condition(c.nodeSlug, c.status, c.value) for c in group.conditions]
        if not conditions:
            groups.append("1" if group.conjonction == "and" else "0")
        else:
            groups.append("(" + f" {group.conjonction.upper()} ".join(conditions) + ")")
    if not groups:
        return "1"
    return "(" + f" {flt.conjonction.upper()} ".join(groups) + ")"


def _node_condition(slug: str, status: str, value: str | None) -> str:
    if status == "absent":
        return f"NOT has(executions.node_slug, {lit(slug)})"
    if value is not None and status in ("success", "error"):
        column = "t" if status == "success" else "e"
        return (
            f"arrayExists((s, st, t, e) -> s = {lit(slug)} AND st = {lit(status)} AND {contains_sql(column, value)}, "
            "executions.node_slug, executions.status, executions.title, executions.error_message)"
        )
    return f"arrayExists((s, st) -> s = {lit(slug)} AND st = {lit(status)}, executions.node_slug, executions.status)"


def paged_rows(store: ClickHouseStore, select: str, order_by: str, page_rows: int) -> Iterator[dict[str, Any]]:
    """Every row of ``select`` in ``order_by`` order, fetched ``page_rows`` at a time.

    Used by exports: memory stays bounded by one page whatever the file size. (Offset paging on a
    snapshot-free store can skip or repeat a row if data changes mid-export; exports are short.)
    """
    offset = 0
    while True:
        rows = store.rows(f"{select} ORDER BY {order_by} LIMIT {page_rows} OFFSET {offset}")
        yield from rows
        if len(rows) < page_rows:
            return
        offset += page_rows
