"""Runs, records and spans endpoints (REFERENCE.md sections 3.3-3.5).

Lists answer ``{<items>, count}`` with ``count`` the total of matching rows (for paging), newest
first ([I]: ``created_at`` / ``execution_started_at`` descending, ties broken by key so pages are
stable). Exports (runs download, download-outputs) validate and count at request time, then hand
out a signed URL; the file itself is produced when fetched (``exports.py``).
"""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from ..downloads import FileSpec, sign_file_url
from ..validation import ValidationFailed
from . import catalog
from .common import ApiError, Call, Where, contains_sql, lit, not_found, ok, rejected, uuid_lit
from .facts import (
    RECORD_TABLE,
    RUN_TABLE,
    SPAN_TABLE,
    executions_filter_sql,
    record_json,
    run_json,
    span_json,
    table,
)
from .limits import (
    DOWNLOAD_OUTPUTS_MAX_ROWS,
    HIDE_DELETED_RUNS,
    RECORDS_LIST_DEFAULT_LIMIT,
    RUNS_LIST_DEFAULT_LIMIT,
    SPANS_LIST_DEFAULT_LIMIT,
    SPANS_LIST_MAX_LIMIT,
)
from .payloads import (
    RecordsCountPayload,
    RecordsListPayload,
    RunsCountPayload,
    RunsDownloadOutputsPayload,
    RunsDownloadPayload,
    RunsListPayload,
    RunsMetricsPayload,
    SpansCountPayload,
    SpansListPayload,
)
from .resolver import WorkflowContext

RUN_ORDER = "created_at DESC, uuid DESC"
RECORD_ORDER = "created_at DESC, workflow_uuid, id"
SPAN_ORDER = "execution_started_at DESC, run_uuid, execution_index, node_uuid"
TRACE_SPAN_ORDER = "execution_started_at, run_uuid, execution_index, node_uuid"

RunFilter = RunsCountPayload | RunsDownloadPayload | RunsDownloadOutputsPayload


def runs_where(workspace_uuid: str, p: RunFilter) -> Where:
    """The WHERE clause of a runs list/count/export payload."""
    w = Where(workspace_uuid)
    if HIDE_DELETED_RUNS:
        w.add("deleted_at IS NULL")
    w.uuid_eq("workflow_uuid", p.workflowUuid)
    w.uuid_eq("user_uuid", getattr(p, "userUuid", None))
    w.uuid_in("uuid", getattr(p, "uuids", None))
    w.uuid_eq("batch_uuid", p.batchUuid)
    w.uuid_eq("release_uuid", p.releaseUuid)
    w.in_("status", p.statuses)
    w.uuid_eq("parent_batch_uuid", p.parentBatchUuid)
    w.uuid_eq("parent_uuid", p.parentUuid)
    w.uuid_eq("parent_node_uuid", p.parentNodeUuid)
    w.flag("is_group_parent", p.isGroupParent)
    w.eq("record_id", p.recordId)
    w.contains("record_title", p.recordTitle)
    if p.recordTitleOrId is not None:
        w.add(f"{contains_sql('record_title', p.recordTitleOrId)} OR record_id = {lit(p.recordTitleOrId)}")
    w.is_set("finished_at", getattr(p, "isFinished", None))
    if p.executionsFilter is not None:
        w.add(executions_filter_sql(p.executionsFilter))
    w.after("created_at", p.createdAfter)
    w.before("created_at", p.createdBefore)
    w.after("updated_at", getattr(p, "updatedAfter", None))
    w.before("updated_at", getattr(p, "updatedBefore", None))
    return w


def count(call: Call, name: str, where: Where) -> int:
    return int(call.store.scalar(f"SELECT count() FROM {table(call.store, name)} WHERE {where.sql()}") or 0)


def _page(call: Call, name: str, where: Where, order: str, *, limit: int, offset: int) -> list[dict[str, Any]]:
    return call.store.rows(
        f"SELECT * FROM {table(call.store, name)} WHERE {where.sql()} ORDER BY {order} LIMIT {limit} OFFSET {offset}"
    )


# -- runs ------------------------------------------------------------------------------------------


