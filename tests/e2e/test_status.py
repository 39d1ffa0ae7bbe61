"""The operator commands end to end: ``cargo-elt sync --json``, ``_cargo_sync_runs`` and ``cargo-elt
status`` as a user, cron or a monitor runs them (real subprocesses) against an emulator with a fixed
clock, into a real DuckDB file.

The history every test reads: sync 1 loads ``runs``, ``spans`` and ``workflows``; sync 2 loads
``workflows`` and ``batches`` with a settle delay of a day (so ``batches`` is read only up to a day
ago: stale under ``--max-lag 12h``, whatever the machine's speed); sync 3 fails while reading
``runs`` (every data page answers 500, retries in milliseconds).

Lags are checked against what Cargo's ``SELECT now()`` answers around the status call, not against
this machine's clock.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest

from tests.conftest import FIXED_NOW
from tests.e2e.test_cli import FAST_RETRIES, Workdir, cargo_elt, output


@pytest.fixture(scope="module")
def emu() -> Any:
    from cargo_elt.emulator.server import EmulatorOptions, running_emulator

    options = EmulatorOptions(port=0, seed=3, scale="tiny", workspaces=1, admin=True, now=FIXED_NOW)
    with running_emulator(options) as running:
        yield running


@dataclass
class History:
    work: Workdir
    base_url: str
    first: subprocess.CompletedProcess[str]
    second: subprocess.CompletedProcess[str]
    failed: subprocess.CompletedProcess[str]
    state_after_second: dict[str, Any]

    def status(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        environment = self.work.env()
        environment.update(env)
        return self.work.run([*cargo_elt(), "status", "--base-url", self.base_url, *args], environment)

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        con = duckdb.connect(str(self.work.root / "cargo_warehouse.duckdb"), read_only=True)
        try:
            return [tuple(r) for r in con.execute(sql).fetchall()]
        finally:
            con.close()


@pytest.fixture(scope="module")
def history(emu: Any, tmp_path_factory: pytest.TempPathFactory) -> History:
    work = Workdir(tmp_path_factory.mktemp("status"), str(emu.state.workspaces[0].token))
    base = ("--base-url", emu.base_url, "--progress", "none", "--json")
    first = work.sync(*base, "--tables", "runs,spans,workflows")
    assert first.returncode == 0, output(first)
    a_day = str(24 * 3600)
    second = work.sync(
        *base,
        "--tables",
        "workflows,batches",
        SOURCES__CARGO__SETTLE_SECONDS=a_day,
        SOURCES__CARGO__OVERLAP_SECONDS=a_day,
    )
    assert second.returncode == 0, output(second)
    state = json.loads((work.pipeline_dir / "state.json").read_text())

    hook = tmp_path_factory.mktemp("fast_retries")
    (hook / "sitecustomize.py").write_text(FAST_RETRIES)
    env = work.env()
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(hook), env.get("PYTHONPATH")) if p)
    faults = {"spec": "500=1.0", "seed": 1, "match": "LIMIT"}  # data pages only: the preflight passes
    httpx.post(f"{emu.base_url}/_emulator/faults", json=faults, timeout=30).raise_for_status()
    try:
        failed = work.run([*cargo_elt(), "sync", *base, "--tables", "runs"], env)
    finally:
        httpx.post(f"{emu.base_url}/_emulator/faults", json={"spec": ""}, timeout=30).raise_for_status()
    return History(work, emu.base_url, first, second, failed, state)


def resources(state: dict[str, Any]) -> dict[str, Any]:
    return dict(state["sources"]["cargo"]["resources"])


def cargo_clock(history: History) -> datetime:
    """What Cargo's ``SELECT now()`` answers (whole seconds)."""
    response = httpx.post(
        f"{history.base_url}/v1/orchestration/query",
        json={"query": "SELECT toUnixTimestamp(now()) AS t"},
        headers={"authorization": f"Bearer {history.work.token}"},
        timeout=30,
    )
    response.raise_for_status()
    return datetime.fromtimestamp(int(response.json()["rows"][0]["t"]), UTC)


def instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# -- sync --json ------------------------------------------------------------------------------------


