"""Read one table's range: plan windows, fetch them in parallel, yield arrow tables.

Windows are fetched by a bounded pool of threads sharing one HTTP client. A window over the scan or
time cap is bisected and its halves are queued again; pages already read from it are kept. Tables
are yielded in completion order (the load merges on the primary key, so order does not matter).
At most ``concurrency`` windows per table are in flight, and the thread pool that reads them is
shared by all tables of a source: dlt pulls its resources round-robin, so with a pool per table four
tables would put four times the configured load on the server, and four times the threads (each
with its own malloc arena: measured as 190 MB more peak RSS on the medium benchmark).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from queue import SimpleQueue
from typing import Any

import pyarrow as pa

from .errors import (
    CargoProtocolError,
    CargoQueryError,
    CargoSchemaError,
    ResultCapExceeded,
    SkippedRowsError,
    WindowTooLarge,
    WindowTooNarrow,
)
from .fetch import fetch_pages, plan_windows
from .memory import release_free_memory
from .pages import PACKED_KEYS, CodecChoice, CsvCell, Page, RowObjects
from .planner import (
    HISTOGRAM_CELL,
    Bucket,
    Predicate,
    QueryWindow,
    UpdatedAfter,
    clip_buckets,
    cursor_after,
    packed_histogram_query,
    parse_packed_histogram,
    plan_step,
    range_condition,
)
from .settings import DEFAULT_WINDOW_TARGET_ROWS, MAX_COLUMNS_TO_READ, PAGE_LIMIT
from .specs import IDENTIFIER, SERVER_NAMES, ColumnSpec, TableSpec, ValueKind, kind_of_type
from .sqltext import sql_string
from .steps import StepBudget

logger = logging.getLogger(__name__)

Row = dict[str, Any]


SKIPS_LOGGED_PER_REASON = 3
"""Skipped rows logged one by one (WARNING) per reason; the rest are counted, and summed up at the end."""


@dataclass
class TableStats:
    """What one table's sync cost and what it skipped; printed by ``cargo-elt sync``, read by the benchmarks.

    ``skipped`` counts rows the source could not read or place (``skip``); each is logged. A table
    that skipped more than ``max_skipped`` rows fails the sync when its read ends (``enforce_skip_limit``),
    before anything of it is loaded: never a silent drop.
    """

    table: str
    rows: int = 0
    data_queries: int = 0
    planning_queries: int = 0
    retries: int = 0
    windows: int = 0
    splits: int = 0
    pages_planned: int = 0
    """Pages the planner expects this sync to read (those read before planning included); with
    ``data_queries`` (pages read) it is what a progress bar shows. Grows when rows arrive after
    planning or a refused window is split; 0 for tables read without the planner."""
    seconds: float = 0.0
    skipped: int = 0
    max_skipped: int = 0
    """Rows this table may skip before the sync fails (``sources.cargo.max_skipped_rows``)."""
    pending: bool = False
    """The last extraction stopped this table's read at its step's budget: the next one continues it."""
    skip_reasons: dict[str, int] = field(default_factory=dict, repr=False, compare=False)
    _noted: set[str] = field(default_factory=set, repr=False, compare=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **amounts: float) -> None:
        """Thread-safe increments."""
        with self._lock:
            for name, amount in amounts.items():
                setattr(self, name, getattr(self, name) + amount)

    def note_once(self, key: str, message: str, *args: object) -> None:
        """Log at INFO, once per sync and ``key``, a harmless difference the table adapted to."""
        with self._lock:
            if key in self._noted:
                return
            self._noted.add(key)
        logger.info(message, *args)

    def skip(self, rows: int, reason: str, where: str = "") -> None:
        """Count ``rows`` rows not loaded because of ``reason`` (a short, stable text) and log them.

        ``where`` says which export and which row (it may name a record, never a secret)."""
        if rows <= 0:
            return
        with self._lock:
            self.skipped += rows
            seen = self.skip_reasons.get(reason, 0)
            self.skip_reasons[reason] = seen + rows
        if seen < SKIPS_LOGGED_PER_REASON:
            logger.warning("%s: skipped %d row(s): %s%s", self.table, rows, reason, f" ({where})" if where else "")

    def enforce_skip_limit(self) -> None:
        """At the end of the table's read: sum up the skipped rows in the log, and fail the sync
        (``SkippedRowsError``) if there are more than ``max_skipped``."""
        if not self.skipped:
            return
        summary = "; ".join(f"{count} x {reason}" for reason, count in sorted(self.skip_reasons.items()))
        if self.skipped <= self.max_skipped:
            logger.warning(
                "%s: %d row(s) skipped and not loaded, within sources.cargo.max_skipped_rows = %d: %s",
                self.table,
                self.skipped,
                self.max_skipped,
                summary,
            )
            return
        raise SkippedRowsError(
            f"{self.table}: {self.skipped} row(s) could not be read or placed ({summary}); "
            f"sources.cargo.max_skipped_rows is {self.max_skipped}, so the sync stops before loading {self.table}. "
            f"To load the other rows and skip these, set sources.cargo.max_skipped_rows to at least {self.skipped} "
            "(or SOURCES__CARGO__MAX_SKIPPED_ROWS)"
        )

    @property
    def queries(self) -> int:
        """All queries of the table."""
        return self.data_queries + self.planning_queries


class CountingExecutor:
    """Counts the queries of one kind (planning or data) on their way to the client."""

    def __init__(self, client: Any, stats: TableStats, counter: str) -> None:
        self.client = client
        self.stats = stats
        self.counter = counter

    def query(self, sql: str) -> list[Row]:
        """One query, counted."""
        self.stats.add(**{self.counter: 1})
        rows: list[Row] = self.client.query(sql)
        return rows


class Backlog:
    """Pages read but not yet handed to dlt, counted across the tables of a source.

    The readers are faster than dlt's thread whenever writing the pages is slower than fetching
    them (on a busy or small machine: measured at 27 pages, 185 MB of arrow, at ``medium``). Past
    ``limit`` pages a reader stops after its current page and hands back the rest of its window (a
    keyset continuation, read later: no query is lost), and no new window starts while the table
    has one in flight, so what waits for dlt stays about ``limit`` pages. Readers never block: the
    pool is shared by the tables, and dlt takes their pages round-robin.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._pages = 0
        self._lock = threading.Lock()

    def add(self, pages: int) -> None:
        with self._lock:
            self._pages += pages

    def full(self) -> bool:
        with self._lock:
            return self._pages >= self.limit


