"""Reads that commit as they go: a step budget per extraction, and where an unfinished read resumes.

A backfill of tens of millions of rows used to be one dlt extraction, so its state (committed with
its load) moved only at the very end: a worker killed at 90 % started again from zero. With a
``StepBudget`` one extraction reads at most ``rows`` rows, or for at most ``seconds`` (whichever
comes first), then stops at a window boundary; what it read is a contiguous, exact prefix of the
range, loaded and committed with its state like any sync. The next extraction (the next
``pipeline.run`` of the same source, see ``pipelines/steps.py``) continues from there.

Windows are what the planner made for the whole range (they are cached between the steps of one
process, so a backfill is planned once); a step takes them in time order while the budget lasts. A
window refused by the server is still split and read within the step that started it, so the prefix
ends where the first window *not started* begins, never inside one.

``ReadProgress`` is that position, as kept in the table's resource state (``read`` for the stateful
sync, ``chunks`` for ``since``/``until`` chunks): the range's end, where the rest begins (a time and
a keyset cursor), the changed-rows filter the read was planned with, and Cargo's clock when it began.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from .planner import KeysetCursor, QueryWindow, UpdatedAfter
from .settings import DEFAULT_WINDOW_TARGET_ROWS
from .sqltext import parse_timestamp

DEFAULT_STEP_ROWS = 1_000_000
"""Rows one step of ``cargo-elt sync`` reads at most (``sources.cargo.step_rows``): bounds the load's
work per package, and what a crash can cost (docs/PERFORMANCE.md, section D)."""

DEFAULT_STEP_SECONDS = 300.0
"""Seconds one step of ``cargo-elt sync`` reads at most (``sources.cargo.step_seconds``)."""

STEP_DEFAULTS: dict[str, Any] = {"step_rows": DEFAULT_STEP_ROWS, "step_seconds": DEFAULT_STEP_SECONDS}
"""The step settings ``cargo-elt sync``, ``cargo-elt backfill`` and the Airflow DAGs use where none is
configured (the source alone reads without limit)."""

WINDOWS_PER_STEP = 8
"""A step holds at least this many planned windows: windows shrink below the planner's default
(``DEFAULT_WINDOW_TARGET_ROWS``) when a step is smaller than that many of them, so that a step ends
close to its budget. At the default step (1,000,000 rows) windows keep their default size."""

MIN_WINDOW_ROWS = 500
"""The smallest window a small step plans (a window costs at least one page query)."""


class StepBudget:
    """What one extraction may still read: rows reserved by the windows it starts, and a deadline.

    Shared by the fact tables of a source (a step bounds the whole load package, not each table).
    Reset for every extraction, told apart by dlt's load id (``extraction_id``). The first window of
    an extraction is always admitted, so every step makes progress whatever the limits.
    """

    def __init__(
        self,
        rows: int | None,
        seconds: float | None,
        extraction_id: Callable[[], str | None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rows = rows
        self.seconds = seconds
        self._extraction_id = extraction_id
        self._clock = clock
        self._lock = threading.Lock()
        self._extraction: str | None = None
        self._taken = 0
        self._admitted = 0
        self._deadline: float | None = None
        self.exhausted = False
        """Set once a window was refused in this extraction."""

    @property
    def limited(self) -> bool:
        """Whether an extraction can end before its reads are complete."""
        return self.rows is not None or self.seconds is not None

    def window_rows(self) -> int:
        """Rows a planned window should hold at most within this budget (``WINDOWS_PER_STEP``)."""
        if self.rows is None:
            return DEFAULT_WINDOW_TARGET_ROWS
        return max(MIN_WINDOW_ROWS, min(DEFAULT_WINDOW_TARGET_ROWS, self.rows // WINDOWS_PER_STEP))

    def _current(self) -> None:
        extraction = self._extraction_id()
        if self._deadline is None or extraction != self._extraction:
            self._extraction = extraction
            self._taken = 0
            self._admitted = 0
            self.exhausted = False
            self._deadline = float("inf") if self.seconds is None else self._clock() + self.seconds

    def admit(self, rows: int) -> bool:
        """Reserve ``rows`` (a window's expected rows) if the step allows; False once it is spent.

        The step's clock starts with its first question, i.e. when its first table has read its
        first page."""
        with self._lock:
            self._current()
            assert self._deadline is not None
            over_rows = self.rows is not None and self._taken + rows > self.rows
            over_time = self._clock() >= self._deadline
            if self._admitted and (over_rows or over_time or self.exhausted):
                self.exhausted = True
                return False
            self._taken += rows
            self._admitted += 1
            return True

    def charge(self, rows: int) -> None:
        """Count ``rows`` read without asking (a table's first page, read before any plan)."""
        with self._lock:
            self._current()
            self._taken += rows

    def taken(self) -> int:
        """Rows reserved so far in this extraction."""
        with self._lock:
            return self._taken


@dataclass(frozen=True)
class ReadProgress:
    """An unfinished read of one table: ``[at, until)`` (after ``cursor``) is still to be read.

    ``clock`` is Cargo's clock when the read began; ``max_seen`` the newest update value loaded so far.
    """

    until: datetime
    at: datetime
    cursor: KeysetCursor | None = None
    updated_after: datetime | None = None
    clock: datetime | None = None
    max_seen: datetime | None = None
    first_sync: bool = False

    @property
    def rest(self) -> QueryWindow:
        """What is left to read, as a window (resumed at the cursor)."""
        return QueryWindow(self.at, self.until, self.cursor)

    def moved_to(self, window: QueryWindow, max_seen: datetime | None) -> ReadProgress:
        """The same read, now to continue at ``window`` (the first window a step did not start)."""
        return replace(self, at=window.start, cursor=window.cursor, max_seen=max_seen)

    def predicate(self) -> UpdatedAfter | None:
        return UpdatedAfter(self.updated_after) if self.updated_after is not None else None

    def to_state(self) -> dict[str, Any]:
        """The progress as JSON-able resource state."""
        state: dict[str, Any] = {"until": self.until.isoformat(), "at": self.at.isoformat()}
        if self.cursor is not None:
            state["cursor"] = {"time": self.cursor.time.isoformat(), "key": list(self.cursor.key)}
        for name in ("updated_after", "clock", "max_seen"):
            value = getattr(self, name)
            if value is not None:
                state[name] = value.isoformat()
        if self.first_sync:
            state["first_sync"] = True
        return state

    @classmethod
    def from_state(cls, state: Mapping[str, Any] | None) -> ReadProgress | None:
        """The progress kept by ``to_state``, or None when there is none."""
        if not state:
            return None
        cursor_state = state.get("cursor")
        cursor = None
        if cursor_state:
            cursor = KeysetCursor(parse_timestamp(cursor_state["time"]), tuple(cursor_state["key"]))

        def instant(name: str) -> datetime | None:
            value = state.get(name)
            return parse_timestamp(value) if value is not None else None

        return cls(
            until=parse_timestamp(state["until"]),
            at=parse_timestamp(state["at"]),
            cursor=cursor,
            updated_after=instant("updated_after"),
            clock=instant("clock"),
            max_seen=instant("max_seen"),
            first_sync=bool(state.get("first_sync", False)),
        )


@dataclass
class PlanCache:
    """The windows a table's read has not started yet, kept between the steps of one process.

    Valid only for the read position it was stored for: a step that begins anywhere else (after a
    crash, in another process) plans again.
    """

    key: tuple[Any, ...] | None = None
    windows: list[QueryWindow] | None = None
    spec: Any = None

    @staticmethod
    def _key(progress: ReadProgress) -> tuple[Any, ...]:
        return (progress.at, progress.cursor, progress.until, progress.updated_after)

    def get(self, progress: ReadProgress) -> tuple[list[QueryWindow], Any] | None:
        """The windows left, and the spec they were read with, if stored for exactly this position."""
        if self.windows and self.key == self._key(progress):
            return list(self.windows), self.spec
        return None

    def store(self, progress: ReadProgress, windows: list[QueryWindow], spec: Any) -> None:
        self.key = self._key(progress) if windows else None
        self.windows = list(windows) if windows else None
        self.spec = spec
