"""``run_metrics_daily``: Cargo's per-node run counters (``runs/metrics``) for each UTC day.

``runs/metrics`` answers one RunMetric per workflow node for the runs created in
``[createdAfter, createdBefore)``, so asking it day by day gives a row per workflow (and release,
with ``run_metrics_per_release``), node and UTC day: trends without differencing snapshots.

Which days a sync reads (every clock here is the server's: the sync's ``SyncWindow``, ``bounds.py``):

* **Open days.** A day is *closed* once the server's clock is past its end plus ``settle``. Every
  day from the resource's ``frontier`` (the first day not closed at the last sync; ``start_date``'s
  day on the first sync) through the server's today is read whole, each sync, until it closes; then
  the frontier moves past it.
* **Closed days that changed.** A closed day's counters still move when one of its runs changes:
  a run created at 23:59 that finishes after the day closed, a run soft-deleted weeks later (the
  metrics leave deleted runs out). One SQL probe per sync lists the days (and workflows, releases)
  with runs updated since the last sync's server time minus ``overlap``, over the whole history
  from ``start_date``, as the ``runs`` table itself is re-checked; those scope-days are read again.
* Only scope-days that hold runs are asked for (the same probe lists them), so a workflow idle for a
  month costs nothing.

A scope-day read again replaces all its rows (merge key ``_scope_key``: a node that no longer has
runs that day disappears); one whose runs were all deleted since answers nothing, and a tombstone
row (``_deleted``, dlt's ``hard_delete``) removes its old rows. ``since``/``until`` chunks read the
days they cover without touching the state.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, MutableMapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as day_time
from typing import Any

import dlt
import pyarrow as pa
from dlt.common.schema.typing import TTableSchemaColumns
from dlt.extract.resource import DltResource

from .arrow import to_arrow
from .bounds import SyncWindow
from .client import CargoClient
from .errors import CargoProtocolError, WindowTooLarge
from .extract import TableStats
from .metrics import COUNTERS, snake
from .settings import PAGE_LIMIT
from .sqltext import sql_timestamp

logger = logging.getLogger(__name__)

Row = dict[str, Any]

TABLE = "run_metrics_daily"
DAY = timedelta(days=1)
MIN_PROBE_WINDOW = timedelta(minutes=1)
"""A probe window this short that still hits a cap is an error, not split again."""
CALLS_PER_CHUNK = 64
"""Metric calls per arrow table yielded (and per batch handed to the reader threads)."""

DAILY_COLUMNS: TTableSchemaColumns = {
    "_scope_key": {"name": "_scope_key", "data_type": "text", "nullable": False},
    "workflow_uuid": {"name": "workflow_uuid", "data_type": "text", "nullable": False},
    "release_uuid": {"name": "release_uuid", "data_type": "text"},
    "node_uuid": {"name": "node_uuid", "data_type": "text", "nullable": False},
    "day": {"name": "day", "data_type": "date", "nullable": False},
    **{snake(c): {"name": snake(c), "data_type": "double" if c == "creditsUsedCount" else "bigint"} for c in COUNTERS},
    "_deleted": {"name": "_deleted", "data_type": "bool", "hard_delete": True},
}
"""The RunMetric counters (``metrics.COUNTERS``, snake_case) per ``(workflow_uuid, release_uuid, node_uuid,
day)``; ``release_uuid`` is null on the rows of the whole workflow. ``_scope_key``
(``workflow/release-or-*/day``) is the merge key: dlt's merge needs non-null keys, and ``release_uuid``
is null on most rows."""


def day_bounds(day: date) -> tuple[str, str]:
    """``createdAfter``/``createdBefore`` of one UTC day.

    [I] ``createdAfter`` is inclusive and ``createdBefore`` exclusive (REFERENCE.md 3.3 does not say;
    the emulator does so): consecutive days then share a bound without counting a run twice. If
    Cargo's ``createdBefore`` were inclusive, a run created exactly at midnight would count in both.
    """
    start = datetime.combine(day, day_time(), UTC)
    return _iso(start), _iso(start + DAY)


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def scope_key(workflow_uuid: str, release_uuid: str | None, day: date) -> str:
    """The merge key of one scope-day: every row of a re-read scope-day replaces the old ones."""
    return f"{workflow_uuid}/{release_uuid or '*'}/{day.isoformat()}"


@dataclass(frozen=True)
class ScopeDay:
    """One ``runs/metrics`` call: a workflow (or one of its releases) on one UTC day."""

    day: date
    workflow_uuid: str
    release_uuid: str | None = None

    def order(self) -> tuple[date, str, str]:
        """Calls go out day by day, the workflow's own scope before its releases."""
        return self.day, self.workflow_uuid, self.release_uuid or ""


