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

from cargo_elt.source.planner import parse_timestamp, sql_timestamp  # noqa: E402
from cargo_elt.source.settings import DEFAULT_OVERLAP  # noqa: E402
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
        reader = box.pipeline()
        reader.sync_destination()
        resources = reader.state["sources"]["cargo"]["resources"]
        assert {t: parse_timestamp(resources[t]["frontier"]) for t in FACTS} == dict.fromkeys(FACTS, FIXED_NOW)
        assert {t: parse_timestamp(resources[t]["max_updated"]) for t in FACTS} == dict.fromkeys(FACTS, FIXED_NOW)

        moved = box.admin("POST", "/_emulator/advance", json={"seconds": 3600})
        assert sum(moved["new_rows"].values()) > 0 and sum(moved["changed_rows"].values()) > 0
        box.served()
        state, tasks = _run("cargo_test_backfill_incremental")
        assert state == "success", tasks
        reads = [q for q in box.served() if "toStartOfInterval" not in q and "LIMIT" in q]
        threshold = sql_timestamp(FIXED_NOW - DEFAULT_OVERLAP)
        for table in FACTS:  # each table read once, from the handed-over state: new and changed rows only
            of_table = [q for q in reads if f"FROM {table} " in q]
            assert of_table and all(f"{UPDATE_COLUMNS[table]} > {threshold}" in q for q in of_table), of_table
        box.assert_equals_truth()
