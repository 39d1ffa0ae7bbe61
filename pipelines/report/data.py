"""What the report shows, read from the marts through dlt's SQL client, on any of the three warehouses.

The queries are plain SQL every warehouse runs the same way (no dialect functions): filters on a
``date`` literal built from a ``datetime.date``, ``sum``/``max``/``group by``, the marts' names qualified
by dlt's client. The period ends on the newest day in the marts (the data's clock, not this
machine's) and reaches ``days`` days back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

WORST_BATCHES = 5
"""Batches whose failed records the report lists (most failed runs first)."""
RECORDS_PER_BATCH = 25
"""Failed records shown per batch (the re-run command takes them all)."""


@dataclass(frozen=True)
class WorkflowDay:
    """A row of cargo_runs_daily."""

    day: date
    workflow_uuid: str
    workflow_name: str
    workflow_kind: str | None
    runs: int
    success_runs: int
    error_runs: int
    cancelled_runs: int
    finished_runs: int
    error_rate: float | None
    credits: float
    p50_duration_s: float | None
    p95_duration_s: float | None


@dataclass(frozen=True)
class NodeFailures:
    """A node over the period: cargo_node_failures_daily summed, its top message from the messages mart."""

    workflow_name: str
    node_slug: str
    node_kind: str | None
    integration_slug: str | None
    connector_name: str | None
    executions: int
    finished_executions: int
    errors: int
    top_error_message: str | None
    top_error_occurrences: int

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.finished_executions if self.finished_executions else None


@dataclass(frozen=True)
class IntegrationFailures:
    """Failures grouped by the integration the node calls (or the node kind when it calls none)."""

    integration: str
    executions: int
    finished_executions: int
    errors: int
    top_error_message: str | None
    top_error_occurrences: int

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.finished_executions if self.finished_executions else None


@dataclass(frozen=True)
class BatchHealth:
    """A row of cargo_batch_health."""

    batch_uuid: str
    workflow_name: str | None
    batch_status: str | None
    created_at: datetime | None
    day: date
    runs_count: int
    executed_runs_count: int
    failed_runs_count: int
    completeness: float | None
    success_share: float | None
    is_fully_processed: bool
    is_success_with_failures: bool
    failed_records_listed: int
    failing_nodes: str | None


@dataclass(frozen=True)
class FailedRecord:
    """A row of cargo_failed_records."""

    batch_uuid: str
    record_id: str | None
    record_title: str | None
    failed_node_slug: str | None
    failed_node_kind: str | None
    node_error_message: str | None


@dataclass
class ReportData:
    """Everything the page shows, with where and when it comes from."""

    destination: str
    dataset: str
    first_day: date | None
    last_day: date | None
    synced_at: datetime | None
    newest_change: datetime | None
    workflow_days: list[WorkflowDay] = field(default_factory=list)
    nodes: list[NodeFailures] = field(default_factory=list)
    integrations: list[IntegrationFailures] = field(default_factory=list)
    batches: list[BatchHealth] = field(default_factory=list)
    worst_batches: list[BatchHealth] = field(default_factory=list)
    failed_records: dict[str, list[FailedRecord]] = field(default_factory=dict)

    @property
    def days(self) -> list[date]:
        if self.first_day is None or self.last_day is None:
            return []
        return [self.first_day + timedelta(days=i) for i in range((self.last_day - self.first_day).days + 1)]


def sql_date(value: date) -> str:
    """A date literal every warehouse reads (built from a ``date``, never from user text)."""
    return f"cast('{value.isoformat()}' as date)"


def read_report_data(client: Any, destination: str, dataset: str, days: int) -> ReportData:
    """Query the marts (and dlt's load table for the sync time) with dlt's ``sql_client``."""

    def table(name: str) -> str:
        return str(client.make_qualified_table_name(name))

    def rows(sql: str) -> list[Sequence[Any]]:
        return list(client.execute_sql(sql) or [])

    last = _as_date(_scalar(rows(f"select max(day) from {table('cargo_runs_daily')}")))
    synced_at = _as_datetime(_scalar(rows(f"select max(inserted_at) from {table('_dlt_loads')} where status = 0")))
    newest = _as_datetime(_scalar(rows(f"select max(updated_at) from {table('runs')}")))
    data = ReportData(destination, dataset, None, last, synced_at, newest)
    if last is None:
        return data
    first = last - timedelta(days=days - 1)
    data.first_day = first
    period = f"day >= {sql_date(first)} and day <= {sql_date(last)}"

    data.workflow_days = [
        WorkflowDay(
            day=_as_date(r[0]) or first,
            workflow_uuid=str(r[1]),
            workflow_name=str(r[2] or r[1]),
            workflow_kind=r[3],
            runs=int(r[4] or 0),
            success_runs=int(r[5] or 0),
            error_runs=int(r[6] or 0),
            cancelled_runs=int(r[7] or 0),
            finished_runs=int(r[8] or 0),
            error_rate=_float(r[9]),
            credits=float(r[10] or 0.0),
            p50_duration_s=_float(r[11]),
            p95_duration_s=_float(r[12]),
        )
        for r in rows(
            "select day, workflow_uuid, workflow_name, workflow_kind, runs, success_runs, error_runs, "
            "cancelled_runs, finished_runs, error_rate, credits, p50_duration_s, p95_duration_s "
            f"from {table('cargo_runs_daily')} where {period} order by day, workflow_name"
        )
    ]

    messages = rows(
        "select workflow_uuid, node_uuid, max(integration_slug), max(node_kind), error_message, sum(occurrences) "
        f"from {table('cargo_node_error_messages_daily')} where {period} "
        "group by workflow_uuid, node_uuid, error_message"
    )
    by_node: dict[tuple[str, str], dict[str, int]] = {}
    by_integration: dict[str, dict[str, int]] = {}
    for workflow_uuid, node_uuid, integration_slug, node_kind, message, occurrences in messages:
        count = int(occurrences or 0)
        for tally in (
            by_node.setdefault((str(workflow_uuid), str(node_uuid)), {}),
            by_integration.setdefault(integration_name(integration_slug, node_kind), {}),
        ):
            tally[str(message)] = tally.get(str(message), 0) + count

    node_rows = rows(
        "select workflow_uuid, node_uuid, max(workflow_name), max(node_slug), max(node_kind), "
        "max(integration_slug), max(connector_name), sum(executions), sum(finished_executions), sum(errors) "
        f"from {table('cargo_node_failures_daily')} where {period} group by workflow_uuid, node_uuid"
    )
    nodes = []
    integrations: dict[str, list[int]] = {}
    for r in node_rows:
        top_message, top_count = _top(by_node.get((str(r[0]), str(r[1])), {}))
        node = NodeFailures(
            workflow_name=str(r[2] or r[0]),
            node_slug=str(r[3] or r[1]),
            node_kind=r[4],
            integration_slug=r[5],
            connector_name=r[6],
            executions=int(r[7] or 0),
            finished_executions=int(r[8] or 0),
            errors=int(r[9] or 0),
            top_error_message=top_message,
            top_error_occurrences=top_count,
        )
        nodes.append(node)
        totals = integrations.setdefault(integration_name(node.integration_slug, node.node_kind), [0, 0, 0])
        totals[0] += node.executions
        totals[1] += node.finished_executions
        totals[2] += node.errors
    data.nodes = sorted(nodes, key=lambda n: (-n.errors, -(n.error_rate or 0), n.workflow_name, n.node_slug))
    data.integrations = sorted(
        (
            IntegrationFailures(name, t[0], t[1], t[2], *_top(by_integration.get(name, {})))
            for name, t in integrations.items()
        ),
        key=lambda i: (-i.errors, i.integration),
    )

    data.batches = [
        _batch(r)
        for r in rows(
            "select batch_uuid, workflow_name, batch_status, created_at, day, runs_count, executed_runs_count, "
            "failed_runs_count, completeness, success_share, is_fully_processed, is_success_with_failures, "
            f"failed_records_listed, failing_nodes from {table('cargo_batch_health')} where {period}"
        )
    ]
    data.worst_batches = sorted(
        (b for b in data.batches if b.failed_records_listed > 0),
        key=lambda b: (-b.failed_runs_count, b.success_share if b.success_share is not None else 1.0, b.batch_uuid),
    )[:WORST_BATCHES]
    if data.worst_batches:
        uuids = ", ".join(_sql_uuid(b.batch_uuid) for b in data.worst_batches)
        for r in rows(
            "select batch_uuid, record_id, record_title, failed_node_slug, failed_node_kind, node_error_message "
            f"from {table('cargo_failed_records')} where batch_uuid in ({uuids}) order by batch_uuid, record_id"
        ):
            data.failed_records.setdefault(str(r[0]), []).append(FailedRecord(str(r[0]), r[1], r[2], r[3], r[4], r[5]))
    return data


def _batch(r: Sequence[Any]) -> BatchHealth:
    return BatchHealth(
        batch_uuid=str(r[0]),
        workflow_name=r[1],
        batch_status=r[2],
        created_at=_as_datetime(r[3]),
        day=_as_date(r[4]) or date.min,
        runs_count=int(r[5] or 0),
        executed_runs_count=int(r[6] or 0),
        failed_runs_count=int(r[7] or 0),
        completeness=_float(r[8]),
        success_share=_float(r[9]),
        is_fully_processed=bool(r[10]),
        is_success_with_failures=bool(r[11]),
        failed_records_listed=int(r[12] or 0),
        failing_nodes=r[13],
    )


def _top(tally: dict[str, int]) -> tuple[str | None, int]:
    """The most frequent message and its count (ties: the alphabetically first)."""
    if not tally:
        return None, 0
    message = min(tally, key=lambda m: (-tally[m], m))
    return message, tally[message]


def integration_name(integration_slug: Any, node_kind: Any) -> str:
    """The integration a node calls, or its kind when it calls none (agents, tools, native steps)."""
    return str(integration_slug) if integration_slug else f"({node_kind or 'unknown'} node)"


def _sql_uuid(value: str) -> str:
    """A batch uuid as a SQL string literal; the uuids come from the mart, and are checked to be uuids."""
    from uuid import UUID

    return f"'{UUID(value)}'"


def _scalar(result: list[Sequence[Any]]) -> Any:
    return result[0][0] if result and result[0] else None


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _as_date(value: Any) -> date | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


def _as_datetime(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