@dataclass(frozen=True)
class DayPlan:
    """What one incremental sync reads.

    Every scope-day with runs created in ``[open_from, today]``; before ``open_from`` (back to
    ``recheck_from``), only those with runs updated since ``changed_since``. After the load, the
    state's frontier becomes ``next_frontier`` (the first day not closed) and ``checked_at`` the
    server time of this sync.
    """

    open_from: date
    today: date
    recheck_from: date
    changed_since: datetime | None
    next_frontier: date
    checked_at: datetime


def plan_days(
    state: MutableMapping[str, Any], start_day: date, now: datetime, settle: timedelta, overlap: timedelta
) -> DayPlan:
    """The days to read at server time ``now``, given the resource state of the last sync."""
    today = now.astimezone(UTC).date()
    frontier = date.fromisoformat(state["frontier"]) if "frontier" in state else start_day
    open_from = min(max(frontier, start_day), today)
    checked = state.get("checked_at")
    changed_since = datetime.fromisoformat(checked) - overlap if checked else None
    closed_before = (now - settle).astimezone(UTC).date()  # day D is closed once now >= D + 1 day + settle
    return DayPlan(
        open_from=open_from,
        today=today,
        recheck_from=start_day,
        changed_since=changed_since,
        next_frontier=max(open_from, min(closed_before, today)),
        checked_at=now,
    )


def commit(state: MutableMapping[str, Any], plan: DayPlan) -> None:
    """Record what this sync made final (written with the load, in dlt's resource state)."""
    state["frontier"] = plan.next_frontier.isoformat()
    state["checked_at"] = plan.checked_at.isoformat()


def probe_sql(
    start: datetime, end: datetime, per_release: bool, open_from: datetime | None, changed_since: datetime | None
) -> str:
    """The scope-days with runs created in ``[start, end)``: all of them from ``open_from`` on, and
    before it only those with a run updated since ``changed_since`` (``None``: all, as in a chunk)."""
    where = f"created_at >= {sql_timestamp(start)} AND created_at < {sql_timestamp(end)}"
    if open_from is not None and changed_since is not None:
        where += f" AND (created_at >= {sql_timestamp(open_from)} OR updated_at >= {sql_timestamp(changed_since)})"
    release = "toString(release_uuid)" if per_release else "CAST(NULL, 'Nullable(String)')"
    return (
        f"SELECT toString(toDate(created_at, 'UTC')) AS day, toString(workflow_uuid) AS workflow_uuid, "
        f"{release} AS release_uuid FROM runs WHERE {where} "
        f"GROUP BY day, workflow_uuid, release_uuid ORDER BY day, workflow_uuid, release_uuid LIMIT {PAGE_LIMIT}"
    )


def probe(
    client: CargoClient,
    start: datetime,
    end: datetime,
    per_release: bool,
    open_from: datetime | None,
    changed_since: datetime | None,
    stats: TableStats,
) -> set[ScopeDay]:
    """The scope-days to read (workflow scope always; release scopes with ``per_release``).

    A range whose answer fills a page, or that the server refuses as too large (scan or time cap),
    is halved until it fits: the caps bound each query, never what the sync covers.
    """
    stats.add(planning_queries=1)
    try:
        rows: list[Row] | None = client.query(probe_sql(start, end, per_release, open_from, changed_since))
    except WindowTooLarge:
        if end - start <= MIN_PROBE_WINDOW:
            raise
        rows = None
    if rows is None or len(rows) >= PAGE_LIMIT:
        if end - start <= MIN_PROBE_WINDOW:
            raise CargoProtocolError(
                f"{TABLE}: runs created in {start.isoformat()} .. {end.isoformat()} span more than {PAGE_LIMIT} "
                "workflow-days, which one minute cannot hold"
            )
        middle = start + (end - start) / 2
        stats.add(splits=1)
        return probe(client, start, middle, per_release, open_from, changed_since, stats) | probe(
            client, middle, end, per_release, open_from, changed_since, stats
        )
    found: set[ScopeDay] = set()
    for row in rows:
        day = date.fromisoformat(str(row["day"]))
        workflow = str(row["workflow_uuid"])
        found.add(ScopeDay(day, workflow))
        if per_release and row.get("release_uuid"):
            found.add(ScopeDay(day, workflow, str(row["release_uuid"])))
    return found


