"""Cargo source for dlt: a workspace's facts, exports and catalogue.

* Facts (``runs``, ``batches``, ``spans``, ``records``) are read through windowed SQL on
  ``orchestration/query`` that stays under Cargo's caps (10,000 result rows, 10,000,000 rows
  scanned, 30 s, 50 columns), merged on their primary key, the newest update winning, so re-reads
  never duplicate (``facts.py``; ``incremental.py`` says what each sync reads).
* Exports (``run_outputs``, ``batch_outputs``, ``run_metrics``, ``run_metrics_daily``,
  ``batch_failures``) come from the signed-URL download endpoints, the metrics endpoint and SQL
  (``outputs.py``, ``metrics.py``, ``metrics_daily.py``, ``failures.py``); segment exports (one
  table each) from ``segments.py``.
* The catalogue (``workflows``, ``plays``, ``tools``, ... ``release_nodes``) names the uuids of the
  facts (``catalogue.py``).

Usage as a library::

    import dlt
    from cargo_elt.source import cargo_source

    pipeline = dlt.pipeline("cargo", destination="duckdb", dataset_name="cargo")
    pipeline.run(cargo_source())  # api_token from .dlt/secrets.toml or SOURCES__CARGO__API_TOKEN
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import dlt
from dlt.extract.resource import DltResource

from .bounds import SyncWindow
from .catalogue import DIMENSION_NAMES, DIMENSIONS, dimension_resource
from .config import EXPORT_TABLES, FACT_TABLES, SEGMENT_TABLES, TABLE_NAMES, CargoSettings, parse_settings
from .connection import Connection
from .descriptions import describe_resource
from .disk import delete_loaded_files
from .errors import CargoConfigurationError
from .extract import TableStats
from .facts import fact_resource
from .failures import batch_failures_resource
from .handover import HANDED_OVER_TABLES, Handover
from .log import route_to_dlt_logger
from .memory import bound_extract_files
from .metrics import run_metrics_resource
from .metrics_daily import run_metrics_daily_resource
from .outputs import batch_outputs_resource, run_outputs_resource
from .segments import quiet_hint_notices, segment_resources
from .server_clock import ServerClock, extraction_id
from .settings import (
    DEFAULT_BASE_URL,
    DEFAULT_CONCURRENCY,
    DEFAULT_MAX_LOOKBACK,
    DEFAULT_OVERLAP,
    DEFAULT_SETTLE,
)
from .specs import TABLE_SPECS
from .steps import StepBudget

__all__ = [
    "DIMENSION_NAMES",
    "EXPORT_TABLES",
    "FACT_TABLES",
    "SEGMENT_TABLES",
    "TABLE_NAMES",
    "CargoSettings",
    "SyncStats",
    "TableStats",
    "cargo_source",
]


class SyncStats(dict[str, TableStats]):
    """Per-table costs of the last extraction, filled while the pipeline runs (for reports).

    ``server_clock`` holds the cost of reading Cargo's clock (one query per extraction, shared by all
    tables). ``steps_committed`` counts the extractions loaded so far by a runner that reads in steps.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.server_clock = TableStats("server_clock")
        self.steps_committed = 0

    def pending_tables(self) -> list[str]:
        """Tables whose read the last extraction left unfinished (``step_rows``/``step_seconds``)."""
        return [name for name, table in self.items() if table.pending]


