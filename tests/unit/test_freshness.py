"""How far each table is read, from the state its resource writes (``cargo_elt.source.freshness``).

Where a resource writes its state through a function (the facts' ``BandTracker.commit``, the daily
metrics' ``commit``), the state here is written by that function, so renaming a state key breaks
this test rather than ``cargo-elt status``.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pyarrow as pa

from cargo_elt.source.freshness import Freshness, table_freshness
from cargo_elt.source.incremental import BandTracker
from cargo_elt.source.metrics_daily import commit, plan_days
from cargo_elt.source.specs import TABLE_SPECS

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def test_a_fact_table_is_as_fresh_as_its_frontier() -> None:
    spec = TABLE_SPECS["runs"]
    state: dict[str, Any] = {}
    tracker = BandTracker(spec, state, timedelta(minutes=5))
    frontier = NOW - timedelta(minutes=2)
    tracker.commit(state, frontier)
    fresh = table_freshness("runs", state)
    assert fresh.frontier == state["frontier"] == frontier.isoformat()
    assert fresh.as_of == frontier
    assert fresh.note is None


def test_batch_outputs_and_batch_failures_use_their_own_keys() -> None:
    until = NOW - timedelta(minutes=2)
    assert table_freshness("batch_outputs", {"frontier": until.isoformat()}).as_of == until
    failures = table_freshness("batch_failures", {"changed_since": until.isoformat()})
    assert failures == Freshness(until.isoformat(), until)


def test_run_outputs_report_the_newest_pair_and_name_the_pairs_held_back() -> None:
    until = NOW - timedelta(minutes=2)
    held = datetime(2026, 10, 30, 8, 15, 0, tzinfo=UTC)
    state = {"frontiers": {"wf-a:end": until.isoformat(), "wf-b:end": held.isoformat(), "wf-c:x": until.isoformat()}}
    fresh = table_freshness("run_outputs", state)
    assert fresh.frontier == until.isoformat()
    assert fresh.as_of == until
    assert fresh.note == (
        "1 of 3 (workflow, output node) pairs wait for unfinished runs, the oldest created 2026-10-30 08:15:00Z"
    )
    assert table_freshness("run_outputs", {"frontiers": {"wf-a:end": until.isoformat()}}).note is None


def test_run_metrics_daily_is_as_fresh_as_the_server_time_it_last_checked() -> None:
    state: dict[str, Any] = {}
    plan = plan_days(state, date(2026, 10, 1), NOW, timedelta(minutes=2), timedelta(minutes=5))
    commit(state, plan)
    fresh = table_freshness("run_metrics_daily", state)
    assert fresh.frontier == "2026-11-01"  # the first day not closed: today's
    assert fresh.as_of == NOW
    assert fresh.note == "days from 2026-11-01 are re-read until closed"


def test_tables_read_whole_have_no_frontier() -> None:
    catalogue_state = {"rows": {"a": "{}"}, "removed": {}}
    assert table_freshness("workflows", catalogue_state) == Freshness()
    assert table_freshness("run_metrics", None) == Freshness()
    assert table_freshness("runs", {}) == Freshness()


def test_a_merged_segment_export_shows_its_last_value_but_is_measured_by_its_last_load() -> None:
    state = {"fingerprint": "f", "last_value": "2026-10-31T09:00:00Z", "filter_sent": {}}
    fresh = table_freshness("segment_us_customers", state)
    assert fresh.frontier == "2026-10-31T09:00:00Z"
    assert fresh.as_of is None
    assert table_freshness("segment_all", {}) == Freshness()


def test_a_fact_frontier_survives_a_band_of_rows() -> None:
    """The band (hashes) next to the frontier is not mistaken for it."""
    spec = TABLE_SPECS["spans"]
    state: dict[str, Any] = {}
    tracker = BandTracker(spec, state, timedelta(minutes=5))
    rows = pa.table(
        {
            "run_uuid": ["r1"],
            "node_uuid": ["n1"],
            "execution_index": pa.array([0], pa.int64()),
            "execution_updated_at": pa.array([NOW - timedelta(minutes=3)], pa.timestamp("ms", tz="UTC")),
        }
    )
    tracker.admit(rows)
    tracker.commit(state, NOW - timedelta(minutes=2))
    assert state["band"]
    assert table_freshness("spans", state).as_of == NOW - timedelta(minutes=2)


def test_a_read_stopped_between_steps_says_where_it_is_and_what_comes_next() -> None:
    """A backfill in steps lags by design until its last step: ``cargo-elt status`` says so, from the state
    the fact resource writes (``ReadProgress.to_state`` under ``READ_KEY``, chunks under ``CHUNKS_KEY``)."""
    from cargo_elt.source.facts import CHUNKS_KEY, READ_KEY
    from cargo_elt.source.steps import ReadProgress

    at, until = NOW - timedelta(days=40), NOW - timedelta(minutes=5)
    first = ReadProgress(until=until, at=at, first_sync=True)
    state: dict[str, Any] = {READ_KEY: first.to_state(), "frontier": at.isoformat()}
    fresh = table_freshness("spans", state)
    assert fresh.as_of == at
    assert fresh.note == (
        "a first sync in steps has read to 2026-09-22 12:00:00Z; the next sync reads on to 2026-11-01 11:55:00Z"
    )
    later = ReadProgress(until=until, at=at, updated_after=at)
    assert table_freshness("runs", {READ_KEY: later.to_state()}).note == (
        "a sync in steps has read to 2026-09-22 12:00:00Z; the next sync reads on to 2026-11-01 11:55:00Z"
    )
    chunks = {CHUNKS_KEY: {"a": first.to_state(), "b": first.to_state()}}
    assert table_freshness("records", chunks).note == (
        "2 --since/--until chunk(s) stopped between steps; the same read again finishes them"
    )
    assert table_freshness("batch_outputs", {"frontier": until.isoformat()}).note is None
