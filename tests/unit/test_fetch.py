"""Planning and window fetching loops, against an in-memory table that answers the planner's SQL.

``MemoryRuns`` is a fake engine, not a mock: it holds rows and evaluates the two query shapes the
planner writes (histogram and keyset page) with the literal values parsed back out of the SQL, so a
wrong bound, cursor or ``LIMIT`` in the SQL shows up as missing or repeated rows. Caps are applied
like Cargo's: too many rows in range -> code 158, a ``LIMIT`` above the result cap -> code 396.
The real engine runs the same SQL in the integration tests against the emulator.
"""

from __future__ import annotations

import bisect
import functools
import math
import random
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cargo_elt.source.errors import KeysetStalled, ResultCapExceeded, ScanCapExceeded, query_error
from cargo_elt.source.fetch import fetch_pages, fetch_window, plan_windows, refinement_budget
from cargo_elt.source.pages import RawRows
from cargo_elt.source.planner import QueryWindow, UpdatedAfter, cursor_after
from cargo_elt.source.specs import RUNS

T0 = datetime(2024, 1, 1, tzinfo=UTC)
_TS = r"toDateTime64\('([^']+)', \d, 'UTC'\)"
_PAGE = re.compile(
    rf"WHERE created_at >= {_TS} AND created_at < {_TS}"
    rf"(?: AND created_at >= {_TS} AND \(created_at > {_TS} OR uuid > '([0-9a-f-]+)'\))?"
    rf"(?: AND \(updated_at > {_TS}\))? ORDER BY created_at, uuid, updated_at DESC LIMIT (\d+)$"
)
_HISTOGRAM = re.compile(
    rf"INTERVAL (\d+) (SECOND|MILLISECOND)\) AS bucket, "
    rf"(?:count\(\) AS n|countIf\(updated_at > {_TS}\) AS n, count\(\) AS scanned) "
    rf"FROM runs WHERE created_at >= {_TS} AND created_at < {_TS} GROUP BY bucket ORDER BY bucket$"
)


