"""Airflow 3 DAG ``cargo_backfill``: a first load of Cargo's fact tables, one task per chunk on the workers.

For a workspace one worker cannot backfill in time. Trigger it once, with conf ``{"since": "2025-01-01"}``
(optional ``"until"``, default Cargo's clock minus ``settle_seconds``; optional ``"chunks"``), while the
hourly ``cargo_sync`` DAG is paused; unpause ``cargo_sync`` when it has succeeded. Its tasks:

1. ``plan``: reads Cargo's clock (the instant the backfill begins) and cuts ``[since, until)`` into
   chunks of similar work with the source's histogram planner (``cargo_elt.source.chunks``);
2. ``prepare``: creates the fact tables on the sync's pipeline (``cargo``, dataset ``cargo``), so the
   chunks never race to create them;
3. ``load_chunk``: one mapped task per chunk (``.expand``), at most ``max_parallel_chunks`` at once, each
   the stateless ``since``/``until`` read of its chunk through a pipeline of its own
   (``cargo_backfill_<n>``) and a staging dataset of its own (``cargo_backfill_<n>_staging``, dropped once
   loaded). dlt#4297: pipelines sharing one dataset share its staging dataset, so concurrent merges can
   duplicate or drop rows; a staging dataset per chunk keeps the sync's ``merge`` (a retried chunk is
   merged again, never doubled, which ``append`` without staging could not promise), and no two chunks
   merge the same keys (a row's time column never changes: it lies in one chunk);
4. ``hand_over``: checks every chunk loaded once, then writes the incremental state of the sync's pipeline
   (``cargo_elt.source.handover``): the frontier at the end of the last chunk, and every row updated since
   the backfill began read again by the next ``cargo_sync`` run, which goes on from there.

Destinations. Snowflake and BigQuery take the chunks' loads at once. DuckDB takes one writer: there the
chunk tasks of one machine extract at once and load in turns (a file lock beside the DuckDB file,
``cargo_elt.pipelines.load_turns``), so the loads are serialised, and DuckDB being a local file, the
chunks must run on one machine. Settings (token, API URL, destination) are read as ``cargo_sync`` reads them.

One writer. ``max_active_runs=1``: one backfill at a time. ``prepare`` and ``hand_over`` take the pipeline
lock ``cargo_sync``'s tasks and ``cargo-elt sync`` take (``pipelines/lock.py``), each chunk the lock of its
own pipeline; like ``cargo_sync``'s, the locks span one machine: give ``prepare``, ``hand_over`` and
``cargo_sync``'s tasks one Airflow pool of one slot (``make_backfill_dag(pool=...)``) to keep them apart
across workers. A ``cargo_sync`` run during the backfill is not wrong (the handover keeps the older of the
two states' ``max_updated``), but with no state yet it backfills everything itself.

How many chunks at once: each chunk reads ``sources.cargo.concurrency`` windows at a time, so Cargo sees
``max_parallel_chunks x concurrency`` queries at once; past the concurrency Cargo allows a workspace, more
chunks only queue (or draw 429s). docs/PERFORMANCE.md ("Fan-out over workers") models the speed-up.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import DAG, Param, get_current_context, task
from dlt.common.destination.reference import Destination

from cargo_elt.pipelines.backfill import (
    BackfillPlan,
    ChunkResult,
    LoadTarget,
    check_chunks,
    check_chunks_loaded,
    chunk_pipeline_name,
    handed_over_frontiers,
    plan_backfill,
    run_chunk,
    run_handover,
)
from cargo_elt.pipelines.load_turns import Turn, duckdb_load_turn, no_turn
from cargo_elt.pipelines.lock import pipeline_lock
from cargo_elt.source import FACT_TABLES
from cargo_elt.source.chunks import MAX_CHUNKS, Chunk
from cargo_elt.source.errors import CargoConfigurationError
from cargo_elt.source.log import route_to_dlt_logger

if TYPE_CHECKING:
    from types import ModuleType

    from cargo_elt.source.config import CargoSettings

DAG_ID = "cargo_backfill"
DEFAULT_CHUNKS = 8
DEFAULT_MAX_PARALLEL_CHUNKS = 4
"""Chunk tasks at once: with the source's default concurrency of 4, 16 queries in flight at Cargo."""


def sync_dag() -> ModuleType:
    """``cargo_dag``, whose pipeline, dataset, lock folder and settings this DAG shares, imported when a
    task runs, never while this file is parsed: importing it builds the ``cargo_sync`` DAG, which Airflow
    would then also find in this file (a duplicate DAG id). Importing it also points dlt's project folder
    at the DAGs folder (dlt's ``PipelineTasksGroup`` does), so these tasks read ``<dags>/.dlt`` as
    ``cargo_sync``'s do."""
    from cargo_elt.pipelines.dags import cargo_dag

    return cargo_dag


CONF_LABELS = {"since": "conf since", "until": "conf until"}
"""How messages name the dates a run's conf gives (the other settings by their ``sources.cargo`` path)."""


