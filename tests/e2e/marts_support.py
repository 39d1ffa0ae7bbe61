"""The marts' questions asked again of the emulator's SQL endpoint (ClickHouse), for the comparisons.

Each function answers one mart's question from Cargo's own tables over ``orchestration/query``, with
ClickHouse's functions (``toDate`` of a UTC DateTime64, ``countIf``, ``quantileExactInclusive``: exact,
linear interpolation between the two nearest values, the same definition as ``percentile_cont``), and
limited to the rows the sync could load: runs created, and spans started, before the table's frontier.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from cargo_elt.source.client import CargoClient


@dataclass(frozen=True)
class Frontiers:
    """Up to where the sync read each fact table (from the pipeline's state)."""

    runs: datetime
    spans: datetime
    batches: datetime

    def runs_sql(self, column: str = "created_at") -> str:
        return f"{column} < toDateTime64('{_ch(self.runs)}', 3, 'UTC')"

    def spans_sql(self, column: str = "execution_started_at") -> str:
        return f"{column} < toDateTime64('{_ch(self.spans)}', 3, 'UTC')"


def frontiers(pipeline: Any) -> Frontiers:
    resources = pipeline.state["sources"]["cargo"]["resources"]
    return Frontiers(
        runs=datetime.fromisoformat(resources["runs"]["frontier"]),
        spans=datetime.fromisoformat(resources["spans"]["frontier"]),
        batches=datetime.fromisoformat(resources["batches"]["frontier"]),
    )


def _ch(value: datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S.") + f"{value.microsecond // 1000:03d}"


FINISHED = "('success', 'error', 'cancelled', 'skipped')"


def runs_daily(client: CargoClient, f: Frontiers) -> dict[tuple[str, date], dict[str, Any]]:
    """cargo_runs_daily's question: per workflow and UTC day of creation, soft-deleted runs left out."""
    rows = client.query(
        "SELECT toString(workflow_uuid) AS workflow_uuid, toString(toDate(created_at)) AS day, count() AS runs, "
        "countIf(status = 'success') AS success_runs, countIf(status = 'error') AS error_runs, "
        f"countIf(status = 'cancelled') AS cancelled_runs, countIf(status IN {FINISHED}) AS finished_runs, "
        "sum(credits_used_count) AS credits, "
        "quantileExactInclusiveIf(0.5)(dateDiff('millisecond', created_at, finished_at) / 1000, "
        "status IN ('success', 'error') AND finished_at IS NOT NULL) AS p50, "
        "quantileExactInclusiveIf(0.95)(dateDiff('millisecond', created_at, finished_at) / 1000, "
        "status IN ('success', 'error') AND finished_at IS NOT NULL) AS p95, "
        "countIf(status IN ('success', 'error') AND finished_at IS NOT NULL) AS timed "
        f"FROM runs WHERE deleted_at IS NULL AND {f.runs_sql()} GROUP BY workflow_uuid, day"
    )
    return {(str(r["workflow_uuid"]), date.fromisoformat(str(r["day"]))): r for r in rows}


def _executions(f: Frontiers) -> str:
    """Spans of loaded, not soft-deleted runs, dated by the run's UTC creation day."""
    return (
        "SELECT toString(s.workflow_uuid) AS workflow_uuid, toString(toDate(r.created_at)) AS day, "
        "toString(s.node_uuid) AS node_uuid, s.execution_status AS status, s.execution_error_message AS message, "
        "s.execution_credits_used_count AS credits "
        "FROM spans AS s INNER JOIN runs AS r ON r.uuid = s.run_uuid "
        f"WHERE r.deleted_at IS NULL AND {f.runs_sql('r.created_at')} AND {f.spans_sql('s.execution_started_at')}"
    )


def node_failures_daily(client: CargoClient, f: Frontiers) -> dict[tuple[date, str, str], dict[str, Any]]:
    """cargo_node_failures_daily's question, with the most frequent message (ties: alphabetically first)."""
    counts = client.query(
        "SELECT workflow_uuid, day, node_uuid, count() AS executions, countIf(status = 'error') AS errors, "
        "countIf(status IN ('success', 'error')) AS finished_executions, sum(credits) AS credits "
        f"FROM ({_executions(f)}) GROUP BY workflow_uuid, day, node_uuid"
    )
    messages = client.query(
        "SELECT workflow_uuid, day, node_uuid, ifNull(message, '(no message)') AS message, count() AS occurrences "
        f"FROM ({_executions(f)}) WHERE status = 'error' GROUP BY workflow_uuid, day, node_uuid, message"
    )
    top: dict[tuple[date, str, str], tuple[str, int]] = {}
    for m in messages:
        key = (date.fromisoformat(str(m["day"])), str(m["workflow_uuid"]), str(m["node_uuid"]))
        candidate = (str(m["message"]), int(m["occurrences"]))
        best = top.get(key)
        if best is None or (-candidate[1], candidate[0]) < (-best[1], best[0]):
            top[key] = candidate
    result = {}
    for r in counts:
        key = (date.fromisoformat(str(r["day"])), str(r["workflow_uuid"]), str(r["node_uuid"]))
        message, occurrences = top.get(key, (None, 0))
        result[key] = {**r, "top_error_message": message, "top_error_occurrences": occurrences}
    return result


def batch_health(client: CargoClient, f: Frontiers) -> dict[str, dict[str, Any]]:
    """cargo_batch_health's counters and the failed (not soft-deleted) runs listed per batch."""
    batches = client.query(
        "SELECT toString(uuid) AS uuid, runs_count, executed_runs_count, failed_runs_count FROM batches "
        f"WHERE created_at < toDateTime64('{_ch(f.batches)}', 3, 'UTC')"
    )
    failed = client.query(
        "SELECT toString(batch_uuid) AS batch_uuid, count() AS failed_runs FROM runs "
        f"WHERE status = 'error' AND deleted_at IS NULL AND batch_uuid IS NOT NULL AND {f.runs_sql()} "
        "GROUP BY batch_uuid"
    )
    listed = {str(r["batch_uuid"]): int(r["failed_runs"]) for r in failed}
    return {str(b["uuid"]): {**b, "failed_records_listed": listed.get(str(b["uuid"]), 0)} for b in batches}


def rows_by_key(
    rows: Iterable[Sequence[Any]], names: Sequence[str], key: Callable[[Mapping[str, Any]], tuple[Any, ...]]
) -> dict[tuple[Any, ...], dict[str, Any]]:
    """Warehouse rows as dicts keyed like the ClickHouse answers (dates as ``date``, uuids as text)."""
    result: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows:
        record = {name: (v.date() if isinstance(v, datetime) else v) for name, v in zip(names, row, strict=True)}
        k = key(record)
        assert k not in result, f"key {k} appears twice"
        result[k] = record
    return result


def as_date(value: Any) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


def assert_marts_equal_clickhouse(
    query: Callable[[str], list[Sequence[Any]]], client: CargoClient, f: Frontiers
) -> None:
    """Every number of cargo_runs_daily, cargo_node_failures_daily, cargo_credits_daily and
    cargo_batch_health equals ClickHouse's answer to the same question (``query`` reads the warehouse)."""
    import pytest

    expected_runs = runs_daily(client, f)
    names = ["workflow_uuid", "day", "runs", "success_runs", "error_runs", "cancelled_runs", "finished_runs"]
    names += ["error_rate", "credits", "p50_duration_s", "p95_duration_s", "workflow_name"]
    got_runs = rows_by_key(
        query(f"select {', '.join(names)} from cargo_runs_daily"),
        names,
        lambda r: (str(r["workflow_uuid"]), as_date(r["day"])),
    )
    assert expected_runs, "the emulator has runs: the comparison would prove nothing"
    assert set(got_runs) == set(expected_runs)
    for key, want in expected_runs.items():
        got = got_runs[key]
        for column in ("runs", "success_runs", "error_runs", "cancelled_runs", "finished_runs"):
            assert int(got[column]) == int(want[column]), (key, column)
        assert got["credits"] == pytest.approx(float(want["credits"]), abs=1e-9), key
        rate = int(want["error_runs"]) / int(want["finished_runs"]) if int(want["finished_runs"]) else None
        assert got["error_rate"] == (pytest.approx(rate, rel=1e-12) if rate is not None else None), key
        if int(want["timed"]):
            # both exact (no sampling): equal up to float rounding of the interpolation
            assert got["p50_duration_s"] == pytest.approx(float(want["p50"]), rel=1e-9), key
            assert got["p95_duration_s"] == pytest.approx(float(want["p95"]), rel=1e-9), key
        else:
            assert got["p95_duration_s"] is None, key
    assert any(int(w["error_runs"]) for w in expected_runs.values()), "some runs failed: error rates are tested"

    expected_nodes = node_failures_daily(client, f)
    names = ["day", "workflow_uuid", "node_uuid", "executions", "finished_executions", "errors", "error_rate"]
    names += ["top_error_message", "top_error_occurrences"]
    got_nodes = rows_by_key(
        query(f"select {', '.join(names)} from cargo_node_failures_daily"),
        names,
        lambda r: (as_date(r["day"]), str(r["workflow_uuid"]), str(r["node_uuid"])),
    )
    assert set(got_nodes) == set(expected_nodes)
    for key, want in expected_nodes.items():
        got = got_nodes[key]
        for column in ("executions", "finished_executions", "errors", "top_error_occurrences"):
            assert int(got[column]) == int(want[column]), (key, column)
        assert got["top_error_message"] == want["top_error_message"], key
    assert sum(int(w["errors"]) for w in expected_nodes.values()) > 0

    names = ["day", "workflow_uuid", "node_uuid", "node_credits", "workflow_credits"]
    got_credits = rows_by_key(
        query(f"select {', '.join(names)} from cargo_credits_daily"),
        names,
        lambda r: (as_date(r["day"]), str(r["workflow_uuid"]), str(r["node_uuid"])),
    )
    assert set(got_credits) == set(expected_nodes)
    for key, want in expected_nodes.items():
        assert got_credits[key]["node_credits"] == pytest.approx(float(want["credits"]), abs=1e-9), key
        run_key = (key[1], key[0])
        assert got_credits[key]["workflow_credits"] == pytest.approx(float(expected_runs[run_key]["credits"]), abs=1e-9)
    assert sum(float(w["credits"]) for w in expected_nodes.values()) > 0

    expected_batches = batch_health(client, f)
    names = ["batch_uuid", "runs_count", "executed_runs_count", "failed_runs_count", "failed_records_listed"]
    got_batches = rows_by_key(
        query(f"select {', '.join(names)} from cargo_batch_health"), names, lambda r: (str(r["batch_uuid"]),)
    )
    assert {k[0] for k in got_batches} == set(expected_batches)
    for uuid, want in expected_batches.items():
        for column in names[1:]:
            assert int(got_batches[(uuid,)][column]) == int(want[column]), (uuid, column)
    assert any(w["failed_records_listed"] for w in expected_batches.values())
