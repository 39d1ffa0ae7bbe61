"""Ground truth of a workspace's orchestration tables, for checking what a sync loaded.

A sync is correct when the destination holds exactly the current version of every row: one row per
primary key, with the latest update-column value. The truth is therefore computed over the ``FINAL``
rows (one version per key, as callers see them through the workspace views) and reduced to what a
destination can be compared on: the primary key, the update column, and the status.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .store import ClickHouseStore


@dataclass(frozen=True)
class TruthSpec:
    """How one table is identified and versioned (DESIGN.md section 1)."""

    table: str
    primary_key: tuple[str, ...]
    update_column: str
    status_column: str


TRUTH_SPECS: dict[str, TruthSpec] = {
    spec.table: spec
    for spec in (
        TruthSpec("runs", ("uuid",), "updated_at", "status"),
        TruthSpec("batches", ("uuid",), "updated_at", "status"),
        TruthSpec("spans", ("run_uuid", "node_uuid", "execution_index"), "execution_updated_at", "execution_status"),
        TruthSpec("records", ("workflow_uuid", "id"), "updated_at", "status"),
    )
}


def _scope(workspace_uuid: str) -> str:
    return f"workspace_uuid = toUUID('{workspace_uuid}')"


def ground_truth(store: ClickHouseStore, workspace_uuid: str) -> dict[str, dict[str, Any]]:
    """Per table ``{"count": rows, "checksum": decimal string}`` of the workspace's current rows.

    The checksum is the sum (as UInt128, so it cannot overflow) of ``cityHash64(primary key, update
    column)`` over the FINAL rows: independent of row order and of how many versions were written,
    and different as soon as one row is missing, duplicated or stale.
    """
    out: dict[str, dict[str, Any]] = {}
    for name, spec in TRUTH_SPECS.items():
        hashed = ", ".join((*spec.primary_key, spec.update_column))
        row = store.rows(
            f"SELECT count() AS n, toString(sum(toUInt128(cityHash64({hashed})))) AS checksum "
            f"FROM {store.table(name)} FINAL WHERE {_scope(workspace_uuid)}"
        )[0]
        out[name] = {"count": int(row["n"]), "checksum": str(row["checksum"])}
    return out


def _iso(text: Any) -> str | None:
    """ClickHouse ``2026-07-22 00:20:41.999`` as ``2026-07-22T00:20:41.999Z``."""
    if text is None:
        return None
    date, _, clock = str(text).partition(" ")
    if "." not in clock:
        clock += ".000"
    return f"{date}T{clock}Z"


def truth_rows(store: ClickHouseStore, workspace_uuid: str, table: str) -> list[dict[str, Any]]:
    """Every current row of ``table`` reduced to primary key, update column, status (and deleted_at).

    Keys keep their column names (UUIDs as lowercase strings, ``execution_index`` as int); the update
    column and ``deleted_at`` (runs only) are ISO strings with milliseconds and ``Z``. Rows are sorted
    by primary key, so two lists compare with ``==``.
    """
    if table not in TRUTH_SPECS:
        raise ValueError(f"unknown table {table!r} (one of {', '.join(TRUTH_SPECS)})")
    spec = TRUTH_SPECS[table]
    keys = [f"toString({c}) AS {c}" if c != "execution_index" else c for c in spec.primary_key]
    extra = ["toString(deleted_at) AS deleted_at"] if table == "runs" else []
    columns = ", ".join(
        [
            *keys,
            f"toString({spec.update_column}) AS {spec.update_column}",
            f"toString({spec.status_column}) AS {spec.status_column}",
            *extra,
        ]
    )
    rows = store.rows(
        f"SELECT {columns} FROM {store.table(table)} FINAL WHERE {_scope(workspace_uuid)} "
        f"ORDER BY {', '.join(spec.primary_key)}"
    )
    for row in rows:
        row[spec.update_column] = _iso(row[spec.update_column])
        if "execution_index" in row:
            row["execution_index"] = int(row["execution_index"])
        if table == "runs":
            row["deleted_at"] = _iso(row["deleted_at"])
    return rows


def _count(store: ClickHouseStore, sql: str) -> int:
    return int(store.scalar(sql) or 0)


def consistency_problems(store: ClickHouseStore, workspace_uuid: str) -> dict[str, int]:
    """Rows breaking each consistency rule of the generated data (all zero when the data is sound).

    Checked over the current (FINAL) rows of one workspace: spans are exactly the runs' executions;
    records are the latest run per (workflow, record id) with the first run's ``created_at``; batch
    counters and status match their runs; every run's workflow and release exist as entities;
    nothing is dated at or after ``now`` (the data is what happened before it); unfinished runs have
    a pending execution and no ``finished_at``; error runs carry their error on exactly one failing
    span; credits add up (native nodes use none); keys are unique.
    """
    from .generator import current_now

    db = store.database
    scope = _scope(workspace_uuid)
    now = current_now(store)
    now_sql = f"toDateTime64('{now:%Y-%m-%d %H:%M:%S}.{now.microsecond // 1000:03d}', 3, 'UTC')"
    runs = f"(SELECT * FROM {db}.runs FINAL WHERE {scope})"
    spans = f"(SELECT * FROM {db}.spans FINAL WHERE {scope})"
    records = f"(SELECT * FROM {db}.records FINAL WHERE {scope})"
    batches = f"(SELECT * FROM {db}.batches FINAL WHERE {scope})"
    expected_spans = (
        f"SELECT uuid AS run_uuid, e.node_uuid AS node_uuid, toUInt32(x_idx - 1) AS execution_index, "
        f"e.status AS st, e.updated_at AS upd, e.credits_used_count AS cr, workflow_uuid AS wf, record_id AS rid "
        f"FROM {runs} ARRAY JOIN executions AS e, arrayEnumerate(executions.node_uuid) AS x_idx"
    )
    actual_spans = (
        f"SELECT run_uuid, node_uuid, execution_index, execution_status AS st, execution_updated_at AS upd, "
        f"execution_credits_used_count AS cr, workflow_uuid AS wf, record_id AS rid FROM {spans}"
    )
    span_key = "(run_uuid, node_uuid, execution_index, st, upd, cr, wf, rid)"
    latest = (
        f"SELECT wf AS workflow_uuid, rid AS id, r_uuid AS run_uuid, r_created AS created_at, r_upd AS updated_at, "
        f"r_status AS status FROM (SELECT workflow_uuid AS wf, record_id AS rid, "
        f"argMax(uuid, (created_at, uuid)) AS r_uuid, min(created_at) AS r_created, "
        f"argMax(updated_at, (created_at, uuid)) AS r_upd, argMax(status, (created_at, uuid)) AS r_status "
        f"FROM {runs} GROUP BY workflow_uuid, record_id)"
    )
    record_cols = "(workflow_uuid, id, run_uuid, created_at, updated_at, status)"
    aggregates = (
        f"SELECT batch_uuid, count() AS n, countIf(finished_at IS NOT NULL) AS n_exec, "
        f"countIf(status = 'error') AS n_failed, countIf(finished_at IS NULL) AS n_open, "
        f"sum(credits_used_count) AS credits, max(updated_at) AS max_upd FROM {runs} "
        f"WHERE batch_uuid IS NOT NULL GROUP BY batch_uuid"
    )
    entities = f"(SELECT uuid FROM {db}.entities FINAL WHERE {scope} AND kind = '%s')"
    checks = {
        "spans_missing": f"SELECT count() FROM ({expected_spans}) WHERE {span_key} NOT IN ({actual_spans})",
        "spans_extra": f"SELECT count() FROM ({actual_spans}) WHERE {span_key} NOT IN ({expected_spans})",
        "spans_without_run": f"SELECT count() FROM {spans} WHERE run_uuid NOT IN (SELECT uuid FROM {runs})",
        "records_missing": (
            f"SELECT count() FROM ({latest}) WHERE {record_cols} NOT IN (SELECT {record_cols} FROM {records})"
        ),
        "records_extra": (
            f"SELECT count() FROM {records} WHERE {record_cols} NOT IN (SELECT {record_cols} FROM ({latest}))"
        ),
        "records_not_copied": (
            f"SELECT count() FROM {records} AS rec INNER JOIN {runs} AS r ON rec.run_uuid = r.uuid "
            f"WHERE rec.title != r.record_title OR rec.`executions.status` != r.`executions.status` "
            f"OR rec.credits_used_count != r.credits_used_count OR rec.batch_uuid IS DISTINCT FROM r.batch_uuid"
        ),
        "batch_counters": (
            f"SELECT count() FROM {batches} AS b LEFT JOIN ({aggregates}) AS a ON a.batch_uuid = b.uuid "
            f"WHERE b.runs_count != a.n OR b.executed_runs_count != a.n_exec OR b.failed_runs_count != a.n_failed "
            f"OR b.credits_used_count != a.credits "
            f"OR (b.status = 'running') != (a.n_open > 0) "
            f"OR (b.status = 'success' AND (b.finished_at IS NULL OR a.n_open > 0)) "
            f"OR (b.status = 'error' AND (b.error_message IS NULL OR b.runs_count != 0)) "
            f"OR (b.runs_count > 0 AND b.updated_at != a.max_upd) "
            f"SETTINGS join_use_nulls = 0"
        ),
        "runs_with_unknown_batch": (
            f"SELECT count() FROM {runs} WHERE batch_uuid IS NOT NULL "
            f"AND batch_uuid NOT IN (SELECT uuid FROM {batches})"
        ),
        "runs_without_release": (
            f"SELECT count() FROM {runs} WHERE release_uuid NOT IN {entities % 'release'} "
            f"OR workflow_uuid NOT IN {entities % 'workflow'}"
        ),
        "rows_after_now": (
            f"SELECT (SELECT count() FROM {runs} WHERE greatest(created_at, updated_at, "
            f"ifNull(finished_at, created_at), ifNull(deleted_at, created_at)) >= {now_sql}) + "
            f"(SELECT count() FROM {spans} WHERE greatest(execution_started_at, execution_updated_at, "
            f"ifNull(execution_finished_at, execution_started_at)) >= {now_sql}) + "
            f"(SELECT count() FROM {batches} WHERE greatest(created_at, updated_at, "
            f"ifNull(finished_at, created_at)) >= {now_sql}) + "
            f"(SELECT count() FROM {records} WHERE greatest(created_at, updated_at) >= {now_sql})"
        ),
        "unfinished_inconsistent": (
            f"SELECT count() FROM {runs} WHERE (finished_at IS NULL) != (status IN ('pending', 'running')) "
            f"OR (status IN ('pending', 'running')) != has(executions.status, 'pending') "
            f"OR length(executions.node_uuid) = 0"
        ),
        "errors_inconsistent": (
            f"SELECT count() FROM {runs} WHERE (status = 'error') != (error_message IS NOT NULL) "
            f"OR (status = 'error') != (countEqual(executions.status, 'error') = 1) "
            f"OR (status = 'error' AND executions.error_message[length(executions.node_uuid)] IS NULL) "
            f"OR (status = 'error' AND executions.status[length(executions.node_uuid)] != 'error')"
        ),
        "credits_inconsistent": (
            f"SELECT (SELECT count() FROM {runs} WHERE credits_used_count != arraySum(executions.credits_used_count)) "
            f"+ (SELECT count() FROM {spans} WHERE node_kind = 'native' AND execution_credits_used_count != 0)"
        ),
        "versions_inconsistent": (
            f"SELECT (SELECT count() FROM {runs} WHERE _version != toUnixTimestamp64Milli(updated_at)) "
            f"+ (SELECT count() FROM {batches} WHERE _version != toUnixTimestamp64Milli(updated_at)) "
            f"+ (SELECT count() FROM {spans} WHERE _version != toUnixTimestamp64Milli(execution_updated_at))"
        ),
        "duplicate_keys": (
            f"SELECT (SELECT count() - uniqExact(uuid) FROM {runs}) + (SELECT count() - uniqExact(uuid) FROM {batches})"
            f" + (SELECT count() - uniqExact(run_uuid, node_uuid, execution_index) FROM {spans})"
            f" + (SELECT count() - uniqExact(workflow_uuid, id) FROM {records})"
        ),
    }
    return {name: _count(store, sql) for name, sql in checks.items()}
