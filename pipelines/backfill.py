"""``cargo-elt backfill``: a first load cut into chunks, loaded by several processes, handed over to the syncs.

One plan, two runners: this command runs the chunks in ``--workers`` processes of one machine; the
Airflow DAG ``cargo_backfill`` (``pipelines/dags/cargo_backfill_dag.py``) maps one task per chunk
over its workers. Both do the same four steps with the functions below:

1. **Plan** (``plan_backfill``): read Cargo's clock (the instant the backfill *begins*), then cut
   ``[since, until)`` (``until`` defaults to that clock minus ``settle_seconds``) into chunks of
   similar work with the histogram planner (``sources/cargo/chunks.py``).
2. **Prepare** (``run_handover`` without an instant): one run of the source on the sync's own
   pipeline creates the fact tables, so chunks loading at once never race to create them.
3. **Chunks** (``run_chunk``): each chunk is the stateless ``since``/``until`` read of the fact
   tables, through a pipeline of its own (``<pipeline>_backfill_<n>``) with a staging dataset of its
   own (``<dataset>_backfill_<n>_staging``, dlt's ``staging_dataset_name_layout``), dropped once the
   chunk is loaded. dlt#4297: pipelines that share a dataset share its staging dataset, and one
   pipeline's truncation of it while another merges from it duplicates or drops rows. Loading with a
   disposition that needs no staging (``append``) would avoid it too, but is not idempotent: a chunk
   retried after its load began (a killed worker, an Airflow retry) would load its rows twice. With a
   staging dataset per chunk each chunk keeps the sync's own ``merge`` (exact on retries), and the
   chunks' merges never touch the same keys (a row's time column never changes, so it lies in exactly
   one chunk). DuckDB takes one writer: there the chunks extract and normalize at once and load in
   turns (``load_turns.py``); Snowflake and BigQuery take the loads at once.
4. **Hand over** (``run_handover`` with the instant of step 1): one more run of the source on the
   sync's pipeline writes each table's incremental state (``sources/cargo/handover.py``): frontier
   at the end of the last chunk, and every row updated since the backfill began read again by the
   next sync. Nothing before this step touches the incremental state, so a failed backfill leaves it
   as it was (the chunks loaded so far stay: a rerun reads them again and merges).

The command holds the pipeline's lock (``pipelines/lock.py``) from planning to handover, so no
``cargo-elt sync`` of the pipeline runs on this machine meanwhile.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .load_turns import Turn, duckdb_load_turn, no_turn

if TYPE_CHECKING:
    from cargo_elt.source.config import CargoSettings

logger = logging.getLogger(__name__)

MAX_WORKERS = 32
"""Most processes one machine runs chunks in (each runs ``sources.cargo.concurrency`` reads at once)."""

CHUNKS_PER_WORKER = 1
"""Chunks per worker by default. Each chunk costs a few planning queries, a process's start and a merge
of its own into the destination, which in DuckDB grows with the table (measured at ``medium``: 4 workers
spent 40 s loading 4 chunks and 84 s loading 8); the planner makes chunks even enough that one per
worker keeps them all busy. ``--chunks`` asks for more (they are loaded biggest first)."""


class BackfillFailed(Exception):
    """The backfill failed while running (exit 1): which chunks, why, what stays loaded."""


@dataclass
class BackfillRequest:
    """What one ``cargo-elt backfill`` was asked to do."""

    since: datetime | str
    """``--since``: a date or an ISO datetime (parsed with the settings, ``cargo_elt.source.config``)."""
    until: datetime | str | None = None
    workers: int = 1
    chunks: int | None = None
    """How many chunks to cut; ``None``: ``CHUNKS_PER_WORKER`` per worker."""
    tables: Sequence[str] | None = None
    """Fact tables to backfill; ``None``: all four."""
    base_url: str | None = None
    destination: str = "duckdb"
    dataset: str = "cargo"
    pipeline_name: str = "cargo"
    pipelines_dir: str | None = None
    duckdb_path: str | None = None
    duckdb_memory_limit: str | None = None
    """``--duckdb-memory-limit``; ``None``: the pipeline's setting (``auto`` unless configured), as for sync."""
    api_token: str | None = None
    lock_wait_seconds: float | str | None = None
    """``--lock-wait``; ``None``: ``sources.cargo.lock_wait_seconds``."""
    extra_source_args: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BackfillPlan:
    """The chunks of one backfill and the instant it began, all on Cargo's clock."""

    started_at: datetime
    """Cargo's clock before anything was read: rows updated after it are re-read after the handover."""
    since: datetime
    until: datetime
    tables: tuple[str, ...]
    chunks: tuple[Any, ...]
    """``cargo_elt.source.chunks.Chunk``s, contiguous, covering ``[since, until)``."""
    planning_queries: int = 0

    def document(self) -> dict[str, Any]:
        """As JSON (an Airflow XCom, ``backfill --json``)."""
        return {
            "started_at": self.started_at.isoformat(),
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "tables": list(self.tables),
            "chunks": [chunk.document() for chunk in self.chunks],
            "planning_queries": self.planning_queries,
        }

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> BackfillPlan:
        from cargo_elt.source.chunks import Chunk
        from cargo_elt.source.sqltext import parse_timestamp

        return cls(
            started_at=parse_timestamp(str(document["started_at"])),
            since=parse_timestamp(str(document["since"])),
            until=parse_timestamp(str(document["until"])),
            tables=tuple(str(t) for t in document["tables"]),
            chunks=tuple(Chunk.from_document(c) for c in document.get("chunks", [])),
            planning_queries=int(document.get("planning_queries", 0)),
        )


