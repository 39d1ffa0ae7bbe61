"""One writer per pipeline, with the real ``cargo-elt sync`` in subprocesses against the emulator over HTTP.

Two syncs started together (into DuckDB, and into Snowflake through fakesnow) both end well, one after
the other, and one more sync after the emulator's clock moves leaves every fact table equal to the
emulator's truth, no key twice, and the pipeline's state consistent with what was loaded. A second
sync refuses (exit 1) or gives up after its wait, naming who holds the lock; a lock left by a sync
killed with SIGKILL is taken over; DuckDB's own file lock is reported plainly.

Processes are coordinated on the lines they print (``tests/lock_child.py``, the "waiting" warning),
never on time: the test itself holds the pipeline's lock while both syncs start, so both are
running, and waiting, when it lets go.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dlt
import duckdb
import pytest

from cargo_elt.pipelines.lock import lock_path, pipeline_lock, read_holder
from cargo_elt.source import FACT_TABLES
from tests.e2e.support import PRIMARY_KEYS, Sandbox
from tests.e2e.test_cli import DATABASE, PIPELINE, Workdir, cargo_elt, output, summary_rows

REPO = Path(__file__).resolve().parents[2]
FACTS = ",".join(FACT_TABLES)
WAITING = "waiting up to"
"""What a sync that waits for the lock says on stderr (``pipelines/lock.py``)."""


@pytest.fixture(scope="module")
def live_emulator() -> Iterator[Any]:
    """Tiny, one workspace, its clock near real time (the default 90-day backfill covers it)."""
    from cargo_elt.emulator.server import EmulatorOptions, running_emulator

    with running_emulator(EmulatorOptions(port=0, seed=23, scale="tiny", workspaces=1, admin=True)) as emulator:
        yield emulator


@pytest.fixture()
def work(live_emulator: Any, tmp_path: Path) -> Workdir:
    return Workdir(tmp_path, str(live_emulator.state.workspaces[0].token))


def child_env(work: Workdir, **extra: str) -> dict[str, str]:
    """The user's environment, with this checkout importable for ``python -m tests.lock_child``."""
    env = work.env(**extra)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    return env


@dataclass
class Started:
    """A sync running in the background; ``seen`` is the stderr read so far."""

    process: subprocess.Popen[str]
    seen: str = ""

    def wait_until_waiting(self) -> None:
        """Read stderr until the sync says it waits for the lock (it cannot have taken it: the test holds it)."""
        assert self.process.stderr is not None
        while WAITING not in self.seen:
            line = self.process.stderr.readline()
            if not line:
                self.process.wait(timeout=60)
                raise AssertionError(f"the sync ended without waiting (exit {self.process.returncode}):\n{self.seen}")
            self.seen += line

    def finish(self) -> subprocess.CompletedProcess[str]:
        stdout, stderr = self.process.communicate(timeout=600)
        return subprocess.CompletedProcess(self.process.args, self.process.returncode, stdout, self.seen + stderr)


