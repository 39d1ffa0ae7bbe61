"""What is specific to each orchestration table: columns and their types, keys, time and status columns.

The shared machinery (planner, fetcher, arrow conversion, incremental state) reads everything
table-specific from one ``TableSpec``. Column lists follow REFERENCE.md section 4.2 and are always
selected explicitly (never ``SELECT *``): the server reads at most 50 columns per query, and a fixed
list keeps the destination schema stable. Left out on purpose:

* ``runs.executions.*`` / ``records.executions.*`` and the ``nodes`` graphs of runs and records:
  per-node data comes from ``spans``, one row per execution, already flat;
* bookkeeping columns such as ``_version``.

Columns the reference marks as inferred may be missing on the live API (a query naming one fails with
ClickHouse code 47); ``TableSpec.without`` drops such a column without touching the rest.

``ignored_columns`` lists the columns a table is known to have and that are left out on purpose, so the
schema check of each sync (``extract.check_schema``) tells apart a column added since (reported and
loaded) from one the connector skips by design.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any, Final

import pyarrow as pa
from dlt.common.schema.typing import TColumnSchema, TTableSchemaColumns

from .settings import MAX_COLUMNS_TO_READ

IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]*")
"""Column and table names the source will put into SQL unquoted."""


class ValueKind(Enum):
    """How a column's JSON values are turned into arrow (see ``arrow.py``)."""

    STRING = "string"
    JSON = "json"
    INT = "int"
    FLOAT = "float"
    BOOL = "bool"
    TIMESTAMP = "timestamp"


TIMESTAMP_TYPE: Final = pa.timestamp("us", tz="UTC")
"""``DateTime64(3, 'UTC')`` in arrow, held as microseconds: the precision every warehouse (and DuckDB's
TIMESTAMPTZ) stores natively, so no destination warns about or truncates it."""

_ARROW_TYPES: Final[dict[ValueKind, pa.DataType]] = {
    ValueKind.STRING: pa.string(),
    ValueKind.JSON: pa.string(),
    ValueKind.INT: pa.int64(),
    ValueKind.FLOAT: pa.float64(),
    ValueKind.BOOL: pa.bool_(),
    ValueKind.TIMESTAMP: TIMESTAMP_TYPE,
}

_KIND_OF_BASE_TYPE: Final[dict[str, ValueKind]] = {
    "UUID": ValueKind.STRING,
    "String": ValueKind.STRING,
    "LowCardinality(String)": ValueKind.STRING,
    "Bool": ValueKind.BOOL,
    "UInt32": ValueKind.INT,
    "UInt64": ValueKind.INT,
    "Int64": ValueKind.INT,
    "Float64": ValueKind.FLOAT,
    "DateTime64(3, 'UTC')": ValueKind.TIMESTAMP,
}


_WRAPPERS = re.compile(r"^(?:Nullable|LowCardinality)\((.*)\)$")
_KIND_PREFIXES: Final[tuple[tuple[str, ValueKind], ...]] = (
    ("UUID", ValueKind.STRING),
    ("String", ValueKind.STRING),
    ("FixedString", ValueKind.STRING),
    ("Enum", ValueKind.STRING),
    ("IPv", ValueKind.STRING),
    ("Bool", ValueKind.BOOL),
    ("UInt", ValueKind.INT),
    ("Int", ValueKind.INT),
    ("Float", ValueKind.FLOAT),
    ("Decimal", ValueKind.FLOAT),
    ("DateTime", ValueKind.TIMESTAMP),
    ("Date", ValueKind.TIMESTAMP),
)


def kind_of_type(clickhouse_type: str) -> tuple[ValueKind | None, bool]:
    """How any ClickHouse type reads into arrow (``None``: not a scalar the source can load), and
    whether it is nullable. Looser than ``column``: used on the types a server reports at run time."""
    text = clickhouse_type.strip()
    nullable = False
    while True:
        wrapped = _WRAPPERS.match(text)
        if not wrapped:
            break
        nullable = nullable or text.startswith("Nullable(")
        text = wrapped.group(1).strip()
    for prefix, kind in _KIND_PREFIXES:
        if text.startswith(prefix):
            return kind, nullable
    return None, nullable


