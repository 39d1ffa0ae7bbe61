"""The ClickHouse layout of Cargo's orchestration tables, as the emulator serves them.

Column names and types follow REFERENCE.md section 4.2. Where the reference marks a choice as
inferred ([I]) the choice is made here and only here, so that correcting it is a one-line change:

* ``runs`` exposes exactly 51 readable columns (26 scalar fields of the API ``Run`` type, the
  ``credits_used_count`` column, a ``Nested`` ``executions`` column whose 23 sub-columns each count
  towards ``max_columns_to_read``, and one ReplacingMergeTree bookkeeping column ``_version``).
  That is what makes ``SELECT * FROM runs`` fail with ``Requested: 51, maximum: 50`` as on Cargo.
* ``records`` keeps the API ``Record`` names ``id``/``title`` (not ``record_id``/``record_title``).
* ``batches`` carries the enrolled ``data`` as JSON text plus its ``data_kind``.
* Mutable rows are versioned (``ReplacingMergeTree``) and read through per-workspace views with
  ``FINAL``, so a caller always sees one version per primary key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

DATABASE_PREFIX = "emu"
"""Every database the emulator creates starts with this (``emu<n>_store``, ``emu<n>_ws_<uuid hex>``).

One process holds one embedded ClickHouse, so several emulators in one process (tests) each take a
namespace number ``n``. The store database holds the physical tables of all workspaces; each workspace
has a database of views, which its callers' connections use as their current database.
"""

TS = "DateTime64(3, 'UTC')"
NULL_TS = f"Nullable({TS})"
UUID = "UUID"
NULL_UUID = "Nullable(UUID)"
STR = "String"
NULL_STR = "Nullable(String)"
ENUM = "LowCardinality(String)"
NULL_BOOL = "Nullable(Bool)"
BOOL = "Bool"
F64 = "Float64"
U64 = "UInt64"
U32 = "UInt32"
NULL_U32 = "Nullable(UInt32)"

EXECUTION_FIELDS: tuple[tuple[str, str], ...] = (
    ("node_uuid", UUID),
    ("node_slug", STR),
    ("node_kind", ENUM),
    ("node_batch_uuid", NULL_UUID),
    ("node_run_uuid", NULL_UUID),
    ("node_message_uuid", NULL_UUID),
    ("node_child_index", NULL_U32),
    ("next_node_uuid", NULL_UUID),
    ("status", ENUM),
    ("error_message", NULL_STR),
    ("title", NULL_STR),
    ("icon_url", NULL_STR),
    ("credits_used_count", F64),
    ("started_at", TS),
    ("updated_at", TS),
    ("finished_at", NULL_TS),
    ("node_wait_until_finished", BOOL),
    ("node_action_slug", NULL_STR),
    ("node_connector_uuid", NULL_UUID),
    ("node_integration_slug", NULL_STR),
    ("node_tool_uuid", NULL_UUID),
    ("node_agent_uuid", NULL_UUID),
    ("node_release_uuid", NULL_UUID),
)
"""Sub-columns of the ``executions`` Nested column (the API ``Execution`` type, snake_cased)."""


@dataclass(frozen=True)
class TableLayout:
    """One orchestration table: its columns, sort key and version column."""

    name: str
    columns: tuple[tuple[str, str], ...]
    order_by: tuple[str, ...]
    time_column: str
    version_column: str
    nested: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = ()

    def readable_column_count(self) -> int:
        """Columns ``SELECT *`` reads, counting each Nested sub-column like ClickHouse does."""
        return len(self.columns) + sum(len(fields) for _, fields in self.nested)

    def column_names(self) -> list[str]:
        """Flat column names in table order (Nested sub-columns as ``parent.child``)."""
        names = [name for name, _ in self.columns]
        for parent, fields in self.nested:
            names.extend(f"{parent}.{child}" for child, _ in fields)
        return names

    def create_statement(self, database: str) -> str:
        """DDL of the physical table (ReplacingMergeTree ordered by workspace, then time)."""
        parts = [f"`{name}` {ctype}" for name, ctype in self.columns]
        for parent, fields in self.nested:
            inner = ", ".join(f"`{child}` {ctype}" for child, ctype in fields)
            parts.append(f"`{parent}` Nested({inner})")
        order = ", ".join(self.order_by)
        return (
            f"CREATE TABLE IF NOT EXISTS {database}.{self.name} ({', '.join(parts)}) "
            f"ENGINE = ReplacingMergeTree({self.version_column}) ORDER BY ({order}) "
            f"SETTINGS index_granularity = 8192"
        )


RUNS = TableLayout(
    name="runs",
    columns=(
        ("uuid", UUID),
        ("workspace_uuid", UUID),
        ("workflow_uuid", UUID),
        ("user_uuid", NULL_UUID),
        ("release_uuid", NULL_UUID),
        ("nodes", NULL_STR),
        ("batch_uuid", NULL_UUID),
        ("trace_uuid", UUID),
        ("temporal_workflow_id", STR),
        ("record_id", STR),
        ("record_title", STR),
        ("context_s3_filename", STR),
        ("computed_configs_s3_filename", STR),
        ("parent_uuid", NULL_UUID),
        ("parent_node_uuid", NULL_UUID),
        ("parent_batch_uuid", NULL_UUID),
        ("parent_agent_uuid", NULL_UUID),
        ("parent_chat_uuid", NULL_UUID),
        ("parent_message_uuid", NULL_UUID),
        ("is_group_parent", NULL_BOOL),
        ("status", ENUM),
        ("error_message", NULL_STR),
        ("credits_used_count", F64),
        ("created_at", TS),
        ("updated_at", TS),
        ("finished_at", NULL_TS),
        ("deleted_at", NULL_TS),
        ("_version", U64),
    ),
    nested=(("executions", EXECUTION_FIELDS),),
    order_by=("workspace_uuid", "created_at", "uuid"),
    time_column="created_at",
    version_column="_version",
)

BATCHES = TableLayout(
    name="batches",
    columns=(
        ("uuid", UUID),
        ("workspace_uuid", UUID),
        ("workflow_uuid", UUID),
        ("user_uuid", NULL_UUID),
        ("release_uuid", NULL_UUID),
        ("nodes", NULL_STR),
        ("trace_uuid", NULL_UUID),
        ("temporal_workflow_id", STR),
        ("data_kind", ENUM),
        ("data", STR),
        ("parent_batch_uuid", NULL_UUID),
        ("parent_run_uuid", NULL_UUID),
        ("parent_node_uuid", NULL_UUID),
        ("status", ENUM),
        ("runs_status", "Nullable(String)"),
        ("error_message", NULL_STR),
        ("runs_count", U64),
        ("executed_runs_count", U64),
        ("failed_runs_count", U64),
        ("credits_used_count", F64),
        ("created_at", TS),
        ("updated_at", TS),
        ("finished_at", NULL_TS),
        ("_version", U64),
    ),
    order_by=("workspace_uuid", "created_at", "uuid"),
    time_column="created_at",
    version_column="_version",
)

SPANS = TableLayout(
    name="spans",
    columns=(
        ("workspace_uuid", UUID),
        ("workflow_uuid", UUID),
        ("user_uuid", NULL_UUID),
        ("batch_uuid", UUID),
        ("trace_uuid", UUID),
        ("record_id", STR),
        ("record_title", STR),
        ("run_uuid", UUID),
        ("run_context_s3_filename", STR),
        ("run_computed_configs_s3_filename", STR),
        ("parent_run_uuid", NULL_UUID),
        ("parent_node_uuid", NULL_UUID),
        ("parent_batch_uuid", NULL_UUID),
        ("parent_agent_uuid", NULL_UUID),
        ("parent_chat_uuid", NULL_UUID),
        ("parent_message_uuid", NULL_UUID),
        ("is_group_parent", NULL_BOOL),
        ("node_uuid", UUID),
        ("node_kind", ENUM),
        ("node_slug", STR),
        ("node_action_slug", STR),
        ("node_connector_uuid", NULL_UUID),
        ("node_integration_slug", NULL_STR),
        ("node_tool_uuid", NULL_UUID),
        ("node_agent_uuid", NULL_UUID),
        ("node_release_uuid", NULL_UUID),
        ("node_batch_uuid", NULL_UUID),
        ("node_run_uuid", NULL_UUID),
        ("node_message_uuid", NULL_UUID),
        ("node_child_index", NULL_U32),
        ("node_wait_until_finished", BOOL),
        ("node_next_uuid", NULL_UUID),
        ("execution_index", U32),
        ("execution_status", ENUM),
        ("execution_error_message", NULL_STR),
        ("execution_title", NULL_STR),
        ("execution_icon_url", NULL_STR),
        ("execution_credits_used_count", F64),
        ("execution_started_at", TS),
        ("execution_updated_at", TS),
        ("execution_finished_at", NULL_TS),
        ("_version", U64),
    ),
    order_by=("workspace_uuid", "execution_started_at", "run_uuid", "node_uuid", "execution_index"),
    time_column="execution_started_at",
    version_column="_version",
)

RECORDS = TableLayout(
    name="records",
    columns=(
        ("workspace_uuid", UUID),
        ("workflow_uuid", UUID),
        ("user_uuid", NULL_UUID),
        ("id", STR),
        ("title", STR),
        ("run_uuid", UUID),
        ("trace_uuid", UUID),
        ("release_uuid", NULL_UUID),
        ("nodes", NULL_STR),
        ("batch_uuid", NULL_UUID),
        ("temporal_workflow_id", STR),
        ("context_s3_filename", STR),
        ("computed_configs_s3_filename", STR),
        ("parent_run_uuid", NULL_UUID),
        ("parent_node_uuid", NULL_UUID),
        ("parent_batch_uuid", NULL_UUID),
        ("parent_agent_uuid", NULL_UUID),
        ("parent_chat_uuid", NULL_UUID),
        ("parent_message_uuid", NULL_UUID),
        ("is_group_parent", NULL_BOOL),
        ("status", ENUM),
        ("error_message", NULL_STR),
        ("credits_used_count", F64),
        ("created_at", TS),
        ("updated_at", TS),
        ("finished_at", NULL_TS),
    ),
    nested=(("executions", EXECUTION_FIELDS),),
    order_by=("workspace_uuid", "created_at", "workflow_uuid", "id"),
    time_column="created_at",
    version_column="updated_at",
)

ORCHESTRATION_TABLES: tuple[TableLayout, ...] = (RUNS, BATCHES, SPANS, RECORDS)
TABLES_BY_NAME: dict[str, TableLayout] = {t.name: t for t in ORCHESTRATION_TABLES}


def store_database(namespace: int) -> str:
    """Database of the physical tables of one emulator instance."""
    return f"{DATABASE_PREFIX}{namespace}_store"


def workspace_database(namespace: int, workspace_uuid: str) -> str:
    """Database whose views scope bare table names to one workspace."""
    return f"{DATABASE_PREFIX}{namespace}_ws_" + workspace_uuid.replace("-", "")


def view_statement(
    layout: TableLayout, namespace: int, workspace_uuid: str, renames: Mapping[str, str] | None = None
) -> str:
    """A view that shows one workspace's current rows (latest version per key); ``renames`` (stored
    column -> name shown) renames columns as callers of ``orchestration/query`` see them."""
    columns = "*"
    if renames:
        hidden = ", ".join(f"`{name}`" for name in renames)
        shown = ", ".join(f"`{name}` AS `{to}`" for name, to in renames.items())
        columns = f"* EXCEPT ({hidden}), {shown}"
    return (
        f"CREATE VIEW IF NOT EXISTS {workspace_database(namespace, workspace_uuid)}.{layout.name} AS "
        f"SELECT {columns} FROM {store_database(namespace)}.{layout.name} FINAL "
        f"WHERE workspace_uuid = toUUID('{workspace_uuid}')"
    )
