"""A first sync and a since/until chunk in steps (``sources.cargo.step_rows``): every step loads and
commits an exact, contiguous prefix of each table's range; the next step continues where it ended,
with the windows planned once; the end is the emulator's truth."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from cargo_elt.pipelines.steps import run_in_steps
from cargo_elt.source import FACT_TABLES, SyncStats, cargo_source
from cargo_elt.source.planner import range_condition
from cargo_elt.source.specs import TABLE_SPECS
from cargo_elt.source.sqltext import as_utc, sql_timestamp
from cargo_elt.source.steps import ReadProgress
from tests.conftest import FIXED_NOW
from tests.e2e.support import Sandbox

START = datetime(2026, 1, 1, tzinfo=UTC)
STEP_ROWS = 4_000
"""An eighth of the small scale's rows: several steps, windows of 500 rows."""


@pytest.fixture(scope="module")
def small_emulator() -> Iterator[Any]:
    from cargo_elt.emulator.server import EmulatorOptions, running_emulator

    with running_emulator(
        EmulatorOptions(port=0, seed=5, scale="small", workspaces=1, admin=True, now=FIXED_NOW)
    ) as emulator:
        yield emulator


def server_count(box: Sandbox, table: str, start: datetime, progress: ReadProgress) -> int:
    """Rows of ``[start, until)`` before the progress position (what the steps so far read), counted by
    the emulator through the public query endpoint."""
    spec = TABLE_SPECS[table]
    time = spec.time_column
    sql = (
        f"SELECT count() AS n FROM {table} WHERE {time} >= {sql_timestamp(start)} "
        f"AND {time} < {sql_timestamp(progress.until)} AND NOT ({range_condition(spec, progress.rest)})"
    )
    response = httpx.post(
        f"{box.emulator.base_url}/v1/orchestration/query",
        json={"query": sql},
        headers={"authorization": f"Bearer {box.token}"},
        timeout=120,
    )
    response.raise_for_status()
    return int(response.json()["rows"][0]["n"])


def loaded_positions(box: Sandbox, table: str) -> list[tuple[datetime, tuple[Any, ...]]]:
    """(time, key) of every loaded row; asserts no key is loaded twice."""
    spec = TABLE_SPECS[table]
    box.loaded_rows(table)  # raises on a key loaded twice
    with box.db() as con:
        rows = con.execute(f"SELECT {spec.time_column}, {', '.join(spec.primary_key)} FROM cargo.{table}").fetchall()
    return [(as_utc(row[0]), tuple(row[1:])) for row in rows]


def before(position: ReadProgress, time: datetime, key: tuple[Any, ...]) -> bool:
    """Whether a row at (time, key) lies before the progress position, in the read's (time, key) order."""
    if time < position.at:
        return True
    if position.cursor is None or time > position.cursor.time:
        return False
    return time < position.cursor.time or tuple(str(k) for k in key) <= tuple(str(k) for k in position.cursor.key)


def test_a_first_sync_in_steps_commits_exact_prefixes_and_ends_exact(small_emulator: Any, tmp_path: Path) -> None:
    box = Sandbox(tmp_path, small_emulator, name="stepped")
    stats = SyncStats()
    source = cargo_source(
        api_token=box.token,
        base_url=small_emulator.base_url,
        start_date="2026-01-01",
        tables=list(FACT_TABLES),
        settle_seconds=0,
        step_rows=STEP_ROWS,
        stats=stats,
    )
    pipeline = box.pipeline()
    seen: list[dict[str, Any]] = []

    def check_prefix(step: int, pending: list[str]) -> None:
        resources = pipeline.state["sources"]["cargo"]["resources"]
        for table in FACT_TABLES:
            state = resources.get(table, {})
            progress = ReadProgress.from_state(state.get("read"))
            loaded = loaded_positions(box, table)
            if progress is None:
                assert table not in pending
                continue
            assert table in pending
            assert state["frontier"] == progress.at.isoformat()
            outside = [row for row in loaded if not before(progress, *row)]
            assert not outside, f"step {step}: {table} holds rows past its position, e.g. {outside[0]}"
            expected = server_count(box, table, START, progress)
            assert len(loaded) == expected, f"step {step}: {table} holds {len(loaded)} rows, its prefix {expected}"
        seen.append({"step": step, "pending": pending, "rows": sum(s.rows for s in stats.values())})

    run = run_in_steps(pipeline, source, stats, on_step=check_prefix)
    box.assert_equals_truth()
    total = sum(s.rows for s in stats.values())
    assert run.steps >= 4, seen
    assert len(run.load_ids) == run.steps
    rows_per_step = [b["rows"] - a["rows"] for a, b in zip([{"rows": 0}, *seen], seen, strict=False)]
    # the first step also reads each table's first page (up to 10,000 rows, read before any plan);
    # later steps start windows while their expected rows fit the budget (the first is always started)
    assert rows_per_step[0] <= STEP_ROWS + 10_000 * len(FACT_TABLES), rows_per_step
    assert max(rows_per_step[1:]) <= STEP_ROWS + 500, rows_per_step
    assert sum(rows_per_step) == total
    # planned once: the later steps start windows planned at the first step, no histogram again
    planning = {name: s.planning_queries for name, s in stats.items()}
    assert planning["spans"] <= 2, planning
    assert stats.steps_committed == run.steps


