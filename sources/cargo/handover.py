"""Hand a parallel backfill over to the incremental syncs: the state a backfill leaves behind.

A backfill cut into chunks (``chunks.py``) loads ``[since, until)`` through stateless pipelines,
one per chunk, in any order and at once. None of them may write the incremental state: each knows
only its own chunk. Once all are loaded, one more run of the source, on the pipeline the scheduled
syncs use, writes each fact table's state as if one sync had read the whole range (``handover_state``),
through dlt, so the state lives in the destination like any other sync's:

* ``frontier`` = ``until``, the end of the last chunk: the next sync reads new rows from there;
* ``max_updated`` = Cargo's clock when the backfill *began* (before the first chunk was planned).
  A chunk read at time ``t`` holds each row as it was at ``t``; a row that changed later is stale in
  the warehouse. Every such row was updated after the backfill began, so the next sync, which reads
  rows updated after ``max_updated - overlap``, reads it again. The ``band`` (rows known loaded) is
  emptied: it would be a claim about rows the chunks, not a sync, loaded.
* ``max_updated`` never exceeds ``frontier + overlap`` (less a millisecond): with an ``until`` in the
  past, rows created between ``until`` and the backfill's start were read by no chunk, and the next
  sync must not filter them out as unchanged.

A table that already has a state keeps what is safer of the two: its frontier unless the backfill
starts at or before it and ends after it (a contiguous extension), and the older ``max_updated``
(the next sync then re-reads more, never less). ``lookback_edge`` is left as it was.

Before the chunks load in parallel, the same run with no start instant creates the tables (and
writes no state): two chunks creating one table at once would fail on a warehouse (dlt's advice
for parallel partitions: let one small load create the schema first).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pyarrow as pa

from .arrow import rows_to_table
from .bounds import DEFAULT_BACKFILL, SyncBounds
from .errors import CargoConfigurationError
from .incremental import UNBOUNDED_LOOKBACK_TABLES
from .planner import QueryWindow
from .server_clock import remember_server_now
from .specs import TableSpec
from .sqltext import floor_ms, parse_timestamp

logger = logging.getLogger(__name__)

HANDED_OVER_TABLES = frozenset({"runs", "batches", "spans", "records"})
"""The tables a backfill loads in chunks and hands over: the facts (read by time ranges). Exports and
the catalogue are read whole or per workflow/batch; they load with the first sync after the handover."""


@dataclass(frozen=True)
class Handover:
    """What ``cargo_source(handover=...)`` does instead of reading: create the tables, and hand over."""

    started_at: datetime | None
    """Cargo's clock when the backfill began (before planning); ``None``: create the tables only."""

    @classmethod
    def parse(cls, value: Any) -> Handover:
        """A ``Handover``, or its JSON form ``{"started_at": ISO or null}`` (an Airflow XCom)."""
        if isinstance(value, Handover):
            return value
        if isinstance(value, Mapping) and set(value) <= {"started_at"}:
            started = value.get("started_at")
            return cls(parse_timestamp(str(started)) if started else None)
        raise CargoConfigurationError(
            f"handover = {value!r}: pass a Handover or {{'started_at': ISO datetime or None}} (cargo-elt backfill)"
        )


def handover_state(
    state: MutableMapping[str, Any], covered: QueryWindow, started_at: datetime, overlap: timedelta
) -> None:
    """Write one table's incremental state after a backfill of ``covered`` that began at ``started_at``."""
    frontier = covered.end
    previous = state.get("frontier")
    if previous is not None:
        old = parse_timestamp(previous)
        if not covered.start <= old < covered.end:  # a gap before the backfill, or it lies behind the frontier
            frontier = old
    ceiling = min(floor_ms(started_at), frontier + overlap - timedelta(milliseconds=1))
    previous_max = state.get("max_updated")
    max_updated = min(ceiling, parse_timestamp(previous_max)) if previous_max is not None else ceiling
    state["frontier"] = frontier.isoformat()
    state["max_updated"] = max_updated.isoformat()
    state["band"] = []


def handover_reader(
    spec: TableSpec,
    window: Callable[[], SyncBounds],
    handover: Handover,
    overlap: timedelta,
    start_date: datetime | None,
    resource_state: Callable[[], MutableMapping[str, Any]],
) -> Any:
    """The data function of ``spec``'s resource in a handover run: no read, an empty table, the state.

    Typed ``Any`` like the source's other readers: ``dlt.resource`` is overloaded on what it wraps.

    The empty table (the spec's arrow schema) makes dlt create the table with every column, as the
    chunks' loads will find it.
    """

    def read() -> Iterator[pa.Table]:
        bounds = window()
        if handover.started_at is not None:
            state = resource_state()
            handover_state(state, QueryWindow(bounds.start, bounds.until), handover.started_at, overlap)
            remember_server_now(state, bounds.server_now, spec.name)
            logger.info(
                "%s: backfill of [%s, %s) handed over: frontier %s, rows updated after %s are read again",
                spec.name,
                bounds.start.isoformat(),
                bounds.until.isoformat(),
                state["frontier"],
                (parse_timestamp(state["max_updated"]) - overlap).isoformat(),
            )
            horizon = start_date or bounds.server_now - DEFAULT_BACKFILL
            if spec.name in UNBOUNDED_LOOKBACK_TABLES and bounds.start < horizon:
                logger.warning(
                    "%s: the backfill starts at %s, before sources.cargo.start_date (%s): incremental syncs look "
                    "for changed rows back to start_date only, so later changes of older rows are not loaded; "
                    "set sources.cargo.start_date to %s",
                    spec.name,
                    bounds.start.isoformat(),
                    horizon.isoformat(),
                    bounds.start.date().isoformat(),
                )
        yield rows_to_table(spec, [])

    read.__name__ = spec.name
    return read