def runs_list(call: Call) -> Response:
    """``POST orchestration/runs/list`` -> ``{runs, count}``."""
    p = call.payload(RunsListPayload)
    where = runs_where(call.ws, p)
    limit = p.limit if p.limit is not None else RUNS_LIST_DEFAULT_LIMIT
    rows = _page(call, RUN_TABLE, where, RUN_ORDER, limit=limit, offset=p.offset or 0)
    return ok({"runs": [run_json(r) for r in rows], "count": count(call, RUN_TABLE, where)})


def runs_count(call: Call) -> Response:
    """``POST orchestration/runs/count`` -> ``{count}``."""
    p = call.payload(RunsCountPayload)
    return ok({"count": count(call, RUN_TABLE, runs_where(call.ws, p))})


def runs_get(call: Call) -> Response:
    """``GET orchestration/runs/{uuid}`` -> ``{run, runContext, runComputedConfigs}`` (404 ``runNotFound`` [I])."""
    uuid = call.path_params["uuid"]
    rows = call.store.rows(
        f"SELECT * FROM {table(call.store, RUN_TABLE)} "
        f"WHERE workspace_uuid = toUUID({lit(call.ws)}) AND uuid = {uuid_lit(uuid)} LIMIT 1"
    )
    if not rows:
        raise not_found("runNotFound")
    run = run_json(rows[0])
    context = WorkflowContext(call.store, call.ws, run["workflowUuid"], call.state.seed)
    _, run_context, configs = context.payloads(run, context.records([run["recordId"]]))
    return ok({"run": run, "runContext": run_context, "runComputedConfigs": configs})


_METRIC_COUNTERS = ("idle", "pending", "running", "success", "error", "cancelling", "cancelled", "skipped")


def _metric_bucket(execution_status: str, run_status: str) -> str:
    """Which RunMetric counter one execution tallies ([I], REFERENCE.md open question 14).

    Finished executions count by their own status; a pending execution counts by its run's state
    (``running`` while the run is active, else the run's status: cancelling, cancelled, ...).
    """
    if execution_status in ("success", "error"):
        return execution_status
    if run_status in ("idle", "pending", "cancelling", "cancelled", "skipped"):
        return run_status
    return "running"


def _empty_metric(node_uuid: str) -> dict[str, Any]:
    metric: dict[str, Any] = {"nodeUuid": node_uuid, "totalExecutionsCount": 0}
    for counter in _METRIC_COUNTERS:
        metric[f"{counter}ExecutionsCount"] = 0
    metric["creditsUsedCount"] = 0
    return metric


def _workflow_node_uuids(call: Call, workflow_uuid: str, release_uuid: str | None) -> list[str]:
    """Node UUIDs of the workflow, in graph order: from the release, else the workflow's live nodes."""
    release = (
        catalog.get_entity(call.store, call.ws, "release", release_uuid)
        if release_uuid is not None
        else catalog.deployed_release(call.store, call.ws, workflow_uuid)
    )
    nodes = catalog.flatten_nodes(release.body.get("nodes")) if release is not None else []
    if not nodes:
        workflow = catalog.get_entity(call.store, call.ws, "workflow", workflow_uuid)
        nodes = catalog.flatten_nodes(workflow.body.get("nodes")) if workflow is not None else []
        nodes = [n for n in nodes if not n.get("isArchived")]
    return [str(n["uuid"]) for n in nodes if isinstance(n.get("uuid"), str)]


def runs_metrics(call: Call) -> Response:
    """``POST orchestration/runs/metrics`` -> ``{runMetrics}``: one entry per workflow node, every counter."""
    p = call.payload(RunsMetricsPayload)
    where = Where(call.ws)
    if HIDE_DELETED_RUNS:
        where.add("deleted_at IS NULL")
    where.uuid_eq("workflow_uuid", p.workflowUuid)
    where.uuid_eq("release_uuid", p.releaseUuid)
    where.uuid_eq("batch_uuid", p.batchUuid)
    where.after("created_at", p.createdAfter)
    where.before("created_at", p.createdBefore)
    rows = call.store.rows(
        "SELECT toString(executions.node_uuid) AS node_uuid, executions.status AS execution_status, "
        "status AS run_status, count() AS n, sum(executions.credits_used_count) AS credits "
        f"FROM {table(call.store, RUN_TABLE)} ARRAY JOIN executions WHERE {where.sql()} "
        "GROUP BY node_uuid, execution_status, run_status"
    )
    if not rows and count(call, RUN_TABLE, where) == 0:
        return ok({"runMetrics": []})
    metrics: dict[str, dict[str, Any]] = {
        uuid: _empty_metric(uuid) for uuid in _workflow_node_uuids(call, p.workflowUuid, p.releaseUuid)
    }
    for row in rows:
        metric = metrics.setdefault(row["node_uuid"], _empty_metric(row["node_uuid"]))
        n = int(row["n"])
        metric["totalExecutionsCount"] += n
        metric[f"{_metric_bucket(row['execution_status'], row['run_status'])}ExecutionsCount"] += n
        metric["creditsUsedCount"] = round(metric["creditsUsedCount"] + float(row["credits"] or 0), 6)
    return ok({"runMetrics": list(metrics.values())})