Row = tuple[int, str, int]
"""A row of the fake table: created_at and updated_at in epoch milliseconds, and the uuid."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _ms(text: str) -> int:
    return (datetime.fromisoformat(text).replace(tzinfo=UTC) - _EPOCH) // timedelta(milliseconds=1)


def _ms_of(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(milliseconds=1)


@functools.lru_cache(maxsize=64)
def _day(day: int) -> str:
    return (_EPOCH + timedelta(days=day)).strftime("%Y-%m-%d")


def _text(ms: int) -> str:
    day, rest = divmod(ms, 86_400_000)
    seconds, millis = divmod(rest, 1000)
    hours, seconds = divmod(seconds, 3600)
    return f"{_day(day)} {hours:02d}:{seconds // 60:02d}:{seconds % 60:02d}.{millis:03d}"


class MemoryRuns:
    """Rows of ``runs`` answering the planner's queries, with Cargo's caps."""

    def __init__(
        self, rows: list[Row], *, scan_cap: int = 10_000_000, result_cap: int = 10_000, sub_second: bool = True
    ) -> None:
        self.sub_second = sub_second
        self.rows = sorted(rows)
        self.times = [r[0] for r in self.rows]
        self.scan_cap = scan_cap
        self.result_cap = result_cap
        self.queries: list[str] = []

    def query(self, sql: str) -> list[dict[str, Any]]:
        self.queries.append(sql)
        if page := _PAGE.search(sql):
            return self._page(sql, page.groups())
        if histogram := _HISTOGRAM.search(sql):
            return self._histogram(sql, histogram.groups())
        raise AssertionError(f"unexpected SQL: {sql}")

    def _in_range(self, sql: str, start: str, end: str) -> list[Row]:
        inside = self.rows[bisect.bisect_left(self.times, _ms(start)) : bisect.bisect_left(self.times, _ms(end))]
        if len(inside) > self.scan_cap:
            raise query_error(
                400, f"Code: 158. DB::Exception: Limit for rows exceeded, current rows: {len(inside)}", sql
            )
        return inside

    def _page(self, sql: str, groups: tuple[str, ...]) -> list[dict[str, Any]]:
        start, end, at, _, key, changed, limit = groups
        rows = self._in_range(sql, start, end)
        if at is not None:
            cursor = (_ms(at), key)
            rows = [r for r in rows if (r[0], r[1]) > cursor]
        if changed is not None:
            rows = [r for r in rows if r[2] > _ms(changed)]
        if int(limit) > self.result_cap and len(rows) > self.result_cap:
            raise query_error(400, "Code: 396. DB::Exception: Limit for result exceeded", sql)
        return [{"created_at": _text(r[0]), "uuid": r[1]} for r in rows[: int(limit)]]

    def _histogram(self, sql: str, groups: tuple[str, ...]) -> list[dict[str, Any]]:
        step, unit, changed, start, end = groups
        if unit == "MILLISECOND" and not self.sub_second:
            raise query_error(
                400, "Code: 43. DB::Exception: Illegal interval kind for argument data type DateTime", sql
            )
        width = int(step) * (1000 if unit == "SECOND" else 1)
        since = _ms(changed) if changed is not None else None
        counts: dict[int, list[int]] = {}
        for created, _, updated in self._in_range(sql, start, end):
            entry = counts.setdefault(created // width * width, [0, 0])
            entry[0] += since is None or updated > since
            entry[1] += 1
        return [
            {"bucket": _text(b), "n": n, **({"scanned": s} if changed else {})} for b, (n, s) in sorted(counts.items())
        ]


def _uuid(rng: random.Random) -> str:
    h = f"{rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _rows(rng: random.Random, count: int, start: datetime, span: timedelta) -> list[Row]:
    """``count`` rows created at random in ``[start, start + span)``, updated up to 10 hours later."""
    first, width = _ms_of(start), span // timedelta(milliseconds=1)
    rows = []
    for _ in range(count):
        created = first + int(rng.random() * width)
        rows.append((created, _uuid(rng), created + int(rng.random() * 36_000_000)))
    return rows


def _read_all(
    engine: MemoryRuns, window: QueryWindow, extra: UpdatedAfter | None = None, refine_budget: int | None = None
) -> list[str]:
    """Plan, fetch every window (splitting what is left of those over the caps), return the uuids read."""
    seen: list[str] = []
    pending = plan_windows(engine, RUNS, window, extra, refine_budget=refine_budget)
    while pending:
        current = pending.pop()
        try:
            for page in fetch_pages(engine, RUNS, current, extra, codec=RawRows()):
                seen.extend(row["uuid"] for row in page.rows or [])
                if page.last is not None:
                    current = current.resumed_at(cursor_after(RUNS, page.last))
        except ScanCapExceeded:
            pending.extend(current.bisect())
    return seen


def test_every_row_exactly_once_with_bursts_and_ties() -> None:
    rng = random.Random(1)
    tie = T0 + timedelta(hours=5, milliseconds=250)
    rows = [
        *_rows(rng, 30_000, T0, timedelta(days=3)),
        *_rows(rng, 60_000, T0 + timedelta(hours=30), timedelta(minutes=20)),  # a burst
        *[
            (_ms_of(tie), _uuid(rng), _ms_of(tie)) for _ in range(25_000)
        ],  # more rows in one millisecond than a page holds
    ]
    engine = MemoryRuns(rows)
    seen = _read_all(engine, QueryWindow(T0 - timedelta(days=1), T0 + timedelta(days=4)))
    assert len(seen) == len(rows)
    assert set(seen) == {r[1] for r in rows}
    pages = [q for q in engine.queries if " LIMIT " in q]
    planning = len(engine.queries) - len(pages)
    assert planning <= 6
    # within 10 % of the ideal page count, plus the empty page that ends the tie's window
    assert len(pages) <= 1.1 * -(-len(rows) // 10_000) + 1


def test_page_queries_stay_within_ten_percent_of_the_ideal() -> None:
    """DESIGN.md's aim: data queries within 10 % of ``ceil(rows / 10_000)``, planning a handful."""
    rng = random.Random(7)
    rows: list[Row] = []
    for hour in range(72):  # three days with a daily rhythm, from ~600 to ~6,600 rows an hour
        per_hour = int(3000 * (1.2 + math.sin(hour / 24 * 2 * math.pi)))
        rows += _rows(rng, per_hour, T0 + timedelta(hours=hour), timedelta(hours=1))
    engine = MemoryRuns(rows)
    seen = _read_all(engine, QueryWindow(T0, T0 + timedelta(days=3)))
    assert len(seen) == len(set(seen)) == len(rows)
    pages = sum(" LIMIT " in q for q in engine.queries)
    assert pages <= math.ceil(1.1 * math.ceil(len(rows) / 10_000))
    assert len(engine.queries) - pages <= 3


def _bursty(rng: random.Random) -> list[Row]:
    """A day of steady traffic plus batches that start ~15,000 runs within one second each."""
    rows = _rows(rng, 40_000, T0, timedelta(days=1))
    for hour in (3, 9, 14, 20):
        rows += _rows(rng, rng.randrange(12_000, 19_000), T0 + timedelta(hours=hour, seconds=17), timedelta(seconds=1))
    return rows