BACKLOG_PAGES_PER_READER = 2
"""Pages that may wait for dlt per reader thread (``Backlog``)."""


@dataclass
class _WindowResult:
    tables: list[pa.Table]
    remainder: tuple[QueryWindow, ...] = ()
    """Halves still to read, when the server refused the window (scan, time or memory cap)."""
    continuation: QueryWindow | None = None
    """What is left after the first page, when only one page was asked for (``first_page_only``)."""
    refused: bool = False
    """``first_page_only`` and the server refused even one page of the whole range."""
    paused: QueryWindow | None = None
    """The rest of the window, when the reader stopped after a page because dlt was behind (``Backlog``)."""
    counted: list[Bucket] | None = None
    """The histogram of the whole window, when it came with the first page (``_FirstPagePlanned``)."""


def _read_window(  # noqa: PLR0912 (one window's page loop with its three exits and two fallbacks)
    executor: CountingExecutor,
    spec: TableSpec,
    window: QueryWindow,
    predicate: Predicate | None,
    codecs: CodecChoice,
    first_page_only: bool = False,
    emit: Callable[[pa.Table], None] | None = None,
    pause: Callable[[], bool] | None = None,
) -> _WindowResult:
    """Every page of ``window``; each page goes to ``emit`` as soon as it is decoded, if given.

    Handing pages over one by one (rather than with the window) keeps at most about one page per
    reader in memory: a window is several pages read one after the other.
    """
    tables: list[pa.Table] = []
    current = window
    while True:
        codec = codecs.codec
        try:
            for page in fetch_pages(executor, spec, current, predicate, codec=codec):
                if page.table is not None:
                    if emit is None:
                        tables.append(page.table)
                    else:
                        emit(page.table)
                if page.last is not None:
                    current = current.resumed_at(cursor_after(spec, page.last))
                if first_page_only and not page.ends_window:
                    return _WindowResult(tables, continuation=current)
                if pause is not None and not page.ends_window and pause():
                    return _WindowResult(tables, paused=current)
            return _WindowResult(tables)
        except WindowTooLarge as exc:
            if first_page_only and not tables:
                return _WindowResult(tables, refused=True)
            if not current.can_split():  # ``current``: the window resumed after the last page received
                after = None if current.cursor is None else (current.cursor.time, current.cursor.key)
                raise WindowTooNarrow(spec.name, current.start, current.end, exc, after) from exc
            return _WindowResult(tables, current.bisect())
        except (CargoQueryError, CargoProtocolError) as exc:
            if isinstance(exc, ResultCapExceeded) or isinstance(codec, RowObjects):
                raise
            logger.warning("%s: the server refused packed pages (%s); reading row objects instead", spec.name, exc)
            codecs.fall_back()