class BackfillSettings:
    """Token, URL, source settings and destination of the backfill's tasks: read when a task runs, like
    ``cargo_sync``'s, and parsed by the source's model (``cargo_elt.source.config``) as ``cargo-elt`` parses them."""

    def __init__(self, destination: Destination[Any, Any] | None, tables: Sequence[str]) -> None:
        self._destination = destination
        self.tables = tuple(tables)

    @property
    def destination(self) -> Destination[Any, Any]:
        """The one given to ``make_backfill_dag``, else ``cargo_sync``'s (``CARGO_DESTINATION``, DuckDB)."""
        return self._destination or sync_dag().default_destination()

    def cargo(self, since: Any = None, until: Any = None) -> CargoSettings:
        """``[sources.cargo]`` as dlt finds it, the token and URL of ``cargo_sync``'s connection over it, this
        DAG's tables, and the run's ``since``/``until`` when given; every problem named where it is set."""
        from cargo_elt.source.config import configured_settings

        token, base_url = sync_dag()._credentials()
        overrides = {"api_token": token, "base_url": base_url, "tables": list(self.tables)}
        try:
            return configured_settings({**overrides, "since": since, "until": until}, CONF_LABELS)
        except CargoConfigurationError as exc:
            if token is None and "API token" in str(exc):
                raise CargoConfigurationError(
                    f"{exc}; or set the password of the Airflow connection {sync_dag().CONNECTION_ID}"
                ) from None
            raise

    def lock_wait_seconds(self) -> float:
        """``sources.cargo.lock_wait_seconds``, as ``cargo_sync``'s tasks wait."""
        from cargo_elt.source.config import configured_value, parse_setting

        return float(parse_setting("lock_wait_seconds", configured_value("lock_wait_seconds")))

    def target(self, folder: str) -> LoadTarget:
        """The sync's pipeline and destination, pipelines in ``folder`` (state comes from the destination)."""
        from cargo_elt.pipelines.sync import with_step_defaults

        shared = sync_dag()
        return LoadTarget.of(
            with_step_defaults(self.cargo()),  # each chunk reads and commits in steps, as cargo-elt backfill's
            destination=self.destination,
            dataset=shared.DATASET_NAME,
            pipeline_name=shared.PIPELINE_NAME,
            pipelines_dir=folder,
            chunk_pipelines_dir=folder,
        )

    def load_turn(self) -> Callable[[], AbstractContextManager[Turn]]:
        """DuckDB: loads in turns (one writer); warehouses: at once."""
        destination = self.destination
        if str(destination.destination_type).rsplit(".", 1)[-1] != "duckdb":
            return no_turn
        credentials = destination.config_params.get("credentials")
        path = credentials if isinstance(credentials, str) else getattr(credentials, "database", None)
        if not path:
            return no_turn
        return lambda: duckdb_load_turn(str(path))


def alert_on_failure(context: Any) -> None:
    """``on_failure_callback``: one alert to ``runtime.slack_incoming_hook`` naming the pipeline, the table
    (when the error names one, else the tables of the backfill) and the error (``pipelines/alerts.py``)."""
    from cargo_elt.pipelines.alerts import send_failure_alert
    from cargo_elt.pipelines.sync import failed_table, known_secrets

    error = context.get("exception")
    table = (failed_table(error) if isinstance(error, BaseException) else None) or ", ".join(FACT_TABLES)
    text = f"{type(error).__name__}: {error}" if isinstance(error, BaseException) else str(error or "unknown error")
    secrets = known_secrets(os.environ.get("CARGO_DESTINATION", "duckdb"))
    with contextlib.suppress(Exception):  # the connection's token too, when there is one
        secrets.append(sync_dag()._credentials()[0] or "")
    send_failure_alert(sync_dag().PIPELINE_NAME, table, text, secrets)


def plan_from_conf(settings: BackfillSettings, conf: dict[str, Any], default_chunks: int) -> BackfillPlan:
    """The ``plan`` task's work: Cargo's clock, then the chunks of the conf's range.

    The conf's dates are parsed with the settings (a date or an ISO datetime, naive = UTC) and checked
    against Cargo's clock as ``cargo-elt backfill`` checks its options: none in Cargo's future.
    """
    from cargo_elt.source.bounds import resolve_bounds
    from cargo_elt.source.client import CargoClient
    from cargo_elt.source.server_clock import read_server_clock

    if not conf.get("since"):
        raise CargoConfigurationError(
            'trigger cargo_backfill with conf {"since": "YYYY-MM-DD"} (and optionally "until" and "chunks")'
        )
    cargo = settings.cargo(since=conf["since"], until=conf.get("until"))
    chunks = check_chunks(conf.get("chunks") if conf.get("chunks") is not None else default_chunks, "conf chunks")
    assert cargo.since is not None
    with CargoClient(cargo.token, base_url=cargo.base_url, workspace_uuid=cargo.workspace_uuid) as client:
        started_at = read_server_clock(client).server_now  # before anything is read: see handover.py
        dates = {"start_date": cargo.start_date, "since": cargo.since, "until": cargo.until}
        resolve_bounds(started_at, **dates, settle=cargo.settle, names=CONF_LABELS, strict=True)
        return plan_backfill(
            client,
            tables=cargo.tables,
            since=cargo.since,
            until=cargo.until,
            started_at=started_at,
            settle=cargo.settle,
            chunks=chunks,
        )


