"""Cargo source for dlt: a workspace's facts, exports and catalogue.

* Facts (``runs``, ``batches``, ``spans``, ``records``) are read through windowed SQL on
  ``orchestration/query`` that stays under Cargo's caps (10,000 result rows, 10,000,000 rows
  scanned, 30 s, 50 columns), merged on their primary key, the newest update winning, so re-reads
  never duplicate. See ``incremental.py`` for what each sync reads.
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

import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import dlt
import pyarrow as pa
from dlt.extract.resource import DltResource

from .bounds import SyncWindow
from .catalogue import DIMENSION_NAMES, DIMENSIONS, dimension_resource
from .client import CargoClient, RetryPolicy
from .config import EXPORT_TABLES, FACT_TABLES, SEGMENT_TABLES, TABLE_NAMES, CargoSettings, parse_settings
from .descriptions import describe_resource
from .errors import CargoConfigurationError
from .extract import BACKLOG_PAGES_PER_READER, Backlog, ReadOutcome, TableStats, read_range
from .failures import batch_failures_resource
from .handover import HANDED_OVER_TABLES, Handover, handover_reader
from .incremental import UNBOUNDED_LOOKBACK_TABLES, BandTracker, IncrementalSettings, plan_read
from .log import route_to_dlt_logger
from .memory import bound_extract_files
from .metrics import run_metrics_resource
from .metrics_daily import run_metrics_daily_resource
from .outputs import batch_outputs_resource, run_outputs_resource
from .planner import UpdatedAfter
from .segments import quiet_hint_notices, segment_resources
from .server_clock import ServerClock, extraction_id, remember_server_now
from .settings import (
    DEFAULT_BASE_URL,
    DEFAULT_CONCURRENCY,
    DEFAULT_MAX_LOOKBACK,
    DEFAULT_OVERLAP,
    DEFAULT_SETTLE,
)
from .specs import TABLE_SPECS, TableSpec
from .steps import PlanCache, ReadProgress, StepBudget

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
    names = settings.tables
    settle, lookback, overlap = settings.settle, settings.max_lookback, settings.overlap
    backfill_since = settings.since
    hard_delete, run_metrics_per_release = settings.hard_delete, settings.run_metrics_per_release
    max_skipped_rows = settings.max_skipped_rows
    handing_over = Handover.parse(handover) if handover is not None else None
    if handing_over is not None and (
        settings.since is None or settings.until is None or set(names) - HANDED_OVER_TABLES
    ):
        raise CargoConfigurationError(
            f"handover needs since, until and fact tables only ({', '.join(sorted(HANDED_OVER_TABLES))}), "
            f"got since={since!r}, until={until!r}, tables {', '.join(names)}"
        )
    bound_extract_files()
    sink: SyncStats = stats if isinstance(stats, SyncStats) else SyncStats()
    connection = _Connection(
        settings.token, settings.base_url, settings.workspace_uuid, settings.request_timeout, settings.concurrency
    )
    # Every bound comes from Cargo's clock, read when the first resource needs it (bounds.py)
    clock = ServerClock(connection.open, sink.server_clock)
    window = SyncWindow(
        clock, start_date=settings.start_date, since=settings.since, until=settings.until, settle=settle
    )
    budget = StepBudget(settings.step_rows, settings.step_seconds, extraction_id)
    chunk = "|".join(d.isoformat() if d else "" for d in (settings.since, settings.until))
    resources = []
    for name in names:
        if name not in TABLE_SPECS:
            continue
        spec = TABLE_SPECS[name]
        table_stats = sink.setdefault(name, TableStats(name))
        cache = PlanCache()
        if handing_over is not None:
            reader = handover_reader(
                spec, window, handing_over, overlap, settings.start_date, dlt.current.resource_state
            )
        elif backfill_since is not None:
            reader = _backfill(spec, connection, table_stats, window, budget, cache, chunk)
        else:
            reader = _incremental(spec, connection, table_stats, window, lookback, overlap, settle, budget, cache)
        resource = dlt.resource(
            reader,
            name=name,
            primary_key=list(spec.primary_key),
            # not declared ``deduplicated`` to dlt although a sync stages each row once: dlt re-runs a
            # load job that a crash interrupted after its copy, so a resumed load can stage a file
            # twice, and only the merge's own deduplication keeps that exact (docs/PERFORMANCE.md).
            # ``load_hints`` say it to a loader whose jobs are idempotent (pipelines/duckdb_load.py)
            write_disposition={"disposition": "merge", "strategy": "delete-insert"},
            columns=_columns(spec, hard_delete),
        )
        resource.apply_hints(additional_table_hints=spec.load_hints())
        resources.append(resource)
    targets = settings.run_outputs
    for name in names:
        if name in EXPORT_TABLES:
            table_stats = sink.setdefault(name, TableStats(name))
            if name == "run_outputs":
                resources.append(run_outputs_resource(connection.open, targets, window, table_stats, lookback))
            elif name == "batch_outputs":
                resources.append(
                    batch_outputs_resource(connection.open, targets, window, table_stats, connection.concurrency)
                )
            elif name == "run_metrics":
                resources.append(run_metrics_resource(connection.open, run_metrics_per_release, table_stats, clock.now))
            elif name == "run_metrics_daily":
                resources.append(
                    run_metrics_daily_resource(
                        connection.open,
                        lambda: connection.pool,
                        per_release=run_metrics_per_release,
                        window=window,
                        settle=settle,
                        overlap=overlap,
                        stats=table_stats,
                    )
                )
            else:
                resources.append(batch_failures_resource(connection.open, window, overlap, table_stats))
        elif name in DIMENSIONS:
            table_stats = sink.setdefault(name, TableStats(name))
            resources.append(
                dimension_resource(DIMENSIONS[name], connection.open, _counting(table_stats), clock.now, table_stats)
            )
    segment_exports = settings.segment_exports  # checked even when not selected: a typo fails early
    if SEGMENT_TABLES in names and segment_exports:
        resources.extend(segment_resources(segment_exports, connection.open, sink))
    quiet_hint_notices(r.name for r in resources)
    for table_stats in sink.values():
        table_stats.max_skipped = max_skipped_rows
    return [describe_resource(r) for r in resources]


def _counting(stats: TableStats) -> Any:
    def on_rows(rows: int, calls: int, seconds: float) -> None:
        stats.add(rows=rows, data_queries=calls, seconds=seconds)

    return on_rows


class _Connection:
    """Client settings; each table's read opens its own client (own pool, own retry counts)."""

    def __init__(self, token: str, base_url: str, workspace_uuid: str | None, timeout: float, concurrency: int) -> None:
        self._token = token
        self.base_url = base_url
        self.workspace_uuid = workspace_uuid
        self.timeout = timeout
        self.concurrency = concurrency
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        self.backlog = Backlog(BACKLOG_PAGES_PER_READER * concurrency)
        """Pages read and not yet handed to dlt, across the tables (``extract.Backlog``)."""

    @property
    def pool(self) -> ThreadPoolExecutor:
        """The reader threads shared by all tables of the source (``concurrency`` of them)."""
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="cargo-reader")
            return self._pool

    def __repr__(self) -> str:
        return f"_Connection(base_url={self.base_url!r}, token=***)"

    def open(self) -> CargoClient:
        import httpx

        return CargoClient(
            self._token,
            base_url=self.base_url,
            workspace_uuid=self.workspace_uuid,
            retry=RetryPolicy(),
            max_connections=self.concurrency,
            timeout=httpx.Timeout(self.timeout, connect=10.0),
        )


