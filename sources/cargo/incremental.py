"""Incremental state of one table and the read it implies (DESIGN.md section 3, refined).

State (kept in dlt's resource state, committed with the load it describes):

* ``frontier``: time-column value up to which the table has been read completely;
* ``max_updated``: the newest update-column value seen;
* ``band``: short hashes of the rows whose update value lies within ``overlap`` of ``max_updated``,
  the rows a next sync will necessarily read again.

A first sync reads ``[start_date, until)`` whole. Every later sync reads one range,
``[min(frontier, until - max_lookback), until)``, filtered by ``update > max_updated - overlap``.
That one read returns both the new rows (a row created after the frontier was updated after it) and
the rows that changed behind the frontier: runs that finished, counters that grew, runs soft-deleted
long after they finished, records re-run. Departure from DESIGN.md: there is no separate
``open_horizon`` bound. Terminal rows change too (``deleted_at``, a record's next run), so bounding
the changed-rows read by the oldest *open* row would miss them; the read is bounded by
``max_lookback`` instead, and, being filtered, costs one query per ~8 M rows scanned.

Only ``spans`` is bounded by ``max_lookback``: an execution never changes once it has finished, so
what can still change is recent. ``runs``, ``batches`` and ``records`` change at any age (a run is
soft-deleted months after it finished, a record keeps the ``created_at`` of its first run while every
later run updates it), so their changed-rows read reaches back to ``start_date``. They hold one row
per run (or fewer), so this stays one filtered query per ~8 M rows; the emulator's soft-deletes of
runs older than a week are what showed the need.

What ``max_lookback`` costs, made visible: ``lookback_edge`` (state) is where the last sync's lookback
began. Each sync of a bounded table reads from that edge, not from its own, so every row gets one last
read of its changes as it leaves the lookback; the stretch between the two edges is handed to the
read (``UpdatedAfter.expiring``), which counts the rows there that are still not terminal (spans of
runs stuck ``pending``) and logs a WARNING naming how many: past this sync their updates are not
loaded (documented, not a silent miss). Raise ``max_lookback_days`` or re-read with ``since/until``.

Rows of the band that come back unchanged are dropped before loading, so a sync with nothing new
loads nothing, without keeping per-row state beyond the ``overlap`` band.
"""

from __future__ import annotations

import hashlib
from collections.abc import MutableMapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from .planner import QueryWindow, UpdatedAfter
from .specs import TableSpec
from .sqltext import parse_timestamp


@dataclass(frozen=True)
class IncrementalSettings:
    """How far back and how carefully a sync reads."""

    start_date: datetime
    max_lookback: timedelta
    overlap: timedelta
    settle: timedelta


@dataclass(frozen=True)
class ReadPlan:
    """The one range a sync reads for a table, and the filter on it."""

    start: datetime
    end: datetime
    updated_after: UpdatedAfter | None
    first_sync: bool

    @property
    def is_empty(self) -> bool:
        """Nothing to read (e.g. the settle delay has not passed since the last sync)."""
        return self.end <= self.start


BAND_PRUNE_MIN_ROWS = 50_000
"""Band candidates kept before the first prune (a few MB of key columns)."""

UNBOUNDED_LOOKBACK_TABLES = frozenset({"runs", "batches", "records"})
"""Tables whose rows change long after their time-column value (see the module docstring)."""


def plan_read(
    state: MutableMapping[str, Any], settings: IncrementalSettings, until: datetime, *, bounded_lookback: bool = True
) -> ReadPlan:
    """What to read this sync, from the table's state.

    The only state written here is a bounded table's ``lookback_edge`` (committed with the load, like
    the rest of the state, so a failed sync leaves it as it was).
    """
    edge = max(settings.start_date, until - settings.max_lookback)
    frontier_text = state.get("frontier")
    if frontier_text is None:
        if bounded_lookback and until > settings.start_date:
            state["lookback_edge"] = edge.isoformat()
        return ReadPlan(settings.start_date, until, None, first_sync=True)
    frontier = parse_timestamp(frontier_text)
    lookback_start = settings.start_date
    expiring = None
    if bounded_lookback:
        previous_text = state.get("lookback_edge")
        previous = parse_timestamp(previous_text) if previous_text is not None else edge
        lookback_start = min(previous, edge)
        if lookback_start < edge:
            expiring = QueryWindow(lookback_start, edge)
    start = max(settings.start_date, min(frontier, lookback_start))
    max_updated_text = state.get("max_updated")
    updated_after = None
    if max_updated_text is not None:
        updated_after = UpdatedAfter(parse_timestamp(max_updated_text) - settings.overlap, expiring)
    if bounded_lookback and until > start:
        state["lookback_edge"] = edge.isoformat()
    return ReadPlan(start, until, updated_after, first_sync=False)


