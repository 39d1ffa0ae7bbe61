"""``batch_failures``: the failed records of every batch with failed runs, ready to feed a re-run.

Cargo's failure-inspection recipe is four steps by hand (find batches with ``failed_runs_count``,
list their failed runs, find each run's failing node in its spans, read the error). Here it is three
SQL reads per group of batches, all through ``orchestration/query`` so they obey the same caps:

1. batches with failed runs whose row changed since the last sync (``updated_at``), keyset-paged;
2. the failed runs of up to ``BATCHES_PER_GROUP`` of them, bounded by the batches' time span so the
   scan stays under the cap, keyset-paged on the run uuid;
3. the failed executions of those runs (spans), bounded the same way: the last failed execution of a
   run is its failing node.

A group that still trips the scan or time cap is split in two. Rows merge on ``(batch_uuid, run_uuid)``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import dlt
import pyarrow as pa
from dlt.common.schema.typing import TTableSchemaColumns
from dlt.extract.resource import DltResource

from .arrow import to_arrow
from .bounds import SyncBounds
from .client import CargoClient
from .errors import WindowTooLarge
from .extract import TableStats
from .server_clock import remember_server_now
from .settings import PAGE_LIMIT
from .sqltext import parse_timestamp, sql_timestamp, sql_uuid

logger = logging.getLogger(__name__)

Row = dict[str, Any]

BATCHES_PER_GROUP = 50
RUNS_PER_SPAN_QUERY = 500
"""Run uuids per spans query: keeps the statement short and the answer under 10,000 rows."""

FAILURE_COLUMNS: TTableSchemaColumns = {
    "batch_uuid": {"name": "batch_uuid", "data_type": "text", "nullable": False},
    "run_uuid": {"name": "run_uuid", "data_type": "text", "nullable": False},
    "workflow_uuid": {"name": "workflow_uuid", "data_type": "text"},
    "record_id": {"name": "record_id", "data_type": "text"},
    "record_title": {"name": "record_title", "data_type": "text"},
    "run_error_message": {"name": "run_error_message", "data_type": "text"},
    "failed_node_uuid": {"name": "failed_node_uuid", "data_type": "text"},
    "failed_node_slug": {"name": "failed_node_slug", "data_type": "text"},
    "node_error_message": {"name": "node_error_message", "data_type": "text"},
    "run_created_at": {"name": "run_created_at", "data_type": "timestamp", "timezone": True},
    "run_finished_at": {"name": "run_finished_at", "data_type": "timestamp", "timezone": True},
}


@dataclass(frozen=True)
class FailedBatch:
    uuid: str
    created_at: datetime
    finished_at: datetime | None


def failed_batches_query(since: datetime | None, start: datetime, after: tuple[datetime, str] | None) -> str:
    """Batches with failed runs created since ``start``; with ``since``, only those changed since then."""
    where = f"failed_runs_count > 0 AND created_at >= {sql_timestamp(start)}"
    if since is not None:
        where += f" AND updated_at >= {sql_timestamp(since)}"
    if after is not None:
        at = sql_timestamp(after[0])
        where += f" AND (created_at > {at} OR (created_at = {at} AND uuid > {sql_uuid(after[1])}))"
    return (
        f"SELECT uuid, created_at, finished_at FROM batches WHERE {where} ORDER BY created_at, uuid LIMIT {PAGE_LIMIT}"
    )


def _span(group: Sequence[FailedBatch], until: datetime) -> tuple[datetime, datetime]:
    """Creation times the group's runs can have: from the first batch's creation to the last finish
    (``until`` for a batch still running), one millisecond past it since the bound is exclusive."""
    begin = min(b.created_at for b in group)
    end = max(b.finished_at or until for b in group) + timedelta(milliseconds=1)
    return begin, end


def failed_runs_query(group: Sequence[FailedBatch], until: datetime, after_uuid: str | None) -> str:
    begin, end = _span(group, until)
    uuids = ", ".join(sql_uuid(b.uuid) for b in group)
    where = (
        f"created_at >= {sql_timestamp(begin)} AND created_at < {sql_timestamp(end)} "
        f"AND batch_uuid IN ({uuids}) AND status = 'error' AND deleted_at IS NULL"
    )
    if after_uuid is not None:
        where += f" AND uuid > {sql_uuid(after_uuid)}"
    return (
        "SELECT uuid, batch_uuid, workflow_uuid, record_id, record_title, error_message, created_at, finished_at "
        f"FROM runs WHERE {where} ORDER BY uuid LIMIT {PAGE_LIMIT}"
    )


def failed_spans_query(run_uuids: Sequence[str], begin: datetime, end: datetime) -> str:
    uuids = ", ".join(sql_uuid(u) for u in run_uuids)
    return (
        "SELECT run_uuid, node_uuid, node_slug, execution_error_message, execution_index FROM spans "
        f"WHERE execution_started_at >= {sql_timestamp(begin)} AND execution_started_at < {sql_timestamp(end)} "
        f"AND run_uuid IN ({uuids}) AND execution_status = 'error' "
        f"ORDER BY run_uuid, execution_index LIMIT {PAGE_LIMIT}"
    )


def group_failures(client: CargoClient, group: Sequence[FailedBatch], until: datetime) -> list[Row]:
    """The failure rows of a group of batches (split in two while the server refuses it as too large)."""
    try:
        return _group_failures(client, group, until)
    except WindowTooLarge:
        if len(group) == 1:
            raise
        middle = len(group) // 2
        logger.info("batch_failures: a group of %d batches is over a cap; splitting", len(group))
        return group_failures(client, group[:middle], until) + group_failures(client, group[middle:], until)


def _group_failures(client: CargoClient, group: Sequence[FailedBatch], until: datetime) -> list[Row]:
    runs: list[Row] = []
    after: str | None = None
    while True:
        page = client.query(failed_runs_query(group, until, after))
        runs.extend(page)
        if len(page) < PAGE_LIMIT:
            break
        after = str(page[-1]["uuid"])
    if not runs:
        return []
    begin, end = _span(group, until)
    failing: dict[str, Row] = {}
    uuids = [str(r["uuid"]) for r in runs]
    for chunk_start in range(0, len(uuids), RUNS_PER_SPAN_QUERY):
        chunk = uuids[chunk_start : chunk_start + RUNS_PER_SPAN_QUERY]
        for span in client.query(failed_spans_query(chunk, begin, end)):
            failing[str(span["run_uuid"])] = span  # ordered by execution_index: the last one wins
    rows = []
    for run in runs:
        span = failing.get(str(run["uuid"]), {})
        rows.append(
            {
                "batch_uuid": run["batch_uuid"],
                "run_uuid": run["uuid"],
                "workflow_uuid": run.get("workflow_uuid"),
                "record_id": run.get("record_id"),
                "record_title": run.get("record_title"),
                "run_error_message": run.get("error_message"),
                "failed_node_uuid": span.get("node_uuid"),
                "failed_node_slug": span.get("node_slug"),
                "node_error_message": span.get("execution_error_message"),
                "run_created_at": run.get("created_at"),
                "run_finished_at": run.get("finished_at"),
            }
        )
    return rows


def batch_failures_resource(
    open_client: Callable[[], CargoClient],
    window: Callable[[], SyncBounds],
    overlap: timedelta,
    stats: TableStats,
) -> DltResource:
    """``batch_failures``, merged on ``(batch_uuid, run_uuid)``; re-reads batches changed since last time.

    ``changed_since`` (state) is Cargo's clock minus ``settle`` at the last sync, compared with the
    batches' ``updated_at`` (Cargo's stamps), less ``overlap`` for rows that become visible late: a
    batch that gains a failed run after it was loaded is read again by the next sync.
    """

    def batch_failures() -> Iterator[pa.Table]:
        state = dlt.current.resource_state()
        bounds = window()
        start, until = bounds.start, bounds.until
        since = parse_timestamp(state["changed_since"]) - overlap if "changed_since" in state else None
        started = time.monotonic()
        with open_client() as client:
            after: tuple[datetime, str] | None = None
            while True:
                page = client.query(failed_batches_query(since, start, after))
                batches = [
                    FailedBatch(
                        str(b["uuid"]),
                        parse_timestamp(b["created_at"]),
                        parse_timestamp(b["finished_at"]) if b.get("finished_at") else None,
                    )
                    for b in page
                ]
                for first in range(0, len(batches), BATCHES_PER_GROUP):
                    rows = group_failures(client, batches[first : first + BATCHES_PER_GROUP], until)
                    stats.add(rows=len(rows))
                    if rows:
                        yield to_arrow(rows, FAILURE_COLUMNS)
                if len(page) < PAGE_LIMIT:
                    break
                after = (batches[-1].created_at, batches[-1].uuid)
            stats.add(data_queries=int(client.stats_snapshot().get("queries", 0)), seconds=time.monotonic() - started)
        state["changed_since"] = until.isoformat()
        remember_server_now(state, bounds.server_now, "batch_failures")

    return dlt.resource(
        batch_failures,
        name="batch_failures",
        primary_key=["batch_uuid", "run_uuid"],
        write_disposition={"disposition": "merge", "strategy": "delete-insert"},
        columns=FAILURE_COLUMNS,
    )