class _FirstPagePlanned:
    """The packed codec with the schema check and the range's histogram folded into its query.

    The packed page is one row (``page``, ``n``, ``last``), and so are ``schema_query``'s answer and
    ``packed_histogram_query``'s, so ``SELECT * FROM (<page>) AS p CROSS JOIN (<schema check>) AS s
    CROSS JOIN (<histogram>) AS h`` returns all three in one row: a range larger than a page is then
    planned without a query of its own. The schema row is kept in ``schema_row`` for
    ``adapt_to_schema``, the histogram's buckets in ``counted``; the page decodes as usual. The
    histogram reads every row of the range, so a range past the scan cap is refused here where the
    page alone might have passed: ``_first_page_checked`` then checks alone and plans with
    ``run_histogram``, which splits (one refused query more, on a range of millions of rows).
    """

    name = "csv with schema and plan"

    def __init__(
        self, packed: CsvCell, schema_sql: str, window: QueryWindow, histogram: tuple[str, int] | None
    ) -> None:
        self.packed = packed
        self.schema_sql = schema_sql
        self.window = window
        self.histogram = histogram
        self.schema_row: dict[str, Any] | None = None
        self.counted: list[Bucket] | None = None

    def sql(self, spec: TableSpec, window: QueryWindow, predicate: Predicate | None, limit: int) -> str:
        page = self.packed.sql(spec, window, predicate, limit)
        folded = f"SELECT * FROM ({page}) AS p CROSS JOIN ({self.schema_sql}) AS s"
        if self.histogram is not None:
            folded += f" CROSS JOIN ({self.histogram[0]}) AS h"
        return folded

    def decode(self, spec: TableSpec, rows: list[Row]) -> Page:
        if len(rows) != 1:
            raise CargoProtocolError(f"{spec.name}: a first page with its schema must be one row; got {len(rows)}")
        row = rows[0]
        if self.histogram is not None:
            if HISTOGRAM_CELL not in row:
                raise CargoProtocolError(f"{spec.name}: the first page came back without its histogram")
            try:
                self.counted = parse_packed_histogram(row[HISTOGRAM_CELL], self.window, self.histogram[1])
            except ValueError as exc:
                raise CargoProtocolError(f"{spec.name}: unreadable histogram with the first page: {exc}") from exc
        self.schema_row = {k: v for k, v in row.items() if k not in PACKED_KEYS and k != HISTOGRAM_CELL}
        return self.packed.decode(spec, [{k: row[k] for k in PACKED_KEYS if k in row}])


class _CountAfter:
    """Counts a query once it is answered, as ``counter``; a refused one as ``refused``."""

    def __init__(self, client: Any, stats: TableStats, counter: str, refused: str) -> None:
        self.client = client
        self.stats = stats
        self.counter = counter
        self.refused = refused

    def query(self, sql: str) -> list[Row]:
        try:
            rows: list[Row] = self.client.query(sql)
        except BaseException:
            self.stats.add(**{self.refused: 1})
            raise
        self.stats.add(**{self.counter: 1})
        return rows