def test_sync_json_is_one_document_that_matches_the_destination(history: History) -> None:
    document = json.loads(history.first.stdout)  # the whole of stdout: logs and progress went to stderr
    assert (document["status"], document["mode"], document["error"]) == ("ok", "incremental", None)
    assert (document["pipeline_name"], document["dataset"], document["destination"]) == ("cargo", "cargo", "duckdb")
    tables = document["tables"]
    assert list(tables) == ["runs", "spans", "workflows"]
    # a first sync reads each row once: the rows it reports are the rows in the destination
    counts = history.work.counts()
    assert {t: tables[t]["rows"] for t in tables} == {t: counts[t] for t in tables}
    assert all(tables[t]["queries"] > 0 and tables[t]["retries"] == 0 for t in tables)
    state = resources(json.loads((history.work.pipeline_dir / "state.json").read_text()))
    frontier = tables["runs"]["frontier"]
    assert frontier == tables["spans"]["frontier"] and frontier is not None
    assert tables["workflows"]["frontier"] is None  # read whole each sync
    # sync 2 did not touch runs: its frontier in the state is still the one sync 1 reported
    assert state["runs"]["frontier"] == frontier
    loads = {r[0] for r in history.query("SELECT load_id FROM cargo._dlt_loads WHERE status = 0")}
    assert document["load_ids"] and set(document["load_ids"]) <= loads
    assert instant(document["started_at"]) < instant(document["finished_at"])


def test_a_failed_sync_prints_its_document_and_the_error(history: History) -> None:
    failed = history.failed
    assert failed.returncode == 1, output(failed)
    last = failed.stderr.strip().splitlines()[-1]
    assert last.startswith("error: the sync failed reading runs"), output(failed)
    document = json.loads(failed.stdout)
    assert document["status"] == "failed"
    assert document["error"] == last.removeprefix("error: ")
    assert document["tables"]["runs"]["retries"] > 0
    assert document["tables"]["runs"]["frontier"] == resources(history.state_after_second)["runs"]["frontier"]


# -- _cargo_sync_runs -------------------------------------------------------------------------------


def test_every_sync_appends_its_figures_to_cargo_sync_runs(history: History) -> None:
    rows = history.query(
        "SELECT sync_id, load_id, pipeline_name, table_name, mode, status, started_at, finished_at, rows, queries, "
        "retries, seconds, frontier, error FROM cargo._cargo_sync_runs ORDER BY finished_at, table_name"
    )
    documents = [json.loads(r.stdout) for r in (history.first, history.second, history.failed)]
    assert len(rows) == sum(len(d["tables"]) for d in documents) == 3 + 2 + 1
    by_sync: dict[str, list[tuple[Any, ...]]] = {}
    for row in rows:
        by_sync.setdefault(str(row[0]), []).append(row)
    assert list(by_sync) == [d["sync_id"] for d in documents]
    for document in documents:
        recorded = by_sync[document["sync_id"]]
        assert sorted(r[3] for r in recorded) == sorted(document["tables"])
        for _, load_id, pipeline, table, mode, status, started, finished, *figures, frontier, error in recorded:
            expected = document["tables"][table]
            assert (pipeline, mode, status, error) == ("cargo", "incremental", document["status"], document["error"])
            assert load_id == (document["load_ids"][-1] if document["load_ids"] else None)
            assert started == instant(document["started_at"]) and finished == instant(document["finished_at"])
            assert figures[:3] == [expected["rows"], expected["queries"], expected["retries"]]
            assert figures[3] == pytest.approx(expected["seconds"], abs=0.001)
            assert frontier == expected["frontier"]
    assert documents[2]["status"] == "failed"


# -- status -----------------------------------------------------------------------------------------