def make_backfill_dag(
    dag_id: str = DAG_ID,
    *,
    destination: Destination[Any, Any] | None = None,
    chunks: int = DEFAULT_CHUNKS,
    max_parallel_chunks: int = DEFAULT_MAX_PARALLEL_CHUNKS,
    tables: Sequence[str] = FACT_TABLES,
    retries: int = 2,
    retry_delay: timedelta = timedelta(minutes=5),
    pool: str | None = None,
    start_date: datetime | None = None,
) -> DAG:
    """The backfill DAG: ``plan >> prepare >> load_chunk (mapped) >> hand_over``.

    ``pool`` (an Airflow pool of one slot) is given to ``prepare`` and ``hand_over``, the tasks that write
    the sync's pipeline; give ``cargo_sync``'s tasks the same pool.
    """
    settings = BackfillSettings(destination, tables)
    writer_args: dict[str, Any] = {"pool": pool} if pool else {}

    with DAG(
        dag_id=dag_id,
        schedule=None,
        start_date=start_date or datetime(2026, 1, 1),
        catchup=False,
        max_active_runs=1,  # one backfill at a time
        default_args={
            "retries": retries,
            "retry_delay": retry_delay,
            "retry_exponential_backoff": True,
            "on_failure_callback": alert_on_failure,
        },
        params={
            "since": Param(None, type=["null", "string"], description="start, YYYY-MM-DD or ISO (Cargo's clock)"),
            "until": Param(None, type=["null", "string"], description="end (default Cargo's clock minus settle)"),
            "chunks": Param(chunks, type="integer", minimum=1, maximum=MAX_CHUNKS),
        },
        tags=["cargo", "dlt", "backfill"],
        doc_md=__doc__,
    ) as dag:

        def plan() -> list[dict[str, Any]]:
            """The chunks (the return value, which ``load_chunk`` maps over) and the plan (XCom ``backfill``)."""
            route_to_dlt_logger("cargo_elt.pipelines")
            context = get_current_context()
            planned = plan_from_conf(settings, dict(context["params"]), chunks)
            context["ti"].xcom_push(key="backfill", value=planned.document())
            print(f"{len(planned.chunks)} chunks of [{planned.since.isoformat()}, {planned.until.isoformat()})")
            return [c.document() for c in planned.chunks]

        def prepare(backfill: dict[str, Any]) -> None:
            planned = BackfillPlan.from_document(backfill)
            with (
                pipeline_lock(sync_dag().LOCK_DIR, sync_dag().PIPELINE_NAME, settings.lock_wait_seconds()),
                tempfile.TemporaryDirectory(prefix="cargo-backfill-") as folder,
                settings.load_turn()(),
            ):
                run_handover(planned, settings.target(folder), hand_over=False)

        def load_chunk(backfill: dict[str, Any], chunk: dict[str, Any]) -> dict[str, Any]:
            route_to_dlt_logger("cargo_elt.pipelines")
            piece = Chunk.from_document(chunk)
            with (
                pipeline_lock(
                    sync_dag().LOCK_DIR,
                    chunk_pipeline_name(sync_dag().PIPELINE_NAME, piece.index),
                    settings.lock_wait_seconds(),
                ),
                tempfile.TemporaryDirectory(prefix="cargo-chunk-") as folder,
            ):
                result = run_chunk(piece, settings.target(folder), settings.load_turn())
            print(f"chunk {piece.index} [{result.since}, {result.until}): {result.rows} rows, {result.queries} queries")
            return result.document()

        def hand_over(backfill: dict[str, Any], loaded: Sequence[dict[str, Any]]) -> dict[str, Any]:
            planned = BackfillPlan.from_document(backfill)
            check_chunks_loaded(planned, [ChunkResult.from_document(r) for r in loaded])
            with (
                pipeline_lock(sync_dag().LOCK_DIR, sync_dag().PIPELINE_NAME, settings.lock_wait_seconds()),
                tempfile.TemporaryDirectory(prefix="cargo-backfill-") as folder,
                settings.load_turn()(),
            ):
                target = settings.target(folder)
                run_handover(planned, target, hand_over=True)
                frontiers = handed_over_frontiers(target)
            print(f"handed over to {target.pipeline_name}: frontiers {frontiers}")
            return {"frontiers": frontiers}

        # TaskFlow tasks, wrapped by call rather than decorated (airflow is untyped here: mypy --strict)
        planned = task(plan, task_id="plan")()
        backfill = planned["backfill"]
        prepared = task(prepare, task_id="prepare", **writer_args)(backfill)
        loaded = (
            task(load_chunk, task_id="load_chunk", max_active_tis_per_dag=max_parallel_chunks)
            .partial(backfill=backfill)
            .expand(chunk=planned)
        )
        prepared >> loaded
        task(hand_over, task_id="hand_over", **writer_args)(backfill, loaded)
    return dag


dag = make_backfill_dag()