UNIQUE_PER_PACKAGE_HINT = "x-cargo-unique-per-package"
"""Table hint: each primary key is read once per load package (``TableSpec.load_hints``)."""


@dataclass(frozen=True)
class ColumnSpec:
    """One column as the API serves it and as the destination receives it.

    ``secret_keys`` names keys to strip from a JSON column before loading (``webhookSecret`` inside a
    form batch's ``data`` is a credential of the user's, REFERENCE.md 5.4).
    """

    name: str
    clickhouse_type: str
    kind: ValueKind
    nullable: bool
    secret_keys: tuple[str, ...] = ()
    source: str | None = None
    """The server's name for the column when it is not ``name`` (``SERVER_NAMES``): selected as
    ``source AS name``, so every other clause and the loaded table keep ``name``."""

    @property
    def arrow_type(self) -> pa.DataType:
        """Arrow type of the column: UTC ms timestamps, int64 counters, float64 credits, strings."""
        return _ARROW_TYPES[self.kind]

    @property
    def select_expression(self) -> str:
        """How the column is named in a SELECT list."""
        return self.name if self.source is None else f"{self.source} AS {self.name}"


def column(name: str, clickhouse_type: str, *, json: bool = False, secret_keys: tuple[str, ...] = ()) -> ColumnSpec:
    """A ``ColumnSpec`` whose kind and nullability follow from its ClickHouse type.

    ``json=True`` marks a ``String`` column that holds JSON text (loaded as a JSON column).
    """
    nullable = clickhouse_type.startswith("Nullable(")
    base = clickhouse_type[len("Nullable(") : -1] if nullable else clickhouse_type
    if base not in _KIND_OF_BASE_TYPE:
        raise ValueError(f"column {name!r}: no mapping for ClickHouse type {clickhouse_type!r}")
    kind = _KIND_OF_BASE_TYPE[base]
    if json:
        if kind is not ValueKind.STRING:
            raise ValueError(f"column {name!r}: only String columns can hold JSON")
        kind = ValueKind.JSON
    return ColumnSpec(name, clickhouse_type, kind, nullable, secret_keys)


