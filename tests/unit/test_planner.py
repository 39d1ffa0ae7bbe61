"""Planner: literals, SQL builders, windows, histogram steps, packing, refinement."""

from __future__ import annotations

import itertools
import random
import re
from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from cargo_elt.source.errors import UnsafeLiteralError
from cargo_elt.source.planner import (
    Bucket,
    KeysetCursor,
    QueryWindow,
    UpdatedAfter,
    cursor_after,
    histogram_query,
    keyset_condition,
    pack_windows,
    page_query,
    parse_histogram,
    plan_step,
    refinement_requests,
    replace_buckets,
)
from cargo_elt.source.settings import HISTOGRAM_BUCKET_FRACTION, HISTOGRAM_MAX_BUCKETS, MAX_RESULT_ROWS
from cargo_elt.source.specs import RECORDS, RUNS, SPANS
from cargo_elt.source.sqltext import parse_timestamp, sql_int, sql_string, sql_timestamp, sql_uuid

T0 = datetime(2024, 1, 1, tzinfo=UTC)
U1 = "0b7a6c1e-8f2d-4c3b-9a1e-5d6f7a8b9c0d"
U2 = "1c8b7d2f-9a3e-4d4c-8b2f-6e7a8b9c0d1e"


def ts(text: str) -> str:
    return f"toDateTime64('{text}', 3, 'UTC')"


# -- literals ---------------------------------------------------------------------------------------


def test_timestamps_render_from_aware_datetimes_only() -> None:
    assert sql_timestamp(datetime(2024, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)) == ts("2024-01-02 03:04:05.678")
    plus_two = timezone(timedelta(hours=2))
    assert sql_timestamp(datetime(2024, 1, 2, 5, 4, 5, tzinfo=plus_two)) == ts("2024-01-02 03:04:05.000")
    assert sql_timestamp(datetime(2024, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)) == (
        "toDateTime64('2024-01-02 03:04:05.678901', 6, 'UTC')"
    )
    for bad in (datetime(2024, 1, 2), "2024-01-02 00:00:00", date(2024, 1, 2), 1704153600):
        with pytest.raises(UnsafeLiteralError):
            sql_timestamp(bad)  # type: ignore[arg-type]


INJECTIONS = [
    "x' OR 1=1 --",
    "x\\' OR 1=1 --",
    "'; DROP TABLE runs; --",
    "a\\",
    "line\nbreak",
    "nul\x00byte",
    "tab\tand\rreturn",
    "unicode ' é 漢字 \u2028",
]


@pytest.mark.parametrize("text", INJECTIONS)
def test_string_literals_cannot_be_closed_early(text: str) -> None:
    literal = sql_string(text)
    assert literal.startswith("'") and literal.endswith("'")
    body = literal[1:-1]
    # after removing escape sequences no quote, backslash or control character is left
    rest = re.sub(r"\\(x[0-9a-f]{2}|.)", "", body)
    assert "'" not in rest and "\\" not in rest
    assert not any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in body)


def test_string_literal_escapes() -> None:
    assert sql_string("it's") == r"'it\'s'"
    assert sql_string("a\\b") == r"'a\\b'"
    assert sql_string("a\nb") == r"'a\x0ab'"
    with pytest.raises(UnsafeLiteralError):
        sql_string(5)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "value",
    [
        "x' OR '1'='1",
        U1 + "\n",
        U1 + "' OR 1=1 --",
        U1[:-1],
        U1.replace("-", ""),
        "",
        "zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz",
        5,
        None,
    ],
)
def test_uuids_are_validated(value: object) -> None:
    with pytest.raises(UnsafeLiteralError):
        sql_uuid(value)  # type: ignore[arg-type]


def test_uuid_literal() -> None:
    assert sql_uuid(U1.upper()) == f"'{U1}'"


def test_int_literals() -> None:
    assert sql_int(42) == "42"
    for bad in (True, "42", 4.2):
        with pytest.raises(UnsafeLiteralError):
            sql_int(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-01-02 03:04:05.678", datetime(2024, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)),
        ("2024-01-02 03:04:05", datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2024-01-02T03:04:05.678Z", datetime(2024, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)),
        ("2024-01-02T05:04:05.6+02:00", datetime(2024, 1, 2, 3, 4, 5, 600000, tzinfo=UTC)),
        ("2024-01-02 03:04:05.123456789", datetime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)),
        ("2024-01-02T03:04:05+0000", datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)),
    ],
)
def test_parse_timestamp(text: str, expected: datetime) -> None:
    assert parse_timestamp(text) == expected


