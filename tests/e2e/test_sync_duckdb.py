"""The source against the emulator over real HTTP, loaded into a real DuckDB file, compared row by row
with the emulator's ground truth."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cargo_elt.source.server_clock import CLOCK_QUERY
from tests.conftest import FIXED_NOW
from tests.e2e.support import Sandbox


@pytest.fixture(scope="module")
def live_emulator() -> Iterator[Any]:
    """A tiny emulator on the fixed test clock (the source's bounds come from it, whatever this
    machine's clock says); tests move it."""
    from cargo_elt.emulator.server import EmulatorOptions, running_emulator

    with running_emulator(
        EmulatorOptions(port=0, seed=7, scale="tiny", workspaces=2, admin=True, now=FIXED_NOW)
    ) as emulator:
        yield emulator


def test_backfill_noop_and_incremental_are_exact(live_emulator: Any, tmp_path: Path) -> None:
    box = Sandbox(tmp_path, live_emulator)
    first = box.sync()
    box.assert_equals_truth()
    assert all(s.rows > 0 for s in first.values())

    box.admin("DELETE", "/_emulator/queries")
    second = box.sync()
    for table, stats in second.items():
        assert stats.rows == 0, f"{table}: a sync with nothing new loaded {stats.rows} rows"
        # one query: the first page of the changed-rows read, the schema check folded into it
        assert stats.queries == 1, f"{table}: {stats.queries} queries for a sync with nothing new"
    served = box.admin("GET", "/_emulator/queries")["queries"]
    clock_reads = [q for q in served if q["sql"] == CLOCK_QUERY]
    assert len(clock_reads) == 1, "Cargo's clock is read once per sync, for every table"
    assert len(served) == sum(s.queries for s in second.values()) + second.server_clock.queries

    report = box.admin("POST", "/_emulator/advance", json={"seconds": 3600})
    assert sum(report["new_rows"].values()) > 0 and sum(report["changed_rows"].values()) > 0
    third = box.sync()
    box.assert_equals_truth()
    assert third["runs"].rows > 0 and third["spans"].rows > 0
    with box.db() as con:
        deleted = con.execute("SELECT count(*) FROM cargo.runs WHERE deleted_at IS NOT NULL").fetchone()
    truth_deleted = sum(1 for v in box.truth_rows("runs").values() if v[2] is not None)
    assert deleted is not None and deleted[0] == truth_deleted > 0


def test_other_workspace_token_loads_only_its_rows(live_emulator: Any, tmp_path: Path) -> None:
    box = Sandbox(tmp_path, live_emulator, name="second_ws", workspace=1)
    box.sync(tables=["runs", "spans"])
    box.assert_equals_truth(("runs", "spans"))
    with box.db() as con:
        workspaces = con.execute("SELECT DISTINCT workspace_uuid FROM cargo.runs").fetchall()
    assert workspaces == [(box.workspace_uuid,)]


def test_stateless_backfill_chunks_leave_the_state_alone(live_emulator: Any, tmp_path: Path) -> None:
    box = Sandbox(tmp_path, live_emulator, name="chunks")
    truth = box.truth_rows("runs")
    times = sorted(v[0] for v in truth.values())
    middle = times[len(times) // 2]
    box.sync(tables=["runs"], since="2026-01-01", until=middle)
    box.sync(tables=["runs"], since=middle)
    box.assert_equals_truth(("runs",))
    state = box.pipeline().state
    assert "frontier" not in str(state.get("sources", {}))


def test_hard_delete_removes_soft_deleted_runs(tmp_path: Path) -> None:
    from cargo_elt.emulator.server import EmulatorOptions, running_emulator

    with running_emulator(
        EmulatorOptions(port=0, seed=8, scale="tiny", workspaces=1, admin=True, now=FIXED_NOW)
    ) as emulator:
        box = Sandbox(tmp_path, emulator, name="hard_delete")
        box.sync(tables=["runs"], hard_delete=True)
        box.admin("POST", "/_emulator/advance", json={"seconds": 7200})
        box.sync(tables=["runs"], hard_delete=True)
        truth = box.truth_rows("runs")
    deleted = {key for key, value in truth.items() if value[2] is not None}
    assert deleted, "the clock deleted no run: the test proves nothing"
    loaded = box.loaded_rows("runs")
    assert loaded.keys() == truth.keys() - deleted
    assert all(loaded[key] == truth[key] for key in loaded)


def test_extract_files_rotate_and_the_load_stays_exact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A row limit per extract file (the source's default bounds the parquet writer's memory) splits a
    table's pages over several files, loaded as several jobs into one exact table."""
    from cargo_elt.emulator.server import EmulatorOptions, running_emulator

    monkeypatch.setenv("SOURCES__CARGO__DATA_WRITER__FILE_MAX_ITEMS", "5000")
    with running_emulator(
        EmulatorOptions(port=0, seed=3, scale="small", workspaces=1, admin=True, now=FIXED_NOW)
    ) as emulator:
        box = Sandbox(tmp_path, emulator, name="rotating_files")
        stats = box.sync(tables=["spans"])
        box.assert_equals_truth(("spans",))
    assert stats["spans"].rows > 20_000  # three pages or more: one file each at this limit
    trace = box.pipeline().last_trace
    assert trace is not None and trace.last_load_info is not None
    info = trace.last_load_info
    span_jobs = [
        job
        for package in info.load_packages
        for job in package.jobs["completed_jobs"]
        if job.job_file_info.table_name == "spans" and job.job_file_info.file_format == "parquet"
    ]
    assert len(span_jobs) >= 3, [job.file_path for job in span_jobs]
    # ... and once loaded, their files are gone from the worker's disk (dlt would keep them for ever)
    loaded = Path(box.pipeline().working_dir) / "load" / "loaded"
    kept = [path for path in loaded.rglob("*") if path.is_file() and "completed_jobs" in path.parts]
    assert loaded.is_dir() and not kept, kept