@dataclass(frozen=True)
class TableSpec:
    """Everything table-specific about one orchestration table.

    ``time_column`` orders the table on the server (its primary index), so windows are ranges of it;
    ``update_column`` changes with every update and picks the newest version of a row;
    ``primary_key`` with the time column gives the total order used for keyset paging.
    """

    name: str
    columns: tuple[ColumnSpec, ...]
    time_column: str
    update_column: str
    primary_key: tuple[str, ...]
    status_column: str
    terminal_statuses: frozenset[str]
    ignored_columns: tuple[str, ...] = ()
    """Server columns not loaded on purpose; a name ending in ``.`` stands for a Nested column's parts."""
    warned: set[str] = field(default_factory=set, compare=False, repr=False, hash=False)
    """Warnings already logged by the read using this spec (each is logged once per sync)."""
    _by_name: dict[str, ColumnSpec] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_name = {c.name: c for c in self.columns}
        object.__setattr__(self, "_by_name", by_name)
        problems: list[str] = []
        if not IDENTIFIER.fullmatch(self.name):
            problems.append(f"table name {self.name!r} is not a plain identifier")
        if len(by_name) != len(self.columns):
            problems.append("duplicate column names")
        if len(self.columns) > MAX_COLUMNS_TO_READ:
            problems.append(f"{len(self.columns)} columns, the API reads at most {MAX_COLUMNS_TO_READ}")
        problems.extend(
            f"column {c.name!r} is not a plain identifier" for c in self.columns if not IDENTIFIER.fullmatch(c.name)
        )
        for role, name in (("time", self.time_column), ("update", self.update_column)):
            spec = by_name.get(name)
            if spec is None or spec.kind is not ValueKind.TIMESTAMP or spec.nullable:
                problems.append(f"{role} column {name!r} must be a non-null timestamp column")
        if not self.primary_key:
            problems.append("empty primary key")
        for name in (*self.primary_key, self.status_column):
            if name not in by_name:
                problems.append(f"column {name!r} is not selected")
        problems.extend(
            f"primary key column {n!r} is nullable" for n in self.primary_key if n in by_name and by_name[n].nullable
        )
        if problems:
            raise ValueError(f"invalid spec for table {self.name!r}: " + "; ".join(problems))

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def select_list(self) -> str:
        """The SELECT list of a page: every column, under the spec's names (``source AS name``)."""
        return ", ".join(c.select_expression for c in self.columns)

    @property
    def sort_key(self) -> tuple[str, ...]:
        """Total order of the table's rows: the time column, then the primary key."""
        return (self.time_column, *self.primary_key)

    @property
    def page_order(self) -> str:
        """A page query's ``ORDER BY``: ``sort_key``, then a row's newest version first.

        A read without ``FINAL`` may see two versions of one row (REFERENCE.md 4.6, inferred): same
        time, same key, different ``update_column``. The keyset cursor moves past a key after the
        first of its rows, so when a page ends between the versions, the next page skips the rest;
        ordered newest first, what is skipped is always an older version, never the current one.
        """
        return ", ".join((*self.sort_key, f"{self.update_column} DESC"))

    @property
    def required_columns(self) -> frozenset[str]:
        """Columns that must never be null in a loaded row: keys and the two cursor columns."""
        return frozenset((self.time_column, self.update_column, *self.primary_key))

    @property
    def json_columns(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.kind is ValueKind.JSON)

    def column(self, name: str) -> ColumnSpec:
        """The spec of one selected column (``KeyError`` if it is not selected)."""
        return self._by_name[name]

    def arrow_schema(self) -> pa.Schema:
        """The fixed arrow schema every page of this table is converted to.

        Only key and cursor columns are declared non-null. The reference infers most other
        nullabilities, and a NOT NULL that turns out wrong would fail loads in the warehouse.
        """
        required = self.required_columns
        return pa.schema([pa.field(c.name, c.arrow_type, nullable=c.name not in required) for c in self.columns])

    def dlt_columns(self) -> TTableSchemaColumns:
        """Column hints for ``dlt.resource(columns=...)`` that arrow alone cannot express.

        JSON text columns load as JSON; key columns are non-null; the update column is the
        ``dedup_sort`` of a merge, so the newest version of a row wins when a load holds several.
        """
        hints: TTableSchemaColumns = {}
        for c in self.columns:
            hint: TColumnSchema = {"name": c.name}
            if c.kind is ValueKind.JSON:
                hint["data_type"] = "json"
            if c.name in self.required_columns:
                hint["nullable"] = False
            if c.name == self.update_column:
                hint["dedup_sort"] = "desc"
            if len(hint) > 1:
                hints[c.name] = hint
        return hints

    def load_hints(self) -> dict[str, Any]:
        """Table hints for loaders that can use them (``pipelines/duckdb_load.py``); dlt ignores them.

        A sync reads a table's range once, in windows split by the time column and pages in
        ``(time, key)`` order: each primary key comes back once per load package
        (``UNIQUE_PER_PACKAGE_HINT``), unless the server shows two versions of a row, which the
        loader checks for.
        """
        return {UNIQUE_PER_PACKAGE_HINT: True}

    def for_read(self) -> TableSpec:
        """A copy for one sync's read, with its own record of the warnings logged."""
        return replace(self, warned=set())

    def warn_once(self, key: str, message: str, *args: object) -> None:
        """Log a WARNING the first time ``key`` comes up in this read."""
        if key in self.warned:
            return
        self.warned.add(key)
        logging.getLogger(__package__).warning(message, *args)

    def with_columns(self, extra: Iterable[ColumnSpec]) -> TableSpec:
        """The same spec plus some columns (e.g. one the server added since the spec was written)."""
        return replace(self, columns=(*self.columns, *extra))

    def read_as(self, sources: Mapping[str, str]) -> TableSpec:
        """The same spec reading some columns from the server's other names (``{name: source}``)."""
        unknown = set(sources) - set(self._by_name)
        if unknown:
            raise ValueError(f"table {self.name!r} has no columns {sorted(unknown)}")
        columns = tuple(replace(c, source=sources[c.name]) if c.name in sources else c for c in self.columns)
        return replace(self, columns=columns)

    def without(self, names: Iterable[str]) -> TableSpec:
        """The same spec minus some columns (e.g. one the live API turns out not to have)."""
        drop = set(names)
        unknown = drop - set(self._by_name)
        if unknown:
            raise ValueError(f"table {self.name!r} has no columns {sorted(unknown)}")
        keep_needed = drop & (self.required_columns | {self.status_column})
        if keep_needed:
            raise ValueError(f"table {self.name!r} cannot work without {sorted(keep_needed)}")
        return replace(self, columns=tuple(c for c in self.columns if c.name not in drop))