def test_status_shows_the_state_the_rows_and_the_lag_behind_cargos_clock(history: History) -> None:
    files = history.work.snapshot()
    before = cargo_clock(history)
    result = history.status("--json")
    after = cargo_clock(history)
    assert result.returncode == 0, output(result)
    document = json.loads(result.stdout)
    assert history.work.snapshot() == files, "status wrote something"

    now = instant(document["server_now"])
    assert before <= now <= after, "the lag is measured on Cargo's clock"
    tables = document["tables"]
    assert list(tables) == ["runs", "batches", "spans", "workflows"]
    assert document["stale"] == [] and document["max_lag_seconds"] is None
    counts = history.work.counts()
    assert {t: tables[t]["rows"] for t in tables} == {t: counts[t] for t in tables}
    state = resources(json.loads((history.work.pipeline_dir / "state.json").read_text()))
    for table in ("runs", "batches", "spans"):
        assert tables[table]["frontier"] == state[table]["frontier"]
        frontier = instant(state[table]["frontier"])
        assert tables[table]["lag_seconds"] == pytest.approx((now - frontier).total_seconds(), abs=0.001)
    # the failed sync 3 is not a load: runs was last loaded by sync 1, workflows by sync 2
    first, second = json.loads(history.first.stdout), json.loads(history.second.stdout)
    assert instant(tables["runs"]["last_load_at"]) == instant(first["finished_at"])
    assert tables["runs"]["last_load_id"] == first["load_ids"][-1]
    assert instant(tables["workflows"]["last_load_at"]) == instant(second["finished_at"])
    # a table read whole each sync lags from its last load
    assert tables["workflows"]["frontier"] is None
    lag = (now - instant(second["finished_at"])).total_seconds()
    assert tables["workflows"]["lag_seconds"] == pytest.approx(lag, abs=0.001)
    # read up to a day ago (settle), so about a day behind
    assert timedelta(hours=23) < timedelta(seconds=tables["batches"]["lag_seconds"]) < timedelta(hours=25)


def test_max_lag_exits_1_on_a_stale_table_and_0_when_every_table_is_fresh(history: History) -> None:
    stale = history.status("--max-lag", "12h")
    assert stale.returncode == 1, output(stale)
    lines = stale.stdout.strip().splitlines()
    assert lines[-1] == "stale (lag over 12h 00m): batches", output(stale)
    assert [line.split()[0] for line in lines if line.endswith("STALE")] == ["batches"]
    assert stale.stderr == "", output(stale)

    fresh = history.status("--max-lag", "12h", "--tables", "runs,spans,workflows", "--json")
    assert fresh.returncode == 0, output(fresh)
    assert json.loads(fresh.stdout)["stale"] == []

    never = history.status("--max-lag", "12h", "--tables", "records", "--json")
    assert never.returncode == 1, output(never)
    document = json.loads(never.stdout)
    assert document["stale"] == ["records"]
    assert document["tables"]["records"] == {
        "frontier": None,
        "as_of": None,
        "lag_seconds": None,
        "last_load_at": None,
        "last_load_id": None,
        "rows": None,
        "stale": True,
        "note": None,
    }


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (("--pipeline-name", "nightly"), {}, "no sync has run for pipeline 'nightly': no warehouse at"),
        (
            ("--dataset", "elsewhere", "--duckdb-path", "cargo_warehouse.duckdb"),
            {},
            "no sync has run for pipeline 'cargo' in dataset 'elsewhere' (duckdb): run cargo-elt sync first",
        ),
        (("--max-lag", "soon"), {}, "--max-lag 'soon' is not a positive duration"),
        (("--tables", "runs,spanz"), {}, "unknown table 'spanz' in --tables"),
        (
            (),
            {"SOURCES__CARGO__API_TOKEN": ""},
            "status reads Cargo's clock: sources.cargo.api_token: no Cargo API token",
        ),
        ((), {"SOURCES__CARGO__API_TOKEN": "crg_wrong"}, "sources.cargo.api_token"),
        (("--destination", "nowhere"), {}, "unknown destination 'nowhere'"),
    ],
    ids=[
        "unknown pipeline",
        "no state in dataset",
        "bad max-lag",
        "unknown table",
        "no token",
        "wrong token",
        "bad destination",
    ],
)
def test_bad_input_exits_2_with_one_clear_line(
    history: History, args: tuple[str, ...], env: dict[str, str], message: str
) -> None:
    files = history.work.snapshot()
    result = history.status(*args, **env)
    assert result.returncode == 2, output(result)
    assert result.stdout == "", output(result)
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and message in line, output(result)
    assert "crg_wrong" not in result.stderr
    assert history.work.snapshot() == files


def test_status_without_a_warehouse_path_names_the_option(tmp_path: Path, history: History) -> None:
    result = history.work.run(
        [*cargo_elt(), "status", "--base-url", history.base_url, "--duckdb-path", str(tmp_path / "none.duckdb")]
    )
    assert result.returncode == 2, output(result)
    assert "--duckdb-path" in result.stderr and "no sync has run for pipeline 'cargo'" in result.stderr
    assert not (tmp_path / "none.duckdb").exists()
