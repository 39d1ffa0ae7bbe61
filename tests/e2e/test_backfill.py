"""``cargo-elt backfill``: chunks loaded by several processes into DuckDB, then handed over to the syncs.

Against a tiny emulator over HTTP into a real DuckDB file, compared key by key with the emulator's
truth (``tests/e2e/support.py``): the command as a user runs it (a subprocess spawning its workers),
and the same steps driven one by one, so the emulator's clock can move in the middle of a backfill.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cargo_elt.source import FACT_TABLES
from cargo_elt.source.planner import is_histogram_query
from cargo_elt.source.settings import DEFAULT_OVERLAP
from cargo_elt.source.sqltext import parse_timestamp, sql_timestamp
from tests.conftest import FIXED_NOW
from tests.e2e.support import UPDATE_COLUMNS, Sandbox
from tests.e2e.test_cli import cargo_elt, user_env

START = "2026-01-01"
UNBOUNDED = ("runs", "batches", "records")
"""Tables whose changed-rows read reaches back to start_date (spans: max_lookback_days only)."""


@pytest.fixture()
def live_emulator() -> Iterator[Any]:
    """A tiny emulator of its own: these tests move its clock."""
    from cargo_elt.emulator.server import EmulatorOptions, running_emulator

    with running_emulator(
        EmulatorOptions(port=0, seed=5, scale="tiny", workspaces=1, admin=True, now=FIXED_NOW)
    ) as emulator:
        yield emulator


class Warehouse(Sandbox):
    """The DuckDB file and pipeline ``cargo`` that ``cargo-elt backfill`` and ``cargo-elt sync`` share."""

    def __init__(self, root: Path, emulator: Any) -> None:
        super().__init__(root, emulator, name="cargo")
        self.database = str(root / "warehouse.duckdb")
        self.pipelines_dir = str(root / "dlt" / "pipelines")

    def run(self, *args: str, **settings: str) -> subprocess.CompletedProcess[str]:
        env = user_env(
            self.root / "dlt",
            SOURCES__CARGO__API_TOKEN=self.token,
            SOURCES__CARGO__START_DATE=START,
            SOURCES__CARGO__SETTLE_SECONDS="0",  # up to Cargo's now: compared with the truth at once
            **settings,
        )
        command = [*cargo_elt(), *args, "--base-url", self.emulator.base_url, "--duckdb-path", self.database]
        return subprocess.run(command, check=False, env=env, cwd=self.root, capture_output=True, text=True, timeout=300)

    def served(self) -> list[str]:
        """The SQL the emulator served since the last call (and forget it)."""
        queries = [str(q["sql"]) for q in self.admin("GET", "/_emulator/queries")["queries"]]
        self.admin("DELETE", "/_emulator/queries")
        return queries

    def updated_after(self, table: str, instant: Any) -> int:
        """Rows of the truth updated after ``instant``."""
        return sum(
            1 for update, _, _ in self.truth_rows(table).values() if update and parse_timestamp(update) > instant
        )


def test_backfill_over_workers_equals_the_truth_then_syncs_read_only_what_is_new(
    live_emulator: Any, tmp_path: Path
) -> None:
    box = Warehouse(tmp_path, live_emulator)
    done = box.run("backfill", "--since", START, "--workers", "2", "--chunks", "3", "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    chunks = report["plan"]["chunks"]
    assert len(chunks) == 3 and chunks[0]["since"].startswith(START)
    assert [c["until"] for c in chunks[:-1]] == [c["since"] for c in chunks[1:]], "contiguous chunks"
    assert parse_timestamp(chunks[-1]["until"]) == FIXED_NOW, "until: Cargo's clock minus settle (0 here)"
    assert sorted(c["index"] for c in report["chunks"]) == [0, 1, 2]
    box.assert_equals_truth()

    with box.db() as con:  # every chunk loaded once, through a pipeline of its own
        loads = dict(con.execute("SELECT pipeline_name, count(*) FROM cargo._dlt_pipeline_state GROUP BY 1").fetchall())
        schemas = {r[0] for r in con.execute("SELECT DISTINCT table_schema FROM information_schema.tables").fetchall()}
    assert {name: n for name, n in loads.items() if name != "cargo"} == {f"cargo_backfill_00{i}": 1 for i in range(3)}
    assert schemas == {"cargo"}, "fact files merge in place, as cargo-elt sync loads them: no staging dataset left"
    state = box.pipeline().state["sources"]["cargo"]["resources"]
    for table in FACT_TABLES:
        assert parse_timestamp(state[table]["frontier"]) == FIXED_NOW, table
        assert parse_timestamp(state[table]["max_updated"]) == FIXED_NOW, table

    box.served()
    moved = box.admin("POST", "/_emulator/advance", json={"seconds": 3600})
    assert sum(moved["new_rows"].values()) > 0 and sum(moved["changed_rows"].values()) > 0
    threshold = FIXED_NOW - DEFAULT_OVERLAP
    synced = box.run("sync", "--tables", ",".join(FACT_TABLES), "--json")
    assert synced.returncode == 0, synced.stderr[-3000:]
    tables = json.loads(synced.stdout)["tables"]
    # not a second backfill: every data query filters on the update column, from the handed-over state
    reads = [q for q in box.served() if not is_histogram_query(q) and "LIMIT" in q]
    assert reads and all(
        f"{UPDATE_COLUMNS[t]} > {sql_timestamp(threshold)}" in q
        for q in reads
        for t in FACT_TABLES
        if f"FROM {t} " in q
    ), reads
    for table in UNBOUNDED:  # what is new, and what changed since the backfill began: no more, no less
        assert tables[table]["rows"] == box.updated_after(table, threshold), table
    assert 0 < tables["spans"]["rows"] <= box.updated_after("spans", threshold)
    box.assert_equals_truth()

    quiet = box.run("sync", "--tables", ",".join(FACT_TABLES), "--json")
    assert quiet.returncode == 0, quiet.stderr[-3000:]
    assert {t: v["rows"] for t, v in json.loads(quiet.stdout)["tables"].items()} == dict.fromkeys(FACT_TABLES, 0)


def test_rows_changed_while_chunks_load_are_read_again_by_the_next_sync(live_emulator: Any, tmp_path: Path) -> None:
    """The handover's point: a chunk loaded before Cargo's clock moved holds stale rows; the next sync mends them."""
    import dlt

    from cargo_elt.pipelines.backfill import LoadTarget, check_chunks_loaded, plan_backfill, run_chunk, run_handover
    from cargo_elt.source.client import CargoClient

    box = Sandbox(tmp_path, live_emulator, name="handover")
    target = LoadTarget(
        token=box.token,
        base_url=live_emulator.base_url,
        tables=tuple(FACT_TABLES),
        destination=dlt.destinations.duckdb(box.database),
        dataset="cargo",
        pipeline_name=box.name,
        pipelines_dir=box.pipelines_dir,
        chunk_pipelines_dir=str(tmp_path / "chunks"),
        source_args={"start_date": START, "settle_seconds": 0},
    )
    with CargoClient(box.token, base_url=live_emulator.base_url) as client:
        plan = plan_backfill(
            client,
            tables=FACT_TABLES,
            since=datetime(2026, 1, 1, tzinfo=UTC),
            until=None,
            started_at=FIXED_NOW,
            settle=timedelta(0),
            chunks=3,
        )
    assert len(plan.chunks) == 3
    run_handover(plan, target, hand_over=False)
    results = [run_chunk(plan.chunks[-1], target)]  # the newest chunk: most of what the clock's move changes
    moved = box.admin("POST", "/_emulator/advance", json={"seconds": 3600})
    assert sum(moved["changed_rows"].values()) > 0
    results += [run_chunk(chunk, target) for chunk in plan.chunks[:-1]]
    check_chunks_loaded(plan, results)
    run_handover(plan, target, hand_over=True)

    with pytest.raises(AssertionError, match=r"rows differ|missing"):
        box.assert_equals_truth()  # stale rows from the first chunk, new rows after `until`
    stats = box.sync()  # the incremental sync on the handed-over state
    assert stats["runs"].rows > 0
    box.assert_equals_truth()


def test_bad_input_exits_2_and_writes_nothing(live_emulator: Any, tmp_path: Path) -> None:
    box = Warehouse(tmp_path, live_emulator)
    cases = {
        ("--since", START, "--workers", "0"): "--workers 0",
        ("--since", START, "--chunks", "0"): "--chunks 0",
        ("--since", START, "--tables", "runs,run_outputs"): "the exports and the catalogue load with the first",
        ("--since", "2027-01-01"): "is in the future: Cargo's clock reads",
        ("--since", START, "--until", "2025-12-01"): "must be after --since",
    }
    for args, expected in cases.items():
        result = box.run("backfill", *args)
        assert result.returncode == 2, (args, result.stderr[-2000:])
        assert expected in result.stderr, (args, result.stderr[-2000:])
    assert not Path(box.database).exists()
    assert not (tmp_path / "dlt" / "pipelines" / "cargo").exists()


def test_a_failing_chunk_fails_the_backfill_and_hands_nothing_over(live_emulator: Any, tmp_path: Path) -> None:
    """Cargo stops showing records.updated_at after planning: every chunk fails reading records (exit 1,
    the error names the table), and no incremental state is written."""
    box = Warehouse(tmp_path, live_emulator)
    box.admin(
        "POST",
        "/_emulator/schema",
        json={"action": "rename", "table": "records", "column": "updated_at", "to": "modified_at"},
    )
    failed = box.run("backfill", "--since", START, "--workers", "2", "--chunks", "2")
    assert failed.returncode == 1, failed.stderr[-3000:]
    error = failed.stderr.strip().splitlines()[-1]
    assert error.startswith("error: the backfill failed: chunk ") and "updated_at" in error, error
    assert "the incremental state is unchanged" in error
    resources = box.pipeline().state.get("sources", {}).get("cargo", {}).get("resources", {})
    assert not any("frontier" in state for state in resources.values()), resources
