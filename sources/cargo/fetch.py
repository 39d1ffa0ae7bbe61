"""The two query loops on top of the planner: plan a range into windows, and read one window.

Both take anything with a ``query(sql) -> rows`` method (``CargoClient`` in production), so the
dlt resources can run windows in a thread pool, each fetch on the shared client. Errors that need a
decision the loop cannot take alone propagate: a window over the scan/time/memory cap comes back as
``WindowTooLarge``; the caller, which knows the last page it received, bisects what is left.
"""

from __future__ import annotations

import logging
from collections.abc import Generator, Iterator
from typing import Any, Protocol

from .errors import CargoQueryError, KeysetStalled, ResultCapExceeded, WindowTooLarge, WindowTooNarrow
from .pages import Page, PageCodec, RawRows, RowObjects
from .planner import (
    Bucket,
    HistogramRequest,
    Predicate,
    QueryWindow,
    cursor_after,
    histogram_query,
    pack_windows,
    parse_histogram,
    plan_step,
    refinement_requests,
    replace_buckets,
)
from .settings import (
    DEFAULT_WINDOW_SCAN_ROWS,
    DEFAULT_WINDOW_TARGET_ROWS,
    HISTOGRAM_MAX_BUCKETS,
    HISTOGRAM_MAX_REFINE_DEPTH,
    HISTOGRAM_REFINE_PAGES_PER_QUERY,
    MIN_PAGE_LIMIT,
    PAGE_LIMIT,
)
from .specs import TableSpec

logger = logging.getLogger(__name__)

Row = dict[str, Any]


class QueryExecutor(Protocol):
    """Runs one ``orchestration/query`` statement and returns its rows."""

    def query(self, sql: str) -> list[Row]: ...


def run_histogram(
    executor: QueryExecutor, spec: TableSpec, request: HistogramRequest, extra_predicate: Predicate | None = None
) -> list[Bucket]:
    """The buckets of one histogram request, bisecting its window while the server refuses it.

    A histogram reads every row of its window, so a range holding more than 10 M rows fails with
    the scan cap (158) or the time cap (159); halves are planned separately, each with its own step.
    """
    pending = [request]
    buckets: list[Bucket] = []
    while pending:
        current = pending.pop()
        try:
            rows = executor.query(histogram_query(spec, current.window, current.step_ms, extra_predicate))
        except WindowTooLarge as exc:
            if not current.window.can_split():
                raise WindowTooNarrow(spec.name, current.window.start, current.window.end, exc) from exc
            halves = current.window.bisect()
            logger.info("histogram of %s %s too large; planning halves", spec.name, current.window)
            pending.extend(HistogramRequest(half, min(current.step_ms, plan_step(half))) for half in halves)
            continue
        buckets.extend(parse_histogram(rows, current.window, current.step_ms))
    return sorted(buckets, key=lambda b: b.start)