def _columns(spec: TableSpec, hard_delete: bool) -> Any:
    columns = spec.dlt_columns()
    if hard_delete and "deleted_at" in spec.column_names:
        columns["deleted_at"] = {**columns.get("deleted_at", {"name": "deleted_at"}), "hard_delete": True}
    return columns


READ_KEY = "read"
"""Resource-state key of a stateful read that a step left unfinished (``steps.ReadProgress``)."""

CHUNKS_KEY = "chunks"
"""Resource-state key of ``since``/``until`` chunks that a step left unfinished, by chunk."""


def _incremental(
    spec: TableSpec,
    connection: _Connection,
    stats: TableStats,
    window: SyncWindow,
    max_lookback: timedelta,
    overlap: timedelta,
    settle: timedelta,
    budget: StepBudget,
    cache: PlanCache,
) -> Any:
    def read() -> Iterator[pa.Table]:
        state = dlt.current.resource_state()
        bounds = window()
        progress = ReadProgress.from_state(state.get(READ_KEY))
        predicate: UpdatedAfter | None
        if progress is None:
            settings = IncrementalSettings(
                start_date=bounds.start, max_lookback=max_lookback, overlap=overlap, settle=settle
            )
            plan = plan_read(state, settings, bounds.until, bounded_lookback=spec.name not in UNBOUNDED_LOOKBACK_TABLES)
            if plan.is_empty:
                BandTracker(spec, state, overlap).commit(state, max(plan.end, plan.start))
                remember_server_now(state, bounds.server_now, spec.name)
                stats.pending = False
                return
            predicate = plan.updated_after
            progress = ReadProgress(
                until=plan.end,
                at=plan.start,
                updated_after=predicate.value if predicate is not None else None,
                clock=bounds.server_now,
                first_sync=plan.first_sync,
            )
        else:
            predicate = progress.predicate()
        band = BandTracker(spec, state, overlap, max_seen=progress.max_seen)
        outcome = ReadOutcome()
        with connection.open() as client:
            try:
                for table in read_range(
                    client,
                    spec,
                    progress.rest,
                    predicate,
                    concurrency=connection.concurrency,
                    stats=stats,
                    pool=connection.pool,
                    backlog=connection.backlog,
                    budget=budget,
                    planned=cache.get(progress),
                    outcome=outcome,
                ):
                    admitted = band.admit(table)
                    if admitted.num_rows:
                        stats.add(rows=admitted.num_rows)
                        yield admitted
            finally:
                stats.add(retries=int(client.stats_snapshot().get("retries", 0)))
        if outcome.complete:
            state.pop(READ_KEY, None)
            band.commit(state, progress.until, clock=progress.clock)
        else:
            moved = progress.moved_to(outcome.rest[0], band.max_updated)
            state[READ_KEY] = moved.to_state()
            if moved.first_sync:  # how far the backfill got (its exact prefix), for reports
                state["frontier"] = moved.at.isoformat()
            cache.store(moved, outcome.rest, outcome.spec)
        stats.pending = not outcome.complete
        remember_server_now(state, bounds.server_now, spec.name)

    read.__name__ = spec.name
    return read


