"""``_cargo_sync_runs`` through dlt's real Snowflake destination into fakesnow, and the queries
``cargo-elt status`` makes on it there (its DuckDB path is tested end to end in test_status.py).

The fakesnow differences dlt trips on are bridged in ``tests/snowflake_shim.py`` (and only there).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import dlt
import pytest

from cargo_elt.pipelines.status import _count, _last_syncs
from cargo_elt.pipelines.sync import TableSummary
from cargo_elt.pipelines.syncruns import SYNC_RUNS_PIPELINE_SUFFIX, SYNC_RUNS_TABLE, SyncReport, record_sync_run

pytest.importorskip("fakesnow", reason="fakesnow comes with the `dev` extra")

pytestmark = [
    # fakesnow's cursor fetches DB-API results through arrow and warns about the copy it makes
    pytest.mark.filterwarnings("ignore:Arrow output on a DB-API result makes an extra copy:UserWarning"),
]

STARTED = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def sync(number: int, status: str, tables: dict[str, int]) -> SyncReport:
    started = STARTED + timedelta(hours=number)
    return SyncReport(
        sync_id=f"5b0c8e6e-0000-4000-8000-00000000000{number}",
        pipeline_name="cargo",
        destination="snowflake",
        dataset="cargo",
        mode="incremental",
        status=status,
        started_at=started,
        finished_at=started + timedelta(seconds=30),
        seconds=30.0,
        load_ids=[f"179000000{number}.5"],
        summaries=[TableSummary(name, rows, 2, 0, 1.5) for name, rows in tables.items()],
        frontiers={"runs": (started - timedelta(minutes=2)).isoformat()},
        error="the sync failed reading runs: ***" if status == "failed" else None,
    )


def test_sync_runs_load_into_snowflake_and_status_finds_each_tables_last_good_sync(tmp_path: Path) -> None:
    from tests.snowflake_shim import fakesnow_destination

    pipelines = str(tmp_path / "pipelines")
    history = [
        sync(1, "ok", {"runs": 10, "workflows": 3}),
        sync(2, "ok", {"workflows": 3}),
        sync(3, "failed", {"runs": 0}),
    ]
    with fakesnow_destination(tmp_path / "fakesnow") as destination:
        for report in history:
            assert record_sync_run(report, destination, pipelines, str), report.sync_id
        reader = dlt.pipeline(
            pipeline_name="cargo" + SYNC_RUNS_PIPELINE_SUFFIX,
            destination=destination,
            dataset_name="cargo",
            pipelines_dir=pipelines,
        )
        with reader.sql_client() as sql:
            last = _last_syncs(sql, "cargo")
            count = _count(sql, SYNC_RUNS_TABLE)
            missing = _count(sql, "never_loaded")
            failed = sql.execute_sql(
                f"SELECT table_name, rows, error FROM {sql.make_qualified_table_name(SYNC_RUNS_TABLE)} "
                "WHERE status = 'failed'"
            )
    assert count == 4
    assert missing is None
    assert [tuple(r) for r in failed] == [("runs", 0, "the sync failed reading runs: ***")]
    # the failed sync 3 is no load of runs: sync 1 was its last good one; workflows' is sync 2
    assert last == {
        "runs": (history[0].finished_at, "1790000001.5"),
        "workflows": (history[1].finished_at, "1790000002.5"),
    }