@pytest.mark.parametrize("text", ["", "2024-01-02", "yesterday", "2024-01-02 03:04:05' OR 1=1", "٢٠٢٤-01-02 03:04:05"])
def test_parse_timestamp_rejects(text: str) -> None:
    with pytest.raises(UnsafeLiteralError):
        parse_timestamp(text)


# -- SQL ----------------------------------------------------------------------------------------------


def test_keyset_predicate_single_key() -> None:
    cursor = KeysetCursor(datetime(2024, 1, 1, 0, 0, 1, 500000, tzinfo=UTC), (U1,))
    t = ts("2024-01-01 00:00:01.500")
    assert keyset_condition(RUNS, cursor) == f"created_at >= {t} AND (created_at > {t} OR uuid > '{U1}')"


def test_keyset_predicate_tuple_key() -> None:
    cursor = KeysetCursor(T0, (U1, U2, 3))
    t = ts("2024-01-01 00:00:00.000")
    assert keyset_condition(SPANS, cursor) == (
        f"execution_started_at >= {t} AND (execution_started_at > {t} OR "
        f"(run_uuid, node_uuid, execution_index) > ('{U1}', '{U2}', 3))"
    )
    records = KeysetCursor(T0, (U1, "o'brien@example.com"))
    assert keyset_condition(RECORDS, records).endswith(f"(workflow_uuid, id) > ('{U1}', 'o\\'brien@example.com'))")


@pytest.mark.parametrize(
    "key",
    [
        ("x' OR 1=1 --", U2, 1),
        (U1, U2, "1 OR 1=1"),
        (U1, U2, True),
        (U1, U2),
        (U1, U2, 1, 2),
    ],
)
def test_keyset_predicate_rejects_bad_key_values(key: tuple[object, ...]) -> None:
    with pytest.raises(UnsafeLiteralError):
        keyset_condition(SPANS, KeysetCursor(T0, key))  # type: ignore[arg-type]


def test_page_query() -> None:
    window = QueryWindow(T0, T0 + timedelta(hours=1))
    sql = page_query(RUNS, window)
    assert sql == (
        f"SELECT {', '.join(RUNS.column_names)} FROM runs WHERE created_at >= {ts('2024-01-01 00:00:00.000')} "
        f"AND created_at < {ts('2024-01-01 01:00:00.000')} ORDER BY created_at, uuid, updated_at DESC LIMIT 10000"
    )
    assert "SELECT *" not in sql


def test_page_query_resumed_and_changed_rows() -> None:
    cursor = KeysetCursor(T0 + timedelta(minutes=5), (U1,))
    window = QueryWindow(T0, T0 + timedelta(hours=1), cursor)
    sql = page_query(RUNS, window, UpdatedAfter(T0 - timedelta(minutes=5)), limit=5000)
    t = ts("2024-01-01 00:05:00.000")
    assert (
        f"WHERE created_at >= {ts('2024-01-01 00:00:00.000')} AND created_at < {ts('2024-01-01 01:00:00.000')} "
        f"AND created_at >= {t} AND (created_at > {t} OR uuid > '{U1}') "
        f"AND (updated_at > {ts('2023-12-31 23:55:00.000')}) ORDER BY created_at, uuid, updated_at DESC LIMIT 5000"
    ) in sql
    with pytest.raises(UnsafeLiteralError):
        page_query(RUNS, window, limit=0)
    with pytest.raises(UnsafeLiteralError):
        page_query(RUNS, window, limit="10000; DROP")  # type: ignore[arg-type]


def test_histogram_query() -> None:
    window = QueryWindow(T0, T0 + timedelta(days=1))
    start, end = ts("2024-01-01 00:00:00.000"), ts("2024-01-02 00:00:00.000")
    assert histogram_query(SPANS, window, 60_000) == (
        "SELECT toStartOfInterval(execution_started_at, INTERVAL 60 SECOND) AS bucket, count() AS n FROM spans "
        f"WHERE execution_started_at >= {start} AND execution_started_at < {end} GROUP BY bucket ORDER BY bucket"
    )
    changed = histogram_query(RUNS, window, 60_000, UpdatedAfter(T0))
    assert f"countIf(updated_at > {start}) AS n, count() AS scanned FROM runs" in changed
    assert "toStartOfInterval(created_at, INTERVAL 250 MILLISECOND) AS bucket" in histogram_query(RUNS, window, 250)
    assert "INTERVAL 2 SECOND" in histogram_query(RUNS, window, 2000)
    for bad_step in (0, -5, 1.5, "60"):
        with pytest.raises(UnsafeLiteralError):
            histogram_query(RUNS, window, bad_step)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="whole windows"):
        histogram_query(RUNS, window.resumed_at(KeysetCursor(T0, (U1,))), 60_000)