def test_bursts_within_a_second_are_planned_below_a_second() -> None:
    """With refinements allowed (a sync of this size gets none: ``refinement_budget``), bursts get ms buckets."""
    rows = _bursty(random.Random(8))
    engine = MemoryRuns(rows)
    seen = _read_all(engine, QueryWindow(T0, T0 + timedelta(days=1)), refine_budget=4)
    assert sorted(seen) == sorted(r[1] for r in rows)
    assert any("MILLISECOND" in q for q in engine.queries)
    pages = sum(" LIMIT " in q for q in engine.queries)
    assert pages <= math.ceil(1.1 * math.ceil(len(rows) / 10_000))


def test_without_sub_second_buckets_planning_falls_back_to_seconds(caplog: pytest.LogCaptureFixture) -> None:
    rows = _bursty(random.Random(8))
    engine = MemoryRuns(rows, sub_second=False)
    seen = _read_all(engine, QueryWindow(T0, T0 + timedelta(days=1)), refine_budget=4)
    assert sorted(seen) == sorted(r[1] for r in rows)
    assert sum("MILLISECOND" in q for q in engine.queries) == 1
    assert "using whole seconds" in caplog.text


def test_refinements_are_bought_only_for_long_plans() -> None:
    """A refinement saves about one page at best: none under 100 expected pages, then one per 100."""
    assert refinement_budget(0) == 0
    assert refinement_budget(999_999) == 0
    assert refinement_budget(1_000_000) == 1
    assert refinement_budget(5_100_000) == 5
    rows = _bursty(random.Random(8))
    engine = MemoryRuns(rows)
    seen = _read_all(engine, QueryWindow(T0, T0 + timedelta(days=1)))
    assert sorted(seen) == sorted(r[1] for r in rows)
    assert sum(" LIMIT " not in q for q in engine.queries) == 1  # the one histogram, no refinement
    pages = sum(" LIMIT " in q for q in engine.queries)
    assert pages <= math.ceil(1.1 * math.ceil(len(rows) / 10_000))


def test_changed_rows_only() -> None:
    rng = random.Random(2)
    rows = _rows(rng, 40_000, T0, timedelta(days=2))
    since = T0 + timedelta(days=1, hours=12)
    engine = MemoryRuns(rows)
    seen = _read_all(engine, QueryWindow(T0, T0 + timedelta(days=2)), UpdatedAfter(since))
    assert sorted(seen) == sorted(r[1] for r in rows if r[2] > _ms_of(since))


def test_scan_cap_splits_histograms_and_windows() -> None:
    rng = random.Random(3)
    rows = _rows(rng, 20_000, T0, timedelta(hours=6))
    engine = MemoryRuns(rows, scan_cap=4_000)
    seen = _read_all(engine, QueryWindow(T0, T0 + timedelta(hours=6)), UpdatedAfter(T0))
    assert sorted(seen) == sorted(r[1] for r in rows)


def test_a_window_over_the_scan_cap_is_refused_before_any_page() -> None:
    rng = random.Random(4)
    rows = _rows(rng, 300, T0, timedelta(minutes=10))
    engine = MemoryRuns(rows, scan_cap=100)
    window = QueryWindow(T0, T0 + timedelta(minutes=10))
    received: list[list[Any]] = []
    with pytest.raises(ScanCapExceeded):
        received.extend(fetch_window(engine, RUNS, window))
    assert received == []  # nothing delivered: the whole window is what the caller splits


def test_result_cap_shrinks_pages_and_keeps_the_cursor() -> None:
    rng = random.Random(5)
    rows = _rows(rng, 7_000, T0, timedelta(minutes=10))
    engine = MemoryRuns(rows, result_cap=3_000)
    pages = list(fetch_window(engine, RUNS, QueryWindow(T0, T0 + timedelta(minutes=10))))
    assert [len(p) for p in pages] == [2_500, 2_500, 2_000]
    assert sorted(row["uuid"] for page in pages for row in page) == sorted(r[1] for r in rows)


def test_result_cap_below_the_smallest_page_fails() -> None:
    rows = _rows(random.Random(6), 2_000, T0, timedelta(minutes=1))
    engine = MemoryRuns(rows, result_cap=100)
    with pytest.raises(ResultCapExceeded):
        list(fetch_window(engine, RUNS, QueryWindow(T0, T0 + timedelta(minutes=1))))


def test_a_server_ignoring_the_cursor_cannot_loop_forever() -> None:
    class Stuck:
        def query(self, sql: str) -> list[dict[str, Any]]:
            return [{"created_at": "2024-01-01 00:00:00.000", "uuid": "00000000-0000-0000-0000-000000000000"}] * 10

    with pytest.raises(KeysetStalled):
        list(fetch_window(Stuck(), RUNS, QueryWindow(T0, T0 + timedelta(minutes=1)), page_limit=10))