def download_node_slugs(call: Call, workflow_uuid: str) -> list[str]:
    """The runs-download node columns: the workflow's live (non-archived) node slugs, in graph order."""
    workflow = catalog.get_entity(call.store, call.ws, "workflow", workflow_uuid)
    if workflow is None:
        return []
    nodes = catalog.flatten_nodes(workflow.body.get("nodes"))
    slugs: list[str] = []
    for node in nodes:
        slug = node.get("slug")
        if isinstance(slug, str) and not node.get("isArchived") and slug not in slugs:
            slugs.append(slug)
    return slugs


def runs_download(call: Call) -> Response:
    """``POST orchestration/runs/download`` -> ``{url}`` of a gzipped CSV (REFERENCE.md 7).

    An unknown workflow, or one without live nodes, answers 500 as Cargo does (the file is built per
    node slug).
    """
    p = call.payload(RunsDownloadPayload)
    slugs = download_node_slugs(call, p.workflowUuid)
    if not slugs:
        raise ApiError(500, message="Internal Server Error")
    spec = FileSpec(
        workspace_uuid=call.ws,
        kind="runs",
        params={"payload": p.model_dump(mode="json", exclude_none=True), "slugs": slugs},
        filename=f"runs-{p.workflowUuid}.csv.gz",
    )
    return ok({"url": sign_file_url(call.state, spec)})


def runs_download_outputs(call: Call) -> Response:
    """``POST orchestration/runs/download-outputs`` -> ``{url}`` (``noRunsFound``, ``tooManyRuns`` > 10,000)."""
    p = call.payload(RunsDownloadOutputsPayload)
    total = count(call, RUN_TABLE, runs_where(call.ws, p))
    selected = max(total - (p.offset or 0), 0)
    if p.limit is not None:
        selected = min(selected, p.limit)
    if selected == 0:
        raise rejected("noRunsFound")
    if selected > DOWNLOAD_OUTPUTS_MAX_ROWS:
        raise rejected("tooManyRuns")
    fmt = p.format or "csv"
    spec = FileSpec(
        workspace_uuid=call.ws,
        kind="run-outputs",
        params={"payload": p.model_dump(mode="json", exclude_none=True)},
        filename=f"run-outputs-{p.workflowUuid}.{fmt}",
    )
    return ok({"url": sign_file_url(call.state, spec)})


# -- records ---------------------------------------------------------------------------------------


def records_where(workspace_uuid: str, p: RecordsCountPayload) -> Where:
    """The WHERE clause of a records list/count payload."""
    w = Where(workspace_uuid)
    w.uuid_eq("workflow_uuid", p.workflowUuid)
    w.uuid_eq("user_uuid", p.userUuid)
    w.in_("id", p.ids)
    w.contains("title", p.title)
    if p.titleOrId is not None:
        w.add(f"{contains_sql('title', p.titleOrId)} OR id = {lit(p.titleOrId)}")
    w.uuid_eq("release_uuid", p.releaseUuid)
    w.uuid_eq("batch_uuid", p.batchUuid)
    w.in_("status", p.statuses)
    w.uuid_eq("parent_batch_uuid", p.parentBatchUuid)
    w.uuid_eq("parent_run_uuid", p.parentRunUuid)
    w.uuid_eq("parent_node_uuid", p.parentNodeUuid)
    w.flag("is_group_parent", p.isGroupParent)
    if p.executionsFilter is not None:
        w.add(executions_filter_sql(p.executionsFilter))
    w.after("created_at", p.createdAfter)
    w.before("created_at", p.createdBefore)
    w.after("updated_at", p.updatedAfter)
    w.before("updated_at", p.updatedBefore)
    return w


