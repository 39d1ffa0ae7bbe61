"""Cargo's clock: the one "now" every time bound of a sync is taken from.

Cargo stamps what it stores with its own clock: a run's ``created_at``, a batch's ``finished_at``,
the ``updated_at`` a later sync filters on. A bound computed on the machine the sync runs on
compares two clocks, and every second between them is a second of rows skipped or read twice
(a container started with a wrong clock, a drifting worker, an Airflow backfill run "in the past"
on purpose). So the source reads Cargo's clock once per sync, through the query endpoint, and
derives every bound from it (``bounds.py``). The client's own clock is used for timeouts and
backoff, and here, once per reading, to measure how far off it is (``ClockReading.skew``), which is
logged: at INFO, and at WARNING past ``SKEW_WARNING`` (once per sync in steps, unless the skew moves).

``read_server_clock`` is one query and is what ``cargo-elt sync``'s preflight (and a ``check``)
calls; ``ServerClock`` reads it lazily, once per extraction, for all resources of one source.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import dlt
from dlt.common.storages.exceptions import CurrentLoadPackageStateNotAvailable

from .client import CargoClient
from .errors import CargoError, CargoProtocolError, CargoQueryError
from .extract import TableStats
from .sqltext import floor_ms, parse_timestamp

logger = logging.getLogger(__name__)

CLOCK_QUERY = "SELECT toUnixTimestamp64Milli(now64(3)) AS server_now_ms"
"""[I] The server's clock as epoch milliseconds. A number, so neither the server's timezone nor how
it prints ``DateTime`` values can shift it. ``now64`` is not among the functions Cargo's docs name
(``now()`` is, REFERENCE.md 4.3), hence the fallback below."""

FALLBACK_CLOCK_QUERY = "SELECT toUnixTimestamp(now()) AS server_now_s"
"""[D] ``now()`` is documented as allowed; whole seconds (the reading is floored: never ahead)."""

SKEW_WARNING = timedelta(minutes=1)
"""A client clock further than this from Cargo's is logged as a WARNING (else INFO)."""


class ServerClockUnavailable(CargoError):
    """Cargo refused both queries that read its clock: no bound of the sync can be computed."""


@dataclass(frozen=True)
class ClockReading:
    """One reading of Cargo's clock, with the client's clock at the same moment (for the skew only)."""

    server_now: datetime
    """Cargo's clock, UTC, whole milliseconds."""
    client_now: datetime
    """This machine's wall clock halfway through the exchange."""
    round_trip: timedelta
    """How long the exchange took: the skew is known to within half of it."""

    @property
    def skew(self) -> timedelta:
        """Server minus client: positive when Cargo's clock is ahead of this machine's."""
        return self.server_now - self.client_now

    def describe(self) -> str:
        """One line for the log: the server's time, the skew and its uncertainty."""
        seconds = self.skew.total_seconds()
        direction = "ahead of" if seconds >= 0 else "behind"
        return (
            f"Cargo's clock reads {self.server_now.isoformat()}, {_duration(abs(seconds))} {direction} this "
            f"machine's (skew {seconds:+.3f} s, +/- {self.round_trip.total_seconds() / 2:.3f} s); every time "
            "bound of this sync is taken from Cargo's clock"
        )


def _duration(seconds: float) -> str:
    if seconds >= 86_400:
        return f"{seconds / 86_400:.1f} days"
    if seconds >= 3_600:
        return f"{seconds / 3_600:.1f} hours"
    if seconds >= 60:
        return f"{seconds / 60:.1f} minutes"
    return f"{seconds:.3f} s"


def client_wall_clock() -> datetime:
    """This machine's wall clock: used only to measure the skew, never for a bound."""
    return datetime.now(UTC)


