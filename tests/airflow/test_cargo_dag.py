"""The Airflow DAG (``pipelines/dags/cargo_dag.py``) on a real Airflow 3 with a sqlite metadata DB.

Runs only where the ``airflow`` extra is installed (``pip install -e '.[dev,airflow]'``); the main test
environment does not install it, so the module is skipped there. Airflow reads its settings when first
imported, so ``AIRFLOW_HOME`` and the sqlite DB are set up below before ``airflow`` is imported.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

if importlib.util.find_spec("airflow") is None:  # skip before creating the Airflow home below
    pytest.skip(
        "the airflow extra is not installed here; .ci/run runs these tests in a venv with '.[dev,airflow]'",
        allow_module_level=True,
    )

_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="cargo-airflow-"))
_DAGS_FOLDER = Path(__file__).resolve().parents[2] / "pipelines" / "dags"
_TEST_DAGS_FOLDER = _AIRFLOW_HOME / "dags"
_WAREHOUSE = _AIRFLOW_HOME / "warehouse"
_TEST_DAGS = ("dag", "failing", "window", "locked")
_TEST_DAGS_FOLDER.mkdir()
_WAREHOUSE.mkdir()
# dag.test() runs only DAGs it finds serialized in the metadata DB, which it syncs from the DAGs folder, so
# the test variants (no retries: dag.test() would wait out retry_delay; one DuckDB file each) live in a file
# there. The production DAG is checked separately by parsing pipelines/dags with a DagBag.
(_TEST_DAGS_FOLDER / "cargo_test_dags.py").write_text(
    "import dlt\n"
    "from pipelines.dags.cargo_dag import make_dag\n"
    f"for name in {_TEST_DAGS!r}:\n"
    "    globals()[f'dag_{name}'] = make_dag(\n"
    "        f'cargo_test_{name}', retries=0, models=name == 'dag',\n"
    f"        destination=dlt.destinations.duckdb(f'{_WAREHOUSE}/{{name}}.duckdb'),\n"
    "    )\n"
    "# the DAG's own destination: DuckDB at its default file in AIRFLOW_HOME\n"
    "dag_default = make_dag('cargo_test_default', retries=0, models=False, tables=('runs',))\n"
    "# spans only, read in steps (SOURCES__CARGO__STEP_ROWS in the tests): one DuckDB file each\n"
    "for name in ('steps', 'steps_lost'):\n"
    "    globals()[f'dag_{name}'] = make_dag(\n"
    "        f'cargo_test_{name}', retries=0, models=False, tables=('spans',),\n"
    f"        destination=dlt.destinations.duckdb(f'{_WAREHOUSE}/{{name}}.duckdb'),\n"
    "    )\n"
)
for _key, _value in {
    "AIRFLOW_HOME": str(_AIRFLOW_HOME),
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{_AIRFLOW_HOME / 'airflow.db'}",
    "AIRFLOW__CORE__DAGS_FOLDER": str(_TEST_DAGS_FOLDER),
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    "AIRFLOW__CORE__UNIT_TEST_MODE": "True",
    "CARGO_LOCK_DIR": str(_AIRFLOW_HOME / "locks"),  # the pipeline's lock (pipelines/lock.py), not in ~/.dlt
}.items():
    os.environ.setdefault(_key, _value)

pytest.importorskip("airflow", reason="the airflow extra is not installed: pip install -e '.[dev,airflow]'")

from tests.conftest import FIXED_NOW  # noqa: E402
from tests.e2e.support import Sandbox  # noqa: E402

# The rest of the suite keeps filterwarnings=error; these three warnings, and only here, are ignored:
# - dlt 1.31 registers its Airflow config provider through airflow.operators.python.get_current_context,
#   deprecated by Airflow 3 (dlt/common/configuration/specs/config_providers_context.py:166; Airflow
#   raises it as a UserWarning subclass, so the filter matches on the message only);
# - that provider (the dlt_secrets_toml Variable) reads with airflow.models.Variable.get, also deprecated
#   by Airflow 3 (dlt/common/configuration/providers/airflow.py:26); both are warnings in production;
# - dag.test() serves Airflow's execution API in-process through svcs -> fastapi.testclient, and the
#   starlette the emulator extra installs deprecates its httpx-based TestClient on import (test-only path).
pytestmark = [
    pytest.mark.filterwarnings("ignore:The `airflow.operators.python.get_current_context` attribute is deprecated"),
    pytest.mark.filterwarnings("ignore:Using Variable.get from `airflow.models` is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings(
        "ignore:Using `httpx` with `starlette.testclient` is deprecated"  # a UserWarning subclass
    ),
]


@pytest.fixture(scope="module")
def airflow_db() -> Iterator[None]:
    """A fresh sqlite metadata DB, and the process environment restored afterwards.

    ``PipelineTasksGroup`` sets ``DLT_DATA_DIR``/``DLT_PROJECT_DIR``/``DLT_LOCAL_DIR`` in ``os.environ``
    when created; restoring keeps them from leaking into the rest of the test session.
    """
    from airflow.utils import db

    saved = dict(os.environ)
    db.resetdb()
    yield
    os.environ.clear()
    os.environ.update(saved)


def _serve(scale: str, seed: int) -> Iterator[Any]:
    """A one-workspace emulator on the fixed test clock: the DAG's reads end at its ``now`` (Cargo's
    clock), whatever the scheduler's logical dates say."""
    from cargo_elt.emulator.server import EmulatorOptions, running_emulator

    options = EmulatorOptions(port=0, seed=seed, scale=scale, workspaces=1, admin=True, now=FIXED_NOW)
    with running_emulator(options) as emulator:
        yield emulator


