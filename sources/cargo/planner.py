"""Pure planning: time windows and the SQL that reads them.

Nothing here does I/O; ``fetch.py`` runs the queries these functions write. The job is to read a
time range of a table under the API's caps (10,000 result rows, 10 M scanned rows, 30 s):

1. a histogram query counts rows per time bucket (``histogram_query``; the bucket size comes from
   ``plan_step`` so the histogram itself stays far below 10,000 rows; ``packed_histogram_query``
   is the same as one cell, to ride on the read's first page; ``refinement_requests`` asks for finer
   buckets where coarse ones are too dense to pack well);
2. ``pack_windows`` joins adjacent buckets into windows of at most ``target_rows`` rows;
3. each window is read in ``(time, primary key)`` order with ``page_query``; a full page continues
   after its last row with a keyset predicate that keeps the primary index usable;
4. windows finish in any order under parallel fetching; the table's frontier is committed only once
   every window of a read is loaded (with the load, in dlt's state), so a crash never skips one.

Every value that reaches SQL goes through a ``sql_*`` function of ``sqltext.py`` that accepts one
Python type and validates or escapes it. Identifiers come from ``TableSpec`` only, which validates
them when it is built.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from .errors import UnsafeLiteralError
from .settings import (
    DEFAULT_WINDOW_SCAN_ROWS,
    DEFAULT_WINDOW_TARGET_ROWS,
    HISTOGRAM_BUCKET_FRACTION,
    HISTOGRAM_MAX_BUCKETS,
    MIN_WINDOW,
    PAGE_LIMIT,
)
from .specs import TableSpec, ValueKind
from .sqltext import as_utc, floor_ms, key_literal, parse_timestamp, sql_timestamp

KeyValue = str | int
"""A primary-key value as the API returns it: a string (UUIDs, record ids) or an integer."""


# -- windows --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KeysetCursor:
    """Where the previous full page ended: its last row's time value and primary key."""

    time: datetime
    key: tuple[KeyValue, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "time", as_utc(self.time))


@dataclass(frozen=True)
class QueryWindow:
    """A half-open time range ``[start, end)`` of the time column, optionally resumed at a cursor.

    Bounds are UTC and cut to whole milliseconds, so windows built from one another chain exactly.
    ``expected_rows`` is what planning counted (informational: rows keep arriving).
    """

    start: datetime
    end: datetime
    cursor: KeysetCursor | None = None
    expected_rows: int | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", floor_ms(self.start))
        object.__setattr__(self, "end", floor_ms(self.end))
        if self.start >= self.end:
            raise ValueError(f"empty window [{self.start.isoformat()}, {self.end.isoformat()})")

    def __str__(self) -> str:
        resumed = f" after {self.cursor.time.isoformat()}" if self.cursor else ""
        return f"[{self.start.isoformat()}, {self.end.isoformat()}){resumed}"

    @property
    def effective_start(self) -> datetime:
        """Where reading actually starts: the cursor's time if the window was partly read."""
        return max(self.start, self.cursor.time) if self.cursor else self.start

    def resumed_at(self, cursor: KeysetCursor | None) -> QueryWindow:
        """The same window, to be read after ``cursor``."""
        return QueryWindow(self.start, self.end, cursor, self.expected_rows)

    def can_split(self) -> bool:
        return self.end - floor_ms(self.effective_start) >= 2 * MIN_WINDOW

    def bisect(self) -> tuple[QueryWindow, QueryWindow]:
        """Two halves of what is left to read; the first keeps the cursor.

        Used when a query over the window hit the scan, time or memory cap. Raises ``ValueError``
        for a window of one millisecond (nothing narrower can be expressed).
        """
        if not self.can_split():
            raise ValueError(f"window {self} is too narrow to split")
        begin = floor_ms(self.effective_start)
        middle = floor_ms(begin + (self.end - begin) / 2)
        if middle <= begin:
            middle = begin + MIN_WINDOW
        return QueryWindow(self.start, middle, self.cursor), QueryWindow(middle, self.end)