def start(command: list[str], work: Workdir, env: dict[str, str]) -> Started:
    process = subprocess.Popen(
        command, cwd=work.root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    return Started(process)


@contextmanager
def holding(work: Workdir) -> Iterator[None]:
    """The pipeline's lock, held by this test process."""
    with pipeline_lock(work.data_dir / "pipelines", PIPELINE, wait_seconds=0):
        yield


def two_syncs_together(
    work: Workdir, command: list[str], env: dict[str, str]
) -> list[subprocess.CompletedProcess[str]]:
    """Start two syncs while the test holds the lock, let go once both wait, return both results."""
    with holding(work):
        syncs = [start(command, work, env), start(command, work, env)]
        for sync in syncs:
            sync.wait_until_waiting()
            assert f"(pid {os.getpid()}, host {socket.gethostname()}, since " in sync.seen, sync.seen
    return [sync.finish() for sync in syncs]


def check_serialised(results: list[subprocess.CompletedProcess[str]], truth: dict[str, int]) -> None:
    """Both succeeded; one loaded everything, the other, run after it from its state, nothing."""
    for result in results:
        assert result.returncode == 0, output(result)
        assert "Traceback" not in result.stderr, output(result)
    loaded = sorted(
        ({t: r[0] for t, r in summary_rows(result.stdout).items()} for result in results),
        key=lambda r: -sum(r.values()),
    )
    assert loaded[0] == truth, f"the first sync did not load everything: {loaded[0]} vs {truth}"
    assert loaded[1] == dict.fromkeys(truth, 0), (
        f"the second sync did not start from the first one's state: {loaded[1]}"
    )


def truth_counts(box: Sandbox) -> dict[str, int]:
    return {table: len(box.truth_rows(table)) for table in FACT_TABLES}


def cli_box(work: Workdir, emulator: Any) -> Sandbox:
    """A ``Sandbox`` over what ``cargo-elt sync`` wrote in ``work`` (its DuckDB file and pipeline)."""
    box = Sandbox(work.root, emulator, name=PIPELINE)
    box.database = str(work.root / DATABASE)
    box.pipelines_dir = str(work.data_dir / "pipelines")
    return box


def assert_state_consistent(box: Sandbox, pipeline: dlt.Pipeline, *, state_in_destination: bool = True) -> None:
    """Nothing pending, every load recorded once and complete, and the state loaded is the local state."""
    assert not pipeline.has_pending_data, pipeline.list_normalized_load_packages()
    loads = [tuple(row) for row in box_query(box, pipeline, "SELECT load_id, status FROM cargo._dlt_loads")]
    assert loads and all(status == 0 for _, status in loads), loads
    assert len({load_id for load_id, _ in loads}) == len(loads), f"a load recorded twice: {loads}"
    state = pipeline.state
    sources = state["sources"]["cargo"]["resources"]
    assert set(FACT_TABLES) <= set(sources), f"tables without incremental state: {set(FACT_TABLES) - set(sources)}"
    if state_in_destination:
        stored = box_query(
            box,
            pipeline,
            "SELECT version, version_hash FROM cargo._dlt_pipeline_state "
            f"WHERE pipeline_name = '{pipeline.pipeline_name}' ORDER BY version DESC LIMIT 1",
        )
        assert [tuple(r) for r in stored] == [(state["_state_version"], state["_version_hash"])]


def box_query(box: Sandbox, pipeline: dlt.Pipeline, sql: str) -> list[tuple[Any, ...]]:
    if isinstance(box, SnowflakeBox):
        return box.query(sql)
    with box.db() as con:
        return [tuple(r) for r in con.execute(sql).fetchall()]


def test_two_syncs_started_together_into_duckdb_take_turns_and_stay_exact(work: Workdir, live_emulator: Any) -> None:
    box = cli_box(work, live_emulator)
    command = [*cargo_elt(), "sync", "--base-url", live_emulator.base_url, "--tables", FACTS, "--progress", "none"]
    command += ["--lock-wait", "600"]
    check_serialised(two_syncs_together(work, command, work.env()), truth_counts(box))
    box.assert_equals_truth()  # assert_equals_truth also fails on a key loaded twice

    report = box.admin("POST", "/_emulator/advance", json={"seconds": 3600})
    assert sum(report["new_rows"].values()) > 0 and sum(report["changed_rows"].values()) > 0
    third = work.sync("--base-url", live_emulator.base_url, "--tables", FACTS, "--progress", "none", "--lock-wait", "0")
    assert third.returncode == 0, output(third)
    assert WAITING not in third.stderr and "taking over" not in third.stderr, output(third)
    box.assert_equals_truth()
    assert_state_consistent(box, box.pipeline())


class SnowflakeBox(Sandbox):
    """What ``cargo-elt sync --destination snowflake`` wrote into fakesnow, read through dlt's client."""

    def __init__(self, work: Workdir, emulator: Any, destination: Any) -> None:
        super().__init__(work.root, emulator, name=PIPELINE)
        self.pipelines_dir = str(work.data_dir / "pipelines")
        self.destination = destination

    def pipeline(self) -> dlt.Pipeline:
        return dlt.pipeline(
            pipeline_name=self.name,
            destination=self.destination,
            dataset_name="cargo",
            pipelines_dir=self.pipelines_dir,
        )

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        with self.pipeline().sql_client() as client:
            return [tuple(row) for row in client.execute_sql(sql) or []]

    def loaded_rows(self, table: str) -> dict[tuple[str, ...], tuple[str | None, str, str | None]]:
        from tests.e2e.support import STATUS_COLUMNS, UPDATE_COLUMNS, _iso

        keys = PRIMARY_KEYS[table]
        deleted = "deleted_at" if table == "runs" else "NULL"
        columns = ", ".join((*keys, UPDATE_COLUMNS[table], STATUS_COLUMNS[table], deleted))
        result: dict[tuple[str, ...], tuple[str | None, str, str | None]] = {}
        for row in self.query(f"SELECT {columns} FROM cargo.{table}"):
            key = tuple(str(v) for v in row[: len(keys)])
            assert key not in result, f"{table}: key {key} loaded twice"
            result[key] = (_iso(row[len(keys)]), str(row[len(keys) + 1]), _iso(row[len(keys) + 2]))
        return result


@pytest.mark.filterwarnings("ignore:Arrow output on a DB-API result makes an extra copy:UserWarning")
def test_two_syncs_started_together_into_snowflake_take_turns_and_stay_exact(
    work: Workdir, live_emulator: Any, tmp_path: Path
) -> None:
    """Snowflake has no file lock: only the pipeline's lock keeps the two syncs from writing at once."""
    pytest.importorskip("fakesnow", reason="fakesnow comes with the `dev` extra")
    from tests.snowflake_shim import fakesnow_destination

    fakesnow_dir = tmp_path / "fakesnow"
    args = ["--base-url", live_emulator.base_url, "--tables", FACTS, "--progress", "none", "--dataset", "cargo"]
    command = [sys.executable, "-m", "tests.lock_child", "fakesnow", str(fakesnow_dir), *args, "--lock-wait", "600"]
    env = child_env(work)
    truth = truth_counts(Sandbox(tmp_path, live_emulator))
    check_serialised(two_syncs_together(work, command, env), truth)

    report = Sandbox(tmp_path, live_emulator).admin("POST", "/_emulator/advance", json={"seconds": 3600})
    assert sum(report["new_rows"].values()) > 0 and sum(report["changed_rows"].values()) > 0
    third = work.run([*command[:-1], "0"], env)
    assert third.returncode == 0, output(third)
    with fakesnow_destination(fakesnow_dir) as destination:
        box = SnowflakeBox(work, live_emulator, destination)
        box.assert_equals_truth()
        # the shim keeps the state local (fakesnow cannot COPY dlt's JSON state row: tests/snowflake_shim.py)
        assert_state_consistent(box, box.pipeline(), state_in_destination=False)


def test_a_second_sync_refuses_or_gives_up_naming_the_running_one(work: Workdir, live_emulator: Any) -> None:
    url = live_emulator.base_url
    with holding(work):
        holder = read_holder(lock_path(work.data_dir / "pipelines", PIPELINE))
        assert holder is not None
        running = f"another sync of pipeline cargo is running (pid {os.getpid()}, host {socket.gethostname()}, "
        running += f"since {holder.since})"
        refused = work.sync("--base-url", url, "--tables", "runs", "--lock-wait", "0")
        gave_up = work.sync("--base-url", url, "--tables", "runs", SOURCES__CARGO__LOCK_WAIT_SECONDS="0.5")
    for result, waited in ((refused, "did not wait"), (gave_up, "waited 0.5 s")):
        assert result.returncode == 1, output(result)
        last = result.stderr.strip().splitlines()[-1]
        assert last.startswith(f"error: {running}; {waited} (--lock-wait / sources.cargo.lock_wait_seconds)"), last
        assert "Nothing was changed" in last and "Traceback" not in result.stderr, output(result)
        assert result.stdout == "", output(result)
    assert WAITING in gave_up.stderr and WAITING not in refused.stderr
    assert not work.pipeline_dir.exists() and not (work.root / DATABASE).exists(), "a refused sync wrote something"


def test_a_lock_left_by_a_killed_sync_is_taken_over(work: Workdir, live_emulator: Any) -> None:
    box = cli_box(work, live_emulator)
    args = ["--base-url", live_emulator.base_url, "--tables", FACTS, "--progress", "none"]
    # killed between extract+normalize and load: the lock is held, a package is left to load
    crashed = work.run([sys.executable, "-m", "tests.lock_child", "crash", "load:start", *args], child_env(work))
    assert crashed.returncode == -signal.SIGKILL, output(crashed)
    left = read_holder(lock_path(work.data_dir / "pipelines", PIPELINE))
    assert left is not None and left.pid is not None, "the killed sync held no lock"

    resumed = work.sync(*args, "--lock-wait", "0")
    assert resumed.returncode == 0, output(resumed)
    assert f"taking over the lock left by a sync that ended without releasing it (pid {left.pid}," in resumed.stderr
    assert "finishing the load an interrupted sync left" in resumed.stderr, output(resumed)
    box.assert_equals_truth()
    assert_state_consistent(box, box.pipeline())


def test_duckdbs_file_lock_is_reported_plainly(work: Workdir, live_emulator: Any) -> None:
    """Another process with the DuckDB file open (a DuckDB shell, a sync of another pipeline into it)."""
    database = work.root / DATABASE
    with subprocess.Popen(
        [sys.executable, "-m", "tests.lock_child", "duckdb", str(database)],
        cwd=work.root,
        env=child_env(work),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as holder:
        assert holder.stdout is not None and holder.stdin is not None
        assert holder.stdout.readline().split() == ["opened", str(holder.pid)]
        result = work.sync("--base-url", live_emulator.base_url, "--tables", "runs", "--progress", "none")
        holder.stdin.write("release\n")
        holder.stdin.flush()
        assert holder.wait(timeout=60) == 0
    assert result.returncode == 1, output(result)
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(
        f"error: the sync failed at the sync step: another process is using the DuckDB file {database} "
    )
    assert f"(pid {holder.pid}, " in last and "nothing was loaded" in last, last
    assert "credentials" not in last, last
    with duckdb.connect(str(database), read_only=True) as con:
        assert con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'cargo'"
        ).fetchone() == (0,)
