"""How far each table is read, from the resource state the source keeps: what ``cargo-elt status``
and ``cargo-elt sync --json`` report as a table's frontier.

The state's layout belongs to the resources that write it (``incremental.py``, ``outputs.py``,
``failures.py``, ``metrics_daily.py``, ``segments.py``), so its reading lives here, next to them:

* ``frontier`` is the state's own value, as the state keeps it (an ISO time, a day for
  ``run_metrics_daily``, the newest update value for a merged segment export);
* ``as_of`` is the time on Cargo's clock up to which the table is complete, the instant its lag is
  measured from; ``None`` when the state has no such time (the catalogue and ``run_metrics`` are
  read whole each sync, a segment export is exported whole or filtered on a data value): then the
  table's last successful load decides.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from .facts import CHUNKS_KEY, READ_KEY
from .specs import TABLE_SPECS
from .sqltext import parse_timestamp
from .steps import ReadProgress

FRONTIER_TABLES = frozenset({*TABLE_SPECS, "batch_outputs"})
"""Tables whose ``frontier`` is the time column (or ``finished_at``) value read completely up to."""


@dataclass(frozen=True)
class Freshness:
    """A table's frontier (as the state keeps it), the instant it is complete to, and a remark."""

    frontier: str | None = None
    as_of: datetime | None = None
    note: str | None = None


def table_freshness(table: str, state: Mapping[str, Any] | None) -> Freshness:
    """The frontier of ``table`` in its resource ``state`` (``None`` or empty: never read)."""
    if not state:
        return Freshness()
    if table in FRONTIER_TABLES:
        return replace(_instant(state.get("frontier")), note=_steps_note(state))
    if table == "batch_failures":
        return _instant(state.get("changed_since"))
    if table == "run_outputs":
        return _run_outputs(state.get("frontiers"))
    if table == "run_metrics_daily":
        checked = state.get("checked_at")
        as_of = parse_timestamp(checked) if isinstance(checked, str) else None
        day = state.get("frontier")
        note = f"days from {day} are re-read until closed" if isinstance(day, str) else None
        return Freshness(str(day) if day is not None else None, as_of, note)
    last_value = state.get("last_value")  # a merged segment export: its update column's newest value
    if isinstance(last_value, str):
        return Freshness(last_value, None, "newest update_column value exported")
    return Freshness()


def _steps_note(state: Mapping[str, Any]) -> str | None:
    """A read that stopped between steps (``sources.cargo.step_rows`` / ``step_seconds``): where it is,
    and what the next sync does about it. Said, because a backfill in progress lags by design."""
    parts = []
    progress = ReadProgress.from_state(state.get(READ_KEY))
    if progress is not None:
        kind = "a first sync" if progress.first_sync else "a sync"
        parts.append(
            f"{kind} in steps has read to {_short(progress.at)}; the next sync reads on to {_short(progress.until)}"
        )
    chunks = state.get(CHUNKS_KEY)
    if isinstance(chunks, Mapping) and chunks:
        parts.append(f"{len(chunks)} --since/--until chunk(s) stopped between steps; the same read again finishes them")
    return "; ".join(parts) or None


def _short(value: datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%SZ")


def _instant(text: Any) -> Freshness:
    if not isinstance(text, str):
        return Freshness()
    return Freshness(text, parse_timestamp(text))


def _run_outputs(frontiers: Any) -> Freshness:
    """The newest frontier of the ``(workflow, output node)`` pairs: where the last sync read to.

    Not the oldest: a pair's frontier stays at its oldest unfinished run (at most
    ``max_lookback_days`` back) so that run is exported again once it has an output; that is a run
    still working, not a table falling behind, and is said in the note instead.
    """
    if not isinstance(frontiers, Mapping) or not frontiers:
        return Freshness()
    times = {key: parse_timestamp(str(value)) for key, value in frontiers.items()}
    newest = max(times.values())
    held = sorted(t for t in times.values() if t < newest)
    note = (
        f"{len(held)} of {len(times)} (workflow, output node) pairs wait for unfinished runs, "
        f"the oldest created {_short(held[0])}"
        if held
        else None
    )
    return Freshness(newest.isoformat(), newest, note)