def _first_page_checked(
    client: Any,
    stats: TableStats,
    original: TableSpec,
    window: QueryWindow,
    predicate: Predicate | None,
    codecs: CodecChoice,
) -> tuple[TableSpec, _WindowResult] | None:
    """The first page of ``window``, the schema check and the histogram of ``window``, in one query;
    None if not possible here.

    A server that refuses the combined query (or a column the query names that it no longer has) is
    answered by the two queries as before (the refused one counts as planning). When the check
    changes which columns are read (a column dropped, added or renamed), the first page is read again
    with the adapted spec (one more query, only then), so its rows carry the new columns too.
    """
    packed = codecs.codec
    if not isinstance(packed, CsvCell):
        return None
    expiring = predicate.expiring if isinstance(predicate, UpdatedAfter) else None
    histogram = None
    if window.cursor is None:
        step_ms = plan_step(window)
        histogram = (packed_histogram_query(original, window, step_ms, predicate), step_ms)
    folded = _FirstPagePlanned(packed, schema_query(original, expiring), window, histogram)
    executor = _CountAfter(client, stats, "data_queries", "planning_queries")
    pages = fetch_pages(executor, original, window, predicate, codec=folded)
    try:
        page = next(pages, None)
    except WindowTooLarge:  # the range is read in planned windows: the check alone, then the plan
        return check_schema(CountingExecutor(client, stats, "planning_queries"), original, predicate), _WindowResult(
            [], refused=True
        )
    except (CargoQueryError, CargoProtocolError) as exc:
        logger.info("%s: first page with the schema check refused (%s); asking separately", original.name, exc)
        return None
    finally:
        pages.close()
    if folded.schema_row is None:
        return None
    spec = adapt_to_schema(original, folded.schema_row, expiring)
    if spec is not original:
        fetcher = CountingExecutor(client, stats, "data_queries")
        reread = _read_window(fetcher, spec, window, predicate, codecs, first_page_only=True)
        reread.counted = folded.counted
        return spec, reread
    if page is None or page.ends_window or page.last is None:
        return spec, _WindowResult([page.table] if page is not None and page.table is not None else [])
    assert page.table is not None
    rest = window.resumed_at(cursor_after(spec, page.last))
    return spec, _WindowResult([page.table], continuation=rest, counted=folded.counted)


def _first_page_then_plan(
    planner: CountingExecutor,
    fetcher: CountingExecutor,
    spec: TableSpec,
    window: QueryWindow,
    predicate: Predicate | None,
    codecs: CodecChoice,
    target_rows: int = DEFAULT_WINDOW_TARGET_ROWS,
    probe: _WindowResult | None = None,
) -> tuple[list[pa.Table], list[QueryWindow]]:
    """One page of the whole range first; a histogram only for what that page did not cover.

    An incremental sync usually finds fewer rows than a page holds, so it costs one data query and
    no planning at all. When the page comes back full, the rest of the range (from the page's last
    row, resumed by keyset) is planned as usual; a range the server refuses to read in one go (over
    the scan cap) is planned whole. The page is never wasted: it is the first page any plan would read.
    """
    if probe is None:
        probe = _read_window(fetcher, spec, window, predicate, codecs, first_page_only=True)
    if probe.refused:
        return [], plan_windows(planner, spec, window, predicate, target_rows=target_rows)
    rest = probe.continuation
    if rest is None:
        return probe.tables, []
    assert rest.cursor is not None  # a page that does not end its window has a last row
    remaining = QueryWindow(rest.effective_start, rest.end)
    counted = clip_buckets(probe.counted, remaining) if probe.counted is not None else None
    planned = plan_windows(planner, spec, remaining, predicate, target_rows=target_rows, counted=counted)
    return probe.tables, [planned[0].resumed_at(rest.cursor), *planned[1:]]


@dataclass
class ReadOutcome:
    """How one ``read_range`` ended, for a caller that reads in steps.

    ``rest``: the planned windows the read did not start because its step's budget was spent, in
    time order (empty: the range was read whole). Everything before ``rest[0]`` has been read.
    ``spec``: the spec the read used after its schema check (a later step reads with it again).
    """

    rest: list[QueryWindow] = field(default_factory=list)
    spec: TableSpec | None = None

    @property
    def complete(self) -> bool:
        return not self.rest


