"""The state a parallel backfill hands over to the incremental syncs (``sources/cargo/handover.py``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cargo_elt.source.errors import CargoConfigurationError
from cargo_elt.source.handover import Handover, handover_state
from cargo_elt.source.incremental import IncrementalSettings, plan_read
from cargo_elt.source.planner import QueryWindow
from cargo_elt.source.sqltext import parse_timestamp

SINCE = datetime(2026, 1, 1, tzinfo=UTC)
STARTED = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)  # Cargo's clock when the backfill was planned
SETTLE = timedelta(minutes=2)
OVERLAP = timedelta(minutes=5)
UNTIL = STARTED - SETTLE  # the default end: Cargo's now minus settle


def handed_over(state: dict[str, Any], until: datetime = UNTIL, since: datetime = SINCE) -> dict[str, Any]:
    handover_state(state, QueryWindow(since, until), STARTED, OVERLAP)
    return state


def test_a_first_backfill_hands_over_its_end_and_its_start_instant() -> None:
    state = handed_over({})
    assert parse_timestamp(state["frontier"]) == UNTIL
    assert parse_timestamp(state["max_updated"]) == STARTED
    assert state["band"] == []


def test_the_next_sync_reads_new_rows_and_everything_changed_since_the_backfill_began() -> None:
    state = handed_over({})
    later = STARTED + timedelta(hours=1)
    settings = IncrementalSettings(SINCE, timedelta(days=7), OVERLAP, SETTLE)
    spans = plan_read(dict(state), settings, later - SETTLE)
    assert spans.start == later - SETTLE - timedelta(days=7) and spans.end == later - SETTLE
    assert spans.updated_after is not None and spans.updated_after.value == STARTED - OVERLAP
    runs = plan_read(dict(state), settings, later - SETTLE, bounded_lookback=False)
    assert runs.start == SINCE, "runs, batches, records re-read changes back to start_date"
    assert not runs.first_sync


def test_an_until_in_the_past_keeps_rows_created_after_it() -> None:
    until = SINCE + timedelta(days=10)
    state = handed_over({}, until=until)
    assert parse_timestamp(state["frontier"]) == until
    # rows created at or after `until` (never read by a chunk) pass the next sync's update filter
    assert parse_timestamp(state["max_updated"]) - OVERLAP < until


def test_an_existing_state_keeps_the_safer_of_both() -> None:
    old_max = STARTED - timedelta(hours=2)
    ahead = {"frontier": (STARTED - timedelta(hours=1)).isoformat(), "max_updated": old_max.isoformat(), "band": ["a"]}
    behind_backfill = handed_over(dict(ahead), until=SINCE + timedelta(days=1))
    assert behind_backfill["frontier"] == ahead["frontier"], "a backfill behind the frontier leaves it"
    assert parse_timestamp(behind_backfill["max_updated"]) == old_max
    assert behind_backfill["band"] == []

    extended = handed_over({"frontier": (SINCE + timedelta(days=3)).isoformat(), "max_updated": STARTED.isoformat()})
    assert parse_timestamp(extended["frontier"]) == UNTIL, "a contiguous backfill moves the frontier"

    gap = {"frontier": (SINCE - timedelta(days=3)).isoformat(), "max_updated": (SINCE - timedelta(days=3)).isoformat()}
    after_gap = handed_over(dict(gap))
    assert after_gap["frontier"] == gap["frontier"], "a gap before the backfill keeps the old frontier"
    assert after_gap["max_updated"] == gap["max_updated"]


def test_other_keys_of_the_state_are_kept() -> None:
    state = handed_over({"lookback_edge": "2026-02-20T00:00:00+00:00", "server_now": "2026-02-28T00:00:00+00:00"})
    assert state["lookback_edge"] == "2026-02-20T00:00:00+00:00"


def test_handover_documents_parse() -> None:
    assert Handover.parse({"started_at": "2026-03-01T12:00:00Z"}) == Handover(STARTED)
    assert Handover.parse({"started_at": None}) == Handover(None)
    assert Handover.parse(Handover(STARTED)) == Handover(STARTED)
    with pytest.raises(CargoConfigurationError, match="handover"):
        Handover.parse("yes")
    with pytest.raises(CargoConfigurationError, match="handover"):
        Handover.parse({"started": "2026-03-01"})