def metric_rows(body: dict[str, Any], scope: ScopeDay) -> list[Row]:
    """The rows of one answer; an empty answer is a tombstone for the scope-day's old rows."""
    key = scope_key(scope.workflow_uuid, scope.release_uuid, scope.day)
    base: Row = {
        "_scope_key": key,
        "workflow_uuid": scope.workflow_uuid,
        "release_uuid": scope.release_uuid,
        "day": scope.day,
    }
    rows: list[Row] = []
    for metric in body.get("runMetrics") or []:
        if not isinstance(metric, dict) or not isinstance(metric.get("nodeUuid"), str):
            logger.warning("%s: skipped a RunMetric without a nodeUuid for %s", TABLE, key)
            continue
        rows.append({**base, "node_uuid": metric["nodeUuid"], **{snake(c): metric.get(c) for c in COUNTERS}})
    if not rows:
        rows.append({**base, "node_uuid": "", "_deleted": True})
    return rows


def read_scope_days(
    client: CargoClient,
    scopes: Sequence[ScopeDay],
    pool: ThreadPoolExecutor,
    stats: TableStats,
) -> Iterator[pa.Table]:
    """One ``runs/metrics`` call per scope-day (on the reader threads), yielded in chunks, in order."""

    def call(scope: ScopeDay) -> list[Row]:
        after, before = day_bounds(scope.day)
        payload: dict[str, Any] = {"workflowUuid": scope.workflow_uuid, "createdAfter": after, "createdBefore": before}
        if scope.release_uuid is not None:
            payload["releaseUuid"] = scope.release_uuid
        return metric_rows(client.call("POST", "orchestration/runs/metrics", payload), scope)

    for first in range(0, len(scopes), CALLS_PER_CHUNK):
        chunk = scopes[first : first + CALLS_PER_CHUNK]
        rows = [row for answer in pool.map(call, chunk) for row in answer]
        stats.add(data_queries=len(chunk), rows=sum(1 for r in rows if not r.get("_deleted")))
        yield to_arrow(rows, DAILY_COLUMNS)


def day_start(day: date) -> datetime:
    return datetime.combine(day, day_time(), UTC)


def run_metrics_daily_resource(
    open_client: Callable[[], CargoClient],
    pool: Callable[[], ThreadPoolExecutor],
    *,
    per_release: bool,
    window: SyncWindow,
    settle: timedelta,
    overlap: timedelta,
    stats: TableStats,
) -> DltResource:
    """``run_metrics_daily``, merged per scope-day; a ``since``/``until`` chunk reads its days statelessly."""

    def run_metrics_daily() -> Iterator[pa.Table]:
        started = time.monotonic()
        bounds = window()  # Cargo's clock, read once for the whole sync
        now = bounds.server_now
        with open_client() as client:
            if bounds.chunk:
                first_day = bounds.start.astimezone(UTC).date()
                last_day = min((bounds.until - timedelta(milliseconds=1)).astimezone(UTC).date(), now.date())
                scopes = probe(client, day_start(first_day), day_start(last_day) + DAY, per_release, None, None, stats)
                plan = None
            else:
                state = dlt.current.resource_state()
                plan = plan_days(state, bounds.start.astimezone(UTC).date(), now, settle, overlap)
                scopes = probe(
                    client,
                    day_start(plan.recheck_from),
                    day_start(plan.today) + DAY,
                    per_release,
                    day_start(plan.open_from),
                    plan.changed_since,
                    stats,
                )
            try:
                yield from read_scope_days(client, sorted(scopes, key=ScopeDay.order), pool(), stats)
            finally:
                stats.add(retries=int(client.stats_snapshot().get("retries", 0)))
            if plan is not None:
                commit(dlt.current.resource_state(), plan)
        stats.add(seconds=time.monotonic() - started)

    return dlt.resource(
        run_metrics_daily,
        name=TABLE,
        primary_key=["_scope_key", "node_uuid"],
        merge_key=["_scope_key"],
        write_disposition={"disposition": "merge", "strategy": "delete-insert"},
        columns=DAILY_COLUMNS,
    )
