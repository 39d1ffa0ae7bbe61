"""What one ``cargo-elt sync`` did, per table: the document ``sync --json`` prints and the rows it
appends to ``_cargo_sync_runs`` in the destination.

Both are built from the same ``SyncReport``, and a table's figures are its ``TableSummary`` as a
whole (``dataclasses.asdict``): a figure added to the summary appears in the JSON and becomes a
column of ``_cargo_sync_runs`` without a change here (its description goes in
``FIGURE_DESCRIPTIONS``).

``_cargo_sync_runs`` is written by a small pipeline of its own, ``<pipeline-name>_sync_runs``, into
the same dataset, after the sync's load, not as a resource of the sync's load:

* a failed sync is recorded too (status ``failed`` and its error, redacted like the message the user
  sees), which a resource committed with the failed load could never be;
* the figures are final only once the load has ended;
* ``sync --full-refresh`` drops the source's tables, not this history.

The price: a sync whose process dies between its load and this record has no row (its data and
state are loaded all the same). Times are the clock of the machine that ran the sync: they record
when it ran and decide nothing (what a sync reads is decided by Cargo's clock).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from dlt.common.data_types.typing import TDataType
    from dlt.common.schema.typing import TColumnSchema, TTableSchemaColumns

    from .sync import TableSummary

logger = logging.getLogger(__name__)

SYNC_RUNS_TABLE = "_cargo_sync_runs"
SYNC_RUNS_PIPELINE_SUFFIX = "_sync_runs"

RUN_COLUMNS: dict[str, tuple[str, str]] = {
    "sync_id": ("text", "One cargo-elt sync (a UUID): the same in the rows of each of its tables."),
    "load_id": (
        "text",
        "The dlt load that committed the sync's data and state (_dlt_loads.load_id); for a failed sync "
        "the failed package's, empty when it failed before its load.",
    ),
    "pipeline_name": ("text", "The sync's dlt pipeline (--pipeline-name)."),
    "table_name": ("text", "The table the row reports on."),
    "mode": ("text", "incremental, backfill (--since/--until, the state untouched) or full_refresh."),
    "status": ("text", "ok, or failed (then error says why and nothing of this sync was loaded)."),
    "started_at": ("timestamp", "When the sync started, by the clock of the machine that ran it (a record only)."),
    "finished_at": ("timestamp", "When its load ended (or it failed), by the clock of the machine that ran it."),
}
"""Columns of ``_cargo_sync_runs`` that describe the sync: name -> (dlt data type, description)."""

FIGURE_DESCRIPTIONS: dict[str, str] = {
    "rows": "Rows the sync read from Cargo and loaded into the table (merged rows count once each).",
    "queries": "Requests made for the table (SQL queries, exports, list calls).",
    "retries": "Requests retried (429, 5xx, dropped connections).",
    "seconds": "Seconds spent reading the table (reads of tables overlap).",
    "skipped": "Rows the source could not read or place, each logged (never loaded silently).",
}
"""Descriptions of the ``TableSummary`` figures, the columns between the sync's and ``frontier``."""

TAIL_COLUMNS: dict[str, tuple[str, str]] = {
    "frontier": (
        "text",
        "How far the table is read after the sync, as its state keeps it (cargo-elt status shows the same); "
        "empty for tables read whole each sync.",
    ),
    "error": ("text", "Why the sync failed (secrets removed); empty when it did not."),
}

_DLT_TYPES = {"int": "bigint", "float": "double", "str": "text", "bool": "bool"}


@dataclass
class SyncReport:
    """One sync: what it was, how it ended, and per table its figures and frontier."""

    sync_id: str
    pipeline_name: str
    destination: str
    dataset: str
    mode: str
    status: str
    started_at: datetime
    finished_at: datetime
    seconds: float
    load_ids: list[str]
    summaries: list[TableSummary]
    frontiers: dict[str, str | None] = field(default_factory=dict)
    error: str | None = None

    def tables(self) -> dict[str, dict[str, Any]]:
        """Table -> its figures (every field of its summary) and its frontier."""
        out: dict[str, dict[str, Any]] = {}
        for summary in self.summaries:
            figures = dataclasses.asdict(summary)
            name = str(figures.pop("table"))
            if isinstance(figures.get("seconds"), float):
                figures["seconds"] = round(figures["seconds"], 3)
            out[name] = {**figures, "frontier": self.frontiers.get(name)}
        return out

    def document(self) -> dict[str, Any]:
        """What ``cargo-elt sync --json`` prints."""
        return {
            "sync_id": self.sync_id,
            "pipeline_name": self.pipeline_name,
            "destination": self.destination,
            "dataset": self.dataset,
            "mode": self.mode,
            "status": self.status,
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
            "seconds": round(self.seconds, 3),
            "load_ids": self.load_ids,
            "tables": self.tables(),
            "error": self.error,
        }

    def rows(self) -> list[dict[str, Any]]:
        """The rows appended to ``_cargo_sync_runs``: one per table."""
        common = {
            "sync_id": self.sync_id,
            "load_id": self.load_ids[-1] if self.load_ids else None,
            "pipeline_name": self.pipeline_name,
            "mode": self.mode,
            "status": self.status,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
        }
        return [
            {**common, "table_name": name, **figures, "error": self.error} for name, figures in self.tables().items()
        ]


