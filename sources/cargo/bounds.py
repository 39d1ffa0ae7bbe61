"""Where one sync reads: every time bound, from Cargo's clock and the user's dates.

A user's dates (``start_date``, ``since``, ``until``) are UTC instants on Cargo's clock: they are
compared with what Cargo reports and with Cargo's ``now``, never with this machine's. The defaults
are derived from Cargo's ``now`` the same way: a first sync starts ``DEFAULT_BACKFILL`` before it,
and every read ends ``settle`` before it (rows newer than that wait for the next sync, see
``incremental.py``). ``SyncWindow`` resolves them when a resource first needs them, so building the
source makes no request.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from .errors import CargoConfigurationError
from .server_clock import ClockReading, ServerClock
from .sqltext import floor_ms

logger = logging.getLogger(__name__)

DEFAULT_BACKFILL = timedelta(days=90)
"""How far before Cargo's ``now`` a first sync starts when ``start_date`` is not set."""


@dataclass(frozen=True)
class SyncBounds:
    """The time bounds of one sync, all on Cargo's clock (UTC, whole milliseconds)."""

    server_now: datetime
    start: datetime
    """Where reads begin: ``since`` for a backfill chunk, else ``start_date`` (default now - 90 days)."""
    until: datetime
    """Where reads end, exclusive: ``until`` for a chunk, else Cargo's now minus ``settle``."""
    chunk: bool
    """A stateless ``[since, until)`` backfill chunk (the incremental state is left alone)."""


SETTING_NAMES: Mapping[str, str] = {"start_date": "sources.cargo.start_date", "since": "since", "until": "until"}
"""How messages name the dates; the CLI names the ones it was given by their options (``--since``)."""


def resolve_bounds(
    server_now: datetime,
    *,
    start_date: datetime | None,
    since: datetime | None,
    until: datetime | None,
    settle: timedelta,
    names: Mapping[str, str] | None = None,
    strict: bool = False,
) -> SyncBounds:
    """The bounds implied by Cargo's ``server_now`` and the settings; refuses dates in Cargo's future.

    The dates were parsed with the other settings (``config.py``); here they meet Cargo's clock.
    ``names`` overrides ``SETTING_NAMES`` in the messages. A chunk may end after Cargo's clock (an
    Airflow interval ahead of it), with a warning; ``strict`` (``cargo-elt sync``, checking its
    options before anything runs) refuses that instead, and logs nothing.
    """
    named = {**SETTING_NAMES, **(names or {})}
    now = floor_ms(server_now)
    clock = f"Cargo's clock reads {now.isoformat()} (dates are UTC, on Cargo's clock)"
    start = floor_ms(start_date) if start_date is not None else now - DEFAULT_BACKFILL
    if start >= now:
        raise CargoConfigurationError(f"{named['start_date']} {start.isoformat()} is not in the past: {clock}")
    if since is None:
        if until is not None:
            raise CargoConfigurationError(
                f"{named['until']} needs {named['since']}: a backfill chunk is [since, until)"
            )
        return SyncBounds(server_now=now, start=start, until=now - settle, chunk=False)
    since = floor_ms(since)
    if since > now:
        raise CargoConfigurationError(f"{named['since']} {since.isoformat()} is in the future: {clock}")
    if strict and until is not None and floor_ms(until) > now:
        raise CargoConfigurationError(f"{named['until']} {floor_ms(until).isoformat()} is in the future: {clock}")
    end = floor_ms(until) if until is not None else now - settle
    if end <= since:
        raise CargoConfigurationError(
            f"{named['until']} {end.isoformat()} must be after {named['since']} {since.isoformat()}"
        )
    if end > now - settle and not strict:
        logger.warning(
            "until %s is later than Cargo's clock (%s) minus settle_seconds: rows Cargo records in [%s, %s) "
            "after this sync are not in this chunk",
            end.isoformat(),
            now.isoformat(),
            (now - settle).isoformat(),
            end.isoformat(),
        )
    return SyncBounds(server_now=now, start=since, until=end, chunk=True)


class SyncWindow:
    """The bounds of the sync in progress, resolved from Cargo's clock the first time one is needed."""

    def __init__(
        self,
        clock: ServerClock,
        *,
        start_date: datetime | None,
        since: datetime | None,
        until: datetime | None,
        settle: timedelta,
    ) -> None:
        self.clock = clock
        self._start_date = start_date
        self._since = since
        self._until = until
        self._settle = settle
        self._lock = threading.Lock()
        self._resolved: tuple[ClockReading, SyncBounds] | None = None

    def __call__(self) -> SyncBounds:
        """This sync's bounds (reads Cargo's clock once per extraction, see ``ServerClock``)."""
        reading = self.clock.reading()
        with self._lock:
            if self._resolved is None or self._resolved[0] is not reading:
                bounds = resolve_bounds(
                    reading.server_now,
                    start_date=self._start_date,
                    since=self._since,
                    until=self._until,
                    settle=self._settle,
                )
                self._resolved = (reading, bounds)
            return self._resolved[1]

    def __repr__(self) -> str:
        return f"SyncWindow(start_date={self._start_date}, since={self._since}, until={self._until})"
