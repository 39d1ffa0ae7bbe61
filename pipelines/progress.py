"""``--progress bar|log|none``: dlt's progress collectors, with the planner's totals on each table's bar.

dlt's ``TqdmCollector`` counts the rows each table extracts, against no total. The source knows more:
once it has planned a table's read it knows how many pages it expects (``TableStats.pages_planned``)
and counts the pages read (``data_queries``). So during extract each Cargo table's bar counts pages
against the plan, tqdm derives the rate and the ETA from them, and the rows loaded so far and their
rate follow (``runs: 45%|####  | 51/113 [00:04<00:05, 12.5 pages/s, 510,000 rows, 124,000 rows/s]``).
Tables read without the planner (exports, catalogue) count requests, with no total. Normalize and
load keep dlt's own bars. A sync in steps (``pipelines/steps.py``) adds the steps committed so far to
each bar, and a line per committed step (``step_reporter``), in both ``bar`` and ``log`` modes.

A bar needs a terminal: ``--progress bar`` with stderr redirected is refused (``check_progress``)
rather than filling a log file with carriage returns or falling back to log lines unasked.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping
from typing import Any, TextIO

from dlt.common.runtime.collector import NULL_COLLECTOR, LogCollector, TqdmCollector
from dlt.common.runtime.collector_base import Collector

PROGRESS_KINDS = ("bar", "log", "none")


class ProgressUnavailable(Exception):
    """``--progress bar`` cannot be shown here: the message says why and what to use instead."""


def check_progress(kind: str, stream: TextIO | None = None) -> None:
    """Refuse a progress display that cannot be shown, before anything runs."""
    if kind not in PROGRESS_KINDS:
        raise ProgressUnavailable(f"--progress {kind!r}: use one of {', '.join(PROGRESS_KINDS)}")
    if kind != "bar":
        return
    stream = stream or sys.stderr
    try:
        import tqdm  # noqa: F401  (a dependency of cargo-elt: missing means a broken install)
    except ImportError as exc:
        raise ProgressUnavailable(
            f"--progress bar needs tqdm, which cargo-elt installs ({exc}): pip install 'cargo-elt' again"
        ) from None
    isatty = getattr(stream, "isatty", None)
    if not callable(isatty) or not isatty():
        raise ProgressUnavailable(
            "--progress bar draws on a terminal, and stderr is not one (redirected to a file or a pipe): "
            "use --progress log for lines a log file can keep, or --progress none"
        )


class PlannedProgress(TqdmCollector):
    """dlt's tqdm bars, where each Cargo table's extract bar counts pages against the planner's total."""

    def __init__(self, tables: Mapping[str, Any], file: TextIO, **tqdm_kwargs: Any) -> None:
        super().__init__(file=file, **tqdm_kwargs)
        self.tables = tables
        """The source's ``SyncStats``: table name -> ``TableStats``, filled while the tables are read."""
        self._pages: dict[str, Any] = {}
        self._step_started = time.time()

    def update(
        self,
        name: str,
        inc: int = 1,
        total: int | None = None,
        inc_total: int | None = None,
        message: str | None = None,
        label: str = "",
    ) -> None:
        stats = self.tables.get(name)
        if stats is None or label or not str(self.step or "").startswith("Extract"):
            # dlt types these None defaults as plain int / str
            super().update(name, inc, total, inc_total, message, label)  # type: ignore[arg-type]
            return
        self.show(name, stats)

    def show(self, name: str, stats: Any) -> None:
        """Bring table ``name``'s bar up to date with its stats: pages read of planned, rows and their rate."""
        from tqdm import tqdm

        bar = self._pages.get(name)
        if bar is None:
            bar = tqdm(desc=name, unit=" pages", leave=False, **self.tqdm_kwargs)
            # dlt reports a table once its first page is in: time it, as tqdm does, from the step's start
            bar.start_t = bar.last_print_t = self._step_started
            self._pages[name] = bar
        done = int(stats.data_queries)
        planned = int(stats.pages_planned)
        if planned:
            bar.total = max(planned, done)
        elapsed = time.time() - self._step_started  # tqdm's clock
        rate = f", {stats.rows / elapsed:,.0f} rows/s" if elapsed > 0 else ""
        committed = int(getattr(self.tables, "steps_committed", 0))
        steps = f", {committed} step{'s' if committed != 1 else ''} committed" if committed else ""
        bar.set_postfix_str(f"{stats.rows:,} rows{rate}{steps}", refresh=False)
        bar.update(done - bar.n)
        bar.refresh()

    def _start(self, step: str) -> None:
        super()._start(step)
        self._step_started = time.time()

    def _stop(self) -> None:
        for name, bar in self._pages.items():
            self.show(name, self.tables[name])  # the final counts: pages read after the last page dlt saw
            bar.close()
        self._pages.clear()
        super()._stop()


def describe_step(step: int, pending: list[str], tables: Mapping[str, Any]) -> str:
    """One line for a committed step: how many, rows so far, and the tables still being read."""
    rows = sum(int(getattr(t, "rows", 0)) for t in tables.values())
    rest = f"; continuing {', '.join(pending)}" if pending else "; done"
    return f"step {step} committed: {rows:,} rows loaded so far{rest}"


def step_reporter(kind: str, tables: Mapping[str, Any], stream: TextIO | None = None) -> Any:
    """What ``run_in_steps`` calls after each committed step: a line on stderr (none for ``none``, and
    none for a sync that took one step: nothing was cut)."""

    def report(step: int, pending: list[str]) -> None:
        if kind == "none" or (step == 1 and not pending):
            return
        line = describe_step(step, pending, tables)
        if kind == "bar":
            from tqdm import tqdm

            tqdm.write(line, file=stream or sys.stderr)
        else:
            print(line, file=stream or sys.stderr, flush=True)

    return report


def collector(kind: str, tables: Mapping[str, Any]) -> Collector:
    """The collector for ``--progress``, drawing on stderr (stdout carries only the summary)."""
    if kind == "none":
        return NULL_COLLECTOR
    if kind == "bar":
        return PlannedProgress(tables, file=sys.stderr, **_size(sys.stderr))
    return LogCollector(logger=sys.stderr, dump_system_stats=False)


FALLBACK_SIZE = os.terminal_size((100, 40))
"""Bar width and height when the terminal reports none: a terminal opened without a size (some
containers, ``docker exec``, a fresh pty) says 0 x 0, and tqdm then draws nothing at all."""


def _size(stream: TextIO) -> dict[str, Any]:
    """tqdm's size settings: the terminal's own (followed as it is resized), unless it reports none."""
    try:
        size = os.get_terminal_size(stream.fileno())
    except (OSError, ValueError, AttributeError):
        size = os.terminal_size((0, 0))
    found: dict[str, Any] = {"dynamic_ncols": True} if size.columns > 0 else {"ncols": FALLBACK_SIZE.columns}
    if size.lines <= 0:
        found["nrows"] = FALLBACK_SIZE.lines
    return found
