"""``cargo-elt rerun`` end to end: failures in the warehouse, a re-run batch in the emulator, fewer
failures after the clock moved and the next sync loaded the re-run.

The loop runs the real console script (subprocesses, as a user would); the bad-input cases call the
same ``main`` in-process, each a clear message and exit code 2 with nothing sent or recorded.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from cargo_elt.pipelines import cli
from tests.conftest import FIXED_NOW
from tests.e2e.support import Sandbox
from tests.e2e.test_cli import cargo_elt, user_env

TABLES = ["runs", "batches", "records", "batch_failures", "workflows", "plays"]


@pytest.fixture(scope="module")
def emu() -> Iterator[Any]:
    """An emulator this module creates batches in and advances (clock fixed at FIXED_NOW: the same data every run)."""
    from cargo_elt.emulator.server import EmulatorOptions, running_emulator

    # small: the busiest workflow has dozens of failed records, so "fewer failures" never hangs on luck
    options = EmulatorOptions(port=0, seed=5, scale="small", workspaces=1, admin=True, now=FIXED_NOW)
    with running_emulator(options) as running:
        yield running


@pytest.fixture(scope="module")
def warehouse(emu: Any, tmp_path_factory: pytest.TempPathFactory) -> Sandbox:
    """A warehouse synced once (facts the rerun reads, failures, the catalogue that names the model)."""
    box = Sandbox(tmp_path_factory.mktemp("rerun"), emu)
    box.sync(tables=TABLES)
    return box


@pytest.fixture
def api(emu: Any) -> Iterator[httpx.Client]:
    token = emu.state.workspaces[0].token
    with httpx.Client(base_url=f"{emu.base_url}/v1", headers={"authorization": f"Bearer {token}"}, timeout=60) as c:
        yield c


def one(box: Sandbox, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    with box.db() as con:
        return [tuple(r) for r in con.execute(sql, list(args)).fetchall()]


def rerun(box: Sandbox, *args: str, token: str | None = None) -> subprocess.CompletedProcess[str]:
    command = [
        *cargo_elt(),
        "rerun",
        *args,
        "--pipeline-name",
        box.name,
        "--duckdb-path",
        box.database,
        "--base-url",
        box.emulator.base_url,
    ]
    env = user_env(box.root, SOURCES__CARGO__API_TOKEN=token or box.token)
    return subprocess.run(command, cwd=box.root, env=env, capture_output=True, text=True, timeout=180, check=False)


def recordids_batches(api: httpx.Client) -> list[dict[str, Any]]:
    listed: list[dict[str, Any]] = api.get(
        "orchestration/batches/list", params={"includedDataKinds[]": "recordIds", "limit": 100}
    ).json()["batches"]
    return listed


def test_failures_rerun_advance_sync_fewer_failures(emu: Any, warehouse: Sandbox, api: httpx.Client) -> None:
    box = warehouse
    workflow = one(
        box,
        "SELECT workflow_uuid FROM cargo.batch_failures GROUP BY 1 ORDER BY count(DISTINCT record_id) DESC, 1 LIMIT 1",
    )[0][0]
    batch, failed = one(
        box,
        "SELECT batch_uuid, count(*) FROM cargo.batch_failures WHERE workflow_uuid = ? GROUP BY 1 ORDER BY 2 DESC, 1",
        workflow,
    )[0]
    ids = sorted(
        r[0] for r in one(box, "SELECT DISTINCT record_id FROM cargo.batch_failures WHERE batch_uuid = ?", batch)
    )
    model = one(box, "SELECT model_uuid FROM cargo.plays WHERE workflow_uuid = ?", workflow)[0][0]

    # By batch: a dry run, then the batch, then nothing more (already re-run) unless forced.
    dry = rerun(box, "--batch", batch)
    assert dry.returncode == 0, dry.stderr
    payload = {"workflowUuid": workflow, "data": {"kind": "recordIds", "modelUuid": model, "ids": ids}}
    assert json.loads(dry.stdout) == payload  # the client's CreateBatchPayload
    assert "dry run" in dry.stderr and "--yes" in dry.stderr
    assert recordids_batches(api) == []  # a dry run sends nothing
    sent = rerun(box, "--batch", batch, "--yes")
    assert sent.returncode == 0, sent.stderr
    first = sent.stdout.strip()
    created = api.get(f"orchestration/batches/{first}").json()["batch"]
    assert created["data"] == payload["data"] and created["workflowUuid"] == workflow
    assert created["status"] == "pending"
    reruns = "SELECT count(*), count(DISTINCT failed_run_uuid) FROM cargo._cargo_reruns WHERE rerun_batch_uuid = ?"
    assert one(box, reruns, first) == [(failed, failed)]
    twice = rerun(box, "--batch", batch, "--yes")
    assert twice.returncode == 2 and "already" in twice.stderr and "--force" in twice.stderr, twice.stderr
    assert [b["uuid"] for b in recordids_batches(api)] == [first]  # nothing sent the second time
    forced = rerun(box, "--batch", batch, "--force")
    assert forced.returncode == 0 and json.loads(forced.stdout)["data"]["ids"] == ids, forced.stderr

    # By workflow: every other failure of the workflow since its first one.
    since = one(box, "SELECT min(run_created_at) FROM cargo.batch_failures WHERE workflow_uuid = ?", workflow)[0][0]
    since_text = (since - timedelta(seconds=1)).isoformat()
    pending = (
        "SELECT DISTINCT f.record_id FROM cargo.batch_failures f WHERE f.workflow_uuid = ? "
        "AND f.run_created_at >= ? AND f.run_uuid NOT IN (SELECT failed_run_uuid FROM cargo._cargo_reruns)"
    )
    rest = sorted(r[0] for r in one(box, pending, workflow, since))
    by_workflow = rerun(box, "--workflow", workflow, "--since", since_text, "--yes")
    assert by_workflow.returncode == 0, by_workflow.stderr
    assert f"{failed} already re-run" in by_workflow.stderr
    second = by_workflow.stdout.strip()
    assert api.get(f"orchestration/batches/{second}").json()["batch"]["data"]["ids"] == rest
    rerun_records = len(ids) + len(rest)
    assert rerun_records > 10  # enough that "fewer failures" is not luck

    box.admin("POST", "/_emulator/advance", json={"seconds": 1800})
    box.sync(tables=TABLES)

    batches = "SELECT uuid, status, runs_count, failed_runs_count FROM cargo.batches WHERE uuid IN (?, ?)"
    loaded = {row[0]: row[1:] for row in one(box, batches, first, second)}
    assert loaded.keys() == {first, second}  # both re-run batches, synced
    assert loaded[first][:2] == ("success", len(ids)) and loaded[second][:2] == ("success", len(rest))
    failing_again = one(box, "SELECT count(*) FROM cargo.batch_failures WHERE batch_uuid IN (?, ?)", first, second)
    assert failing_again[0][0] == loaded[first][2] + loaded[second][2] < rerun_records  # fewer failures

    # What is left to re-run: the records that failed again (and failures of runs that arrived since).
    left = rerun(box, "--workflow", workflow, "--since", since_text)
    assert left.returncode == 0, left.stderr
    offered = json.loads(left.stdout)["data"]["ids"]
    assert offered == sorted(r[0] for r in one(box, pending, workflow, since))
    assert len(offered) < rerun_records


@pytest.fixture
def run_cli(warehouse: Sandbox, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Iterator[Any]:
    """``cargo-elt rerun ...`` in-process against the module's warehouse: (exit code, stderr)."""
    monkeypatch.setenv("DLT_DATA_DIR", str(warehouse.root))
    monkeypatch.setenv("SOURCES__CARGO__API_TOKEN", warehouse.token)

    def run(*args: str, where: Sequence[str] | None = None) -> tuple[int, str]:
        location = (
            where if where is not None else ["--pipeline-name", warehouse.name, "--duckdb-path", warehouse.database]
        )
        try:
            code = cli.main(["rerun", *args, *location, "--base-url", warehouse.emulator.base_url])
        except SystemExit as exc:  # argparse's own refusals
            code = int(exc.code or 0)
        return code, capsys.readouterr().err

    yield run