class Predicate(Protocol):
    """An extra row filter, rendered against a spec (so it only ever names the spec's columns)."""

    def render(self, spec: TableSpec) -> str: ...


@dataclass(frozen=True)
class UpdatedAfter:
    """Rows whose update column is newer than ``value``: the changed-rows read of an incremental sync."""

    value: datetime
    expiring: QueryWindow | None = field(default=None, compare=False)
    """The stretch that leaves a bounded table's lookback with this read (for a warning about rows
    still open there, see ``extract.check_schema``); it does not change what the predicate selects."""

    def render(self, spec: TableSpec) -> str:
        return f"{spec.update_column} > {sql_timestamp(self.value)}"


# -- SQL ------------------------------------------------------------------------------------------


def range_condition(spec: TableSpec, window: QueryWindow) -> str:
    """``start <= time < end``, plus the keyset continuation when the window is resumed."""
    time = spec.time_column
    condition = f"{time} >= {sql_timestamp(window.start)} AND {time} < {sql_timestamp(window.end)}"
    if window.cursor is not None:
        condition += f" AND {keyset_condition(spec, window.cursor)}"
    return condition


def keyset_condition(spec: TableSpec, cursor: KeysetCursor) -> str:
    """Rows strictly after ``cursor`` in ``(time, primary key)`` order.

    Written as ``t >= :t AND (t > :t OR (pk) > (:pk))`` rather than ``(t, pk) > (:t, :pk)``: the
    leading ``t >= :t`` is a plain range on the sort key's first column, which ClickHouse's primary
    index can use to skip everything before the cursor.
    """
    if len(cursor.key) != len(spec.primary_key):
        raise UnsafeLiteralError(f"cursor has {len(cursor.key)} key values, {spec.name} needs {len(spec.primary_key)}")
    time = spec.time_column
    at = sql_timestamp(cursor.time)
    values = [key_literal(spec.column(name), value) for name, value in zip(spec.primary_key, cursor.key, strict=True)]
    if len(values) == 1:
        after_key = f"{spec.primary_key[0]} > {values[0]}"
    else:
        after_key = f"({', '.join(spec.primary_key)}) > ({', '.join(values)})"
    return f"{time} >= {at} AND ({time} > {at} OR {after_key})"


def histogram_query(
    spec: TableSpec, window: QueryWindow, step_ms: int, extra_predicate: Predicate | None = None
) -> str:
    """Rows per ``step_ms``-millisecond bucket of the window.

    Whole-second steps use ``INTERVAL n SECOND``, which works on ``DateTime`` and ``DateTime64``;
    sub-second steps (used only to refine bursts, ``DateTime64`` only) use ``MILLISECOND``.
    With an extra predicate the buckets carry two counts: ``n`` (matching rows, what pages will
    return) and ``scanned`` (all rows, what the server reads), because a selective filter can still
    make a window scan past the 10 M cap.
    """
    if not isinstance(step_ms, int) or isinstance(step_ms, bool) or step_ms < 1:
        raise UnsafeLiteralError(f"histogram step must be a positive integer of milliseconds, got {step_ms!r}")
    if window.cursor is not None:
        raise ValueError("histograms plan whole windows, not resumed ones")
    time = spec.time_column
    counts = (
        "count() AS n"
        if extra_predicate is None
        else f"countIf({extra_predicate.render(spec)}) AS n, count() AS scanned"
    )
    return (
        f"SELECT toStartOfInterval({time}, {_interval(step_ms)}) AS bucket, {counts} "
        f"FROM {spec.name} WHERE {range_condition(spec, window)} GROUP BY bucket ORDER BY bucket"
    )


def is_histogram_query(sql: str) -> bool:
    """Whether ``sql`` is a planning histogram on its own (``histogram_query``): what the logs and
    benchmarks count as planning. A first page that carries one (``packed_histogram_query``) is a page."""
    return sql.lstrip().startswith("SELECT toStartOfInterval(")