# -- column types as REFERENCE.md 4.2 writes them ---------------------------------------------------

_TS = "DateTime64(3, 'UTC')"
_NULL_TS = f"Nullable({_TS})"
_UUID = "UUID"
_NULL_UUID = "Nullable(UUID)"
_STR = "String"
_NULL_STR = "Nullable(String)"
_ENUM = "LowCardinality(String)"
_NULL_BOOL = "Nullable(Bool)"

_PARENT_COLUMNS = (
    "parent_node_uuid",
    "parent_batch_uuid",
    "parent_agent_uuid",
    "parent_chat_uuid",
    "parent_message_uuid",
)

RUNS = TableSpec(
    name="runs",
    columns=(
        column("uuid", _UUID),
        column("workspace_uuid", _UUID),
        column("workflow_uuid", _UUID),
        column("user_uuid", _NULL_UUID),
        column("release_uuid", _NULL_UUID),
        column("batch_uuid", _NULL_UUID),
        column("trace_uuid", _UUID),
        column("temporal_workflow_id", _STR),
        column("record_id", _STR),
        column("record_title", _STR),
        column("context_s3_filename", _STR),
        column("computed_configs_s3_filename", _STR),
        column("parent_uuid", _NULL_UUID),
        *(column(name, _NULL_UUID) for name in _PARENT_COLUMNS),
        column("is_group_parent", _NULL_BOOL),
        column("status", _ENUM),
        column("error_message", _NULL_STR),
        column("credits_used_count", "Float64"),
        column("created_at", _TS),
        column("updated_at", _TS),
        column("finished_at", _NULL_TS),
        column("deleted_at", _NULL_TS),
    ),
    time_column="created_at",
    update_column="updated_at",
    primary_key=("uuid",),
    status_column="status",
    terminal_statuses=frozenset({"success", "error", "cancelled", "skipped"}),
    ignored_columns=("nodes", "executions.", "_version"),
)

BATCHES = TableSpec(
    name="batches",
    columns=(
        column("uuid", _UUID),
        column("workspace_uuid", _UUID),
        column("workflow_uuid", _UUID),
        column("user_uuid", _NULL_UUID),
        column("release_uuid", _NULL_UUID),
        column("trace_uuid", _NULL_UUID),
        column("temporal_workflow_id", _STR),
        column("data_kind", _ENUM),
        column("data", _STR, json=True, secret_keys=("webhookSecret",)),
        column("status", _ENUM),
        column("runs_status", "Nullable(String)"),
        column("error_message", _NULL_STR),
        column("runs_count", "UInt64"),
        column("executed_runs_count", "UInt64"),
        column("failed_runs_count", "UInt64"),
        column("credits_used_count", "Float64"),
        column("created_at", _TS),
        column("updated_at", _TS),
        column("finished_at", _NULL_TS),
    ),
    time_column="created_at",
    update_column="updated_at",
    primary_key=("uuid",),
    status_column="status",
    terminal_statuses=frozenset({"success", "error", "cancelled", "skipped"}),
    # the parent links are served by the emulator but not listed for batches in REFERENCE.md 4.2
    ignored_columns=("nodes", "parent_batch_uuid", "parent_run_uuid", "parent_node_uuid", "_version"),
)