def row_keys(spec: TableSpec, table: pa.Table) -> list[str]:
    """A short, stable hash of each row's primary key and update value."""
    columns = [table.column(name).cast(pa.string()).to_pylist() for name in spec.primary_key]
    updates = pc.cast(table.column(spec.update_column), pa.int64()).to_pylist()
    keys = []
    for i, update in enumerate(updates):
        raw = "\x1f".join(str(col[i]) for col in columns) + f"\x1e{update}"
        keys.append(hashlib.blake2b(raw.encode(), digest_size=8).hexdigest())
    return keys


class BandTracker:
    """Drops rows already loaded in the last sync's band and collects the next band."""

    def __init__(
        self,
        spec: TableSpec,
        state: MutableMapping[str, Any],
        overlap: timedelta,
        max_seen: datetime | None = None,
    ) -> None:
        self.spec = spec
        self.overlap = overlap
        previous = state.get("max_updated")
        self.previous_max = parse_timestamp(previous) if previous is not None else None
        self.known: set[str] = set(state.get("band", []))
        self.max_updated = self.previous_max
        if max_seen is not None and (self.max_updated is None or max_seen > self.max_updated):
            self.max_updated = max_seen  # the newest update loaded by the earlier steps of this read
        self._band_parts: list[pa.Table] = []
        self._band_rows = 0
        self._band_floor = BAND_PRUNE_MIN_ROWS

    def admit(self, table: pa.Table) -> pa.Table:
        """The rows of ``table`` that are not already in the destination, noting the new band."""
        if table.num_rows == 0:
            return table
        update = table.column(self.spec.update_column)
        if self.known and self.previous_max is not None:
            maybe_seen = pc.less_equal(update, pa.scalar(self.previous_max, type=update.type))
            if pc.any(maybe_seen).as_py():
                keys = row_keys(self.spec, table)
                seen_flags = maybe_seen.to_pylist()
                keep = [not (flag and key in self.known) for flag, key in zip(seen_flags, keys, strict=True)]
                table = table.filter(pa.array(keep))
                if table.num_rows == 0:
                    return table
                update = table.column(self.spec.update_column)
        newest = pc.max(update).as_py()
        if newest is not None and (self.max_updated is None or newest > self.max_updated):
            self.max_updated = newest
        self._remember_band(table)
        return table

    def _remember_band(self, table: pa.Table) -> None:
        """Keep the key and update columns of rows that may end up in the next band.

        Kept as arrow slices, not hashes: during a backfill nearly every window is the newest so far,
        so most rows are "recent" when admitted and only the last ``overlap`` of them stay recent.
        Hashing happens once, at commit; the slices are pruned whenever they outgrow what they held
        after the last prune, which bounds them by the band itself rather than by the rows read.
        """
        if self.max_updated is None:
            return
        update = table.column(self.spec.update_column)
        recent = pc.greater(update, pa.scalar(self.max_updated - self.overlap, type=update.type))
        if not pc.any(recent).as_py():
            return
        columns = [*self.spec.primary_key, self.spec.update_column]
        self._band_parts.append(table.select(columns).filter(recent))
        self._band_rows += self._band_parts[-1].num_rows
        if self._band_rows > 2 * self._band_floor:
            self._prune_band()

    def _prune_band(self) -> None:
        if not self._band_parts or self.max_updated is None:
            return
        kept = pa.concat_tables(self._band_parts, promote_options="permissive")
        update = kept.column(self.spec.update_column)
        kept = kept.filter(pc.greater(update, pa.scalar(self.max_updated - self.overlap, type=update.type)))
        self._band_parts = [kept.combine_chunks()] if kept.num_rows else []
        self._band_rows = kept.num_rows
        self._band_floor = max(BAND_PRUNE_MIN_ROWS, kept.num_rows)

    def commit(self, state: MutableMapping[str, Any], frontier: datetime, clock: datetime | None = None) -> None:
        """Write the table's new state (called once every window of the read is loaded).

        ``clock`` is Cargo's clock when the read began. A row read early in a long read (a backfill
        of several steps, maybe across several syncs) can change before the read ends, and its change
        then carries an update value below the newest one the read saw: the next sync's changed-rows
        filter starts no later than ``clock`` (minus the overlap), so every such change is read.
        """
        state["frontier"] = frontier.isoformat()
        if self.max_updated is None:
            return
        newest = self.max_updated if clock is None else min(self.max_updated, clock)
        state["max_updated"] = newest.isoformat()
        threshold = self.max_updated - self.overlap
        self._prune_band()
        parts = self._band_parts
        band = set(row_keys(self.spec, pa.concat_tables(parts, promote_options="permissive"))) if parts else set()
        if self.previous_max is not None and self.previous_max > threshold:
            band |= self.known  # rows of the old band that still lie in the new one
        state["band"] = sorted(band)