HISTOGRAM_CELL = "__cargo_histogram"
"""The column of ``packed_histogram_query``'s one row: the whole histogram as CSV text."""


def packed_histogram_query(
    spec: TableSpec, window: QueryWindow, step_ms: int, extra_predicate: Predicate | None = None
) -> str:
    """``histogram_query`` as one row holding one CSV text (``bucket, n[, scanned]`` per line).

    One row can ride along another one-row query (the first page, ``extract._FirstPagePlanned``) in a
    ``CROSS JOIN``: the plan then costs no query of its own. Text, like the packed page, because it
    is the one cell shape whose wire format the API's JSON answer cannot change.
    """
    counts = "n" if extra_predicate is None else "n, scanned"
    inner = histogram_query(spec, window, step_ms, extra_predicate)
    return (
        f"SELECT arrayStringConcat(groupArray(formatRow('CSV', bucket, {counts})), '') AS {HISTOGRAM_CELL} "
        f"FROM ({inner})"
    )


def parse_packed_histogram(text: object, window: QueryWindow, step_ms: int) -> list[Bucket]:
    """The buckets of a ``packed_histogram_query`` answer, clipped to ``window`` like ``parse_histogram``.

    Raises ``ValueError`` for text that is not that query's CSV (the caller names the table).
    """
    if not isinstance(text, str):
        raise ValueError(f"the packed histogram is not text: {type(text).__name__}")
    rows: list[dict[str, Any]] = []
    for fields in csv.reader(io.StringIO(text)):
        if len(fields) not in (2, 3):
            raise ValueError(f"a packed histogram line has {len(fields)} fields: {fields!r}")
        row: dict[str, Any] = {"bucket": fields[0], "n": fields[1]}
        if len(fields) == 3:
            row["scanned"] = fields[2]
        rows.append(row)
    try:
        return parse_histogram(rows, window, step_ms)
    except UnsafeLiteralError as exc:
        raise ValueError(str(exc)) from exc


def page_query(
    spec: TableSpec, window: QueryWindow, extra_predicate: Predicate | None = None, limit: int = PAGE_LIMIT
) -> str:
    """One page of the window's rows in ``(time, primary key)`` order (``TableSpec.page_order``), all
    spec columns selected."""
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise UnsafeLiteralError(f"page limit must be a positive integer, got {limit!r}")
    where = range_condition(spec, window)
    if extra_predicate is not None:
        where += f" AND ({extra_predicate.render(spec)})"
    return f"SELECT {spec.select_list} FROM {spec.name} WHERE {where} ORDER BY {spec.page_order} LIMIT {limit}"


def cursor_after(spec: TableSpec, row: Mapping[str, Any]) -> KeysetCursor:
    """The keyset cursor just after ``row`` (the last row of a full page)."""
    key: list[KeyValue] = []
    for name in spec.primary_key:
        value = row.get(name)
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise UnsafeLiteralError(f"{spec.name}.{name}: unusable key value {value!r} in a returned row")
        key_literal(spec.column(name), value)  # validate now, not when the next query is built
        key.append(int(value) if spec.column(name).kind is ValueKind.INT else value)
    return KeysetCursor(parse_timestamp(row.get(spec.time_column)), tuple(key))


# -- histogram and packing ------------------------------------------------------------------------

STEP_LADDER_MS: tuple[int, ...] = (
    1, 2, 5, 10, 20, 50, 100, 200, 500,
    1_000, 2_000, 5_000, 10_000, 15_000, 30_000, 60_000, 120_000, 300_000, 600_000, 900_000,
    1_800_000, 3_600_000, 7_200_000, 10_800_000, 21_600_000, 43_200_000, 86_400_000,
)  # fmt: skip
"""Histogram bucket sizes in milliseconds; past one day, whole days."""

_DAY_MS = 86_400_000


def _interval(step_ms: int) -> str:
    return f"INTERVAL {step_ms // 1000} SECOND" if step_ms % 1000 == 0 else f"INTERVAL {step_ms} MILLISECOND"