def read_range(  # noqa: PLR0912, PLR0915 (the scheduler of one read: its windows, threads and budget share state)
    client: Any,
    spec: TableSpec,
    window: QueryWindow,
    predicate: Predicate | None,
    *,
    concurrency: int,
    stats: TableStats,
    codecs: CodecChoice | None = None,
    pool: ThreadPoolExecutor | None = None,
    schema_check: bool = True,
    budget: StepBudget | None = None,
    planned: tuple[list[QueryWindow], TableSpec] | None = None,
    outcome: ReadOutcome | None = None,
    backlog: Backlog | None = None,
) -> Iterator[pa.Table]:
    """Every row of ``window`` (matching ``predicate``), as arrow tables with the spec's schema.

    ``pool`` is the source's shared reader pool; without one, a pool of ``concurrency`` threads is
    made for this range alone. ``schema_check`` first compares the server's columns with the spec
    (``check_schema``); the tables then carry the spec's columns (NULL where the server dropped one)
    followed by any columns the server added and any text variants of values that no longer read.

    In steps (``steps.py``): planned windows are started in time order only while ``budget`` admits
    them, and ``outcome`` receives the ones left; windows already started are read to their end
    (halves of a refused one included), so what was read is an exact prefix of ``window``.
    ``planned`` continues a read planned by an earlier step (its windows and checked spec): no page
    is read before the windows, nothing is planned or checked again. ``backlog`` (shared by the
    source's tables) bounds the pages waiting for dlt.
    """
    if pool is None:
        with ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix=f"cargo-{spec.name}") as own:
            yield from read_range(
                client,
                spec,
                window,
                predicate,
                concurrency=concurrency,
                stats=stats,
                codecs=codecs,
                pool=own,
                schema_check=schema_check,
                budget=budget,
                planned=planned,
                outcome=outcome,
                backlog=backlog,
            )
        return
    codecs = codecs or CodecChoice()
    outcome = outcome if outcome is not None else ReadOutcome()
    started = time.monotonic()
    planner = CountingExecutor(client, stats, "planning_queries")
    fetcher = CountingExecutor(client, stats, "data_queries")
    original = spec.for_read()
    first_tables: list[pa.Table] = []
    if planned is not None:
        windows, spec = planned
    else:
        read_before = stats.data_queries
        checked = _first_page_checked(client, stats, original, window, predicate, codecs) if schema_check else None
        if checked is not None:
            spec, probe = checked
        else:
            spec = check_schema(planner, original, predicate) if schema_check else original
            probe = None
        target = budget.window_rows() if budget is not None else DEFAULT_WINDOW_TARGET_ROWS
        first_tables, windows = _first_page_then_plan(planner, fetcher, spec, window, predicate, codecs, target, probe)
        stats.add(
            windows=1 + len(windows),
            pages_planned=stats.data_queries - read_before + sum(expected_pages(w) for w in windows),
        )
        if budget is not None:
            budget.charge(sum(t.num_rows for t in first_tables))
    outcome.spec = spec
    backlog = backlog if backlog is not None else Backlog(BACKLOG_PAGES_PER_READER * max(1, concurrency))
    queue: deque[QueryWindow] = deque(windows)
    halves: deque[QueryWindow] = deque()
    pages: SimpleQueue[tuple[str, Any]] = SimpleQueue()
    stopped = threading.Event()

    def emit(table: pa.Table) -> None:
        if stopped.is_set():  # the consumer is gone (an error elsewhere, or dlt closed the generator)
            raise _ReadAbandoned
        backlog.add(1)
        pages.put(("page", table))

    def read(window: QueryWindow) -> None:
        try:
            result = _read_window(fetcher, spec, window, predicate, codecs, emit=emit, pause=backlog.full)
            pages.put(("done", result))
        except BaseException as exc:  # handed to the consumer, which raises it in dlt's thread
            pages.put(("error", exc))

    def next_window() -> QueryWindow | None:
        if active and backlog.full():  # dlt is behind: let it catch up (this table has a window going)
            return None
        if halves:  # a started window's halves and continuations: read within the step that started it
            return halves.popleft()
        if queue and (budget is None or budget.admit(queue[0].expected_rows or PAGE_LIMIT)):
            return queue.popleft()
        return None

    active = 0
    try:
        for table in first_tables:
            if table.num_rows:
                yield conform(table, original)
        while True:
            while active < max(1, concurrency):
                chosen = next_window()
                if chosen is None:
                    break
                pool.submit(read, chosen)
                active += 1
            if not active:
                break
            kind, value = pages.get()
            if kind == "page":
                backlog.add(-1)
                if value.num_rows:
                    yield conform(value, original)
                continue
            active -= 1
            if kind == "error":
                raise value
            if value.remainder:
                # the halves of a refused window cost one short last page more than the window did
                stats.add(splits=1, windows=len(value.remainder), pages_planned=len(value.remainder) - 1)
                # depth first: a window the server keeps refusing reaches one millisecond (and
                # ``WindowTooNarrow``) after ~35 splits, instead of after every window of each level
                halves.extendleft(reversed(value.remainder))
            if value.paused is not None:
                halves.appendleft(value.paused)
        outcome.rest = list(queue)
    finally:
        stopped.set()
        while not pages.empty():  # pages of an abandoned read no longer wait for dlt
            if pages.get()[0] == "page":
                backlog.add(-1)
        stats.add(seconds=time.monotonic() - started)
        release_free_memory()  # what the readers freed, before the next table or the load