@dlt.source(name="cargo", section="cargo", max_table_nesting=0)
def cargo_source(
    api_token: str = dlt.secrets.value,
    base_url: str = DEFAULT_BASE_URL,
    workspace_uuid: str | None = None,
    start_date: str | None = None,
    tables: str | Sequence[str] | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    max_lookback_days: float = DEFAULT_MAX_LOOKBACK.total_seconds() / 86400,
    overlap_seconds: float = DEFAULT_OVERLAP.total_seconds(),
    settle_seconds: float = DEFAULT_SETTLE.total_seconds(),
    request_timeout: float = 90.0,
    since: str | None = None,
    until: str | None = None,
    hard_delete: bool = False,
    run_outputs: Any = None,
    run_metrics_per_release: bool = False,
    segments: Any = None,
    max_skipped_rows: int = 0,
    step_rows: int | None = None,
    step_seconds: float | None = None,
    stats: Any = None,
    handover: Any = None,
) -> list[DltResource]:
    """Cargo's orchestration tables as incremental dlt resources.

    Args:
        api_token: the workspace's API token (secret: ``sources.cargo.api_token``).
        base_url: Cargo's API host, or the emulator's URL.
        workspace_uuid: sent as ``selected-workspace-uuid`` when given.
        start_date: where the first sync (backfill) starts, UTC on Cargo's clock; default 90 days before
            Cargo's now. Every bound of a sync comes from Cargo's clock, read once per sync (bounds.py).
        tables: which tables to load (default all): facts, exports, catalogue, ``segment_records``.
        concurrency: windows fetched in parallel per table.
        max_lookback_days: how far back changed rows are looked for on each sync.
        overlap_seconds: tolerance for late-visible rows (ClickHouse insert lag); at least ``settle_seconds``.
        settle_seconds: rows newer than Cargo's ``now - settle`` are left for the next sync.
        request_timeout: per-request read timeout in seconds (above the server's 30 s cap).
        since: with ``until``, a stateless backfill of ``[since, until)`` that leaves the state alone.
        until: end of a stateless backfill (default Cargo's now minus settle).
        hard_delete: delete soft-deleted runs (``deleted_at`` set) from the destination instead of keeping them.
        run_outputs: ``[{workflow_uuid, output_node_slug}, ...]`` whose outputs to export (default: every
            deployed workflow with its terminal node); also the output node of each workflow's batches.
        run_metrics_per_release: also read ``runs/metrics`` per release of each workflow (snapshots and
            daily rows).
        segments: segment exports, each ``{segment_uuid}`` or ``{model_uuid, filter, sort?, limit?}`` with
            optional ``table_name`` and ``update_column`` (see ``segments.py``).
        max_skipped_rows: rows per table a sync may skip (rows of an export or a list that cannot be read
            or placed; each is logged and counted) before it fails; 0 = any skipped row fails the sync.
        step_rows: read at most this many rows of the fact tables per extraction, then commit: a
            backfill (or chunk) then takes several ``pipeline.run`` calls, each loading an exact prefix
            of its range with its state, and the next one continues (``SyncStats.pending_tables()``
            names the tables left; ``cargo-elt sync`` runs them all, 1,000,000 rows a step). None: no limit.
        step_seconds: the same, as a time limit per extraction (``cargo-elt sync``: 300 s).
        stats: a ``SyncStats`` to fill with per-table costs (used by the CLI's report).
        handover: for ``cargo-elt backfill`` and its DAG (``handover.py``), with ``since``/``until``: read
            nothing, create the fact tables and, given the instant the backfill began, write each one's
            incremental state as after a backfill of ``[since, until)``.

    Raises:
        CargoConfigurationError: a setting that does not parse or fit, named by its path
            (``sources.cargo.segments[1].filter...``); every setting is parsed by ``CargoSettings``
            (``config.py``), as ``cargo-elt`` and the Airflow DAG parse them.
    """
    route_to_dlt_logger()  # the source's warnings follow [runtime] log_level and log_format (log.py)
    settings = parse_settings(  # every setting parsed and checked, each problem named by its path (config.py)
        {
            "api_token": api_token,
            "base_url": base_url,
            "workspace_uuid": workspace_uuid,
            "start_date": start_date,
            "tables": tables,
            "concurrency": concurrency,
            "max_lookback_days": max_lookback_days,
            "overlap_seconds": overlap_seconds,
            "settle_seconds": settle_seconds,
            "request_timeout": request_timeout,
            "since": since,
            "until": until,
            "hard_delete": hard_delete,
            "run_outputs": run_outputs,
            "run_metrics_per_release": run_metrics_per_release,
            "segments": segments,
            "max_skipped_rows": max_skipped_rows,
            "step_rows": step_rows,
            "step_seconds": step_seconds,
        }
    )
    handing_over = Handover.parse(handover) if handover is not None else None
    if handing_over is not None and (
        settings.since is None or settings.until is None or set(settings.tables) - HANDED_OVER_TABLES
    ):
        raise CargoConfigurationError(
            f"handover needs since, until and fact tables only ({', '.join(sorted(HANDED_OVER_TABLES))}), "
            f"got since={since!r}, until={until!r}, tables {', '.join(settings.tables)}"
        )
    bound_extract_files()
    delete_loaded_files()
    sink: SyncStats = stats if isinstance(stats, SyncStats) else SyncStats()
    connection = Connection(
        settings.token, settings.base_url, settings.workspace_uuid, settings.request_timeout, settings.concurrency
    )
    # Every bound comes from Cargo's clock, read when the first resource needs it (bounds.py)
    clock = ServerClock(connection.open, sink.server_clock)
    window = SyncWindow(
        clock, start_date=settings.start_date, since=settings.since, until=settings.until, settle=settings.settle
    )
    budget = StepBudget(settings.step_rows, settings.step_seconds, extraction_id)
    resources = [
        fact_resource(
            TABLE_SPECS[name],
            connection,
            settings,
            window,
            budget,
            sink.setdefault(name, TableStats(name)),
            handing_over,
        )
        for name in settings.tables
        if name in TABLE_SPECS
    ]
    for name in settings.tables:
        if name in EXPORT_TABLES:
            resources.append(_export_resource(name, connection, settings, window, clock, sink))
        elif name in DIMENSIONS:
            table_stats = sink.setdefault(name, TableStats(name))
            resources.append(
                dimension_resource(DIMENSIONS[name], connection.open, _counting(table_stats), clock.now, table_stats)
            )
    segment_exports = settings.segment_exports  # checked even when not selected: a typo fails early
    if SEGMENT_TABLES in settings.tables and segment_exports:
        resources.extend(segment_resources(segment_exports, connection.open, sink))
    quiet_hint_notices(r.name for r in resources)
    for table_stats in sink.values():
        table_stats.max_skipped = settings.max_skipped_rows
    return [describe_resource(r) for r in resources]


def _export_resource(
    name: str, connection: Connection, settings: CargoSettings, window: SyncWindow, clock: ServerClock, sink: SyncStats
) -> DltResource:
    """The resource of the export table ``name`` (``outputs.py``, ``metrics.py``, ``metrics_daily.py``,
    ``failures.py``)."""
    stats = sink.setdefault(name, TableStats(name))
    per_release = settings.run_metrics_per_release
    if name == "run_outputs":
        return run_outputs_resource(connection.open, settings.run_outputs, window, stats, settings.max_lookback)
    if name == "batch_outputs":
        return batch_outputs_resource(connection.open, settings.run_outputs, window, stats, connection.concurrency)
    if name == "run_metrics":
        return run_metrics_resource(connection.open, per_release, stats, clock.now)
    if name == "run_metrics_daily":
        return run_metrics_daily_resource(
            connection.open,
            lambda: connection.pool,
            per_release=per_release,
            window=window,
            settle=settings.settle,
            overlap=settings.overlap,
            stats=stats,
        )
    return batch_failures_resource(connection.open, window, settings.overlap, stats)


def _counting(stats: TableStats) -> Any:
    def on_rows(rows: int, calls: int, seconds: float) -> None:
        stats.add(rows=rows, data_queries=calls, seconds=seconds)

    return on_rows