def _ladder_at_least(ms: float) -> int:
    for step in STEP_LADDER_MS:
        if step >= ms:
            return step
    return _DAY_MS * math.ceil(ms / _DAY_MS)


def _ladder_at_most(ms: float) -> int:
    fitting = [step for step in STEP_LADDER_MS if step <= ms]
    return fitting[-1] if fitting else STEP_LADDER_MS[0]


def _ms(span: timedelta) -> float:
    return span / timedelta(milliseconds=1)


def plan_step(window: QueryWindow, max_buckets: int = HISTOGRAM_MAX_BUCKETS) -> int:
    """The finest whole-second ladder step (in ms) whose histogram of ``window`` fits ``max_buckets``.

    Buckets align to the epoch, so a window can touch one more bucket than its length divided by the
    step; that bucket is counted too. First histograms never go below a second: sub-second buckets
    need ``DateTime64``, so only refinement asks for them, and can do without.
    """
    if max_buckets < 2:
        raise ValueError("max_buckets must be at least 2")
    return max(1_000, _ladder_at_least(_ms(window.end - window.start) / (max_buckets - 1)))


@dataclass(frozen=True)
class Bucket:
    """Rows counted in ``[start, end)``: ``rows`` match the read, ``scanned`` is what the server reads."""

    start: datetime
    end: datetime
    rows: int
    scanned: int


def parse_histogram(rows: Iterable[Mapping[str, Any]], window: QueryWindow, step_ms: int) -> list[Bucket]:
    """Buckets of a histogram answer, clipped to the window (epoch alignment overhangs its ends)."""
    step = timedelta(milliseconds=step_ms)
    buckets: list[Bucket] = []
    for row in rows:
        begin = parse_timestamp(row["bucket"])
        matching = int(row["n"])
        scanned = int(row.get("scanned", matching))
        if scanned > 0:
            buckets.append(Bucket(begin, begin + step, matching, scanned))
    return clip_buckets(buckets, window)


def clip_buckets(buckets: Iterable[Bucket], window: QueryWindow) -> list[Bucket]:
    """The buckets that overlap ``window``, cut to it (their counts kept: a cut bucket may overstate)."""
    clipped = [
        Bucket(max(b.start, window.start), min(b.end, window.end), b.rows, b.scanned)
        for b in buckets
        if b.end > window.start and b.start < window.end
    ]
    clipped.sort(key=lambda b: b.start)
    return clipped


