"""The fact tables (``runs``, ``batches``, ``spans``, ``records``) as dlt resources.

Each is read through windowed SQL on ``orchestration/query`` (``extract.read_range``) and merged on its
primary key, the newest update winning. One resource per table, whose reader is one of three:

* incremental (``incremental.py`` plans what each sync reads, from the table's dlt state);
* a ``since``/``until`` backfill chunk (no incremental state; its unfinished position, when read in
  steps, under ``chunks``);
* a handover run (``handover.py``): no read, the state a chunked backfill leaves behind.

A read that a step budget (``steps.py``) stops keeps its position in the state and the next
extraction continues it.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import dlt
import pyarrow as pa
from dlt.extract.resource import DltResource

from .bounds import SyncWindow
from .config import CargoSettings
from .connection import Connection
from .extract import ReadOutcome, TableStats, read_range
from .handover import Handover, handover_reader
from .incremental import UNBOUNDED_LOOKBACK_TABLES, BandTracker, IncrementalSettings, plan_read
from .planner import UpdatedAfter
from .server_clock import remember_server_now
from .specs import TableSpec
from .steps import PlanCache, ReadProgress, StepBudget


def fact_resource(
    spec: TableSpec,
    connection: Connection,
    settings: CargoSettings,
    window: SyncWindow,
    budget: StepBudget,
    stats: TableStats,
    handover: Handover | None,
) -> DltResource:
    """``spec``'s table, merged on its primary key, read by the reader the settings call for."""
    cache = PlanCache()
    if handover is not None:
        reader = handover_reader(
            spec, window, handover, settings.overlap, settings.start_date, dlt.current.resource_state
        )
    elif settings.since is not None:
        chunk = "|".join(d.isoformat() if d else "" for d in (settings.since, settings.until))
        reader = _backfill(spec, connection, stats, window, budget, cache, chunk)
    else:
        reader = _incremental(
            spec, connection, stats, window, settings.max_lookback, settings.overlap, settings.settle, budget, cache
        )
    resource: DltResource = dlt.resource(
        reader,
        name=spec.name,
        primary_key=list(spec.primary_key),
        # not declared ``deduplicated`` to dlt although a sync stages each row once: dlt re-runs a
        # load job that a crash interrupted after its copy, so a resumed load can stage a file
        # twice, and only the merge's own deduplication keeps that exact (docs/PERFORMANCE.md).
        # ``load_hints`` say it to a loader whose jobs are idempotent (pipelines/duckdb_load.py)
        write_disposition={"disposition": "merge", "strategy": "delete-insert"},
        columns=_columns(spec, settings.hard_delete),
    )
    resource.apply_hints(additional_table_hints=spec.load_hints())
    return resource


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
    connection: Connection,
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
        for table in _read_progress(spec, connection, stats, progress, predicate, budget, cache, outcome):
            admitted = band.admit(table)
            if admitted.num_rows:
                stats.add(rows=admitted.num_rows)
                yield admitted
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
    connection: Connection,
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
        for table in _read_progress(spec, connection, stats, progress, None, budget, cache, outcome):
            stats.add(rows=table.num_rows)
            yield table
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


def _read_progress(
    spec: TableSpec,
    connection: Connection,
    stats: TableStats,
    progress: ReadProgress,
    predicate: UpdatedAfter | None,
    budget: StepBudget,
    cache: PlanCache,
    outcome: ReadOutcome,
) -> Iterator[pa.Table]:
    """What is left of ``progress`` within this step's budget, on the source's shared pool and backlog,
    with the windows an earlier step planned; ``outcome`` receives the windows left unread."""
    with connection.open() as client:
        try:
            yield from read_range(
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
            )
        finally:
            stats.add(retries=int(client.stats_snapshot().get("retries", 0)))