def sync_run_columns(summary_type: type[Any]) -> TTableSchemaColumns:
    """dlt column hints of ``_cargo_sync_runs``: types and descriptions (column comments in BigQuery
    and Snowflake), the figures taken from ``summary_type``'s fields."""
    figures = {
        f.name: (_DLT_TYPES.get(str(f.type).split(" ")[0], "text"), FIGURE_DESCRIPTIONS.get(f.name, ""))
        for f in dataclasses.fields(summary_type)
        if f.name != "table"
    }
    columns: TTableSchemaColumns = {}
    for name, (data_type, description) in {**RUN_COLUMNS, **figures, **TAIL_COLUMNS}.items():
        column: TColumnSchema = {
            "name": name,
            "data_type": cast("TDataType", data_type),
            "nullable": name not in ("sync_id", "status"),
        }
        if data_type == "timestamp":
            column["timezone"] = True
        if description:
            column["description"] = description
        columns[name] = column
    return columns


_ARROW_TYPES = {"text": "string", "bigint": "int64", "double": "float64", "bool": "bool_"}


def rows_as_arrow(rows: list[dict[str, Any]], columns: TTableSchemaColumns) -> Any:
    """The rows as an arrow table typed from ``columns``: loaded as parquet, like the source's tables
    (every warehouse takes it in bulk; a column that is null in every row keeps its type)."""
    import pyarrow as pa

    fields = []
    for name, column in columns.items():
        kind = column.get("data_type")
        arrow_type = pa.timestamp("us", tz="UTC") if kind == "timestamp" else getattr(pa, _ARROW_TYPES[str(kind)])()
        fields.append(pa.field(name, arrow_type, nullable=column.get("nullable", True)))
    return pa.Table.from_pylist([{name: row.get(name) for name in columns} for row in rows], schema=pa.schema(fields))


def record_sync_run(
    report: SyncReport, destination: Any, pipelines_dir: str | None, redact: Callable[[str], str]
) -> bool:
    """Append ``report``'s rows to ``_cargo_sync_runs``; False (and a WARNING) when that failed.

    A record that cannot be written never fails the sync it describes: its data is loaded.
    """
    import dlt

    from .sync import TableSummary

    if not report.summaries:
        return True
    extra: dict[str, Any] = {"pipelines_dir": pipelines_dir} if pipelines_dir else {}
    try:
        pipeline = dlt.pipeline(
            pipeline_name=report.pipeline_name + SYNC_RUNS_PIPELINE_SUFFIX,
            destination=destination,
            dataset_name=report.dataset,
            **extra,
        )
        columns = sync_run_columns(TableSummary)
        resource = dlt.resource(
            rows_as_arrow(report.rows(), columns),
            name=SYNC_RUNS_TABLE,
            write_disposition="append",
            columns=columns,
        )
        # Step by step, not run(): the record is extracted (to local disk) even when the destination is
        # down, and each load also loads the records earlier loads could not; run() would load only those.
        pipeline.extract(resource)
        pipeline.normalize()
        pipeline.load().raise_on_failed_jobs()
    except Exception as exc:
        logger.warning(
            "the sync %s (%s) could not be recorded in %s: %s",
            report.sync_id,
            report.status,
            SYNC_RUNS_TABLE,
            redact(f"{type(exc).__name__}: {exc}"),
        )
        return False
    return True


def frontiers_of(state: Mapping[str, Any], tables: list[str]) -> dict[str, str | None]:
    """Each table's frontier in a pipeline state (``pipeline.state``, or the one stored in the
    destination), as ``cargo_elt.source.freshness`` reads it."""
    from cargo_elt.source.freshness import table_freshness

    resources = resource_states(state)
    return {table: table_freshness(table, resources.get(table)).frontier for table in tables}


def resource_states(state: Mapping[str, Any]) -> dict[str, Any]:
    """Resource name -> its state, from a pipeline state (the source's schema is the default one)."""
    sources = state.get("sources") or {}
    schema = state.get("default_schema_name") or "cargo"
    source = sources.get(schema) or sources.get("cargo") or {}
    resources = source.get("resources") or {}
    return dict(resources) if isinstance(resources, Mapping) else {}


def new_sync_id() -> str:
    import uuid

    return str(uuid.uuid4())


def client_now() -> datetime:
    """The clock of the machine running the sync: for the record of when it ran, nothing else."""
    return datetime.now(UTC)


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