@dataclass
class ChunkResult:
    """What loading one chunk did (a failed chunk carries ``error`` instead of raising across processes)."""

    index: int
    since: str
    until: str
    rows: dict[str, int] = field(default_factory=dict)
    queries: int = 0
    retries: int = 0
    extract_seconds: float = 0.0
    """Extract and normalize (this machine's monotonic clock: a figure only)."""
    extract_cpu_seconds: float = 0.0
    """CPU of the chunk's process meanwhile, all its threads (what a worker's core must supply)."""
    wait_seconds: float = 0.0
    """Waiting for the load's turn (DuckDB); 0 on warehouses that take loads at once."""
    load_seconds: float = 0.0
    load_ids: list[str] = field(default_factory=list)
    pipeline_name: str = ""
    error: str | None = None

    def document(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> ChunkResult:
        return cls(**dict(document))


@dataclass
class LoadTarget:
    """Where a backfill reads from and loads into (the same for its chunks and its handover)."""

    token: str = field(repr=False)
    base_url: str
    tables: tuple[str, ...]
    destination: Any
    """A dlt ``Destination`` (its staging layout is replaced per chunk)."""
    dataset: str
    pipeline_name: str
    """The sync's pipeline: the handover writes its state; chunks get pipelines named after it."""
    pipelines_dir: str | None = None
    """Working folders of the handover's pipeline (``None``: dlt's default)."""
    chunk_pipelines_dir: str | None = None
    """Working folders of the chunks' pipelines (stateless: a scratch folder is fine)."""
    source_args: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(
        cls,
        settings: CargoSettings,
        *,
        destination: Any,
        dataset: str,
        pipeline_name: str,
        pipelines_dir: str | None = None,
        chunk_pipelines_dir: str | None = None,
    ) -> LoadTarget:
        """The target of a backfill with these settings (the CLI's and the DAG's, parsed by the source's model)."""
        return cls(
            token=settings.token,
            base_url=settings.base_url,
            tables=tuple(settings.tables),
            destination=destination,
            dataset=dataset,
            pipeline_name=pipeline_name,
            pipelines_dir=pipelines_dir,
            chunk_pipelines_dir=chunk_pipelines_dir,
            source_args=shared_source_args(settings),
        )

    @property
    def destination_type(self) -> str:
        """``duckdb``, ``snowflake``, ``bigquery``...: what ``apply_warehouse_layout`` knows them by."""
        return str(self.destination.destination_type).rsplit(".", 1)[-1]


CHUNK_ARGUMENTS = ("api_token", "base_url", "tables", "since", "until")
"""``cargo_source`` arguments a chunk or the handover sets itself (``LoadTarget``'s fields, the chunk's range)."""


def shared_source_args(settings: CargoSettings) -> dict[str, Any]:
    """``cargo_source``'s other arguments, the same for every chunk and the handover: the settings as the
    sync reads them (``start_date``, ``concurrency``, ``settle_seconds``, ``workspace_uuid``...), passed
    explicitly so a chunk in another process or on another worker reads exactly what was checked."""
    return {k: v for k, v in settings.source_arguments().items() if k not in CHUNK_ARGUMENTS}


OPTIONS = {
    "base_url": "--base-url",
    "tables": "--tables",
    "since": "--since",
    "until": "--until",
    "lock_wait_seconds": "--lock-wait",
}
"""The settings ``cargo-elt backfill`` takes as options, by option: messages name what the user wrote."""


def backfill_settings(request: BackfillRequest) -> tuple[CargoSettings, dict[str, str]]:
    """The request's settings, parsed by the source's model as ``cargo-elt sync`` parses its own: its options
    over ``[sources.cargo]`` as dlt finds it, the tables all four fact tables unless ``--tables`` names some.
    ``UserInputError`` naming every problem; also the labels of the options (for later messages)."""
    from cargo_elt.source.config import FACT_TABLES

    from .sync import options_over_config, with_step_defaults

    settings, labels = options_over_config(request, OPTIONS, {**request.extra_source_args, "tables": list(FACT_TABLES)})
    # each chunk reads and commits in steps, as cargo-elt sync reads a first sync: its load's memory is
    # bounded by the step, not by the chunk (sources.cargo.step_rows / step_seconds)
    return with_step_defaults(settings), labels


def check_workers(workers: object, setting: str = "--workers") -> int:
    """``workers`` as a whole number from 1 to ``MAX_WORKERS``; else a ``CargoConfigurationError`` naming
    ``setting``."""
    from cargo_elt.source.errors import CargoConfigurationError

    if isinstance(workers, bool) or not isinstance(workers, int) or not 1 <= workers <= MAX_WORKERS:
        raise CargoConfigurationError(
            f"{setting} {workers!r} is not a whole number from 1 to {MAX_WORKERS}: "
            "the processes loading chunks at once on this machine"
        )
    return workers


def check_chunks(chunks: object, setting: str = "--chunks") -> int:
    """``chunks`` as a whole number from 1 to ``MAX_CHUNKS``; else a ``CargoConfigurationError`` naming
    ``setting``."""
    from cargo_elt.source.chunks import MAX_CHUNKS
    from cargo_elt.source.errors import CargoConfigurationError

    if isinstance(chunks, bool) or not isinstance(chunks, int) or not 1 <= chunks <= MAX_CHUNKS:
        raise CargoConfigurationError(
            f"{setting} {chunks!r} is not a whole number from 1 to {MAX_CHUNKS}: the chunks to cut the range into"
        )
    return chunks


# -- plan -----------------------------------------------------------------------------------------


def default_chunks(workers: int) -> int:
    """``CHUNKS_PER_WORKER`` chunks per worker."""
    return max(1, CHUNKS_PER_WORKER * workers)


def plan_backfill(
    client: Any,
    *,
    tables: Sequence[str],
    since: datetime,
    until: datetime | None,
    started_at: datetime,
    settle: timedelta,
    chunks: int,
) -> BackfillPlan:
    """The chunks of ``[since, until)``; ``until`` defaults to ``started_at`` (Cargo's clock) minus ``settle``."""
    from cargo_elt.source.chunks import plan_chunks
    from cargo_elt.source.errors import CargoConfigurationError
    from cargo_elt.source.planner import QueryWindow
    from cargo_elt.source.specs import TABLE_SPECS
    from cargo_elt.source.sqltext import floor_ms

    begin = floor_ms(since)
    end = floor_ms(until) if until is not None else floor_ms(started_at) - settle
    if end <= begin:
        raise CargoConfigurationError(
            f"the backfill ends at {end.isoformat()} (--until, or Cargo's clock minus settle_seconds), "
            f"not after --since {begin.isoformat()}"
        )
    before = int(client.stats_snapshot().get("queries", 0))
    planned = plan_chunks(client, [TABLE_SPECS[t] for t in tables], QueryWindow(begin, end), chunks)
    return BackfillPlan(
        started_at=floor_ms(started_at),
        since=begin,
        until=end,
        tables=tuple(tables),
        chunks=tuple(planned),
        planning_queries=int(client.stats_snapshot().get("queries", 0)) - before,
    )


# -- chunks and handover --------------------------------------------------------------------------


def chunk_pipeline_name(pipeline_name: str, index: int) -> str:
    """The pipeline that loads chunk ``index`` of a backfill of ``pipeline_name``."""
    return f"{pipeline_name}_backfill_{index:03d}"


def chunk_staging_layout(index: int) -> str:
    """dlt's ``staging_dataset_name_layout`` for chunk ``index``: a staging dataset of its own (dlt#4297)."""
    return f"%s_backfill_{index:03d}_staging"


def with_staging_layout(destination: Any, layout: str) -> Any:
    """A copy of the dlt ``destination`` factory whose staging dataset follows ``layout``."""
    params = {**destination.config_params, **destination.caps_params, "staging_dataset_name_layout": layout}
    return type(destination)(**params)


def run_chunk(
    chunk: Any, target: LoadTarget, load_turn: Callable[[], AbstractContextManager[Turn]] = no_turn
) -> ChunkResult:
    """Read and load one chunk (a ``Chunk``) through its own pipeline and staging dataset.

    Extract and normalize run at once with other chunks; the load runs inside ``load_turn`` (DuckDB:
    one at a time). The chunk's staging dataset is dropped once its load is done. Raises on failure.
    """

    from cargo_elt.source import SyncStats, cargo_source
    from cargo_elt.source.warehouse import apply_warehouse_layout

    stats = SyncStats()
    source = cargo_source(
        api_token=target.token,
        base_url=target.base_url,
        tables=list(target.tables),
        since=chunk.start.isoformat(),
        until=chunk.end.isoformat(),
        stats=stats,
        **target.source_args,
    )
    apply_warehouse_layout(source, target.destination_type)
    name = chunk_pipeline_name(target.pipeline_name, chunk.index)
    pipeline = _pipeline(
        name,
        with_staging_layout(target.destination, chunk_staging_layout(chunk.index)),
        target.dataset,
        target.chunk_pipelines_dir,
    )
    if pipeline.has_pending_data:  # an earlier, interrupted backfill's: this chunk is read again whole
        pipeline.drop_pending_packages()
    extract_seconds = extract_cpu = wait_seconds = load_seconds = 0.0
    load_ids: list[str] = []
    selected = source
    while True:  # a step at a time when ``step_rows``/``step_seconds`` are set, as the sync reads (pipelines/steps.py)
        started, cpu_started = time.monotonic(), time.process_time()
        pipeline.extract(selected)
        pipeline.normalize()
        extract_seconds += time.monotonic() - started
        extract_cpu += time.process_time() - cpu_started
        with load_turn() as turn:
            loaded_at = time.monotonic()
            info = pipeline.load()
            info.raise_on_failed_jobs()
            load_ids.extend(info.loads_ids)
            pending = list(stats.pending_tables())
            if not pending:
                _drop_staging_dataset(pipeline)
            load_seconds += time.monotonic() - loaded_at
        wait_seconds += turn.waited
        if not pending:
            break
        selected = source.with_resources(*pending)
    return ChunkResult(
        index=chunk.index,
        since=chunk.start.isoformat(),
        until=chunk.end.isoformat(),
        rows={t: s.rows for t, s in stats.items() if t in target.tables},
        queries=sum(s.queries for s in stats.values()) + stats.server_clock.queries,
        retries=sum(s.retries for s in stats.values()) + stats.server_clock.retries,
        extract_seconds=extract_seconds,
        extract_cpu_seconds=extract_cpu,
        wait_seconds=wait_seconds,
        load_seconds=load_seconds,
        load_ids=load_ids,
        pipeline_name=name,
    )


def _pipeline(name: str, destination: Any, dataset: str, pipelines_dir: str | None) -> Any:
    """A dlt pipeline in ``pipelines_dir`` (``None``: dlt's default folder)."""
    import dlt

    where: dict[str, Any] = {"pipelines_dir": pipelines_dir} if pipelines_dir else {}
    return dlt.pipeline(pipeline_name=name, destination=destination, dataset_name=dataset, **where)


def _drop_staging_dataset(pipeline: Any) -> None:
    """The chunk's own staging dataset, once its merge is done: nothing else reads it."""
    with pipeline.sql_client() as client, client.with_staging_dataset():
        if client.has_dataset():
            client.drop_dataset()


def run_handover(plan: BackfillPlan, target: LoadTarget, *, hand_over: bool) -> list[str]:
    """One run of the source on the sync's pipeline over the plan's range, reading nothing.

    ``hand_over=False`` (before the chunks): create the fact tables. ``True`` (after all chunks): also
    write each table's incremental state as after a backfill that began at ``plan.started_at``.
    Returns the load ids.
    """

    from cargo_elt.source import cargo_source
    from cargo_elt.source.handover import Handover
    from cargo_elt.source.warehouse import apply_warehouse_layout

    source = cargo_source(
        api_token=target.token,
        base_url=target.base_url,
        tables=list(plan.tables),
        since=plan.since.isoformat(),
        until=plan.until.isoformat(),
        handover=Handover(plan.started_at if hand_over else None),
        **target.source_args,
    )
    apply_warehouse_layout(source, target.destination_type)
    pipeline = _pipeline(target.pipeline_name, target.destination, target.dataset, target.pipelines_dir)
    load_ids: list[str] = []
    if pipeline.has_pending_data:  # a sync killed during its load: finish it first, as cargo-elt sync does
        logger.warning("finishing the load an interrupted sync left in %s", pipeline.working_dir)
        pipeline.normalize()
        load_ids += pipeline.load().loads_ids
    info = pipeline.run(source)
    info.raise_on_failed_jobs()
    return [*load_ids, *info.loads_ids]


def handed_over_frontiers(target: LoadTarget) -> dict[str, str | None]:
    """Each table's frontier in the sync's pipeline state, after the handover."""

    from .syncruns import frontiers_of

    pipeline = _pipeline(target.pipeline_name, target.destination, target.dataset, target.pipelines_dir)
    return frontiers_of(pipeline.state, list(target.tables))


def check_chunks_loaded(plan: BackfillPlan, results: Sequence[ChunkResult]) -> None:
    """Every planned chunk loaded exactly once, before the handover claims the range is loaded."""
    loaded = sorted(r.index for r in results if r.error is None)
    expected = [chunk.index for chunk in plan.chunks]
    if loaded != expected:
        missing = sorted(set(expected) - set(loaded))
        twice = sorted({i for i in loaded if loaded.count(i) > 1})
        raise BackfillFailed(
            f"not handing over: chunks {missing or 'none'} not loaded, chunks {twice or 'none'} loaded twice "
            f"(of {len(expected)}); the incremental state is unchanged"
        )


# -- the command ----------------------------------------------------------------------------------


@dataclass
class BackfillReport:
    """What ``cargo-elt backfill`` did: its plan, each chunk, and the handed-over frontiers."""

    plan: BackfillPlan
    workers: int
    chunks: list[ChunkResult]
    frontiers: dict[str, str | None]
    seconds: float
    load_ids: list[str] = field(default_factory=list)

    def rows(self) -> dict[str, int]:
        """Rows loaded per table, all chunks together."""
        totals = dict.fromkeys(self.plan.tables, 0)
        for chunk in self.chunks:
            for table, rows in chunk.rows.items():
                totals[table] = totals.get(table, 0) + rows
        return totals

    def document(self) -> dict[str, Any]:
        return {
            "status": "ok",
            "workers": self.workers,
            "seconds": round(self.seconds, 3),
            "plan": self.plan.document(),
            "chunks": [c.document() for c in self.chunks],
            "rows": self.rows(),
            "frontiers": self.frontiers,
            "load_ids": self.load_ids,
        }

    def text(self) -> str:
        plan = self.plan
        lines = [
            f"backfill of [{_shown(plan.since)}, {_shown(plan.until)}) on Cargo's clock, begun at "
            f"{_shown(plan.started_at)}: {len(plan.chunks)} chunks, {self.workers} workers, "
            f"{plan.planning_queries} planning queries",
            f"{'chunk':<7}{'since':<22}{'until':<22}{'rows':>12}{'queries':>9}{'extract s':>11}{'wait s':>8}"
            f"{'load s':>8}",
        ]
        for c in sorted(self.chunks, key=lambda c: c.index):
            lines.append(
                f"{c.index:<7}{_shown(c.since):<22}{_shown(c.until):<22}{sum(c.rows.values()):>12,}{c.queries:>9,}"
                f"{c.extract_seconds:>11.1f}{c.wait_seconds:>8.1f}{c.load_seconds:>8.1f}"
            )
        lines.append(f"{'table':<16}{'rows loaded':>14}  frontier handed over")
        for table, rows in self.rows().items():
            frontier = self.frontiers.get(table)
            lines.append(f"{table:<16}{rows:>14,}  {_shown(frontier) if frontier else '-'}")
        lines.append(f"total {self.seconds:.1f} s")
        return "\n".join(lines)


def _shown(value: datetime | str) -> str:
    """``2026-01-01 00:00:00Z`` (milliseconds when there are any): an instant on Cargo's clock, short."""
    from cargo_elt.source.sqltext import parse_timestamp

    instant = parse_timestamp(value)
    millis = f".{instant.microsecond // 1000:03d}" if instant.microsecond else ""
    return f"{instant:%Y-%m-%d %H:%M:%S}{millis}Z"


@dataclass(frozen=True)
class ChunkJob:
    """One chunk for a worker process: everything it needs, picklable (the destination is rebuilt there)."""

    chunk: dict[str, Any]
    token: str = field(repr=False)
    base_url: str
    tables: tuple[str, ...]
    destination: str
    dataset: str
    pipeline_name: str
    chunk_pipelines_dir: str
    duckdb_path: str | None
    duckdb_memory_limit: str | None
    source_args: dict[str, Any]


def _destination(name: str, duckdb_path: str | None, memory_limit: str | None, step_rows: int | None) -> Any:
    """The chunks' destination; DuckDB as ``cargo-elt sync`` loads it: each fact file merged in place, the
    memory sized from the step (``auto``) unless ``--duckdb-memory-limit`` says otherwise."""
    from dlt.common.destination.reference import Destination

    from .duckdb_load import duckdb_destination
    from .sync import duckdb_credentials

    if name == "duckdb":
        assert duckdb_path is not None
        return duckdb_destination(duckdb_credentials(os.path.abspath(duckdb_path), memory_limit, step_rows))
    return Destination.from_reference(name)


def _target(job: ChunkJob) -> LoadTarget:
    return LoadTarget(
        token=job.token,
        base_url=job.base_url,
        tables=job.tables,
        destination=_destination(
            job.destination, job.duckdb_path, job.duckdb_memory_limit, job.source_args.get("step_rows")
        ),
        dataset=job.dataset,
        pipeline_name=job.pipeline_name,
        chunk_pipelines_dir=job.chunk_pipelines_dir,
        source_args=job.source_args,
    )


def _turn(job: ChunkJob) -> Callable[[], AbstractContextManager[Turn]]:
    path = job.duckdb_path
    if job.destination == "duckdb" and path is not None:
        return lambda: duckdb_load_turn(path)
    return no_turn


def chunk_in_process(job: ChunkJob) -> ChunkResult:
    """A worker process's job: one chunk; its failure comes back as ``error`` (redacted), not raised."""
    from cargo_elt.source.chunks import Chunk
    from cargo_elt.source.memory import tune_allocator

    from .sync import _redact, known_secrets, root_cause

    tune_allocator()
    chunk = Chunk.from_document(job.chunk)
    try:
        return run_chunk(chunk, _target(job), _turn(job))
    except Exception as exc:
        cause = root_cause(exc)
        message = _redact(f"{cause}" or type(cause).__name__, known_secrets(job.destination, job.token))
        return ChunkResult(chunk.index, chunk.start.isoformat(), chunk.end.isoformat(), error=message)


def run_backfill(
    request: BackfillRequest, on_chunk: Callable[[ChunkResult, int], None] | None = None
) -> BackfillReport:
    """Validate everything, plan, prepare, load the chunks in ``workers`` processes, hand over."""
    from dlt.common.pipeline import get_dlt_pipelines_dir

    from cargo_elt.source.bounds import resolve_bounds
    from cargo_elt.source.config import FACT_TABLES
    from cargo_elt.source.errors import CargoConfigurationError

    from . import sync
    from .lock import pipeline_lock

    started = time.monotonic()
    # Every setting first, parsed and checked by the source's model (cargo_elt.source.config), as for
    # cargo-elt sync: a problem is named by its option (--since) or its setting's path.
    pipeline = sync.pipeline_settings(
        request.pipeline_name, request.dataset, request.duckdb_path, request.duckdb_memory_limit
    )  # refuses a malformed --duckdb-memory-limit now
    try:
        check_workers(request.workers)
        chunks = check_chunks(request.chunks if request.chunks is not None else default_chunks(request.workers))
    except CargoConfigurationError as exc:
        raise sync.UserInputError(str(exc)) from None
    duckdb_path = os.path.abspath(pipeline.duckdb_file)
    if request.destination == "duckdb":
        sync.check_duckdb_writable(duckdb_path)
    settings, labels = backfill_settings(request)
    others = [t for t in settings.tables if t not in FACT_TABLES]
    if others:
        raise sync.UserInputError(
            f"--tables {','.join(others)}: a backfill loads the fact tables ({', '.join(FACT_TABLES)}) in chunks; "
            "the exports and the catalogue load with the first cargo-elt sync after it"
        )
    sync.check_destination(request.destination)
    pipelines_dir = request.pipelines_dir or get_dlt_pipelines_dir()
    sync.check_pipelines_dir(pipelines_dir, request.pipeline_name)
    # Cargo's clock: the instant the backfill begins, and what the dates are checked against
    reading = sync.preflight(settings.base_url, settings.token, settings.workspace_uuid)
    try:
        dates = {"start_date": settings.start_date, "since": settings.since, "until": settings.until}
        resolve_bounds(reading.server_now, **dates, settle=settings.settle, names=labels, strict=True)
    except CargoConfigurationError as exc:
        raise sync.UserInputError(str(exc)) from None

    memory_limit = pipeline.duckdb_memory_limit  # "auto" unless set: sized from the step, as for sync
    destination = _destination(request.destination, duckdb_path, memory_limit, settings.step_rows)
    scratch = Path(pipelines_dir) / f".{request.pipeline_name}_backfill"
    target = LoadTarget.of(
        settings,
        destination=destination,
        dataset=pipeline.dataset_name,
        pipeline_name=pipeline.pipeline_name,
        pipelines_dir=request.pipelines_dir,
        chunk_pipelines_dir=str(scratch),
    )
    turn: Callable[[], AbstractContextManager[Turn]] = (
        (lambda: duckdb_load_turn(duckdb_path)) if request.destination == "duckdb" else no_turn
    )
    with pipeline_lock(pipelines_dir, request.pipeline_name, settings.lock_wait_seconds):
        plan = _plan(settings, target, reading.server_now, chunks)
        shutil.rmtree(scratch, ignore_errors=True)  # an earlier, interrupted backfill's chunks: read again
        with turn():
            load_ids = run_handover(plan, target, hand_over=False)
        results = _load_chunks(plan, target, request, duckdb_path, memory_limit, on_chunk)
        check_chunks_loaded(plan, results)
        with turn():
            load_ids += run_handover(plan, target, hand_over=True)
            frontiers = handed_over_frontiers(target)
        shutil.rmtree(scratch, ignore_errors=True)
    return BackfillReport(plan, request.workers, results, frontiers, time.monotonic() - started, load_ids)


def _plan(settings: CargoSettings, target: LoadTarget, started_at: datetime, chunks: int) -> BackfillPlan:
    from cargo_elt.source.client import CargoClient
    from cargo_elt.source.errors import CargoConfigurationError

    from .sync import UserInputError

    assert settings.since is not None  # the backfill's --since is required
    with CargoClient(settings.token, base_url=settings.base_url, workspace_uuid=settings.workspace_uuid) as client:
        try:
            return plan_backfill(
                client,
                tables=target.tables,
                since=settings.since,
                until=settings.until,
                started_at=started_at,
                settle=settings.settle,
                chunks=chunks,
            )
        except CargoConfigurationError as exc:
            raise UserInputError(str(exc)) from None


def _load_chunks(
    plan: BackfillPlan,
    target: LoadTarget,
    request: BackfillRequest,
    duckdb_path: str,
    memory_limit: str,
    on_chunk: Callable[[ChunkResult, int], None] | None,
) -> list[ChunkResult]:
    """The chunks in ``request.workers`` processes (started fresh: no state inherited), biggest first."""
    jobs = [
        ChunkJob(
            chunk=chunk.document(),
            token=target.token,
            base_url=target.base_url,
            tables=target.tables,
            destination=request.destination,
            dataset=target.dataset,
            pipeline_name=target.pipeline_name,
            chunk_pipelines_dir=str(target.chunk_pipelines_dir),
            duckdb_path=duckdb_path if request.destination == "duckdb" else None,
            duckdb_memory_limit=memory_limit,
            source_args=target.source_args,
        )
        for chunk in sorted(plan.chunks, key=lambda c: -sum(c.rows.values()))
    ]
    results: list[ChunkResult] = []
    failed: list[ChunkResult] = []
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(request.workers, len(jobs)), mp_context=context) as pool:
        jobs_of: dict[Future[ChunkResult], ChunkJob] = {pool.submit(chunk_in_process, job): job for job in jobs}
        pending: set[Future[ChunkResult]] = set(jobs_of)
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                try:
                    result = future.result()
                except Exception as exc:  # the process itself died (killed, out of memory)
                    job = jobs_of[future]
                    result = ChunkResult(
                        int(job.chunk["index"]),
                        job.chunk["since"],
                        job.chunk["until"],
                        error=f"its process died: {exc}",
                    )
                (failed if result.error is not None else results).append(result)
                if on_chunk is not None:
                    on_chunk(result, len(jobs))
            if failed:
                for future in pending:
                    future.cancel()
                break
    if failed:
        reasons = "; ".join(f"chunk {r.index} [{r.since}, {r.until}): {r.error}" for r in failed)
        raise BackfillFailed(
            f"the backfill failed: {reasons}. The chunks loaded so far stay (a rerun reads them again and merges); "
            "the incremental state is unchanged, so cargo-elt sync still starts from where it was"
        )
    return results