def expected_pages(window: QueryWindow) -> int:
    """Page queries a planned window costs: a page per ``PAGE_LIMIT`` rows, and a last, short one."""
    return (window.expected_rows or 0) // PAGE_LIMIT + 1


class _ReadAbandoned(Exception):
    """Raised in a reader thread whose table's read was abandoned, to stop reading its window."""


# -- schema drift ------------------------------------------------------------------------------------

_TYPE_KEY = re.compile(r"^toTypeName\(any\((?P<name>.+)\)\)$")
_OPEN = "__cargo_open"
_OLDEST_OPEN = "__cargo_oldest_open"


def schema_query(spec: TableSpec, expiring: QueryWindow | None = None) -> str:
    """The server's column types in one row, reading no rows: ``SELECT * APPLY(any) APPLY(toTypeName)``.

    Columns the spec ignores on purpose are left out with a regular-expression ``EXCEPT`` (a Nested
    column's parts too), which also keeps the query under the 50-column cap. With ``expiring`` (the
    stretch of a bounded table that leaves the lookback this sync) the same query counts its rows
    that are still not terminal, over that stretch only.
    """
    parts = [re.escape(name[:-1]) + "[.].*" if name.endswith(".") else re.escape(name) for name in spec.ignored_columns]
    excluded = f" EXCEPT ({sql_string('^(' + '|'.join(parts) + ')$')})" if parts else ""
    select = f"SELECT *{excluded} APPLY(any) APPLY(toTypeName)"
    where = "0"
    if expiring is not None:
        terminal = ", ".join(sql_string(status) for status in sorted(spec.terminal_statuses))
        still_open = f"{spec.status_column} NOT IN ({terminal})"
        select += (
            f", countIf({still_open}) AS {_OPEN}, toString(minIf({spec.time_column}, {still_open})) AS {_OLDEST_OPEN}"
        )
        where = range_condition(spec, expiring)
    return f"{select} FROM {spec.name} WHERE {where}"


def _ignored(spec: TableSpec, name: str) -> bool:
    return any(name.startswith(i) if i.endswith(".") else name == i for i in spec.ignored_columns)


def server_column_types(row: dict[str, Any]) -> dict[str, str]:
    """The answer of ``schema_query`` as ``{server column: ClickHouse type}`` (other keys ignored)."""
    types: dict[str, str] = {}
    for key, value in row.items():
        found = _TYPE_KEY.match(key)
        if found and isinstance(value, str):
            types[found.group("name").strip("`")] = value
    return types