def plan_windows(
    executor: QueryExecutor,
    spec: TableSpec,
    window: QueryWindow,
    extra_predicate: Predicate | None = None,
    *,
    target_rows: int = DEFAULT_WINDOW_TARGET_ROWS,
    max_scan_rows: int = DEFAULT_WINDOW_SCAN_ROWS,
    max_buckets: int = HISTOGRAM_MAX_BUCKETS,
    refine_budget: int | None = None,
    counted: list[Bucket] | None = None,
) -> list[QueryWindow]:
    """Windows covering ``window`` exactly, each expected to fit one page.

    One histogram at the finest step that stays under ``max_buckets`` (or ``counted``, that histogram
    already answered with the first page), then at most ``HISTOGRAM_MAX_REFINE_DEPTH`` rounds of finer
    histograms over stretches too dense to pack well, within ``refine_budget`` queries (by default
    ``refinement_budget`` of the rows counted).
    """
    if counted is None:
        request = HistogramRequest(window, plan_step(window, max_buckets))
        buckets = run_histogram(executor, spec, request, extra_predicate)
    else:
        buckets = sorted(counted, key=lambda b: b.start)
    budget = refinement_budget(sum(b.rows for b in buckets)) if refine_budget is None else refine_budget
    min_step_ms = 1
    for _ in range(HISTOGRAM_MAX_REFINE_DEPTH):
        requests = refinement_requests(buckets, target_rows, max_buckets, budget, min_step_ms)
        if not requests:
            break
        budget -= len(requests)
        for request in requests:
            if request.step_ms < min_step_ms:
                continue
            try:
                fine = run_histogram(executor, spec, request, extra_predicate)
            except CargoQueryError as exc:
                if isinstance(exc, WindowTooLarge) or request.step_ms % 1000 == 0:
                    raise
                # sub-second buckets need DateTime64; without them bursts are just packed coarser
                logger.warning("%s: sub-second histogram refused (code %s); using whole seconds", spec.name, exc.code)
                min_step_ms = 1000
                continue
            buckets = replace_buckets(buckets, request.window, fine)
    windows = pack_windows(buckets, window, target_rows, max_scan_rows)
    logger.debug(
        "%s %s: %d windows for %d expected rows",
        spec.name,
        window,
        len(windows),
        sum(w.expected_rows or 0 for w in windows),
    )
    return windows


def refinement_budget(rows: int) -> int:
    """Refinement histograms a plan of ``rows`` may spend: one per ``HISTOGRAM_REFINE_PAGES_PER_QUERY`` pages.

    A refinement costs one query and saves about one page at best, so it is only worth its query
    where the plan is long; the budget also keeps planning within 2 % of the data queries.
    """
    return int(rows / PAGE_LIMIT / HISTOGRAM_REFINE_PAGES_PER_QUERY)


def fetch_pages(
    executor: QueryExecutor,
    spec: TableSpec,
    window: QueryWindow,
    extra_predicate: Predicate | None = None,
    *,
    codec: PageCodec | None = None,
    page_limit: int = PAGE_LIMIT,
) -> Generator[Page]:
    """Pages of the window's rows in ``(time, primary key)`` order, until a page comes back short.

    A full page continues after its last row (keyset), which also covers one second holding more
    than a page and rows that arrived after planning. On the result cap (396) the page shrinks and
    reading continues from the same cursor. The scan, time or memory cap (``WindowTooLarge``) is raised
    to the caller, which splits what it has not received: ``window`` resumed after the last page
    (pages already yielded stay delivered).
    """
    codec = codec or RowObjects()
    limit = page_limit
    current = window
    while True:
        try:
            page = codec.decode(spec, executor.query(codec.sql(spec, current, extra_predicate, limit)))
        except ResultCapExceeded:
            if limit <= MIN_PAGE_LIMIT:
                raise
            limit = max(MIN_PAGE_LIMIT, limit // 2)
            logger.warning("%s %s: result cap hit, continuing with pages of %d rows", spec.name, current, limit)
            continue
        last = page.last
        page.ends_window = page.count < limit or last is None
        if page.count:
            yield page
        if page.ends_window or last is None:
            return
        cursor = cursor_after(spec, last)
        if cursor == current.cursor:
            raise KeysetStalled(
                f"{spec.name} {current}: a full page ended where it started ({cursor}); "
                f"the table's key {spec.sort_key} does not order its rows strictly"
            )
        current = current.resumed_at(cursor)


def fetch_window(
    executor: QueryExecutor,
    spec: TableSpec,
    window: QueryWindow,
    extra_predicate: Predicate | None = None,
    *,
    page_limit: int = PAGE_LIMIT,
) -> Iterator[list[Row]]:
    """``fetch_pages`` with the pages left as the row objects the server sent."""
    for page in fetch_pages(executor, spec, window, extra_predicate, codec=RawRows(), page_limit=page_limit):
        yield page.rows or []