def _backfill(
    spec: TableSpec,
    connection: _Connection,
    stats: TableStats,
    window: SyncWindow,
    budget: StepBudget,
    cache: PlanCache,
    chunk: str,
) -> Any:
    """A ``since``/``until`` chunk: no incremental state; in steps, its unfinished position is kept
    under ``chunks`` (by chunk) so the next run of the same chunk continues it, and removed at its end."""

    def read() -> Iterator[pa.Table]:
        bounds = window()
        state = dlt.current.resource_state() if budget.limited else None
        kept = state.get(CHUNKS_KEY, {}).get(chunk) if state is not None else None
        progress = ReadProgress.from_state(kept) or ReadProgress(
            until=bounds.until, at=bounds.start, clock=bounds.server_now
        )
        outcome = ReadOutcome()
        with connection.open() as client:
            try:
                for table in read_range(
                    client,
                    spec,
                    progress.rest,
                    None,
                    concurrency=connection.concurrency,
                    stats=stats,
                    pool=connection.pool,
                    backlog=connection.backlog,
                    budget=budget,
                    planned=cache.get(progress),
                    outcome=outcome,
                ):
                    stats.add(rows=table.num_rows)
                    yield table
            finally:
                stats.add(retries=int(client.stats_snapshot().get("retries", 0)))
        stats.pending = not outcome.complete
        if state is None:
            return
        chunks = state.setdefault(CHUNKS_KEY, {})
        if outcome.complete:
            chunks.pop(chunk, None)
        else:
            moved = progress.moved_to(outcome.rest[0], None)
            chunks[chunk] = moved.to_state()
            cache.store(moved, outcome.rest, outcome.spec)
        if not chunks:
            state.pop(CHUNKS_KEY, None)

    read.__name__ = spec.name
    return read