@dataclass(frozen=True)
class SchemaDiff:
    """How the server's columns of one table compare with its ``TableSpec`` (``schema_diff``).

    What the sync does with each part is decided by ``check_schema``; ``cargo-elt check`` reports the
    same comparison without reading anything.
    """

    table: str
    server_types: dict[str, str]
    """Server column -> ClickHouse type, as ``schema_query`` answered (ignored columns left out)."""
    renamed: dict[str, str]
    """Spec column -> the server's other name for it (``specs.SERVER_NAMES``): read from there."""
    missing_required: tuple[str, ...]
    """Key, time, update or status columns the server lacks: the table cannot be read."""
    dropped: tuple[str, ...]
    """Other spec columns the server lacks: no longer selected, NULL in the rows loaded."""
    added: dict[str, str]
    """Server columns the spec neither lists nor ignores -> their type."""
    retyped: dict[str, str]
    """Spec columns whose server type reads as another kind -> the server's type."""


def schema_diff(spec: TableSpec, types: dict[str, str]) -> SchemaDiff:
    """Compare the server's columns (``server_column_types``) with ``spec``; pure, no logging."""
    renamed = _server_names(spec, types)
    missing = [c.name for c in spec.columns if c.name not in types and c.name not in renamed]
    needed = spec.required_columns | {spec.status_column}
    retyped: dict[str, str] = {}
    for column in spec.columns:
        server_name = renamed.get(column.name, column.name)
        if server_name in types:
            kind, _ = kind_of_type(types[server_name])
            expected = ValueKind.STRING if column.kind is ValueKind.JSON else column.kind
            if kind is not expected:
                retyped[column.name] = types[server_name]
    added = {
        name: clickhouse_type
        for name, clickhouse_type in types.items()
        if name not in spec.column_names and name not in renamed.values() and not _ignored(spec, name)
    }
    return SchemaDiff(
        spec.name,
        dict(types),
        renamed,
        tuple(sorted(n for n in missing if n in needed)),
        tuple(n for n in missing if n not in needed),
        added,
        retyped,
    )


def loadable_added(spec: TableSpec, diff: SchemaDiff) -> tuple[list[ColumnSpec], dict[str, str]]:
    """The added columns the sync loads from now on (scalar types, plain names, within the 50-column
    cap), and those it leaves out (name -> type)."""
    room = MAX_COLUMNS_TO_READ - (len(spec.columns) - len(diff.dropped))
    loaded: list[ColumnSpec] = []
    left_out: dict[str, str] = {}
    for name, clickhouse_type in diff.added.items():
        kind, _ = kind_of_type(clickhouse_type)
        if kind is None or not IDENTIFIER.fullmatch(name) or len(loaded) >= room:
            left_out[name] = clickhouse_type
        else:
            loaded.append(ColumnSpec(name, clickhouse_type, kind, nullable=True))
    return loaded, left_out


def check_schema(executor: CountingExecutor, spec: TableSpec, predicate: Predicate | None) -> TableSpec:
    """The spec to read with, after comparing the server's columns with ``spec`` (one query, no rows read).

    * a column the server lacks is no longer selected (an INFO names it: the table adapts); the loaded
      tables hold NULL in it, and the destination keeps it. A column the server has under another name
      (``specs.SERVER_NAMES``: the record key ``id`` as ``record_id``) is read from that name (INFO). A
      missing key, cursor or status column is fatal (``CargoSchemaError`` naming it);
    * a column the server added is reported with a WARNING and loaded from now on (dlt adds it to the
      destination table; rows loaded before read NULL), if its type is a scalar and the 50-column cap
      allows; otherwise the WARNING says it is not loaded;
    * a column whose type changed kind is reported; its values are read leniently (``arrow.convert_lenient``).

    If the server refuses the check itself (an older ClickHouse without ``APPLY``, say), the sync goes
    on with the spec as it is: the check must never be the reason a sync fails.
    """
    expiring = predicate.expiring if isinstance(predicate, UpdatedAfter) else None
    try:
        rows = executor.query(schema_query(spec, expiring))
    except (CargoQueryError, CargoProtocolError) as exc:
        logger.info("%s: schema check skipped (%s)", spec.name, str(exc).split("\n", 1)[0])
        if expiring is not None:
            spec.warn_once(
                "expiring:unknown",
                "%s: could not count the rows still open in %s, which leaves the %s lookback now; "
                "their later updates will not be loaded",
                spec.name,
                expiring,
                "max_lookback_days",
            )
        return spec
    return adapt_to_schema(spec, rows[0] if rows else {}, expiring)