def test_cursor_after_reads_the_last_row() -> None:
    row = {"execution_started_at": "2024-01-01 00:00:01.250", "run_uuid": U1, "node_uuid": U2, "execution_index": "7"}
    cursor = cursor_after(SPANS, row)
    assert cursor == KeysetCursor(datetime(2024, 1, 1, 0, 0, 1, 250000, tzinfo=UTC), (U1, U2, 7))
    with pytest.raises(UnsafeLiteralError):
        cursor_after(SPANS, {**row, "run_uuid": "x' OR 1=1 --"})
    with pytest.raises(UnsafeLiteralError):
        cursor_after(SPANS, {**row, "execution_index": None})
    with pytest.raises(UnsafeLiteralError):
        cursor_after(SPANS, {**row, "execution_started_at": "now()"})


# -- windows ------------------------------------------------------------------------------------------


def test_window_bounds_are_utc_milliseconds() -> None:
    window = QueryWindow(T0 + timedelta(microseconds=1999), T0 + timedelta(seconds=1, microseconds=999))
    assert window.start == T0 + timedelta(milliseconds=1)
    assert window.end == T0 + timedelta(seconds=1)
    with pytest.raises(ValueError, match="empty window"):
        QueryWindow(T0, T0)
    with pytest.raises(ValueError, match="empty window"):
        QueryWindow(T0, T0 + timedelta(microseconds=500))
    with pytest.raises(UnsafeLiteralError):
        QueryWindow(datetime(2024, 1, 1), datetime(2024, 1, 2))


def test_bisect_covers_the_window_without_gap_or_overlap() -> None:
    window = QueryWindow(T0, T0 + timedelta(seconds=7, milliseconds=3))
    first, second = window.bisect()
    assert (first.start, first.end, second.start, second.end) == (window.start, second.start, first.end, window.end)
    assert first.end - first.start <= second.end - second.start + timedelta(milliseconds=1)


def test_bisect_keeps_the_cursor_on_the_first_half() -> None:
    cursor = KeysetCursor(T0 + timedelta(hours=6), (U1,))
    window = QueryWindow(T0, T0 + timedelta(hours=10), cursor)
    first, second = window.bisect()
    assert first.cursor == cursor and second.cursor is None
    assert first.end == T0 + timedelta(hours=8)  # half of what is left after the cursor
    assert second.end == window.end


def test_bisect_down_to_one_millisecond() -> None:
    window = QueryWindow(T0, T0 + timedelta(milliseconds=2))
    first, second = window.bisect()
    assert first.end == second.start == T0 + timedelta(milliseconds=1)
    assert not first.can_split()
    with pytest.raises(ValueError, match="too narrow"):
        first.bisect()


def test_repeated_bisection_terminates() -> None:
    pending = [QueryWindow(T0, T0 + timedelta(seconds=1))]
    pieces = 0
    while pending:
        window = pending.pop()
        if window.can_split():
            pending.extend(window.bisect())
        else:
            pieces += 1
    assert pieces == 1000


# -- histogram step -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("span", "step"),
    [
        (timedelta(minutes=30), 1),
        (timedelta(hours=1), 1),
        (timedelta(hours=2), 2),
        (timedelta(days=1), 30),
        (timedelta(days=7), 300),
        (timedelta(days=365), 10800),
        (timedelta(days=3650), 86400),
        (timedelta(days=36500), 86400 * 10),
    ],
)
def test_plan_step(span: timedelta, step: int) -> None:
    assert plan_step(QueryWindow(T0, T0 + span), max_buckets=4000) == step * 1000