def test_bad_input_exits_2_with_a_clear_message(
    warehouse: Sandbox, run_cli: Any, api: httpx.Client, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    workflow = one(warehouse, "SELECT workflow_uuid FROM cargo.batch_failures LIMIT 1")[0][0]
    clean = one(warehouse, "SELECT uuid FROM cargo.batches WHERE failed_runs_count = 0 AND runs_count > 0")[0][0]
    failing = one(warehouse, "SELECT batch_uuid FROM cargo.batch_failures LIMIT 1")[0][0]
    before = recordids_batches(api)
    cases = {
        "not a UUID": run_cli("--batch", "12345"),
        "is not in the warehouse": run_cli("--batch", "0f0f0f0f-0000-4000-8000-000000000000"),
        "has no failed records": run_cli("--batch", clean),
        "needs --since": run_cli("--workflow", workflow),
        "--since goes with --workflow": run_cli("--batch", failing, "--since", "2026-01-01"),
        "has no batches in the warehouse": run_cli(
            "--workflow", "0f0f0f0f-0000-4000-8000-000000000001", "--since", "2026-01-01"
        ),
        "no warehouse at": run_cli("--batch", failing, where=["--duckdb-path", str(tmp_path / "none.duckdb")]),
        "not allowed with argument": run_cli("--batch", failing, "--workflow", workflow),
    }
    for needle, (code, err) in cases.items():
        assert code == 2 and needle in err, (needle, code, err)
    monkeypatch.setenv("SOURCES__CARGO__API_TOKEN", "crg_wrong")
    code, err = run_cli("--batch", failing, "--yes", "--force")
    assert code == 2 and "sources.cargo.api_token" in err and "crg_wrong" not in err, err
    assert recordids_batches(api) == before  # nothing was sent