def _use(emulator: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Token from dlt's environment config, base URL from an Airflow Variable (``AIRFLOW_VAR_*``)."""
    monkeypatch.setenv("SOURCES__CARGO__API_TOKEN", emulator.state.workspaces[0].token)
    monkeypatch.setenv("SOURCES__CARGO__START_DATE", "2026-01-01")
    monkeypatch.setenv("SOURCES__CARGO__SETTLE_SECONDS", "0")  # up to Cargo's now: compared with the truth
    monkeypatch.setenv("AIRFLOW_VAR_CARGO_BASE_URL", emulator.base_url)
    monkeypatch.delenv("AIRFLOW_CONN_CARGO_DEFAULT", raising=False)


@pytest.fixture(scope="module")
def live_emulator() -> Iterator[Any]:
    yield from _serve("tiny", seed=11)


@pytest.fixture()
def cargo_env(live_emulator: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    _use(live_emulator, monkeypatch)
    monkeypatch.setenv("SOURCES__CARGO__CONCURRENCY", "4")
    # dbt's freshness compares with this machine's clock, and the emulator's runs a month behind it
    monkeypatch.setenv("CARGO_FRESHNESS_WARN_HOURS", "100000")
    monkeypatch.setenv("CARGO_FRESHNESS_ERROR_HOURS", "100000")
    return live_emulator


def _dag(name: str) -> Any:
    """A test variant of the DAG, parsed from the test DAGs folder like Airflow does."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(_TEST_DAGS_FOLDER))
    assert bag.import_errors == {}
    return bag.get_dag(f"cargo_test_{name}")


def _run(dag: Any, conf: dict[str, Any] | None = None) -> tuple[str, dict[str, str]]:
    """One ``dag.test()`` run: its state and every task instance's state.

    The logical date is set explicitly (``dag.test()`` otherwise uses "now" with a zero-length interval).
    """
    logical = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    run = dag.test(logical_date=logical, run_conf=conf)
    states = {ti.task_id.split(".")[-1]: str(ti.state) for ti in run.get_task_instances()}
    return str(run.state), states


def test_dagbag_imports_the_dag_without_errors(airflow_db: None) -> None:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(_DAGS_FOLDER))
    assert bag.import_errors == {}
    # parsing records warnings instead of raising them: only dlt's own AF3 deprecation (see pytestmark)
    warned = [w for ws in bag.captured_warnings.values() for w in ws if "get_current_context" not in w]
    assert warned == []
    dag = bag.get_dag("cargo_sync")
    assert dag is not None
    assert [t.task_id for t in dag.topological_sort()] == [
        "cargo.cargo_runs",
        "cargo.cargo_batches",
        "cargo.cargo_spans",
        "cargo.cargo_records",
        "cargo.cargo_catalogue",
        "cargo.cargo_exports",
        "cargo_models",
    ]
    assert all(t.retries == 2 for t in dag.tasks)
    assert dag.schedule == "@hourly"


def test_dag_loads_like_cargo_sync_then_incrementally(airflow_db: None, cargo_env: Any, tmp_path: Path) -> None:
    emulator = cargo_env
    dag = _dag("dag")
    dag_box = Sandbox(_WAREHOUSE, emulator, name="dag")
    dag_box.admin("DELETE", "/_emulator/queries")
    state, tasks = _run(dag)
    assert state == "success", tasks
    assert set(tasks.values()) == {"success"}, tasks
    first = _served_queries(dag_box)
    assert first and not any(_UPDATE_FILTER in q for q in first), "the first run is a backfill"

    dag_box.assert_equals_truth()
    cli_box = Sandbox(tmp_path, emulator, name="cli")
    cli_box.sync()  # what `cargo-elt sync` runs: the same source into its own DuckDB file
    for table in ("runs", "batches", "spans", "records"):
        assert dag_box.loaded_rows(table) == cli_box.loaded_rows(table), table

    _served_queries(dag_box)  # forget the CLI sync's queries
    report = dag_box.admin("POST", "/_emulator/advance", json={"seconds": 3600})
    assert sum(report["new_rows"].values()) > 0 and sum(report["changed_rows"].values()) > 0
    state, tasks = _run(dag)
    assert state == "success", tasks
    dag_box.assert_equals_truth()  # new rows and rows changed behind the frontier
    assert tasks["cargo_models"] == "success"
    with dag_box.db() as con:  # the marts were rebuilt after this run's loads
        counted = con.execute("SELECT sum(runs) FROM cargo.cargo_runs_daily").fetchone()
        loaded = con.execute("SELECT count(*) FROM cargo.runs WHERE deleted_at IS NULL").fetchone()
    assert counted is not None and loaded is not None and counted[0] == loaded[0] > 0
    second = _served_queries(dag_box)
    # resumed from the state stored in DuckDB: the changed-rows read filters on the update column
    for column in ("updated_at", "execution_updated_at"):
        assert any(f"{column} >" in q for q in second), f"second run did not read incrementally: {second}"


_UPDATE_FILTER = "updated_at >"


def _served_queries(box: Sandbox) -> list[str]:
    """The SQL the emulator served since the last call (and forget it)."""
    queries = [str(q["sql"]) for q in box.admin("GET", "/_emulator/queries")["queries"]]
    box.admin("DELETE", "/_emulator/queries")
    return queries


def test_failing_task_fails_the_dag_run_and_alerts_once(
    airflow_db: None, cargo_env: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.alert_receiver import alert_receiver

    # the connection's token wins over SOURCES__CARGO__API_TOKEN; a wrong one fails the first table
    monkeypatch.setenv("AIRFLOW_CONN_CARGO_DEFAULT", '{"conn_type": "http", "password": "wrong-token-4c7a"}')
    with alert_receiver() as hook:
        monkeypatch.setenv("RUNTIME__SLACK_INCOMING_HOOK", hook.url)
        state, tasks = _run(_dag("failing"))
    assert tasks["cargo_runs"] == "failed", tasks
    downstream = ("cargo_batches", "cargo_spans", "cargo_records", "cargo_catalogue", "cargo_exports")
    assert {tasks[t] for t in downstream} == {"upstream_failed"}, tasks
    assert state == "failed"
    # on_failure_callback: one message for the one failed task, naming pipeline, table and error
    assert len(hook.messages) == 1, hook.messages
    text = hook.texts[0]
    assert "pipeline `cargo`" in text and "table `runs`" in text and "rejected the API token" in text, text
    assert "wrong-token-4c7a" not in str(hook.messages), "the token reached the alert"


def test_a_task_waits_for_the_pipelines_lock_then_fails_naming_the_holder(
    airflow_db: None, cargo_env: Any, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """A `cargo-elt sync` (here: this process) holds the pipeline's lock: the DAG's first task gives up."""
    from cargo_elt.pipelines.lock import pipeline_lock

    monkeypatch.setenv("SOURCES__CARGO__LOCK_WAIT_SECONDS", "0")
    with pipeline_lock(_AIRFLOW_HOME / "locks", "cargo", wait_seconds=0) as holder:
        state, tasks = _run(_dag("locked"))
    assert state == "failed" and tasks["cargo_runs"] == "failed", tasks
    assert {tasks[t] for t in tasks if t != "cargo_runs"} == {"upstream_failed"}, tasks
    logged = capfd.readouterr()
    assert f"another sync of pipeline cargo is running (pid {holder.pid}, host {holder.host}" in logged.out + logged.err
    assert not (_WAREHOUSE / "locked.duckdb").exists(), "the task wrote while another sync held the lock"


def test_interval_window_reads_exactly_the_interval(airflow_db: None, cargo_env: Any) -> None:
    emulator = cargo_env
    # the emulator's truth has no creation times: take them from a full sync checked against the truth
    full = Sandbox(_WAREHOUSE, emulator, name="window_full")
    full.sync(tables=["runs"])
    full.assert_equals_truth(("runs",))
    with full.db() as con:
        created = dict(con.execute("SELECT uuid, created_at FROM cargo.runs").fetchall())
    times = sorted(created.values())
    since, until = times[len(times) // 4], times[len(times) // 2]
    conf = {"window": "interval", "since": since.isoformat(), "until": until.isoformat()}
    state, tasks = _run(_dag("window"), conf)
    assert state == "success", tasks
    box = Sandbox(_WAREHOUSE, emulator, name="window")
    expected = {(str(uuid),) for uuid, at in created.items() if since <= at < until}
    assert expected and set(box.loaded_rows("runs")) == expected
    assert "frontier" not in str(box.pipeline().state.get("sources", {})), "a windowed run moved the state"


def test_run_window_choice() -> None:
    from cargo_elt.pipelines.dags.cargo_dag import run_window
    from cargo_elt.source.errors import CargoConfigurationError

    start, end = datetime(2026, 5, 1, 10, tzinfo=UTC), datetime(2026, 5, 1, 11, tzinfo=UTC)
    assert run_window("scheduled", {}, start, end) is None
    assert run_window("manual", {}, end, end) is None
    assert run_window("backfill", {}, start, end) == (start, end)
    assert run_window("scheduled", {"window": "interval"}, start, end) == (start, end)
    assert run_window("manual", {"since": "2026-05-01T00:00:00Z"}, end, end) == (datetime(2026, 5, 1, tzinfo=UTC), end)
    assert run_window("backfill", {"window": "incremental"}, start, end) is None
    with pytest.raises(CargoConfigurationError, match="zero-length"):
        run_window("manual", {"window": "interval"}, end, end)
    with pytest.raises(CargoConfigurationError, match="window"):
        run_window("manual", {"window": "everything"}, start, end)


# -- settings through the source's model (cargo_elt.source.config) -------------------------------------


@pytest.mark.parametrize(
    ("conf", "since"),
    [
        ({"since": "2026-05-01"}, datetime(2026, 5, 1, tzinfo=UTC)),  # a date: midnight UTC
        ({"since": "2026-05-01T06:30:00"}, datetime(2026, 5, 1, 6, 30, tzinfo=UTC)),  # naive = UTC
        ({"since": "2026-05-01T08:30:00+02:00"}, datetime(2026, 5, 1, 6, 30, tzinfo=UTC)),
    ],
)
def test_conf_dates_are_utc_instants_comparable_with_the_interval(conf: dict[str, Any], since: datetime) -> None:
    """A conf ``since`` without a zone was a naive datetime compared with Airflow's aware interval (TypeError)."""
    from cargo_elt.pipelines.dags.cargo_dag import run_window

    end = datetime(2026, 5, 1, 11, tzinfo=UTC)
    assert run_window("manual", conf, end, end) == (since, end)
    assert run_window("manual", {**conf, "until": "2026-05-02"}, end, end) == (since, datetime(2026, 5, 2, tzinfo=UTC))


def test_a_conf_date_that_is_not_one_is_refused_naming_it() -> None:
    from cargo_elt.pipelines.dags.cargo_dag import run_window
    from cargo_elt.source.errors import CargoConfigurationError

    end = datetime(2026, 5, 1, 11, tzinfo=UTC)
    with pytest.raises(CargoConfigurationError, match=r"^conf since = 'last week' is not a date \(YYYY-MM-DD\)"):
        run_window("manual", {"since": "last week"}, end, end)
    with pytest.raises(CargoConfigurationError, match=r"^conf until = '2026-13-01' is not a date"):
        run_window("manual", {"since": "2026-05-01", "until": "2026-13-01"}, end, end)


def test_the_default_duckdb_file_follows_the_clis_rule(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``$AIRFLOW_HOME/cargo.duckdb`` with dataset ``cargo`` is the pairing ``cargo-elt sync`` refuses (DuckDB's
    binder fails on merges when the catalog is named like the schema): the default is the CLI's file name."""
    from cargo_elt.pipelines.dags.cargo_dag import DATASET_NAME, PIPELINE_NAME, pipeline_settings
    from cargo_elt.source.config import default_duckdb_path
    from cargo_elt.source.errors import CargoConfigurationError

    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    monkeypatch.delenv("CARGO_DUCKDB_PATH", raising=False)
    settings = pipeline_settings()
    assert settings.duckdb_file == str(tmp_path / default_duckdb_path(PIPELINE_NAME))
    assert Path(settings.duckdb_file).name == "cargo_warehouse.duckdb" and settings.dataset_name == DATASET_NAME

    monkeypatch.setenv("CARGO_DUCKDB_PATH", str(tmp_path / "cargo.duckdb"))
    with pytest.raises(
        CargoConfigurationError, match=r"named like the dataset 'cargo'.*choose another CARGO_DUCKDB_PATH"
    ):
        pipeline_settings()


def test_the_default_duckdb_destination_loads_as_the_sync_does(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker shares its machine: DuckDB's memory is sized as ``cargo-elt sync`` sizes it (``auto``), not DuckDB's
    80 % of RAM, and the fact files merge in place; ``CARGO_DUCKDB_MEMORY_LIMIT`` sets it, checked by name."""
    from cargo_elt.pipelines.dags.cargo_dag import default_destination
    from cargo_elt.pipelines.duckdb_load import auto_memory_limit, duckdb_destination
    from cargo_elt.source.errors import CargoConfigurationError
    from cargo_elt.source.steps import DEFAULT_STEP_ROWS

    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    monkeypatch.delenv("CARGO_DUCKDB_PATH", raising=False)
    monkeypatch.delenv("CARGO_DESTINATION", raising=False)
    monkeypatch.delenv("CARGO_DUCKDB_MEMORY_LIMIT", raising=False)
    destination = default_destination()
    assert isinstance(destination, duckdb_destination)
    credentials = destination.config_params["credentials"]
    assert credentials.global_config["memory_limit"] == auto_memory_limit(DEFAULT_STEP_ROWS)
    monkeypatch.setenv("CARGO_DUCKDB_MEMORY_LIMIT", "512MB")
    assert default_destination().config_params["credentials"].global_config["memory_limit"] == "512MB"
    monkeypatch.setenv("CARGO_DUCKDB_MEMORY_LIMIT", "lots")
    with pytest.raises(CargoConfigurationError, match="CARGO_DUCKDB_MEMORY_LIMIT"):
        default_destination()


def test_the_default_destination_merges_and_a_date_conf_runs(
    airflow_db: None, cargo_env: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The DAG as deployed (no destination given): a manual run with conf ``{"since": "2026-01-01"}`` (a date,
    no zone), then an incremental run that merges into the tables the first one created, in the default file."""
    monkeypatch.delenv("CARGO_DUCKDB_PATH", raising=False)
    home = Path(os.environ["AIRFLOW_HOME"])
    assert not (home / "cargo_warehouse.duckdb").exists()
    state, tasks = _run(_dag("default"), {"since": "2026-01-01"})
    assert state == "success", tasks
    box = Sandbox(home, cargo_env, name="cargo_warehouse")
    box.assert_equals_truth(("runs",))

    box.admin("POST", "/_emulator/advance", json={"seconds": 3600})  # new and changed runs to merge
    state, tasks = _run(_dag("default"))
    assert state == "success", tasks
    box.assert_equals_truth(("runs",))
    assert not (home / "cargo.duckdb").exists()


# -- a first run in steps, as `cargo-elt sync` reads ----------------------------------------------------

STEP_ROWS = 4_000
"""Spans of the small scale (about 23,000) in several steps: a first page of 10,000, then steps of 4,000."""


@pytest.fixture(scope="module")
def small_emulator() -> Iterator[Any]:
    yield from _serve("small", seed=5)


@pytest.fixture()
def stepped_env(small_emulator: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    _use(small_emulator, monkeypatch)
    monkeypatch.setenv("SOURCES__CARGO__STEP_ROWS", str(STEP_ROWS))
    # each row names the load (the step) that wrote it: dlt's own option for arrow data, off by default
    monkeypatch.setenv("NORMALIZE__PARQUET_NORMALIZER__ADD_DLT_LOAD_ID", "true")
    return small_emulator


def _rows_per_load(box: Sandbox) -> dict[str, int]:
    with box.db() as con:
        return dict(con.execute("SELECT _dlt_load_id, count(*) FROM cargo.spans GROUP BY 1").fetchall())


def test_a_first_run_commits_in_steps_and_ends_exact(
    airflow_db: None, stepped_env: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A first scheduled run is a backfill: its task commits a load per step (the task body run again on the
    same source, the state restored from the destination between steps), and ends on the truth."""
    box = Sandbox(_WAREHOUSE, stepped_env, name="steps")
    total = len(box.truth_rows("spans"))
    assert total > 10_000 + 2 * STEP_ROWS, "too few spans for steps"
    state, tasks = _run(_dag("steps"))
    assert state == "success", tasks
    box.assert_equals_truth(("spans",))
    loads = _rows_per_load(box)
    assert len(loads) >= 3, loads
    assert sorted(loads.values())[-1] <= 10_000 + STEP_ROWS, f"a step loaded more than its budget: {loads}"
    assert f"cargo_spans: step {len(loads)} committed: {total:,} rows loaded so far; done" in caplog.text
    skews = [r for r in caplog.records if r.levelno == logging.WARNING and "skew" in r.getMessage()]
    assert len(skews) == 1, "the emulator's clock, a month behind, is read each step and warned about once"

    box.admin("POST", "/_emulator/advance", json={"seconds": 3600})
    state, tasks = _run(_dag("steps"))
    assert state == "success", tasks
    box.assert_equals_truth(("spans",))  # the last step left the incremental state where the next run continues


def test_a_worker_lost_between_steps_resumes_from_the_last_one(
    airflow_db: None, stepped_env: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The task fails before its third step (a worker lost: simulated by raising there, since dag.test() runs
    every task in this process); the steps before it stay committed and the next run reads only the rest."""
    dag = _dag("steps_lost")
    # the class the test DAGs file imported (as pipelines.dags.cargo_dag) and the installed package's: two
    # classes, each patched over its own method (a method's zero-argument super() is bound to its class)
    classes = {module.CargoTasksGroup for name, module in list(sys.modules.items()) if name.endswith("dags.cargo_dag")}
    calls: list[int] = []

    def lost_at_third_step(original: Callable[..., None]) -> Callable[..., None]:
        def run_step(self: Any, *args: Any, **kwargs: Any) -> None:
            calls.append(1)
            if len(calls) == 3:
                raise RuntimeError("worker lost")
            original(self, *args, **kwargs)

        return run_step

    box = Sandbox(_WAREHOUSE, stepped_env, name="steps_lost")
    total = len(box.truth_rows("spans"))
    with monkeypatch.context() as patch:
        for group_class in classes:
            patch.setattr(group_class, "_run_step", lost_at_third_step(group_class._run_step))
        state, tasks = _run(dag)
    assert len(calls) == 3, calls
    assert state == "failed" and tasks["cargo_spans"] == "failed", tasks
    committed = _rows_per_load(box)
    assert len(committed) == 2 and 0 < sum(committed.values()) < total, committed

    state, tasks = _run(_dag("steps_lost"))
    assert state == "success", tasks
    box.assert_equals_truth(("spans",))
    loads = _rows_per_load(box)
    kept = {load: rows for load, rows in loads.items() if load in committed}
    assert kept == committed, "rows the first run committed were read again"
    assert sum(loads.values()) - sum(kept.values()) == total - sum(committed.values())
