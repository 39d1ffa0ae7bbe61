"""``cargo-elt status`` without a warehouse: durations, which load stands for a table, lag and staleness,
and the table selection (the end-to-end test reads a real one: tests/e2e/test_status.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cargo_elt.pipelines.status import (
    StatusReport,
    StoredPipeline,
    format_lag,
    parse_duration,
    select_tables,
    table_status,
)
from cargo_elt.pipelines.sync import UserInputError

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("2h", 7200), ("90m", 5400), ("1h30m", 5400), ("1d", 86400), ("45s", 45), ("600", 600), (" 2H ", 7200)],
)
def test_max_lag_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "soon", "2 hours", "-1h", "0", "0m", "h", "1h-", "1w"])
def test_a_bad_max_lag_is_refused_naming_the_option(text: str) -> None:
    with pytest.raises(UserInputError, match=r"--max-lag .* is not a positive duration: use e\.g\. 2h"):
        parse_duration(text)


def test_lags_read_at_a_glance() -> None:
    assert [format_lag(s) for s in (None, 7.9, 252, 7500, 3 * 86400 + 4 * 3600 + 59)] == [
        "-",
        "7s",
        "4m 12s",
        "2h 05m",
        "3d 4h",
    ]
    assert format_lag(-30) == "-30s"  # a clock behind Cargo's: shown, not hidden


def stored(
    resources: dict[str, Any],
    rows: dict[str, int | None],
    runs: dict[str, tuple[datetime, str | None]] | None = None,
    state_load: tuple[datetime, str | None] | None = None,
    schema_tables: list[str] | None = None,
) -> StoredPipeline:
    state = {"default_schema_name": "cargo", "sources": {"cargo": {"resources": resources}}}
    return StoredPipeline(state, schema_tables or list(rows), rows, runs or {}, state_load)


FRONTIER = NOW - timedelta(hours=3)
SYNCED = NOW - timedelta(minutes=10)


def test_lag_is_cargos_clock_minus_the_frontier_and_stale_past_max_lag() -> None:
    pipeline = stored({"runs": {"frontier": FRONTIER.isoformat()}}, {"runs": 10}, {"runs": (SYNCED, "1.2")})
    fresh = table_status("runs", pipeline, NOW, timedelta(hours=4))
    assert fresh.lag_seconds == 3 * 3600
    assert fresh.stale is False
    assert (fresh.last_load_at, fresh.last_load_id, fresh.rows) == (SYNCED, "1.2", 10)
    assert table_status("runs", pipeline, NOW, timedelta(hours=2)).stale is True
    assert table_status("runs", pipeline, NOW, None).stale is None


def test_a_table_read_whole_lags_from_its_last_recorded_sync() -> None:
    pipeline = stored(
        {"workflows": {"rows": {}}, "runs": {"frontier": FRONTIER.isoformat()}},
        {"workflows": 3, "runs": 1, "plays": 2},
        runs={"workflows": (SYNCED, "1.2")},
        state_load=(NOW - timedelta(minutes=1), "9.9"),
    )
    workflows = table_status("workflows", pipeline, NOW, timedelta(hours=1))
    assert (workflows.frontier, workflows.as_of, workflows.lag_seconds) == (None, SYNCED, 600)
    assert workflows.stale is False
    # recorded syncs exist but none loaded plays: its last load is unknown, so it cannot be called fresh
    plays = table_status("plays", pipeline, NOW, timedelta(hours=1))
    assert (plays.last_load_at, plays.lag_seconds, plays.stale) == (None, None, True)
    # a fact table keeps its frontier's lag without a recorded sync
    assert table_status("runs", pipeline, NOW, timedelta(hours=4)).lag_seconds == 3 * 3600


def test_without_recorded_syncs_the_newest_state_load_stands_for_each_table() -> None:
    """A pipeline run by the Airflow DAG or a script: no ``_cargo_sync_runs`` rows."""
    pipeline = stored({"workflows": {"rows": {}}}, {"workflows": 3}, state_load=(SYNCED, "7.7"))
    workflows = table_status("workflows", pipeline, NOW, timedelta(hours=1))
    assert (workflows.last_load_at, workflows.last_load_id, workflows.lag_seconds) == (SYNCED, "7.7", 600)
    never = table_status("batches", pipeline, NOW, timedelta(hours=1))
    assert (never.rows, never.last_load_at, never.stale) == (None, None, True)


def test_tables_are_selected_by_name_and_segment_records_means_every_segment_export() -> None:
    pipeline = stored(
        {"runs": {}, "segment_us": {"last_value": "2026-10-01T00:00:00Z"}},
        {"runs": 1, "segment_us": 4, "segment_all": 9, "workflows": 2},
    )
    assert pipeline.known_tables == ["runs", "workflows", "segment_all", "segment_us"]
    assert select_tables(None, pipeline) == pipeline.known_tables
    assert select_tables(["spans", "segment_records", "runs", "spans"], pipeline) == [
        "spans",
        "segment_all",
        "segment_us",
        "runs",
    ]
    with pytest.raises(UserInputError, match=r"unknown table 'run' in --tables: choose from runs, batches"):
        select_tables(["run"], pipeline)
    with pytest.raises(UserInputError, match="--tables names no table"):
        select_tables([" ", ""], pipeline)


def test_the_report_lists_the_stale_tables_in_both_forms() -> None:
    pipeline = stored(
        {"runs": {"frontier": FRONTIER.isoformat()}, "spans": {"frontier": SYNCED.isoformat()}},
        {"runs": 1_234, "spans": 5},
        {"runs": (SYNCED, "1.2"), "spans": (SYNCED, "1.2")},
    )
    limit = timedelta(hours=1)
    report = StatusReport(
        "cargo", "cargo", "duckdb", NOW, limit, [table_status(t, pipeline, NOW, limit) for t in ("runs", "spans")]
    )
    assert report.stale == ["runs"]
    document = report.document()
    assert document["stale"] == ["runs"]
    assert document["server_now"] == "2026-11-01T12:00:00Z"
    assert document["max_lag_seconds"] == 3600
    assert document["tables"]["runs"]["lag_seconds"] == 3 * 3600
    assert document["tables"]["spans"]["as_of"] == "2026-11-01T11:50:00Z"
    lines = report.text().splitlines()
    assert lines[0] == "pipeline cargo, dataset cargo (duckdb); Cargo's clock 2026-11-01 12:00:00Z"
    assert lines[2].split() == [
        "runs",
        "2026-11-01",
        "09:00:00Z",
        "2026-11-01",
        "11:50:00Z",
        "1,234",
        "3h",
        "00m",
        "STALE",
    ]
    assert lines[3].endswith("10m 00s")
    assert lines[-1] == "stale (lag over 1h 00m): runs"