def records_list(call: Call) -> Response:
    """``POST orchestration/records/list`` -> ``{records, count}``."""
    p = call.payload(RecordsListPayload)
    where = records_where(call.ws, p)
    limit = p.limit if p.limit is not None else RECORDS_LIST_DEFAULT_LIMIT
    rows = _page(call, RECORD_TABLE, where, RECORD_ORDER, limit=limit, offset=p.offset or 0)
    return ok({"records": [record_json(r) for r in rows], "count": count(call, RECORD_TABLE, where)})


def records_count(call: Call) -> Response:
    """``POST orchestration/records/count`` -> ``{count}``."""
    p = call.payload(RecordsCountPayload)
    return ok({"count": count(call, RECORD_TABLE, records_where(call.ws, p))})


# -- spans -----------------------------------------------------------------------------------------


def spans_where(workspace_uuid: str, p: SpansCountPayload) -> Where:
    """The WHERE clause of a spans list/count payload."""
    w = Where(workspace_uuid)
    for column, value in (
        ("workflow_uuid", p.workflowUuid),
        ("user_uuid", p.userUuid),
        ("batch_uuid", p.batchUuid),
        ("trace_uuid", p.traceUuid),
        ("run_uuid", p.runUuid),
        ("parent_run_uuid", p.parentRunUuid),
        ("parent_node_uuid", p.parentNodeUuid),
        ("parent_agent_uuid", p.parentAgentUuid),
        ("node_uuid", p.nodeUuid),
        ("node_connector_uuid", p.nodeConnectorUuid),
        ("node_tool_uuid", p.nodeToolUuid),
        ("node_agent_uuid", p.nodeAgentUuid),
        ("node_release_uuid", p.nodeReleaseUuid),
    ):
        w.uuid_eq(column, value)
    w.eq("record_id", p.recordId)
    w.contains("record_title", p.recordTitle)
    if p.recordTitleOrId is not None:
        w.add(f"{contains_sql('record_title', p.recordTitleOrId)} OR record_id = {lit(p.recordTitleOrId)}")
    w.eq("node_kind", p.nodeKind)
    w.eq("node_slug", p.nodeSlug)
    w.eq("node_integration_slug", p.nodeIntegrationSlug)
    w.eq("node_action_slug", p.nodeActionSlug)
    w.contains("execution_title", p.executionTitle)
    if p.executionTitleOrErrorMessage is not None:
        value = p.executionTitleOrErrorMessage
        w.add(f"{contains_sql('execution_title', value)} OR {contains_sql('execution_error_message', value)}")
    w.in_("execution_status", p.executionStatuses)
    w.after("execution_started_at", p.executionStartedAfter)
    w.before("execution_started_at", p.executionStartedBefore)
    return w


def spans_list(call: Call) -> Response:
    """``POST orchestration/spans/list`` -> ``{spans, count}`` (limit up to 1000 only with ``traceUuid``)."""
    p = call.payload(SpansListPayload)
    if p.limit is not None and p.traceUuid is None and p.limit > SPANS_LIST_MAX_LIMIT:
        raise ValidationFailed(
            [
                {
                    "code": "too_big",
                    "maximum": SPANS_LIST_MAX_LIMIT,
                    "type": "number",
                    "inclusive": True,
                    "exact": False,
                    "message": f"Number must be less than or equal to {SPANS_LIST_MAX_LIMIT}",
                    "path": ["limit"],
                }
            ]
        )
    where = spans_where(call.ws, p)
    limit = p.limit if p.limit is not None else SPANS_LIST_DEFAULT_LIMIT
    order = TRACE_SPAN_ORDER if p.traceUuid is not None else SPAN_ORDER
    rows = _page(call, SPAN_TABLE, where, order, limit=limit, offset=p.offset or 0)
    return ok({"spans": [span_json(r) for r in rows], "count": count(call, SPAN_TABLE, where)})


def spans_count(call: Call) -> Response:
    """``POST orchestration/spans/count`` -> ``{count}``."""
    p = call.payload(SpansCountPayload)
    return ok({"count": count(call, SPAN_TABLE, spans_where(call.ws, p))})