def read_server_clock(client: CargoClient) -> ClockReading:
    """Cargo's clock, read with one query (two if the server refuses ``now64``).

    Raises ``ServerClockUnavailable`` when both forms are refused, ``CargoProtocolError`` when the
    answer holds no usable number; transport and auth errors propagate as the client raises them.
    """
    before = client_wall_clock()
    try:
        rows = client.query(CLOCK_QUERY)
        column, scale = "server_now_ms", 1
    except CargoQueryError as first:
        if first.code is None:  # not a refusal by ClickHouse: not Cargo, or not reachable (the caller says)
            raise
        logger.info("Cargo refused now64() (%s); reading its clock with now()", first.server_message[:200])
        before = client_wall_clock()
        try:
            rows = client.query(FALLBACK_CLOCK_QUERY)
        except CargoQueryError as second:
            if second.code is None:
                raise
            raise ServerClockUnavailable(
                f"Cargo refused both queries that read its clock ({CLOCK_QUERY!r}: {first.server_message[:160]}; "
                f"{FALLBACK_CLOCK_QUERY!r}: {second.server_message[:160]}). The sync takes every time bound "
                "from Cargo's clock and cannot run without it: check that the token may run SQL "
                "(orchestration/query) in this workspace"
            ) from None
        column, scale = "server_now_s", 1000
    after = client_wall_clock()
    value: Any = rows[0].get(column) if rows else None
    try:
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise TypeError(type(value).__name__)
        millis = int(value) * scale  # a JSON number, or the quoted 64-bit form ClickHouse may send
    except (TypeError, ValueError):
        raise CargoProtocolError(f"the server's clock query answered {rows[:1]!r}, not a number of {column}") from None
    server_now = floor_ms(datetime.fromtimestamp(millis / 1000, UTC))
    return ClockReading(server_now=server_now, client_now=before + (after - before) / 2, round_trip=after - before)


def log_reading(reading: ClockReading, warned: ClockReading | None = None) -> bool:
    """The skew, once per reading: INFO, or WARNING when it exceeds ``SKEW_WARNING``, unless ``warned`` (the
    source's last warned reading: an earlier step of the same sync) had the same skew within ``SKEW_WARNING``:
    a sync in steps warns once, and again only if the skew moved. Returns whether it warned."""
    far = abs(reading.skew) > SKEW_WARNING
    repeated = warned is not None and abs(reading.skew - warned.skew) <= SKEW_WARNING
    warn = far and not repeated
    logger.log(logging.WARNING if warn else logging.INFO, "%s", reading.describe())
    return warn


def extraction_id() -> str | None:
    """The load id of the package being extracted, or None outside a dlt extraction."""
    try:
        return str(dlt.current.load_package_state()["load_id"])
    except CurrentLoadPackageStateNotAvailable:
        return None


class ServerClock:
    """Cargo's clock for one source: read lazily, once per extraction, shared by all its resources.

    Nothing is read when the source is built (building a source makes no request); the first
    resource that needs a bound reads it. Keyed by dlt's load id, so a source object extracted twice
    reads the clock again for the second extraction.
    """

    def __init__(self, open_client: Callable[[], CargoClient], stats: TableStats | None = None) -> None:
        self._open_client = open_client
        self._stats = stats
        self._lock = threading.Lock()
        self._reading: ClockReading | None = None
        self._read_for: str | None = None
        self._warned: ClockReading | None = None

    def reading(self) -> ClockReading:
        """This extraction's reading (the first call reads and logs it)."""
        extraction = extraction_id()
        with self._lock:
            if self._reading is None or extraction != self._read_for:
                started = time.monotonic()
                with self._open_client() as client:
                    try:
                        self._reading = read_server_clock(client)
                    finally:
                        if self._stats is not None:
                            spent = client.stats_snapshot()
                            self._stats.add(
                                planning_queries=int(spent.get("queries", 0)),
                                retries=int(spent.get("retries", 0)),
                                seconds=time.monotonic() - started,
                            )
                self._read_for = extraction
                if log_reading(self._reading, self._warned):
                    self._warned = self._reading
            return self._reading

    def now(self) -> datetime:
        """Cargo's clock as of this extraction's reading."""
        return self.reading().server_now


SERVER_NOW_KEY = "server_now"
"""Resource-state key: Cargo's clock at the sync that wrote the state beside it."""


def remember_server_now(state: MutableMapping[str, Any], now: datetime, table: str) -> None:
    """Keep ``now`` with a table's state; warn if Cargo's clock reads earlier than at the last sync.

    A clock that went back (a server restored or moved, a clock corrected) stamps new rows before
    the frontier a previous sync reached: the next reads go on from the frontier and may not see them.
    """
    previous = state.get(SERVER_NOW_KEY)
    if previous is not None and parse_timestamp(previous) > now:
        logger.warning(
            "%s: Cargo's clock reads %s, earlier than %s at the last sync: rows Cargo stamps before the last "
            "sync's bounds may not be read; re-read the stretch with since/until if Cargo's clock was corrected",
            table,
            now.isoformat(),
            previous,
        )
    state[SERVER_NOW_KEY] = now.isoformat()