def test_plan_step_keeps_histograms_well_under_the_result_cap() -> None:
    rng = random.Random(7)
    for _ in range(500):
        span = timedelta(seconds=rng.uniform(0.002, 40 * 365 * 86400))
        window = QueryWindow(T0, T0 + span)
        step_s = plan_step(window) / 1000
        span_s = (window.end - window.start).total_seconds()
        assert step_s >= 1 and span_s / step_s + 1 <= HISTOGRAM_MAX_BUCKETS < MAX_RESULT_ROWS
        # not coarser than needed: the ladder's steps are at most 2.5x apart
        assert step_s == 1 or span_s / step_s > HISTOGRAM_MAX_BUCKETS / 2.5 or step_s > 86400


def test_parse_histogram_clips_to_the_window() -> None:
    window = QueryWindow(T0 + timedelta(seconds=90), T0 + timedelta(seconds=200))
    rows: list[dict[str, object]] = [
        {"bucket": "2024-01-01 00:01:00", "n": "5"},
        {"bucket": "2024-01-01 00:02:00", "n": 7},
        {"bucket": "2024-01-01 00:03:00", "n": 1, "scanned": "9"},
    ]
    buckets = parse_histogram(rows, window, 60_000)
    assert buckets == [
        Bucket(T0 + timedelta(seconds=90), T0 + timedelta(seconds=120), 5, 5),
        Bucket(T0 + timedelta(seconds=120), T0 + timedelta(seconds=180), 7, 7),
        Bucket(T0 + timedelta(seconds=180), T0 + timedelta(seconds=200), 1, 9),
    ]


# -- packing ------------------------------------------------------------------------------------------


def _buckets(counts: list[int], step_s: int = 60, scanned: list[int] | None = None) -> list[Bucket]:
    step = timedelta(seconds=step_s)
    scans = scanned or counts
    return [
        Bucket(T0 + i * step, T0 + (i + 1) * step, n, s)
        for i, (n, s) in enumerate(zip(counts, scans, strict=True))
        if s
    ]


def _assert_tiles(windows: list[QueryWindow], whole: QueryWindow) -> None:
    assert windows[0].start == whole.start and windows[-1].end == whole.end
    for before, after in itertools.pairwise(windows):
        assert before.end == after.start


def test_pack_windows_tiles_the_range_and_respects_the_target() -> None:
    rng = random.Random(11)
    for _ in range(200):
        counts = [rng.choice([0, 0, 1, 50, 400, 3000, 9000, 12000, 40000]) for _ in range(rng.randint(1, 120))]
        whole = QueryWindow(T0 - timedelta(minutes=3), T0 + timedelta(minutes=len(counts) + 5))
        buckets = _buckets(counts)
        windows = pack_windows(buckets, whole, target_rows=9500)
        _assert_tiles(windows, whole)
        assert sum(w.expected_rows or 0 for w in windows) == sum(counts)
        for window in windows:
            inside = [b for b in buckets if window.start <= b.start < window.end]
            # over the target only around a bucket that is over it alone (read in several pages anyway)
            assert (window.expected_rows or 0) <= 9500 or any(b.rows > 9500 for b in inside)
        # merging two neighbours would never save a page query
        rows = [w.expected_rows or 0 for w in windows]
        for left, right in itertools.pairwise(rows):
            assert _pages(left + right) >= _pages(left) + _pages(right)


