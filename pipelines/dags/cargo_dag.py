"""Hourly Airflow 3 DAG that syncs Cargo's runs, batches, spans and records with dlt's ``PipelineTasksGroup``.

Drop this file (and ``sources/``, installed with ``pip install 'cargo-elt[airflow]'``) into the DAGs folder.
The helper points dlt's project folder at the DAGs folder, so ``<dags>/.dlt/config.toml`` and
``<dags>/.dlt/secrets.toml`` are read as usual.

Settings, each read when a task runs (never while the DAG file is parsed, so the DAG processor needs no secret):

* token: the password of the Airflow connection ``cargo_default`` if it exists, else dlt's own lookup
  (``SOURCES__CARGO__API_TOKEN``, ``.dlt/secrets.toml``, or dlt's ``dlt_secrets_toml`` Airflow Variable);
* API URL: the host of that connection, else the Airflow Variable ``cargo_base_url``, else dlt's
  ``SOURCES__CARGO__BASE_URL`` / ``[sources.cargo] base_url`` (the emulator's URL for local runs);
* destination: DuckDB by default, its file ``CARGO_DUCKDB_PATH`` (default
  ``$AIRFLOW_HOME/cargo_warehouse.duckdb``, named as ``cargo-elt sync`` names it: a file named like the
  dataset, ``cargo.duckdb`` for dataset ``cargo``, makes DuckDB's binder fail on merges and is refused);
  ``CARGO_DESTINATION`` selects another dlt destination, configured the dlt way. These two are read at
  parse time because the pipeline object is built there; Airflow 3 re-parses the file in the worker.

Every setting is parsed and checked by the source's model (``cargo_elt.source.config``), as for
``cargo-elt sync``: the source's settings when a task builds its source, the run's conf ``since``/``until``
with the same date parser (a date or an ISO datetime, naive = UTC), the DuckDB file and dataset with the
same rule as the CLI.

Models. After the loads, the ``cargo_models`` task builds and tests the dbt project (``pipelines/dbt/cargo``,
the marts of ``cargo-elt models``) and checks the fact tables' freshness, through dlt's dbt runner on the
same pipeline and destination: the ``models`` extra (and ``bigquery``/``snowflake`` for their adapters)
must be installed on the workers. A failing dbt test or stale data fails the task.

Window. A scheduled (or manual) run is the source's stateful incremental sync: it reads from the stored
frontier up to ``now - settle`` and also picks up rows changed behind the frontier (runs that finish,
soft-deletes), which a read of only ``[data_interval_start, data_interval_end)`` by creation time would
miss forever. A *backfill* run (``airflow backfill create``), or any run whose conf sets ``window`` to
``"interval"``, reads exactly its data interval with the source's stateless ``since``/``until``: it is
idempotent (merge on primary keys) and leaves the incremental state alone, so backfills can run alongside
the hourly schedule. Conf ``since``/``until`` (ISO) override the interval. Runs triggered without a
logical date (``dag.test()``'s default, ``airflow dags trigger``) get a zero-length data interval, so
``"interval"`` without an explicit window is refused rather than silently loading nothing. dlt's
``DLT_INTERVAL_START/END`` and Airflow's interval are not picked up implicitly: the source keeps its own
state instead of a ``dlt.sources.incremental``.

Steps. A task reads as ``cargo-elt sync`` does (``STEP_DEFAULTS``, or ``sources.cargo.step_rows`` /
``step_seconds``): the first run of a large workspace commits a step at a time, each one run of dlt's task
body on the same source, so a worker lost in it costs one step, not the run.

One writer. ``max_active_runs=1`` keeps one scheduled or manual run active at a time, on any worker, its
tasks in sequence. Backfill runs (their own ``max_active_runs``), other DAGs and ``cargo-elt sync`` on the
same pipeline are kept apart by the pipeline's lock (``pipelines/lock.py``), which every task takes in
``CARGO_LOCK_DIR`` (default: the pipelines directory ``cargo-elt sync`` uses on the worker), waiting up to
``sources.cargo.lock_wait_seconds`` before it fails. That lock spans one machine; across workers, an
Airflow pool of one slot for the tasks that write the pipeline does what it does.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import dlt
from airflow.sdk import DAG, Param, get_current_context
from dlt.common.destination.reference import Destination
from dlt.common.pipeline import get_dlt_pipelines_dir
from dlt.helpers.airflow_helper import DEFAULT_RETRY_BACKOFF, PipelineTasksGroup
from dlt.pipeline.pipeline import Pipeline

from cargo_elt.pipelines.alerts import send_failure_alert
from cargo_elt.pipelines.lock import duckdb_lock_conflict, pipeline_lock
from cargo_elt.pipelines.progress import describe_step
from cargo_elt.pipelines.steps import each_step
from cargo_elt.pipelines.sync import failed_table, failure_chain, known_secrets
from cargo_elt.source import DIMENSION_NAMES, EXPORT_TABLES, FACT_TABLES, SEGMENT_TABLES, SyncStats, cargo_source
from cargo_elt.source.config import (
    PipelineSettings,
    configured_value,
    default_duckdb_path,
    parse_instant,
    parse_setting,
    parse_settings,
)
from cargo_elt.source.errors import CargoConfigurationError
from cargo_elt.source.log import route_to_dlt_logger
from cargo_elt.source.steps import STEP_DEFAULTS

DAG_ID = "cargo_sync"
PIPELINE_NAME = "cargo"
"""Same pipeline name and dataset as ``cargo-elt sync``: the DAG and the CLI share state and tables."""
DATASET_NAME = "cargo"
CONNECTION_ID = "cargo_default"
BASE_URL_VARIABLE = "cargo_base_url"

LOCK_DIR = get_dlt_pipelines_dir()
"""Where the tasks take the pipeline's lock unless ``CARGO_LOCK_DIR`` says otherwise when a task runs:
the pipelines directory ``cargo-elt sync`` uses on this machine (``$DLT_DATA_DIR/pipelines``, default
``~/.dlt/pipelines``), read when this file is imported, before ``PipelineTasksGroup`` points
``DLT_DATA_DIR`` at a temporary folder of its own."""

WindowMode = Literal["auto", "incremental", "interval"]

STEPS_LOG = logging.getLogger("cargo_elt.pipelines.steps")
"""A line per committed step when a task took more than one (the task log, in dlt's format)."""


TASK_TABLES: dict[str, tuple[str, ...]] = {
    **{table: (table,) for table in FACT_TABLES},
    "catalogue": DIMENSION_NAMES,
    "exports": (*EXPORT_TABLES, SEGMENT_TABLES),
}
"""The DAG's tasks and the tables each loads: a task per fact table, one for the small catalogue
tables, one for the exports (segment exports included when configured)."""


class DestinationBusy(Exception):
    """Another process holds the DuckDB file the task loads into (DuckDB's file lock)."""


class TableRun:
    """The data of one task: builds a Cargo source of the task's tables when the task runs.

    Built at run time (the helper calls a non-resource callable right before ``pipeline.run``) because
    the window comes from the running DAG run and the token must not be needed to parse the DAG.
    """

    def __init__(self, table: str) -> None:
        self.table = table
        self.tables = list(TASK_TABLES.get(table, (table,)))
        self.__name__ = f"cargo_{table}"

    def __call__(self, stats: SyncStats | None = None) -> Any:
        """The task's source, reading in ``cargo-elt sync``'s steps (``STEP_DEFAULTS``) unless
        ``sources.cargo.step_rows`` / ``step_seconds`` are configured: a first run (a backfill in all but name)
        commits every million rows or five minutes, and a worker killed in it resumes from the last step.
        ``stats`` (a ``SyncStats``) says after each run which tables are left."""
        context = get_current_context()
        token, base_url = _credentials()
        args: dict[str, Any] = {"tables": self.tables, "stats": stats}
        args.update({name: value for name, value in STEP_DEFAULTS.items() if configured_value(name) is None})
        if token is not None:
            args["api_token"] = token
        if base_url is not None:
            args["base_url"] = base_url
        window = run_window(
            run_type=str(getattr(context.get("dag_run"), "run_type", "")),
            conf=dict(getattr(context.get("dag_run"), "conf", None) or {}),
            interval_start=context.get("data_interval_start"),
            interval_end=context.get("data_interval_end"),
        )
        if window is not None:
            args["since"], args["until"] = (w.isoformat() for w in window)
        return cargo_source(**args)


class ModelsRun:
    """The ``cargo_models`` task: ``cargo-elt models`` (dbt run, dbt test, dbt source freshness) on the
    DAG's destination and dataset, after the loads."""

    __name__ = "cargo_models"

    def __init__(self, destination: Destination[Any, Any]) -> None:
        self.destination = destination

    def __call__(self) -> None:
        from cargo_elt.pipelines.models import ModelsRequest, build_models, format_models_report

        pipeline = dlt.pipeline(pipeline_name=PIPELINE_NAME, destination=self.destination, dataset_name=DATASET_NAME)
        print(format_models_report(build_models(pipeline, ModelsRequest(dataset=DATASET_NAME))))


class CargoTasksGroup(PipelineTasksGroup):
    """dlt's task group, naming each table's task ``cargo_<table>``.

    dlt names a task after the pipeline unless its data is a ``DltSource``, so four ``TableRun`` tasks of
    one pipeline would get the same id; everything else (logging, retries, wiping) is dlt's.
    """

    def _task_name(self, pipeline: Pipeline, data: Any) -> str:
        if isinstance(data, TableRun):
            return data.__name__
        return str(super()._task_name(pipeline, data))

    def _run(
        self,
        pipeline: Pipeline,
        data: Any,
        table_name: str | None = None,
        write_disposition: Any = None,
        loader_file_format: Any = None,
        schema_contract: Any = None,
        pipeline_name: str | None = None,
        on_before_run: Callable[[], None] | None = None,
        truncate_staging_destination: bool | None = None,
    ) -> None:
        """dlt's task body, on a fresh instance of ``pipeline``.

        The helper runs the pipeline object captured when the DAG was built and wipes its working folder
        afterwards. Where that object outlives the task (several tasks or runs in one process: ``dag.test()``,
        a LocalExecutor-style in-process runner), the next task would activate an instance whose default
        schema points into the wiped folder and fail with ``FileNotFoundError``. A fresh instance restores the
        state from the destination as dlt does on any new worker.
        """
        # the lock `cargo-elt sync` takes (pipelines/lock.py): a task waits for a CLI sync, a backfill run or
        # another DAG of the same pipeline on this machine, then fails with who holds it
        route_to_dlt_logger("cargo_elt.pipelines")  # the lock's messages in dlt's log format too
        wait = parse_setting("lock_wait_seconds", configured_value("lock_wait_seconds"))
        # explicit parameters, no **kwargs: PythonOperator would pass the Airflow context into **kwargs
        options: dict[str, Any] = {
            "table_name": table_name,
            "write_disposition": write_disposition,
            "loader_file_format": loader_file_format,
            "schema_contract": schema_contract,
            "pipeline_name": pipeline_name,
            "on_before_run": on_before_run,
            "truncate_staging_destination": truncate_staging_destination,
        }
        task = self._task_name(pipeline, data)
        with pipeline_lock(LOCK_DIR, pipeline.pipeline_name, wait):
            if not isinstance(data, TableRun):
                self._run_step(pipeline, data, task, options)
                return
            # In steps, by `cargo-elt sync`'s loop (pipelines/steps.py): each step one run of dlt's task body,
            # loaded and committed with its state, the next on the same source (its windows planned once) with
            # the tables still pending. The task body wipes its folder after each run: the next restores the
            # state the step committed, from the destination.
            stats = SyncStats()

            def log_step(step: int, pending: list[str]) -> None:
                if step > 1 or pending:
                    STEPS_LOG.info("%s: %s", task, describe_step(step, pending, stats))

            each_step(data(stats), stats, lambda selected: self._run_step(pipeline, selected, task, options), log_step)

    def _run_step(self, pipeline: Pipeline, data: Any, task: str, options: dict[str, Any]) -> None:
        """dlt's task body once, on a fresh instance of ``pipeline``; DuckDB's file lock named as such."""
        fresh = dlt.pipeline(
            pipeline_name=pipeline.pipeline_name,
            pipelines_dir=pipeline.pipelines_dir,
            destination=pipeline.destination,
            dataset_name=pipeline.dataset_name,
        )
        try:
            super()._run(fresh, data, **options)
        except Exception as exc:
            busy = duckdb_lock_conflict(" ".join(str(e) for e in failure_chain(exc)))
            if busy is None:
                raise
            raise DestinationBusy(f"{task}: {busy}") from exc


def alert_on_failure(context: Any) -> None:
    """``on_failure_callback``: a task failed for good (after its retries): one alert to
    ``runtime.slack_incoming_hook`` naming the pipeline, the table and the error (``pipelines/alerts.py``)."""
    error = context.get("exception")
    task_id = str(getattr(context.get("task_instance") or context.get("ti"), "task_id", ""))
    task = task_id.rpartition(".")[2].removeprefix("cargo_")
    table = (failed_table(error) if isinstance(error, BaseException) else None) or ", ".join(
        TASK_TABLES.get(task, (task,))
    )
    text = f"{type(error).__name__}: {error}" if isinstance(error, BaseException) else str(error or "unknown error")
    secrets = known_secrets(os.environ.get("CARGO_DESTINATION", "duckdb"))
    with contextlib.suppress(Exception):  # the connection's token too, when there is one
        secrets.append(_credentials()[0] or "")
    send_failure_alert(PIPELINE_NAME, table, text, secrets)


def run_window(
    run_type: str, conf: dict[str, Any], interval_start: datetime | None, interval_end: datetime | None
) -> tuple[datetime, datetime] | None:
    """``[since, until)`` for a windowed (stateless) read, or ``None`` for the stateful incremental sync.

    Pure so it can be tested without Airflow; the module docstring explains the choice.
    """
    mode: WindowMode = conf.get("window", "auto")
    if mode not in ("auto", "incremental", "interval"):
        raise CargoConfigurationError(f"conf window = {mode!r}: use auto, incremental or interval")
    # conf dates through the settings' one date parser: aware UTC, comparable with Airflow's interval
    since = parse_instant(conf.get("since"), "conf since") or interval_start
    until = parse_instant(conf.get("until"), "conf until") or interval_end
    explicit = conf.get("since") is not None
    if mode == "incremental" or (mode == "auto" and run_type != "backfill" and not explicit):
        return None
    if since is None or until is None or until <= since:
        raise CargoConfigurationError(
            f"an interval read needs a non-empty window, got [{since}, {until}): trigger with conf "
            '{"since": "...", "until": "..."} (manual runs and dag.test() have a zero-length data interval)'
        )
    return since, until


def _credentials() -> tuple[str | None, str | None]:
    """Token and base URL from the ``cargo_default`` connection / ``cargo_base_url`` Variable, if set.

    ``None`` leaves the value to dlt's configuration (environment, ``.dlt/secrets.toml``).
    """
    from airflow.sdk import Connection, Variable
    from airflow.sdk.exceptions import AirflowNotFoundException

    token: str | None = None
    base_url: str | None = None
    try:
        connection = Connection.get(CONNECTION_ID)
    except AirflowNotFoundException:
        connection = None
    if connection is not None:
        token = connection.password or None
        if connection.host:
            scheme = connection.conn_type if connection.conn_type in ("http", "https") else "https"
            host = connection.host if "://" in connection.host else f"{scheme}://{connection.host}"
            base_url = f"{host}:{connection.port}" if connection.port else host
    if base_url is None:
        variable = Variable.get(BASE_URL_VARIABLE, default=None)
        base_url = str(variable) if variable else None
    return token, base_url


DAG_SETTINGS = {"duckdb_path": "CARGO_DUCKDB_PATH", "duckdb_memory_limit": "CARGO_DUCKDB_MEMORY_LIMIT"}
"""How the DAG's messages name the pipeline settings a deployment sets (the others are constants here)."""


def pipeline_settings() -> PipelineSettings:
    """The DAG's pipeline, dataset and DuckDB file, checked by the rule ``cargo-elt sync`` follows: the
    file defaults to ``$AIRFLOW_HOME/<pipeline>_warehouse.duckdb`` and must not be named like the dataset."""
    home = os.environ.get("AIRFLOW_HOME", str(Path.home() / "airflow"))
    path = os.environ.get("CARGO_DUCKDB_PATH") or str(Path(home) / default_duckdb_path(PIPELINE_NAME))
    raw = {"pipeline_name": PIPELINE_NAME, "dataset_name": DATASET_NAME, "duckdb_path": path}
    if os.environ.get("CARGO_DUCKDB_MEMORY_LIMIT"):
        raw["duckdb_memory_limit"] = os.environ["CARGO_DUCKDB_MEMORY_LIMIT"]
    return parse_settings(raw, DAG_SETTINGS, model=PipelineSettings)


def default_destination() -> Destination[Any, Any]:
    """DuckDB at ``pipeline_settings().duckdb_file`` (absolute: the helper's working folders are temporary),
    loaded as ``cargo-elt sync`` loads it (each fact file merged in place, DuckDB's memory ``auto`` unless
    ``CARGO_DUCKDB_MEMORY_LIMIT`` says otherwise: a worker shares its machine), or the dlt destination
    ``CARGO_DESTINATION`` names."""
    name = os.environ.get("CARGO_DESTINATION", "duckdb")
    if name != "duckdb":
        chosen = Destination.from_reference(name)
        if chosen is None:
            raise CargoConfigurationError(f"CARGO_DESTINATION = {name!r} is not a dlt destination")
        return chosen
    from cargo_elt.pipelines.duckdb_load import duckdb_destination
    from cargo_elt.pipelines.sync import duckdb_credentials

    settings = pipeline_settings()
    return duckdb_destination(
        duckdb_credentials(str(Path(settings.duckdb_file).absolute()), settings.duckdb_memory_limit)
    )


def make_dag(
    dag_id: str = DAG_ID,
    *,
    schedule: str | None = "@hourly",
    start_date: datetime | None = None,
    retries: int = 2,
    retry_delay: timedelta = timedelta(minutes=5),
    destination: Destination[Any, Any] | None = None,
    tables: tuple[str, ...] = tuple(TASK_TABLES),
    models: bool = True,
) -> DAG:
    """The Cargo DAG: a task per fact table, then the catalogue and the exports, one after another, then
    ``cargo_models`` (dbt) unless ``models`` is false.

    ``tables`` names tasks: a table, or ``catalogue`` / ``exports`` (see ``TASK_TABLES``).

    Tasks are chained by hand rather than with ``add_run(source, decompose="serialize")`` because that
    decomposes a source built while the DAG file is parsed: it would need the token in the DAG processor,
    freeze the source's ``now`` at parse time and could not see the DAG run's data interval. Each task
    instead runs ``add_run(pipeline, TableRun(table), decompose="none")``, a one-table source built when the
    task starts, which is what ``serialize`` would give for this source (its four resources are independent
    components). Serial, not parallel: the first task creates the dataset and the dlt schema, all tables
    share one pipeline state (``parallel`` would lose state writes), and DuckDB allows one writer at a time
    (``parallel-isolated`` tasks would contend for the file). The default ``all_success`` trigger rule (not
    the ``all_done`` of dlt's docs) makes a failed table stop the chain and fail the DAG run visibly.

    Airflow ``retries`` re-run a failed task (a sync re-reads from the last committed state, and merge on the
    primary keys makes re-reads harmless); the helper additionally retries the ``load`` step with backoff.
    """
    with DAG(
        dag_id=dag_id,
        schedule=schedule,
        start_date=start_date or datetime(2026, 1, 1),  # naive -> UTC in Airflow 3
        catchup=False,
        max_active_runs=1,  # one writer of the pipeline state at a time
        default_args={
            "retries": retries,
            "retry_delay": retry_delay,
            "retry_exponential_backoff": True,
            "on_failure_callback": alert_on_failure,
        },
        params={"window": Param("auto", enum=["auto", "incremental", "interval"])},
        tags=["cargo", "dlt"],
        doc_md=__doc__,
    ) as dag:
        # The group must exist before dlt.pipeline(): it sets the per-worker data folder (dlt#3938).
        group = CargoTasksGroup(
            PIPELINE_NAME,
            use_data_folder=False,
            wipe_local_data=True,  # the state is restored from the destination at the next run
            retry_policy=DEFAULT_RETRY_BACKOFF,
            retry_pipeline_steps=("load",),
            abort_task_if_any_job_failed=True,
        )
        pipeline = dlt.pipeline(
            pipeline_name=PIPELINE_NAME,
            destination=destination or default_destination(),
            dataset_name=DATASET_NAME,
        )
        previous: Any = None
        for table in tables:
            (task,) = group.add_run(pipeline, TableRun(table), decompose="none")
            if previous is not None:
                previous >> task
            previous = task
        if models:
            from airflow.providers.standard.operators.python import PythonOperator

            build = PythonOperator(task_id="cargo_models", python_callable=ModelsRun(pipeline.destination))
            if previous is not None:
                previous >> build
    return dag


dag = make_dag()
