"""Late rows, runs stuck pending past max_lookback, a burst of spans in one millisecond, schema drift
and a window the server keeps timing out on: each against the emulator over HTTP into DuckDB."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from dlt.pipeline.exceptions import PipelineStepFailed

from cargo_elt.source.errors import WindowTooNarrow
from tests.conftest import FIXED_NOW
from tests.e2e.support import Sandbox


def _emulator(seed: int) -> Any:
    from cargo_elt.emulator.server import EmulatorOptions, running_emulator

    return running_emulator(EmulatorOptions(port=0, seed=seed, scale="tiny", workspaces=1, admin=True, now=FIXED_NOW))


@pytest.fixture()
def fresh_emulator() -> Iterator[Any]:
    with _emulator(23) as emulator:
        yield emulator


def _virtual_now(emulator: Any) -> datetime:
    text = emulator.state.store.scalar(
        f"SELECT value FROM {emulator.state.store.database}.meta FINAL WHERE key = 'now'"
    )
    return datetime.fromisoformat(str(text).replace("Z", "+00:00")).astimezone(UTC)


# -- late rows ---------------------------------------------------------------------------------------


def test_late_rows_within_the_overlap_are_loaded_and_later_ones_need_a_larger_overlap(
    fresh_emulator: Any, tmp_path: Path
) -> None:
    box = Sandbox(tmp_path, fresh_emulator, name="late")
    box.sync(tables=["runs", "spans"])
    # visible only now, timed 3 minutes back: inside the default 5-minute overlap
    assert box.admin("POST", "/_emulator/late", json={"table": "runs", "rows": 7, "ageSeconds": 180})["inserted"] == 7
    assert box.admin("POST", "/_emulator/late", json={"table": "spans", "rows": 9, "ageSeconds": 180})["inserted"] == 9
    stats = box.sync(tables=["runs", "spans"])
    box.assert_equals_truth(("runs", "spans"))
    assert stats["runs"].rows >= 7 and stats["spans"].rows >= 9

    # 30 minutes of lag is more than the overlap: documented as missed with the default setting ...
    box.admin("POST", "/_emulator/late", json={"table": "runs", "rows": 5, "ageSeconds": 1800, "seed": 1})
    box.sync(tables=["runs"])
    missing = box.truth_rows("runs").keys() - box.loaded_rows("runs").keys()
    assert len(missing) == 5
    # ... and loaded by a sync whose overlap covers the lag
    box.sync(tables=["runs"], overlap_seconds=3600)
    box.assert_equals_truth(("runs",))


# -- stuck pending past max_lookback -------------------------------------------------------------------


def _stuck_span(
    emulator: Any, started: datetime, updated_at: datetime, status: str, version: int
) -> tuple[str, str, str]:
    store = emulator.state.store
    run_uuid, node_uuid = "00000000-0000-4000-8000-0000000057c4", "00000000-0000-4000-8000-0000000057c5"
    at = started.strftime("%Y-%m-%d %H:%M:%S.000")
    updated = updated_at.strftime("%Y-%m-%d %H:%M:%S.000")
    store.execute(
        f"INSERT INTO {store.table('spans')} SELECT * REPLACE (toUUID('{run_uuid}') AS run_uuid, "
        f"toUUID('{node_uuid}') AS node_uuid, toUInt32(0) AS execution_index, '{status}' AS execution_status, "
        f"toDateTime64('{at}', 3, 'UTC') AS execution_started_at, "
        f"toDateTime64('{updated}', 3, 'UTC') AS execution_updated_at, "
        f"toUInt64({version}) AS _version) FROM (SELECT * FROM {store.table('spans')} FINAL LIMIT 1)"
    )
    return (run_uuid, node_uuid, "0")


def test_a_span_pending_past_max_lookback_is_warned_about_not_silently_missed(
    fresh_emulator: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    box = Sandbox(tmp_path, fresh_emulator, name="stuck")
    now = _virtual_now(fresh_emulator)
    key = _stuck_span(fresh_emulator, now - timedelta(hours=1), now - timedelta(hours=1), "pending", 1)
    box.sync(tables=["spans"], max_lookback_days=1)
    assert box.loaded_rows("spans")[key][1] == "pending"

    # the lookback (measured on Cargo's clock, the emulator's now) now begins 30 minutes after the span
    # started: it leaves the window in this sync
    lookback = timedelta(minutes=30) / timedelta(days=1)
    caplog.set_level(logging.WARNING, logger="cargo_elt.source")
    box.sync(tables=["spans"], max_lookback_days=lookback)
    warnings = [r.getMessage() for r in caplog.records if "max_lookback_days" in r.getMessage()]
    assert warnings and "spans" in warnings[0] and "still not terminal" in warnings[0], warnings

    # it finishes later: outside the lookback, the update is not read (the documented cost) ...
    _stuck_span(fresh_emulator, now - timedelta(hours=1), now - timedelta(milliseconds=1), "success", 2)
    box.sync(tables=["spans"], max_lookback_days=lookback)
    truth, loaded = box.truth_rows("spans"), box.loaded_rows("spans")
    assert [k for k in truth if truth[k] != loaded.get(k)] == [key]
    # ... until a sync looks back far enough
    box.sync(tables=["spans"], max_lookback_days=1)
    box.assert_equals_truth(("spans",))


# -- one millisecond holding many spans ----------------------------------------------------------------

SPAN_BURST = 25_000


def test_a_millisecond_holding_25000_spans_is_read_exactly(fresh_emulator: Any, tmp_path: Path) -> None:
    store = fresh_emulator.state.store
    store.execute(
        f"INSERT INTO {store.table('spans')} SELECT s.* REPLACE ("
        "toUUID(concat('00000000-0000-4000-8000-', leftPad(hex(number), 12, '0'))) AS run_uuid, "
        "toUInt32(number % 3) AS execution_index, 'success' AS execution_status, "
        "toDateTime64('2026-10-15 09:30:00.123', 3, 'UTC') AS execution_started_at, "
        "toDateTime64('2026-10-15 09:30:01.000', 3, 'UTC') AS execution_updated_at, toUInt64(1) AS _version) "
        f"FROM (SELECT * FROM {store.table('spans')} FINAL LIMIT 1) AS s CROSS JOIN numbers({SPAN_BURST}) AS n"
    )
    box = Sandbox(tmp_path, fresh_emulator, name="span_burst")
    stats = box.sync(tables=["spans"])
    box.assert_equals_truth(("spans",))
    rows = stats["spans"].rows
    assert rows > SPAN_BURST
    assert stats["spans"].data_queries <= 1.10 * -(-rows // 10_000) + 2


# -- schema drift ------------------------------------------------------------------------------------


def test_schema_drift_keeps_the_pipeline_running_and_says_what_changed(
    fresh_emulator: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    box = Sandbox(tmp_path, fresh_emulator, name="drift")
    box.sync()
    box.admin("POST", "/_emulator/advance", json={"seconds": 3600})  # new and changed rows for the next sync

    with box.db() as con:
        before = con.execute("SELECT max(updated_at) FROM cargo.runs").fetchone()
    assert before is not None

    def alter(**change: Any) -> None:
        box.admin("POST", "/_emulator/schema", json=change)

    alter(table="runs", action="add", column="priority", type="Nullable(Int32)", fill="toInt32(7)")
    alter(table="runs", action="drop", column="temporal_workflow_id")
    alter(
        table="runs",
        action="modify",
        column="credits_used_count",
        type="String",
        fill="concat(credits_used_count, ' cr')",
    )
    alter(table="batches", action="modify", column="runs_count", type="String")  # still reads as a number
    caplog.set_level(logging.INFO, logger="cargo_elt.source")
    stats = box.sync()
    box.assert_equals_truth()
    said = [(r.levelno, r.getMessage()) for r in caplog.records if r.name.startswith("cargo_elt.source")]
    warnings = "\n".join(message for level, message in said if level >= logging.WARNING)
    for fragment in (
        "runs.priority: the server has a new column",
        "runs.credits_used_count: the server's type is now String",
        "batches.runs_count: the server's type is now String",
        "runs.credits_used_count: the server sent values that do not read as double",
    ):
        assert fragment in warnings, f"no warning {fragment!r} in:\n{warnings}"
    # a column the server lacks is harmless: the table adapts and says so at INFO
    infos = "\n".join(message for level, message in said if level == logging.INFO)
    assert "runs.temporal_workflow_id: the server has no such column" in infos, infos
    assert stats["runs"].rows > 0

    with box.db() as con:
        new = con.execute(
            "SELECT count(*), count(priority), count(temporal_workflow_id), count(credits_used_count), "
            "count(credits_used_count__v_text), min(credits_used_count__v_text LIKE '% cr') "
            "FROM cargo.runs WHERE updated_at > ?",
            [before[0]],
        ).fetchone()
        old = con.execute(
            "SELECT count(*), count(priority), count(temporal_workflow_id) FROM cargo.runs WHERE updated_at <= ?",
            [before[0]],
        ).fetchone()
        priorities = con.execute(
            "SELECT DISTINCT priority FROM cargo.runs WHERE updated_at > ?", [before[0]]
        ).fetchall()
        runs_counts = con.execute("SELECT typeof(runs_count) FROM cargo.batches LIMIT 1").fetchone()
    assert new is not None and old is not None
    rows = new[0]
    assert rows == stats["runs"].rows
    # added: loaded for the rows of this sync; dropped: NULL from now on, older rows keep their values
    assert new[1] == rows and priorities == [(7,)] and new[2] == 0
    assert old[0] > 0 and old[1] == 0 and old[2] == old[0]
    # changed type: the unreadable values went to the variant column, as text
    assert new[3] == 0 and new[4] == rows and new[5] is True
    assert runs_counts == ("BIGINT",)

    caplog.clear()
    box.sync()  # and it keeps running
    box.assert_equals_truth()


def test_a_dropped_key_column_stops_the_sync_with_a_clear_error(fresh_emulator: Any, tmp_path: Path) -> None:
    box = Sandbox(tmp_path, fresh_emulator, name="drift_key")
    box.admin("POST", "/_emulator/schema", json={"table": "runs", "action": "drop", "column": "status"})
    with pytest.raises(PipelineStepFailed, match=r"no longer has column\(s\) \['status'\]"):
        box.sync(tables=["runs"])


# -- a window the server keeps timing out on -----------------------------------------------------------


# every page; or (for histograms) every query starting at start_date: the first page of the whole
# range is refused, so the read is planned, and the histogram's first half keeps being refused
_STARTS_AT_START_DATE = "created_at >= toDateTime64('2026-01-01 00:00:00.000'"


@pytest.mark.parametrize(("match", "what"), [(" LIMIT ", "pages"), (_STARTS_AT_START_DATE, "histograms")])
def test_a_query_that_always_times_out_fails_naming_the_window(
    fresh_emulator: Any, tmp_path: Path, match: str, what: str
) -> None:
    box = Sandbox(tmp_path, fresh_emulator, name=f"timeout_{what}")
    box.admin("DELETE", "/_emulator/queries")
    box.admin("POST", "/_emulator/faults", json={"spec": "timeout=1", "seed": 1, "match": match})
    try:
        with pytest.raises(PipelineStepFailed) as failed:
            box.sync(tables=["runs"])
        timed_out = box.admin("GET", "/_emulator/queries")["faults"].get("timeout", 0)
    finally:
        box.admin("POST", "/_emulator/faults", json={"spec": "", "seed": 0})
    cause = failed.value.__cause__
    while cause is not None and not isinstance(cause, WindowTooNarrow):
        cause = cause.__cause__ or cause.__context__
    assert isinstance(cause, WindowTooNarrow), failed.value
    assert cause.table == "runs"
    assert cause.end - cause.start == timedelta(milliseconds=1)
    message = str(cause)
    assert "runs" in message and "time cap" in message and cause.start.isoformat() in message
    # depth first: about one refused query per halving of the range (2026-01-01 to now in ms: ~35 halvings),
    # times the windows in flight at once (concurrency 4) for pages; bounded, never a loop
    assert 20 <= timed_out <= 4 * 40, timed_out