def test_a_backfill_killed_at_80_percent_rereads_at_most_a_quarter(small_emulator: Any, tmp_path: Path) -> None:
    """SIGKILL once 80 % of the rows are read; the next sync continues from the last committed step."""
    box = Sandbox(tmp_path, small_emulator, name="killed_in_steps")
    total = sum(len(box.truth_rows(table)) for table in FACT_TABLES)
    threshold = int(total * 0.8)
    child = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.reliability.crash_child",
            small_emulator.base_url,
            box.token,
            box.database,
            box.pipelines_dir,
            box.name,
            f"rows:{threshold}",
            f"step_rows={STEP_ROWS}",
        ],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert child.returncode == -signal.SIGKILL, f"never reached {threshold} rows: {child.stderr[-2000:]}"
    read_before, queries_before = (int(n) for n in Path(f"{box.database}.killed").read_text().split())
    pipeline = box.pipeline()
    assert not pipeline.has_pending_data  # killed while reading: the committed steps are all loaded
    committed = sum(len(box.loaded_rows(table)) for table in FACT_TABLES)
    assert 0 < committed < total
    # cargo-elt status, from the destination: the unfinished tables say where their backfill stopped
    from cargo_elt.pipelines.status import StatusRequest, run_status

    report = run_status(
        StatusRequest(
            pipeline_name=box.name,
            duckdb_path=box.database,
            base_url=small_emulator.base_url,
            api_token=box.token,
            tables=list(FACT_TABLES),
        )
    )
    resources = pipeline.state["sources"]["cargo"]["resources"]
    unfinished = {table for table in FACT_TABLES if "read" in resources.get(table, {})}
    assert unfinished, "killed at 80 %: some table's read is unfinished"
    for line in report.tables:
        if line.table in unfinished:
            assert line.note is not None and line.note.startswith("a first sync in steps has read to "), line
        else:
            assert line.note is None, line
    assert "the next sync reads on to" in report.text()

    box.admin("DELETE", "/_emulator/queries")
    stats = SyncStats()
    source = cargo_source(
        api_token=box.token,
        base_url=small_emulator.base_url,
        start_date="2026-01-01",
        tables=list(FACT_TABLES),
        settle_seconds=0,
        step_rows=STEP_ROWS,
        stats=stats,
    )
    run_in_steps(pipeline, source, stats)
    box.assert_equals_truth()
    read_again = sum(s.rows for s in stats.values())
    assert read_again == total - committed, "the next sync reads exactly what the committed steps did not"
    reread = read_before - committed
    assert reread <= 0.25 * total, f"{reread} of {total} rows read twice"
    served = box.admin("GET", "/_emulator/queries")["queries"]
    pages = [q for q in served if " LIMIT " in q["sql"]]
    assert len(pages) == sum(s.data_queries for s in stats.values())
    assert len(pages) <= 0.6 * queries_before, f"{len(pages)} data queries after {queries_before} before the kill"


def test_backfill_chunks_read_in_steps_and_load_every_row(small_emulator: Any, tmp_path: Path) -> None:
    """``cargo-elt backfill``'s chunks honour ``step_rows`` as the sync does: each chunk commits a step at
    a time through its own pipeline until no table is pending, not only its first step."""
    from cargo_elt.pipelines.backfill import BackfillRequest, run_backfill

    box = Sandbox(tmp_path, small_emulator, name="chunked")
    report = run_backfill(
        BackfillRequest(
            since="2026-01-01",
            pipeline_name=box.name,
            workers=1,
            chunks=2,
            base_url=small_emulator.base_url,
            api_token=box.token,
            duckdb_path=box.database,
            pipelines_dir=box.pipelines_dir,
            extra_source_args={"settle_seconds": 0, "step_rows": STEP_ROWS},
        )
    )
    box.assert_equals_truth()
    assert len(report.chunks) == 2
    steps = {chunk.index: len(chunk.load_ids) for chunk in report.chunks}
    assert all(n >= 2 for n in steps.values()), f"each chunk of ~12,000 rows took steps of {STEP_ROWS:,}: {steps}"