def _pages(rows: int, target: int = 9500) -> int:
    return max(1, -(-rows // target))


def test_pack_windows_fills_windows() -> None:
    windows = pack_windows(_buckets([100] * 1000), QueryWindow(T0, T0 + timedelta(minutes=1000)), target_rows=9500)
    assert [w.expected_rows for w in windows] == [9500] * 10 + [5000]


def test_an_oversized_bucket_is_its_own_window_between_full_neighbours() -> None:
    whole = QueryWindow(T0, T0 + timedelta(minutes=3))
    windows = pack_windows(_buckets([9000, 50000, 9000]), whole, target_rows=9500)
    assert [w.expected_rows for w in windows] == [9000, 50000, 9000]
    assert windows[1].start == T0 + timedelta(minutes=1) and windows[1].end == T0 + timedelta(minutes=2)


def test_small_neighbours_ride_in_the_pages_of_an_oversized_bucket() -> None:
    # 50,000 rows take 6 pages of 9,500 whatever happens; 10 more rows on each side fit in the 6th
    whole = QueryWindow(T0, T0 + timedelta(minutes=3))
    assert [w.expected_rows for w in pack_windows(_buckets([10, 50000, 10]), whole, target_rows=9500)] == [50020]
    windows = pack_windows(_buckets([10, 56990, 30]), whole, target_rows=9500)
    assert [w.expected_rows for w in windows] == [57000, 30]


def test_empty_range_is_one_window() -> None:
    whole = QueryWindow(T0, T0 + timedelta(days=1))
    assert pack_windows([], whole) == [whole]


def test_pack_windows_bounds_scanned_rows() -> None:
    # a selective changed-rows filter: few matching rows, many scanned ones
    whole = QueryWindow(T0, T0 + timedelta(minutes=10))
    windows = pack_windows(
        _buckets([10] * 10, scanned=[3_000_000] * 10), whole, target_rows=9500, max_scan_rows=8_000_000
    )
    assert len(windows) == 5
    _assert_tiles(windows, whole)


# -- refinement ---------------------------------------------------------------------------------------


def test_dense_buckets_are_refined_with_a_finer_step() -> None:
    coarse = _buckets([10, 20000, 30000, 10, 10], step_s=3600)
    requests = refinement_requests(coarse, target_rows=9500, max_buckets=4000)
    assert len(requests) == 1
    request = requests[0]
    assert request.window == QueryWindow(T0 + timedelta(hours=1), T0 + timedelta(hours=3))
    per_bucket = 30000 * request.step_ms / 3_600_000
    assert per_bucket <= 9500 / HISTOGRAM_BUCKET_FRACTION


def test_sparse_and_one_second_buckets_are_not_refined() -> None:
    assert refinement_requests(_buckets([100, 500, 0, 30], step_s=3600), target_rows=9500) == []
    one_ms = [
        Bucket(T0 + timedelta(milliseconds=i), T0 + timedelta(milliseconds=i + 1), 90000, 90000) for i in range(2)
    ]
    assert refinement_requests(one_ms, target_rows=9500) == []
    assert refinement_requests(_buckets([90000, 90000], step_s=1), target_rows=9500, min_step_ms=1000) == []


def test_a_burst_within_one_second_is_refined_below_a_second() -> None:
    (request,) = refinement_requests(_buckets([10, 18875, 10], step_s=1), target_rows=9500)
    assert request.window == QueryWindow(T0 + timedelta(seconds=1), T0 + timedelta(seconds=2))
    assert request.step_ms == 1  # the finest step whose histogram of one second fits 4,000 buckets
    (coarser,) = refinement_requests(_buckets([10, 18875, 10], step_s=1), target_rows=9500, max_buckets=100)
    assert coarser.step_ms == 20  # 18,875 rows a second -> ~380 a bucket, under 9500 / 16


def test_refinement_requests_stay_under_the_bucket_cap() -> None:
    coarse = _buckets([5_000_000], step_s=86400)
    requests = refinement_requests(coarse, target_rows=9500, max_buckets=400)
    assert len(requests) > 1
    for request in requests:
        assert (request.window.end - request.window.start).total_seconds() * 1000 / request.step_ms + 1 <= 400
    _assert_tiles([r.window for r in requests], QueryWindow(T0, T0 + timedelta(days=1)))


def test_far_apart_dense_buckets_get_separate_requests() -> None:
    counts = [0] * 500
    counts[3] = counts[400] = 50_000
    requests = refinement_requests(_buckets(counts, step_s=3600), target_rows=9500, max_buckets=4000)
    assert [r.window.start for r in requests] == [T0 + timedelta(hours=3), T0 + timedelta(hours=400)]


def test_refinement_budget_keeps_the_densest_stretches() -> None:
    counts = [0] * 500
    counts[3], counts[200], counts[400] = 50_000, 90_000, 70_000
    buckets = _buckets(counts, step_s=3600)
    requests = refinement_requests(buckets, target_rows=9500, max_buckets=4000, max_requests=2)
    assert [r.window.start for r in requests] == [T0 + timedelta(hours=200), T0 + timedelta(hours=400)]
    assert refinement_requests(buckets, target_rows=9500, max_buckets=4000, max_requests=0) == []


def test_replace_buckets() -> None:
    coarse = _buckets([1, 2, 3], step_s=60)
    span = QueryWindow(T0 + timedelta(minutes=1), T0 + timedelta(minutes=2))
    fine = [
        Bucket(span.start, span.start + timedelta(seconds=30), 1, 1),
        Bucket(span.start + timedelta(seconds=30), span.end, 1, 1),
    ]
    assert [b.rows for b in replace_buckets(coarse, span, fine)] == [1, 1, 1, 3]
