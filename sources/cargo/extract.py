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
import threading
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from .errors import CargoProtocolError, CargoQueryError, ResultCapExceeded, WindowTooLarge
from .fetch import fetch_pages, plan_windows
from .pages import CodecChoice, RowObjects
from .planner import Predicate, QueryWindow, cursor_after
from .specs import TableSpec

logger = logging.getLogger(__name__)

Row = dict[str, Any]


@dataclass
class TableStats:
    """What one table's sync cost; printed by ``cargo-elt sync`` and read by the benchmarks."""

    table: str
    rows: int = 0
    data_queries: int = 0
    planning_queries: int = 0
    retries: int = 0
    windows: int = 0
    splits: int = 0
    seconds: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **amounts: float) -> None:
        """Thread-safe increments."""
        with self._lock:
            for name, amount in amounts.items():
                setattr(self, name, getattr(self, name) + amount)

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


@dataclass
class _WindowResult:
    tables: list[pa.Table]
    remainder: tuple[QueryWindow, ...] = ()


def _read_window(
    executor: CountingExecutor,
    spec: TableSpec,
    window: QueryWindow,
    predicate: Predicate | None,
    codecs: CodecChoice,
) -> _WindowResult:
    tables: list[pa.Table] = []
    current = window
    while True:
        codec = codecs.codec
        try:
            for page in fetch_pages(executor, spec, current, predicate, codec=codec):
                if page.table is not None:
                    tables.append(page.table)
                    current = current.resumed_at(cursor_after(spec, page.last)) if page.last else current
            return _WindowResult(tables)
        except WindowTooLarge as exc:
            unread = exc.window or current
            if not unread.can_split():
                raise
            return _WindowResult(tables, unread.bisect())
        except (CargoQueryError, CargoProtocolError) as exc:
            if isinstance(exc, ResultCapExceeded) or isinstance(codec, RowObjects):
                raise
            logger.warning("%s: the server refused packed pages (%s); reading row objects instead", spec.name, exc)
            codecs.fall_back()


def read_range(
    client: Any,
    spec: TableSpec,
    window: QueryWindow,
    predicate: Predicate | None,
    *,
    concurrency: int,
    stats: TableStats,
    codecs: CodecChoice | None = None,
    pool: ThreadPoolExecutor | None = None,
) -> Iterator[pa.Table]:
    """Every row of ``window`` (matching ``predicate``), as arrow tables with the spec's schema.

    ``pool`` is the source's shared reader pool; without one, a pool of ``concurrency`` threads is
    made for this range alone.
    """
    if pool is None:
        with ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix=f"cargo-{spec.name}") as own:
            yield from read_range(
                client, spec, window, predicate, concurrency=concurrency, stats=stats, codecs=codecs, pool=own
            )
        return
    codecs = codecs or CodecChoice()
    started = time.monotonic()
    planner = CountingExecutor(client, stats, "planning_queries")
    fetcher = CountingExecutor(client, stats, "data_queries")
    queue: deque[QueryWindow] = deque(plan_windows(planner, spec, window, predicate))
    stats.add(windows=len(queue))
    in_flight: set[Future[_WindowResult]] = set()
    try:
        while queue or in_flight:
            while queue and len(in_flight) < max(1, concurrency):
                in_flight.add(pool.submit(_read_window, fetcher, spec, queue.popleft(), predicate, codecs))
            done, in_flight = wait(in_flight, return_when=FIRST_COMPLETED)
            for future in done:
                result = future.result()
                if result.remainder:
                    stats.add(splits=1, windows=len(result.remainder))
                    queue.extend(result.remainder)
                for table in result.tables:
                    if table.num_rows:
                        yield table
    finally:
        for future in in_flight:
            future.cancel()
        stats.add(seconds=time.monotonic() - started)
