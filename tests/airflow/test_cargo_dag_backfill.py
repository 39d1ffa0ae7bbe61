"""The backfill DAG (``pipelines/dags/cargo_backfill_dag.py``) with ``dag.test()`` on Airflow 3, against the
emulator over HTTP, into dlt's real Snowflake destination on fakesnow, then the incremental DAG after it.

Runs only where the ``airflow`` extra is installed (see ``test_cargo_dag.py``, whose Airflow home this
module shares when both run in one session: this file sorts after it, and writes its test DAGs into
whatever DAGs folder Airflow is configured with). fakesnow stands in for Snowflake (no network here);
``tests/snowflake_shim.py`` bridges where dlt and fakesnow disagree, here including the state rows, so
that each task's pipeline restores its state from the destination as it would on real Snowflake.
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

if importlib.util.find_spec("airflow") is None:  # skip before creating the Airflow home below
    pytest.skip(
        "the airflow extra is not installed here; .ci/run runs these tests in a venv with '.[dev,airflow]'",
        allow_module_level=True,
    )
pytest.importorskip("fakesnow", reason="fakesnow comes with the `dev` extra")

_HOME = Path(tempfile.mkdtemp(prefix="cargo-airflow-backfill-"))
for _key, _value in {
    "AIRFLOW_HOME": str(_HOME),
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{_HOME / 'airflow.db'}",
    "AIRFLOW__CORE__DAGS_FOLDER": str(_HOME / "dags"),
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    "AIRFLOW__CORE__UNIT_TEST_MODE": "True",
    "CARGO_LOCK_DIR": str(_HOME / "locks"),
}.items():
    os.environ.setdefault(_key, _value)
_DAGS_FOLDER = Path(os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
_DAGS_FOLDER.mkdir(parents=True, exist_ok=True)
_FAKESNOW = _HOME / "fakesnow"
CHUNKS = 3
FACTS = ("runs", "batches", "spans", "records")
UNBOUNDED = ("runs", "batches", "records")
"""Tables whose changed-rows read reaches back to start_date (spans: max_lookback_days only)."""
# dag.test() runs DAGs it finds serialized in the metadata DB, synced from the DAGs folder: the test variants
# (no retries, Snowflake) live in a file there
(_DAGS_FOLDER / "cargo_test_backfill_dags.py").write_text(
    "# Airflow DAGs of tests/airflow/test_cargo_dag_backfill.py (safe mode parses files naming airflow and dag)\n"
    "import dlt\n"
    "from cargo_elt.pipelines.dags.cargo_backfill_dag import make_backfill_dag\n"
    # the module name test_cargo_dag.py's DAGs import it by: importing it builds cargo_sync, which Airflow
    # would otherwise find twice, under two module names, in one DagBag
    "from pipelines.dags.cargo_dag import make_dag\n"
    "from tests.snowflake_shim import FAKE_CREDENTIALS\n"
    "snowflake = dlt.destinations.snowflake(credentials=FAKE_CREDENTIALS, supports_multiple_statements=False)\n"
    f"dag_backfill = make_backfill_dag('cargo_test_backfill', destination=snowflake, chunks={CHUNKS}, retries=0)\n"
    "dag_incremental = make_dag(\n"
    f"    'cargo_test_backfill_incremental', destination=snowflake, retries=0, models=False, tables={FACTS!r}\n"
    ")\n"
)

pytest.importorskip("airflow", reason="the airflow extra is not installed: pip install -e '.[dev,airflow]'")

from cargo_elt.source.planner import is_histogram_query  # noqa: E402
from cargo_elt.source.settings import DEFAULT_OVERLAP  # noqa: E402
from cargo_elt.source.sqltext import parse_timestamp, sql_timestamp  # noqa: E402
from tests.conftest import FIXED_NOW  # noqa: E402
from tests.e2e.support import UPDATE_COLUMNS  # noqa: E402
from tests.e2e.test_snowflake_fakesnow import SnowflakeSandbox  # noqa: E402

# As in test_cargo_dag.py: dlt's Airflow 3 deprecations and the starlette TestClient one, only here; plus
# fakesnow's note that it copies DB-API results through arrow (its implementation, not ours).
pytestmark = [
    pytest.mark.filterwarnings("ignore:The `airflow.operators.python.get_current_context` attribute is deprecated"),
    pytest.mark.filterwarnings("ignore:Using Variable.get from `airflow.models` is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient` is deprecated"),
    pytest.mark.filterwarnings("ignore:Arrow output on a DB-API result makes an extra copy:UserWarning"),
]


@pytest.fixture(scope="module")
def airflow_db() -> Iterator[None]:
    """A fresh sqlite metadata DB, and the process environment restored afterwards."""
    from airflow.utils import db

    saved = dict(os.environ)
    db.resetdb()
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope="module")
def live_emulator() -> Iterator[Any]:
    from cargo_elt.emulator.server import EmulatorOptions, running_emulator

    options = EmulatorOptions(port=0, seed=11, scale="tiny", workspaces=1, admin=True, now=FIXED_NOW)
    with running_emulator(options) as emulator:
        yield emulator


@pytest.fixture()
def cargo_env(live_emulator: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Token from dlt's environment config, base URL from an Airflow Variable, as for ``cargo_sync``."""
    monkeypatch.setenv("SOURCES__CARGO__API_TOKEN", live_emulator.state.workspaces[0].token)
    monkeypatch.setenv("SOURCES__CARGO__START_DATE", "2026-01-01")
    monkeypatch.setenv("SOURCES__CARGO__SETTLE_SECONDS", "0")  # up to Cargo's now: compared with the truth
    monkeypatch.setenv("AIRFLOW_VAR_CARGO_BASE_URL", live_emulator.base_url)
    monkeypatch.delenv("AIRFLOW_CONN_CARGO_DEFAULT", raising=False)
    return live_emulator