def adapt_to_schema(spec: TableSpec, row: dict[str, Any], expiring: QueryWindow | None) -> TableSpec:
    """``check_schema`` once the server has answered ``schema_query``: ``row`` is its one row."""
    types = server_column_types(row)
    if expiring is not None:
        _warn_expiring(spec, expiring, row)
    if not types:
        return spec
    diff = schema_diff(spec, types)
    if diff.missing_required:
        raise CargoSchemaError(
            f"{spec.name}: the server no longer has column(s) {list(diff.missing_required)}, which the connector "
            "needs (primary key, time, update or status column); the table cannot be synced"
        )
    for name, other in diff.renamed.items():
        if f"renamed:{name}" not in spec.warned:
            spec.warned.add(f"renamed:{name}")
            logger.info("%s.%s: the server calls this column %s; reading it from there", spec.name, name, other)
    for name in diff.dropped:
        if f"dropped:{name}" not in spec.warned:
            spec.warned.add(f"dropped:{name}")
            logger.info(
                "%s.%s: the server has no such column; it is not read, rows loaded from now on hold NULL in it "
                "(a destination that has the column keeps it)",
                spec.name,
                name,
            )
    for name, server_type in diff.retyped.items():
        column = spec.column(name)
        spec.warn_once(
            f"type:{name}",
            "%s.%s: the server's type is now %s, the connector expects %s; values that no longer read "
            "as %s are loaded as text into %s__v_text",
            spec.name,
            name,
            server_type,
            column.clickhouse_type,
            column.arrow_type,
            name,
        )
    added, left_out = loadable_added(spec, diff)
    for name, clickhouse_type in left_out.items():
        spec.warn_once(
            f"added:{name}",
            "%s.%s: the server has a new column (%s); it is not loaded (not a scalar type, not a plain "
            "name, or over the %d-column cap)",
            spec.name,
            name,
            clickhouse_type,
            MAX_COLUMNS_TO_READ,
        )
    for column in added:
        spec.warn_once(
            f"added:{column.name}",
            "%s.%s: the server has a new column (%s); loading it from now on (rows loaded before hold NULL)",
            spec.name,
            column.name,
            column.clickhouse_type,
        )
    if not diff.dropped and not added and not diff.renamed:
        return spec
    return spec.without(diff.dropped).with_columns(added).read_as(diff.renamed)


def _server_names(spec: TableSpec, types: dict[str, str]) -> dict[str, str]:
    """Spec columns the server has only under another name (``specs.SERVER_NAMES``): ``{name: source}``."""
    sources: dict[str, str] = {}
    for column in spec.columns:
        if column.name in types:
            continue
        for other in SERVER_NAMES.get((spec.name, column.name), ()):
            if other in types and other not in spec.column_names:
                sources[column.name] = other
                break
    return sources


def _warn_expiring(spec: TableSpec, expiring: QueryWindow, row: dict[str, Any]) -> None:
    try:
        still_open = int(row.get(_OPEN) or 0)
    except (TypeError, ValueError):
        return
    if still_open:
        spec.warn_once(
            "expiring",
            "%s: %d rows started in %s are still not terminal (oldest %s) and now fall out of the "
            "max_lookback_days window: their later updates will not be loaded. Raise max_lookback_days, or "
            "re-read that stretch with a since/until backfill once they finish",
            spec.name,
            still_open,
            expiring,
            row.get(_OLDEST_OPEN),
        )


def conform(table: pa.Table, spec: TableSpec) -> pa.Table:
    """``table`` with exactly ``spec``'s columns first (NULL for any the server dropped), then its others."""
    names = table.column_names
    if names[: len(spec.columns)] == list(spec.column_names):
        return table
    schema = spec.arrow_schema()
    arrays: list[pa.Array | pa.ChunkedArray] = []
    fields: list[pa.Field] = []
    for field_ in schema:
        if field_.name in names:
            arrays.append(table.column(field_.name))
        else:
            arrays.append(pa.nulls(table.num_rows, field_.type))
        fields.append(field_)
    for name in names:
        if name not in schema.names:
            arrays.append(table.column(name))
            fields.append(table.schema.field(name))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))