SPANS = TableSpec(
    name="spans",
    columns=(
        column("workspace_uuid", _UUID),
        column("workflow_uuid", _UUID),
        column("user_uuid", _NULL_UUID),
        column("batch_uuid", _UUID),
        column("trace_uuid", _UUID),
        column("record_id", _STR),
        column("record_title", _STR),
        column("run_uuid", _UUID),
        column("run_context_s3_filename", _STR),
        column("run_computed_configs_s3_filename", _STR),
        column("parent_run_uuid", _NULL_UUID),
        *(column(name, _NULL_UUID) for name in _PARENT_COLUMNS),
        column("is_group_parent", _NULL_BOOL),
        column("node_uuid", _UUID),
        column("node_kind", _ENUM),
        column("node_slug", _STR),
        column("node_action_slug", _STR),
        column("node_connector_uuid", _NULL_UUID),
        column("node_integration_slug", _NULL_STR),
        column("node_tool_uuid", _NULL_UUID),
        column("node_agent_uuid", _NULL_UUID),
        column("node_release_uuid", _NULL_UUID),
        column("node_batch_uuid", _NULL_UUID),
        column("node_run_uuid", _NULL_UUID),
        column("node_message_uuid", _NULL_UUID),
        column("node_child_index", "Nullable(UInt32)"),
        column("node_wait_until_finished", "Bool"),
        column("node_next_uuid", _NULL_UUID),
        column("execution_index", "UInt32"),
        column("execution_status", _ENUM),
        column("execution_error_message", _NULL_STR),
        column("execution_title", _NULL_STR),
        column("execution_icon_url", _NULL_STR),
        column("execution_credits_used_count", "Float64"),
        column("execution_started_at", _TS),
        column("execution_updated_at", _TS),
        column("execution_finished_at", _NULL_TS),
    ),
    time_column="execution_started_at",
    update_column="execution_updated_at",
    primary_key=("run_uuid", "node_uuid", "execution_index"),
    status_column="execution_status",
    terminal_statuses=frozenset({"success", "error"}),
    ignored_columns=("_version",),
)

RECORDS = TableSpec(
    name="records",
    columns=(
        column("workspace_uuid", _UUID),
        column("workflow_uuid", _UUID),
        column("user_uuid", _NULL_UUID),
        column("id", _STR),
        column("title", _STR),
        column("run_uuid", _UUID),
        column("trace_uuid", _UUID),
        column("release_uuid", _NULL_UUID),
        column("batch_uuid", _NULL_UUID),
        column("temporal_workflow_id", _STR),
        column("context_s3_filename", _STR),
        column("computed_configs_s3_filename", _STR),
        column("parent_run_uuid", _NULL_UUID),
        *(column(name, _NULL_UUID) for name in _PARENT_COLUMNS),
        column("is_group_parent", _NULL_BOOL),
        column("status", _ENUM),
        column("error_message", _NULL_STR),
        column("credits_used_count", "Float64"),
        column("created_at", _TS),
        column("updated_at", _TS),
        column("finished_at", _NULL_TS),
    ),
    time_column="created_at",
    update_column="updated_at",
    primary_key=("workflow_uuid", "id"),
    status_column="status",
    terminal_statuses=frozenset({"success", "error", "cancelled"}),
    ignored_columns=("nodes", "executions.", "_version"),
)

TABLE_SPECS: Final[dict[str, TableSpec]] = {spec.name: spec for spec in (RUNS, BATCHES, SPANS, RECORDS)}

SERVER_NAMES: Final[dict[tuple[str, str], tuple[str, ...]]] = {
    ("records", "id"): ("record_id",),
}
"""[I] Other names a server may give a column the connector needs, tried in order when the column itself
is missing (``extract.check_schema`` maps it and says so at INFO): the record key is ``id`` in
REFERENCE.md 4.2, ``record_id`` in ``runs`` and ``spans`` and in Cargo's record payloads."""