class Warehouse(SnowflakeSandbox):
    """The DAGs' dataset in fakesnow, read through a pipeline named like theirs (``cargo``)."""

    def __init__(self, root: Path, emulator: Any, destination: Any) -> None:
        super().__init__(root, emulator, destination)
        self.name = "cargo"

    def served(self) -> list[str]:
        queries = [str(q["sql"]) for q in self.admin("GET", "/_emulator/queries")["queries"]]
        self.admin("DELETE", "/_emulator/queries")
        return queries

    def data_reads(self) -> list[str]:
        """The data queries (pages) served since the last call: not histograms, counts or the clock."""
        return [q for q in self.served() if not is_histogram_query(q) and "LIMIT" in q]

    def rows_read(self, reads: list[str]) -> dict[str, int]:
        """Rows Cargo returned per fact table to the pages ``reads``, each page asked again: the emulator's
        clock and data stand still in between, so the same rows come back. A packed page is one row whose
        ``n`` counts the page's rows (``sources/cargo/pages.py``)."""
        from cargo_elt.source.client import CargoClient

        rows = dict.fromkeys(FACTS, 0)
        with CargoClient(self.token, base_url=self.emulator.base_url) as client:
            for sql in reads:
                answer = client.query(sql)
                packed = len(answer) == 1 and {"page", "n"} <= answer[0].keys()
                rows[next(t for t in FACTS if f"FROM {t} " in sql)] += int(answer[0]["n"]) if packed else len(answer)
        self.served()
        return rows

    def updated_after(self, table: str, instant: datetime) -> int:
        """Rows of the truth updated after ``instant``."""
        return sum(
            1 for update, _, _ in self.truth_rows(table).values() if update and parse_timestamp(update) > instant
        )

    def handed_state(self) -> dict[str, Any]:
        """The fact tables' incremental state, restored from the destination by a pipeline that never ran here."""
        reader = self.pipeline()
        reader.sync_destination()
        resources: dict[str, Any] = reader.state["sources"]["cargo"]["resources"]
        return resources


