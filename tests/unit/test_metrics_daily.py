"""Which days ``run_metrics_daily`` reads, and how it turns answers into rows (no server needed)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from cargo_elt.source.errors import ScanCapExceeded
from cargo_elt.source.extract import TableStats
from cargo_elt.source.metrics_daily import (
    ScopeDay,
    commit,
    day_bounds,
    metric_rows,
    plan_days,
    probe,
    scope_key,
)
from cargo_elt.source.sqltext import parse_timestamp

SETTLE = timedelta(minutes=2)
OVERLAP = timedelta(minutes=5)
START = date(2026, 10, 1)
WF = "6f1c0000-0000-4000-8000-000000000001"
REL = "6f1c0000-0000-4000-8000-000000000002"


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_first_sync_reads_every_day_from_the_start_and_keeps_today_open() -> None:
    plan = plan_days({}, START, at("2026-11-01T12:00:00"), SETTLE, OVERLAP)
    assert (plan.open_from, plan.today, plan.recheck_from) == (START, date(2026, 11, 1), START)
    assert plan.changed_since is None  # nothing loaded yet: no "changed since" filter
    assert plan.next_frontier == date(2026, 11, 1)  # today is still open: read again next time


def test_a_day_closes_only_once_the_settle_time_has_passed() -> None:
    state: dict[str, Any] = {}
    commit(state, plan_days(state, START, at("2026-11-01T23:00:00"), SETTLE, OVERLAP))
    just_after_midnight = plan_days(state, START, at("2026-11-02T00:01:00"), SETTLE, OVERLAP)
    assert just_after_midnight.open_from == date(2026, 11, 1)  # yesterday is read again ...
    assert just_after_midnight.next_frontier == date(2026, 11, 1)  # ... and stays open: settle not over
    after_settle = plan_days(state, START, at("2026-11-02T00:03:00"), SETTLE, OVERLAP)
    assert after_settle.open_from == date(2026, 11, 1)  # its final read
    assert after_settle.next_frontier == date(2026, 11, 2)
    commit(state, after_settle)
    later = plan_days(state, START, at("2026-11-02T09:00:00"), SETTLE, OVERLAP)
    assert later.open_from == date(2026, 11, 2)
    assert later.changed_since == at("2026-11-02T00:03:00") - OVERLAP  # closed days: only those that changed


def test_a_server_clock_that_went_back_never_skips_a_day() -> None:
    state = {"frontier": "2026-11-05", "checked_at": at("2026-11-05T10:00:00").isoformat()}
    plan = plan_days(state, START, at("2026-11-03T10:00:00"), SETTLE, OVERLAP)
    assert plan.open_from == date(2026, 11, 3) and plan.next_frontier == date(2026, 11, 3)


def test_day_bounds_are_half_open_utc_days() -> None:
    assert day_bounds(date(2026, 11, 1)) == ("2026-11-01T00:00:00.000Z", "2026-11-02T00:00:00.000Z")


def test_rows_of_an_answer_and_the_tombstone_of_an_empty_one() -> None:
    scope = ScopeDay(date(2026, 11, 1), WF, REL)
    body = {
        "runMetrics": [
            {"nodeUuid": "n1", "totalExecutionsCount": 3, "errorExecutionsCount": 1, "creditsUsedCount": 1.5},
            {"totalExecutionsCount": 9},  # no node: logged and skipped
        ]
    }
    rows = metric_rows(body, scope)
    assert len(rows) == 1
    assert rows[0]["_scope_key"] == scope_key(WF, REL, date(2026, 11, 1)) == f"{WF}/{REL}/2026-11-01"
    assert (rows[0]["node_uuid"], rows[0]["total_executions_count"], rows[0]["error_executions_count"]) == ("n1", 3, 1)
    assert rows[0]["skipped_executions_count"] is None  # a counter the server leaves out loads as null
    tombstone = metric_rows({"runMetrics": []}, ScopeDay(date(2026, 11, 1), WF))
    assert tombstone == [
        {
            "_scope_key": f"{WF}/*/2026-11-01",
            "workflow_uuid": WF,
            "release_uuid": None,
            "day": date(2026, 11, 1),
            "node_uuid": "",
            "_deleted": True,
        }
    ]


class CappedServer:
    """Stands in for Cargo's scan cap, which tiny test data cannot reach: a probe over more than
    ``max_days`` days is refused with code 158; a narrower one answers one row per day in range."""

    def __init__(self, max_days: int) -> None:
        self.max_days = max_days
        self.queries: list[str] = []

    def query(self, sql: str) -> list[dict[str, Any]]:
        self.queries.append(sql)
        start, end = (parse_timestamp(t.split("'")[1]) for t in sql.split("toDateTime64(")[1:3])
        if end - start > timedelta(days=self.max_days):
            raise ScanCapExceeded(400, 158, "Code: 158. DB::Exception: Limit for rows (10000000) exceeded", sql)
        days = {(start + timedelta(days=n)).date() for n in range((end - start).days)}
        return [{"day": d.isoformat(), "workflow_uuid": WF, "release_uuid": REL} for d in sorted(days)]


def test_a_probe_over_the_scan_cap_is_halved_until_it_fits() -> None:
    server = CappedServer(max_days=10)
    stats = TableStats("run_metrics_daily")
    start = datetime(2026, 10, 1, tzinfo=UTC)
    found = probe(server, start, start + timedelta(days=32), True, None, None, stats)  # type: ignore[arg-type]
    days = {s.day for s in found}
    assert days == {(start + timedelta(days=n)).date() for n in range(32)}  # every day, none lost to the cap
    assert {s.release_uuid for s in found} == {None, REL}  # the workflow's own scope and the release's
    assert stats.splits > 0 and stats.planning_queries == len(server.queries)


def test_a_probe_that_cannot_be_narrowed_further_fails() -> None:
    server = CappedServer(max_days=0)
    start = datetime(2026, 10, 1, tzinfo=UTC)
    with pytest.raises(ScanCapExceeded):
        probe(server, start, start + timedelta(minutes=1), False, None, None, TableStats("t"))  # type: ignore[arg-type]