def pack_windows(
    buckets: Sequence[Bucket],
    window: QueryWindow,
    target_rows: int = DEFAULT_WINDOW_TARGET_ROWS,
    max_scan_rows: int = DEFAULT_WINDOW_SCAN_ROWS,
) -> list[QueryWindow]:
    """Adjacent buckets joined into windows that together cover ``window`` exactly.

    The next bucket joins the current window when that saves a page query, counting a window of
    ``r`` rows as ``max(1, ceil(r / target_rows))`` pages; otherwise a new window starts. So windows
    hold at most ``target_rows`` rows, except one holding a bucket above the target: keyset paging
    reads it in several pages, and the rows before and after it ride along in its last page instead
    of costing windows of their own. A window also closes before ``max_scan_rows`` scanned rows
    (selective changed-rows reads), and empty stretches join the window before them.
    """
    if target_rows < 1 or max_scan_rows < 1:
        raise ValueError("targets must be positive")

    def pages(rows: int) -> int:
        return max(1, -(-rows // target_rows))

    windows: list[QueryWindow] = []
    start, rows, scanned = window.start, 0, 0
    for bucket in sorted(buckets, key=lambda b: b.start):
        if bucket.end <= window.start or bucket.start >= window.end:
            continue
        begin = max(bucket.start, window.start)
        saves_nothing = pages(rows + bucket.rows) >= pages(rows) + pages(bucket.rows)
        over_scan = scanned > 0 and scanned + bucket.scanned > max_scan_rows
        if (saves_nothing or over_scan) and begin > start:
            windows.append(QueryWindow(start, begin, expected_rows=rows))
            start, rows, scanned = begin, 0, 0
        rows += bucket.rows
        scanned += bucket.scanned
    windows.append(QueryWindow(start, window.end, expected_rows=rows))
    return windows


@dataclass(frozen=True)
class HistogramRequest:
    """One histogram to run: a window and its bucket size in milliseconds."""

    window: QueryWindow
    step_ms: int


def refinement_requests(
    buckets: Sequence[Bucket],
    target_rows: int = DEFAULT_WINDOW_TARGET_ROWS,
    max_buckets: int = HISTOGRAM_MAX_BUCKETS,
    max_requests: int | None = None,
    min_step_ms: int = 1,
) -> list[HistogramRequest]:
    """Finer histograms over stretches whose buckets are too dense to pack well.

    Packing closes a window up to one bucket early, so buckets should hold at most
    ``target_rows / HISTOGRAM_BUCKET_FRACTION`` rows. Dense buckets are grouped with their
    neighbours while the group's span, at the step its densest bucket needs if its rows were spread
    evenly, fits ``max_buckets``. Each group is then asked for at the finest step that fits: a
    histogram returns only non-empty buckets, so finer costs nothing, and rows are rarely spread
    evenly (a batch starts thousands of runs within one second). Past ``max_requests`` only the
    requests covering the most rows are kept: each costs a query and saves a page or so, and a
    stretch left coarse is never wrong, only packed less tightly. Steps go down to ``min_step_ms``.
    """
    limit = max(1, target_rows // HISTOGRAM_BUCKET_FRACTION)
    groups: list[tuple[datetime, datetime, int]] = []  # start, end, step the densest member needs
    for bucket in sorted(buckets, key=lambda b: b.start):
        width = _ms(bucket.end - bucket.start)
        if bucket.rows <= limit:
            continue
        needed = max(min_step_ms, _ladder_at_most(width * limit / bucket.rows))
        if needed >= width:
            continue
        if groups:
            start, _, step = groups[-1]
            if _bucket_count(start, bucket.end, min(step, needed)) <= max_buckets:
                groups[-1] = (start, bucket.end, min(step, needed))
                continue
        groups.append((bucket.start, bucket.end, needed))
    requests: list[HistogramRequest] = []
    for start, end, needed in groups:
        finest = max(min_step_ms, _ladder_at_least(_ms(end - start) / (max_buckets - 1)))
        requests.extend(_chunked(QueryWindow(start, end), min(needed, finest), max_buckets))
    if max_requests is not None and len(requests) > max_requests:

        def covered(request: HistogramRequest) -> int:
            return sum(b.rows for b in buckets if request.window.start <= b.start < request.window.end)

        requests = sorted(sorted(requests, key=covered, reverse=True)[:max_requests], key=lambda r: r.window.start)
    return requests


def _bucket_count(start: datetime, end: datetime, step_ms: int) -> float:
    """Most buckets a ``step_ms`` histogram of ``[start, end)`` can return (epoch alignment adds one)."""
    return _ms(end - start) / step_ms + 1


def _chunked(window: QueryWindow, step_ms: int, max_buckets: int) -> list[HistogramRequest]:
    """``window`` cut into pieces whose ``step_ms`` histograms have at most ``max_buckets`` buckets."""
    piece = timedelta(milliseconds=step_ms * (max_buckets - 1))
    requests: list[HistogramRequest] = []
    start = window.start
    while start < window.end:
        end = min(start + piece, window.end)
        requests.append(HistogramRequest(QueryWindow(start, end), step_ms))
        start = end
    return requests


def replace_buckets(coarse: Sequence[Bucket], span: QueryWindow, fine: Sequence[Bucket]) -> list[Bucket]:
    """``coarse`` with the buckets inside ``span`` swapped for the finer histogram of that span."""
    kept = [b for b in coarse if b.end <= span.start or b.start >= span.end]
    return sorted([*kept, *fine], key=lambda b: b.start)