def _run(dag_id: str, conf: dict[str, Any] | None = None) -> tuple[str, dict[str, list[tuple[str, int]]]]:
    """One ``dag.test()`` run: its state, and per task the (state, try number) of each of its instances."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(_DAGS_FOLDER))
    assert bag.import_errors == {}
    logical = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    run = bag.get_dag(dag_id).test(logical_date=logical, run_conf=conf)
    tasks: dict[str, list[tuple[str, int]]] = {}
    for ti in sorted(run.get_task_instances(), key=lambda ti: (ti.task_id, ti.map_index)):
        tasks.setdefault(ti.task_id.split(".")[-1], []).append((str(ti.state), int(ti.try_number)))
    return str(run.state), tasks


def test_the_production_dag_parses_and_maps_its_chunks(airflow_db: None) -> None:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(Path(__file__).resolve().parents[2] / "pipelines" / "dags"))
    assert bag.import_errors == {}
    dag = bag.get_dag("cargo_backfill")
    assert [t.task_id for t in dag.topological_sort()] == ["plan", "prepare", "load_chunk", "hand_over"]
    assert dag.schedule is None and dag.max_active_runs == 1
    assert dag.get_task("load_chunk").max_active_tis_per_dag == 4


def test_backfill_dag_loads_each_chunk_once_then_the_incremental_dag_reads_only_what_is_new(
    airflow_db: None, cargo_env: Any, tmp_path: Path
) -> None:
    from tests.snowflake_shim import fakesnow_destination

    emulator = cargo_env
    with fakesnow_destination(_FAKESNOW, restore_state=True) as destination:
        box = Warehouse(tmp_path, emulator, destination)
        box.served()
        state, tasks = _run("cargo_test_backfill", {"since": "2026-01-01", "chunks": CHUNKS})
        assert state == "success", tasks
        # one instance per chunk, each run once; every other task once
        assert tasks["load_chunk"] == [("success", 1)] * CHUNKS, tasks
        assert all(tasks[t] == [("success", 1)] for t in ("plan", "prepare", "hand_over")), tasks
        box.assert_equals_truth()
        loads = dict(box.query("SELECT pipeline_name, count(*) FROM cargo._dlt_pipeline_state GROUP BY 1"))
        assert {n: c for n, c in loads.items() if n != "cargo"} == {f"cargo_backfill_00{i}": 1 for i in range(CHUNKS)}
        schemas = {str(r[0]).lower() for r in box.query("SELECT schema_name FROM information_schema.schemata")}
        assert not any("backfill" in s for s in schemas), f"each chunk drops its staging dataset: {schemas}"
        # the handover's state, restored from the destination by a pipeline that has never run here
        resources = box.handed_state()
        assert {t: parse_timestamp(resources[t]["frontier"]) for t in FACTS} == dict.fromkeys(FACTS, FIXED_NOW)
        assert {t: parse_timestamp(resources[t]["max_updated"]) for t in FACTS} == dict.fromkeys(FACTS, FIXED_NOW)

        # the next scheduled run, Cargo's clock unmoved: only the rows the overlap re-reads, not a second backfill
        box.served()
        state, tasks = _run("cargo_test_backfill_incremental")
        assert state == "success", tasks
        reads = box.data_reads()
        threshold = FIXED_NOW - DEFAULT_OVERLAP
        for table in FACTS:  # each table read from the handed-over state
            of_table = [q for q in reads if f"FROM {table} " in q]
            assert of_table and all(f"{UPDATE_COLUMNS[table]} > {sql_timestamp(threshold)}" in q for q in of_table)
        rows = box.rows_read(reads)
        expected = {t: box.updated_after(t, threshold) for t in FACTS}
        totals = {t: len(box.truth_rows(t)) for t in FACTS}
        for table in UNBOUNDED:  # what changed within the overlap of the backfill's start: no more, no less
            assert rows[table] == expected[table], (table, rows, expected)
        assert rows["spans"] <= expected["spans"], (rows, expected)  # spans look back max_lookback_days only
        # ~0: nothing beyond the overlap's five minutes, a small share of the backfill's ten months even at
        # `tiny`, whose emulator is busiest at its now (about 5 % of its rows updated in those minutes)
        assert sum(rows.values()) <= sum(expected.values()) < 0.1 * sum(totals.values()), (rows, expected, totals)
        box.assert_equals_truth()

        # Cargo's clock moves on: the next run reads the new and the changed rows, from the state it left
        moved = box.admin("POST", "/_emulator/advance", json={"seconds": 3600})
        assert sum(moved["new_rows"].values()) > 0 and sum(moved["changed_rows"].values()) > 0
        before = box.handed_state()
        box.served()
        state, tasks = _run("cargo_test_backfill_incremental")
        assert state == "success", tasks
        reads = box.data_reads()
        for table in FACTS:
            since = parse_timestamp(before[table]["max_updated"]) - DEFAULT_OVERLAP
            of_table = [q for q in reads if f"FROM {table} " in q]
            assert of_table and all(f"{UPDATE_COLUMNS[table]} > {sql_timestamp(since)}" in q for q in of_table)
        rows = box.rows_read(reads)
        assert 0 < sum(rows.values()) <= sum(box.updated_after(t, threshold) for t in FACTS), rows
        box.assert_equals_truth()


def test_the_plan_refuses_bad_conf_naming_what_to_change(airflow_db: None, cargo_env: Any) -> None:
    """The ``plan`` task's checks, before anything is loaded: the dates against Cargo's clock (the emulator's,
    an instant in 2026), ``until`` after ``since``, a chunk count in range, a ``since`` at all."""
    from cargo_elt.pipelines.dags.cargo_backfill_dag import BackfillSettings, plan_from_conf
    from cargo_elt.source.errors import CargoConfigurationError

    settings = BackfillSettings(None, FACTS)
    cases: dict[str, tuple[dict[str, Any], str]] = {
        "future": ({"since": "2027-01-01"}, "conf since 2027-01-01T00:00:00+00:00 is in the future: Cargo's clock"),
        "until in the future": ({"since": "2026-01-01", "until": "2027-01-01"}, "conf until 2027-01-01"),
        "until first": ({"since": "2026-01-10", "until": "2026-01-02"}, "must be after conf since 2026-01-10"),
        "not a date": ({"since": "last tuesday"}, "conf since"),
        "chunks": ({"since": "2026-01-01", "chunks": 0}, "conf chunks 0 is not a whole number from 1 to"),
        "no since": ({}, 'trigger cargo_backfill with conf {"since": "YYYY-MM-DD"}'),
    }
    for name, (conf, expected) in cases.items():
        with pytest.raises(CargoConfigurationError) as raised:
            plan_from_conf(settings, conf, CHUNKS)
        assert expected in str(raised.value), (name, str(raised.value))
    planned = plan_from_conf(settings, {"since": "2026-01-01"}, CHUNKS)  # and a good conf plans
    # up to Cargo's now as the plan read it (settle 0 here): the module's emulator starts at FIXED_NOW,
    # and the tests before this one may have advanced it
    assert planned.until == planned.started_at >= FIXED_NOW and len(planned.chunks) == CHUNKS


def test_each_chunk_task_reads_in_steps_as_the_cli_does(airflow_db: None, cargo_env: Any, tmp_path: Path) -> None:
    """A chunk task's memory is bounded by the step, not by its chunk: the target it runs with carries the
    sync's step defaults unless ``[sources.cargo]`` sets its own."""
    from cargo_elt.pipelines.dags.cargo_backfill_dag import BackfillSettings
    from cargo_elt.source.steps import DEFAULT_STEP_ROWS, DEFAULT_STEP_SECONDS

    target = BackfillSettings(None, FACTS).target(str(tmp_path))
    assert (target.source_args["step_rows"], target.source_args["step_seconds"]) == (
        DEFAULT_STEP_ROWS,
        DEFAULT_STEP_SECONDS,
    )
