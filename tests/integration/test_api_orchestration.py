"""Orchestration REST endpoints over real HTTP: runs, records, spans, batches, and their errors."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from cargo_elt.emulator.api.limits import RUNS_LIST_DEFAULT_LIMIT, RUNS_LIST_MAX_LIMIT, SPANS_LIST_MAX_LIMIT
from tests.integration.api_support import Served, served_fixture, u, zod_issues

ISO = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")

RUN_KEYS = [
    "uuid", "workspaceUuid", "workflowUuid", "userUuid", "releaseUuid", "nodes", "batchUuid", "traceUuid",
    "temporalWorkflowId", "recordId", "recordTitle", "contextS3Filename", "computedConfigsS3Filename", "parentUuid",
    "parentNodeUuid", "parentBatchUuid", "parentAgentUuid", "parentChatUuid", "parentMessageUuid", "isGroupParent",
    "status", "errorMessage", "executions", "createdAt", "updatedAt", "finishedAt", "deletedAt",
]  # fmt: skip
EXECUTION_COMMON = [
    "nodeUuid", "nodeSlug", "nodeBatchUuid", "nodeRunUuid", "nodeMessageUuid", "nodeChildIndex", "nextNodeUuid",
    "status", "errorMessage", "title", "iconUrl", "creditsUsedCount", "startedAt", "updatedAt", "finishedAt",
    "nodeWaitUntilFinished", "nodeKind",
]  # fmt: skip
BATCH_KEYS = [
    "uuid", "workspaceUuid", "workflowUuid", "userUuid", "releaseUuid", "nodes", "temporalWorkflowId", "traceUuid",
    "data", "errorMessage", "status", "runsStatus", "runsCount", "executedRunsCount", "failedRunsCount",
    "creditsUsedCount", "createdAt", "updatedAt", "finishedAt",
]  # fmt: skip
RECORD_KEYS = [
    "workspaceUuid", "workflowUuid", "userUuid", "id", "title", "runUuid", "traceUuid", "releaseUuid", "nodes",
    "batchUuid", "temporalWorkflowId", "contextS3Filename", "computedConfigsS3Filename", "parentRunUuid",
    "parentNodeUuid", "parentBatchUuid", "parentAgentUuid", "parentChatUuid", "parentMessageUuid", "isGroupParent",
    "status", "errorMessage", "executions", "createdAt", "updatedAt", "finishedAt",
]  # fmt: skip
SPAN_KEYS = [
    "workspaceUuid", "workflowUuid", "userUuid", "batchUuid", "traceUuid", "recordId", "recordTitle", "runUuid",
    "runContextS3Filename", "runComputedConfigsS3Filename", "parentRunUuid", "parentNodeUuid", "parentBatchUuid",
    "parentAgentUuid", "parentChatUuid", "parentMessageUuid", "isGroupParent", "nodeUuid", "nodeKind", "nodeSlug",
    "nodeActionSlug", "nodeConnectorUuid", "nodeIntegrationSlug", "nodeToolUuid", "nodeAgentUuid", "nodeReleaseUuid",
    "nodeBatchUuid", "nodeRunUuid", "nodeMessageUuid", "nodeChildIndex", "nodeWaitUntilFinished", "nodeNextUuid",
    "executionIndex", "executionStatus", "executionErrorMessage", "executionTitle", "executionIconUrl",
    "executionCreditsUsedCount", "executionStartedAt", "executionUpdatedAt", "executionFinishedAt",
]  # fmt: skip


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    with served_fixture() as running:
        yield running


@pytest.fixture(scope="module")
def client(served: Served) -> httpx.Client:
    return served.api


def post(client: httpx.Client, path: str, payload: dict[str, Any]) -> dict[str, Any]:
    response = client.post(path, json=payload)
    assert response.status_code == 200, response.text
    body = response.json()
    assert isinstance(body, dict)
    return body


# -- runs ------------------------------------------------------------------------------------------


def test_runs_list_shape_and_order(served: Served) -> None:
    fx = served.fixture
    body = post(served.api, "/orchestration/runs/list", {"workflowUuid": fx.workflow})
    assert set(body) == {"runs", "count"}
    assert body["count"] == 5  # the soft-deleted run is hidden
    runs = body["runs"]
    assert [r["recordId"] for r in runs] == ["c5", "c4", "c3", "c2", "c1"]
    first = runs[0]
    assert list(first) == RUN_KEYS
    assert first["finishedAt"] is None and first["deletedAt"] is None and first["nodes"] is None
    assert ISO.match(first["createdAt"]) and ISO.match(first["updatedAt"])
    executions = first["executions"]
    assert [e["nodeSlug"] for e in executions] == ["start", "enrich", "score"]
    assert list(executions[0]) == [*EXECUTION_COMMON, "nodeActionSlug"]
    assert list(executions[1]) == [*EXECUTION_COMMON, "nodeActionSlug", "nodeConnectorUuid", "nodeIntegrationSlug"]
    assert list(executions[2]) == [*EXECUTION_COMMON, "nodeAgentUuid", "nodeReleaseUuid"]
    assert executions[2]["status"] == "pending" and executions[2]["finishedAt"] is None
    assert executions[1]["creditsUsedCount"] == 1.5


def test_runs_list_paging_and_defaults(client: httpx.Client, served: Served) -> None:
    fx = served.fixture
    page = post(client, "/orchestration/runs/list", {"workflowUuid": fx.workflow, "limit": 2, "offset": 2})
    assert [r["recordId"] for r in page["runs"]] == ["c3", "c2"] and page["count"] == 5
    everything = post(client, "/orchestration/runs/list", {})
    assert everything["count"] == 6 and len(everything["runs"]) == min(6, RUNS_LIST_DEFAULT_LIMIT)


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"statuses": ["error"]}, ["c3"]),
        ({"statuses": ["success", "running"], "recordId": "c1"}, ["c1"]),
        ({"isFinished": False}, ["c5"]),
        ({"recordTitle": "GLOB"}, ["c2"]),
        ({"recordTitleOrId": "c4"}, ["c4"]),
        ({"createdAfter": "2026-03-01T10:03:00Z", "createdBefore": "2026-03-01T10:05:30.000Z"}, ["req-1", "c4", "c3"]),
        ({"updatedAfter": "2026-03-01T10:10:00Z"}, ["c5"]),
        (
            {"executionsFilter": {"conjonction": "and", "groups": [
                {"conjonction": "and", "conditions": [{"kind": "node", "nodeSlug": "enrich", "status": "error"}]}]}},
            ["c3"],
        ),
        (
            {"executionsFilter": {"conjonction": "and", "groups": [{"conjonction": "or", "conditions": [
                {"kind": "node", "nodeSlug": "end", "status": "absent"},
                {"kind": "node", "nodeSlug": "enrich", "status": "success", "value": "HOOLI"}]}]}},
            ["c5", "c4", "c3"],
        ),
        (
            {"executionsFilter": {"conjonction": "and", "groups": [{"conjonction": "and", "conditions": [
                {"kind": "node", "nodeSlug": "enrich", "status": "error", "value": "rate limited"}]}]}},
            ["c3"],
        ),
        ({"executionsFilter": {"conjunction": "and", "groups": []}}, []),
    ],
)  # fmt: skip
def test_runs_filters(client: httpx.Client, served: Served, payload: dict[str, Any], expected: list[str]) -> None:
    body = post(client, "/orchestration/runs/list", payload)
    assert [r["recordId"] for r in body["runs"]] == expected
    assert body["count"] == len(expected)
    assert post(client, "/orchestration/runs/count", payload) == {"count": len(expected)}


def test_runs_batch_filter_and_count(client: httpx.Client, served: Served) -> None:
    fx = served.fixture
    assert post(client, "/orchestration/runs/count", {"batchUuid": fx.batch_done}) == {"count": 4}
    assert post(client, "/orchestration/runs/count", {"workflowUuid": "not-a-uuid"}) == {"count": 0}


def test_runs_are_scoped_to_the_workspace(served: Served) -> None:
    other = post(served.other_api, "/orchestration/runs/list", {})
    assert [r["recordId"] for r in other["runs"]] == ["x1"] and other["count"] == 1
    response = served.other_api.get(f"/orchestration/runs/{served.fixture.runs['r1']}")
    assert response.status_code == 404 and response.json() == {"reason": "runNotFound"}


def test_runs_get_with_context(served: Served) -> None:
    fx = served.fixture
    response = served.api.get(f"/orchestration/runs/{fx.runs['r1']}")
    assert response.status_code == 200
    body = response.json()
    assert list(body) == ["run", "runContext", "runComputedConfigs"]
    assert body["run"]["uuid"] == fx.runs["r1"]
    context = body["runContext"]
    assert list(context) == ["start", "enrich", "score", "end"]
    assert context["start"]["_id"] == "c1" and context["start"]["domain"] == "acme.com"
    assert context["start"]["tags"] == ["saas"] and context["start"]["metadata"] == {"tier": "gold"}
    assert "answer" in context["score"]
    configs = body["runComputedConfigs"]
    assert configs["enrich"] == {"domain": "acme.com", "note": "Company Acme"}
    assert configs["score"] == {"prompt": f"Score {context['enrich']['data']['title']}"}
    again = served.api.get(f"/orchestration/runs/{fx.runs['r1']}").json()
    assert again == body  # synthesized payloads are deterministic


def test_runs_get_failed_run_has_no_output_for_failed_node(served: Served) -> None:
    body = served.api.get(f"/orchestration/runs/{served.fixture.runs['r3']}").json()
    assert list(body["runContext"]) == ["start"]
    assert list(body["runComputedConfigs"]) == ["start", "enrich"]


def test_runs_get_deleted_and_unknown(served: Served) -> None:
    deleted = served.api.get(f"/orchestration/runs/{served.fixture.runs['r7']}")
    assert deleted.status_code == 200 and ISO.match(deleted.json()["run"]["deletedAt"])
    missing = served.api.get("/orchestration/runs/00000000-0000-4000-8000-000000000000")
    assert missing.status_code == 404 and missing.json() == {"reason": "runNotFound"}


def test_runs_metrics(served: Served) -> None:
    fx = served.fixture
    body = post(served.api, "/orchestration/runs/metrics", {"workflowUuid": fx.workflow})
    metrics = body["runMetrics"]
    counters = [
        "nodeUuid", "totalExecutionsCount", "idleExecutionsCount", "pendingExecutionsCount", "runningExecutionsCount",
        "successExecutionsCount", "errorExecutionsCount", "cancellingExecutionsCount", "cancelledExecutionsCount",
        "skippedExecutionsCount", "creditsUsedCount",
    ]  # fmt: skip
    assert all(list(m) == counters for m in metrics)
    assert len(metrics) == 4  # one per node of the deployed release
    by_total = [(m["totalExecutionsCount"], m["successExecutionsCount"], m["errorExecutionsCount"],
                 m["runningExecutionsCount"]) for m in metrics]  # fmt: skip
    assert by_total == [(5, 5, 0, 0), (5, 4, 1, 0), (4, 3, 0, 1), (3, 3, 0, 0)]
    assert metrics[1]["creditsUsedCount"] == 6.0
    scoped = post(served.api, "/orchestration/runs/metrics", {"workflowUuid": fx.workflow, "batchUuid": fx.batch_done})
    assert [m["totalExecutionsCount"] for m in scoped["runMetrics"]] == [4, 4, 3, 3]
    empty = post(served.api, "/orchestration/runs/metrics", {"workflowUuid": fx.archived_workflow})
    assert empty == {"runMetrics": []}


# -- validation ------------------------------------------------------------------------------------


def test_unknown_key_is_rejected(client: httpx.Client) -> None:
    issues = zod_issues(client.post("/orchestration/runs/list", json={"workflowUuid": "x", "foo": 1, "bar": 2}))
    assert issues == [{"code": "unrecognized_keys", "keys": ["foo", "bar"], "path": [],
                       "message": 'Unrecognized keys: "foo", "bar"'}]  # fmt: skip


def test_wrong_types_and_enum(client: httpx.Client) -> None:
    issues = zod_issues(
        client.post("/orchestration/runs/list", json={"workflowUuid": 5, "statuses": ["done"], "limit": "10"})
    )
    assert issues[0] == {"expected": "string", "code": "invalid_type", "path": ["workflowUuid"],
                         "message": "Invalid input: expected string, received number"}  # fmt: skip
    assert issues[1]["code"] == "invalid_value" and issues[1]["path"] == ["statuses", 0]
    assert issues[1]["values"][:2] == ["idle", "pending"]
    assert issues[2]["path"] == ["limit"] and issues[2]["expected"] == "number"
    assert issues[2]["message"] == "Invalid input: expected number, received string"


def test_null_is_not_absent(client: httpx.Client) -> None:
    issues = zod_issues(client.post("/orchestration/runs/count", json={"workflowUuid": None}))
    assert issues == [{"expected": "string", "code": "invalid_type", "path": ["workflowUuid"],
                       "message": "Invalid input: expected string, received null"}]  # fmt: skip


def test_limit_bounds(client: httpx.Client) -> None:
    issues = zod_issues(client.post("/orchestration/runs/list", json={"limit": RUNS_LIST_MAX_LIMIT + 1}))
    assert issues[0]["code"] == "too_big" and issues[0]["maximum"] == RUNS_LIST_MAX_LIMIT
    issues = zod_issues(client.post("/orchestration/runs/list", json={"offset": -1}))
    assert issues[0]["code"] == "too_small" and issues[0]["path"] == ["offset"]


def test_bad_timestamp_and_non_object_body(client: httpx.Client) -> None:
    issues = zod_issues(client.post("/orchestration/runs/count", json={"createdAfter": "yesterday"}))
    assert issues == [{"origin": "string", "code": "invalid_format", "format": "datetime", "path": ["createdAfter"],
                       "message": "Invalid ISO datetime"}]  # fmt: skip
    issues = zod_issues(client.post("/orchestration/runs/count", json=[1]))
    assert issues[0]["expected"] == "object" and issues[0]["message"].endswith("received array")
    bad = client.post("/orchestration/runs/count", content=b"{", headers={"content-type": "application/json"})
    assert bad.status_code == 400 and "errorMessage" in bad.json()


def test_metrics_require_workflow(client: httpx.Client) -> None:
    issues = zod_issues(client.post("/orchestration/runs/metrics", json={}))
    assert issues == [{"expected": "string", "code": "invalid_type", "path": ["workflowUuid"],
                       "message": "Invalid input: expected string, received undefined"}]  # fmt: skip


def test_unauthorized(served: Served) -> None:
    response = httpx.post(served.base_url + "/v1/orchestration/runs/list", json={})
    assert response.status_code == 401 and response.json() == {"errorMessage": "Unauthorized"}


# -- records ---------------------------------------------------------------------------------------


def test_records_list_and_count(served: Served) -> None:
    fx = served.fixture
    body = post(served.api, "/orchestration/records/list", {"workflowUuid": fx.workflow, "limit": 2})
    assert body["count"] == 5 and [r["id"] for r in body["records"]] == ["c5", "c4"]
    assert list(body["records"][0]) == RECORD_KEYS
    assert body["records"][0]["status"] == "running"
    assert post(served.api, "/orchestration/records/count", {"statuses": ["error"]}) == {"count": 1}
    assert post(served.api, "/orchestration/records/count", {"ids": ["c1", "c2", "zz"]}) == {"count": 2}
    assert post(served.api, "/orchestration/records/count", {"titleOrId": "umbr"}) == {"count": 1}
    issues = zod_issues(served.api.post("/orchestration/records/list", json={"recordId": "c1"}))
    assert issues[0]["code"] == "unrecognized_keys" and issues[0]["keys"] == ["recordId"]


# -- spans -----------------------------------------------------------------------------------------


def test_spans_list_requires_execution_started_after(client: httpx.Client) -> None:
    for path in ("/orchestration/spans/list", "/orchestration/spans/count"):
        issues = zod_issues(client.post(path, json={}))
        assert issues == [{"expected": "string", "code": "invalid_type", "path": ["executionStartedAfter"],
                           "message": "Invalid input: expected string, received undefined"}]  # fmt: skip


def test_spans_list(served: Served) -> None:
    fx = served.fixture
    body = post(served.api, "/orchestration/spans/list", {"executionStartedAfter": "2026-03-01", "limit": 3})
    assert body["count"] == 24 and len(body["spans"]) == 3
    assert list(body["spans"][0]) == SPAN_KEYS
    assert body["spans"][0]["executionStatus"] == "pending" and body["spans"][0]["executionFinishedAt"] is None
    errors = post(served.api, "/orchestration/spans/list",
                  {"executionStartedAfter": "2026-03-01", "executionStatuses": ["error"]})  # fmt: skip
    assert [(s["nodeSlug"], s["executionErrorMessage"]) for s in errors["spans"]] == [
        ("enrich", "Clearbit: rate limited")
    ]
    by_kind = post(
        served.api, "/orchestration/spans/count", {"executionStartedAfter": "2026-03-01", "nodeKind": "agent"}
    )
    assert by_kind == {"count": 5}
    trace = post(served.api, "/orchestration/spans/list",
                 {"executionStartedAfter": "2026-03-01", "runUuid": fx.runs["r1"], "limit": 10})  # fmt: skip
    assert [s["executionIndex"] for s in trace["spans"]] == [3, 2, 1, 0]
    later = post(served.api, "/orchestration/spans/count", {"executionStartedAfter": "2026-03-01T10:10:00Z"})
    assert later == {"count": 3}
    text = post(served.api, "/orchestration/spans/count",
                {"executionStartedAfter": "2026-03-01", "executionTitleOrErrorMessage": "RATE"})  # fmt: skip
    assert text == {"count": 1}


def test_spans_limit_rises_with_trace(served: Served) -> None:
    fx = served.fixture
    issues = zod_issues(
        served.api.post("/orchestration/spans/list", json={"executionStartedAfter": "2026-03-01", "limit": 500})
    )
    assert issues[0]["code"] == "too_big" and issues[0]["maximum"] == SPANS_LIST_MAX_LIMIT
    trace = post(served.api, "/orchestration/spans/list",
                 {"executionStartedAfter": "2026-03-01", "traceUuid": u("trace", "r1"), "limit": 500})  # fmt: skip
    assert [s["executionIndex"] for s in trace["spans"]] == [0, 1, 2, 3]
    assert {s["runUuid"] for s in trace["spans"]} == {fx.runs["r1"]}


# -- batches ---------------------------------------------------------------------------------------


def test_batches_list_query_string(served: Served) -> None:
    fx = served.fixture
    query = (
        f"workflowUuids%5B%5D={fx.workflow}&statuses%5B%5D=success&statuses%5B%5D=error"
        "&isFinished=true&limit=50&offset=0"
    )
    response = served.api.get("/orchestration/batches/list?" + query)
    assert response.status_code == 200, response.text
    body = response.json()
    assert list(body) == ["batches"]
    assert [b["uuid"] for b in body["batches"]] == [fx.batch_done]
    batch = body["batches"][0]
    assert list(batch) == BATCH_KEYS
    assert batch["data"] == {"kind": "segment", "segmentUuid": fx.segment}
    assert (batch["runsCount"], batch["failedRunsCount"], batch["creditsUsedCount"]) == (4, 1, 4.5)
    plain = served.api.get("/orchestration/batches/list", params={"workflowUuids": fx.workflow, "isFinished": "false"})
    assert [b["uuid"] for b in plain.json()["batches"]] == [fx.batch_running]
    kinds = served.api.get("/orchestration/batches/list?excludedDataKinds%5B%5D=segment")
    assert [b["uuid"] for b in kinds.json()["batches"]] == [fx.batch_running]
    paged = served.api.get("/orchestration/batches/list?limit=1&offset=1")
    assert [b["uuid"] for b in paged.json()["batches"]] == [fx.batch_done]
    assert served.other_api.get("/orchestration/batches/list").json() == {"batches": []}


def test_batches_list_bad_params(client: httpx.Client) -> None:
    issues = zod_issues(client.get("/orchestration/batches/list?statuses%5B%5D=done&limit=abc&hasRuns=maybe&x=1"))
    codes = [(i["code"], i["path"]) for i in issues]
    assert codes == [("invalid_value", ["statuses", 0]), ("invalid_type", ["hasRuns"]),
                     ("invalid_type", ["limit"]), ("unrecognized_keys", [])]  # fmt: skip
    assert issues[2]["received"] == "NaN" and issues[2]["message"] == "Invalid input: expected number, received NaN"


def test_batches_get(served: Served) -> None:
    fx = served.fixture
    body = served.api.get(f"/orchestration/batches/{fx.batch_running}").json()
    assert list(body) == ["batch"] and body["batch"]["finishedAt"] is None and body["batch"]["status"] == "running"
    missing = served.api.get("/orchestration/batches/00000000-0000-4000-8000-000000000000")
    assert missing.status_code == 404 and missing.json() == {"reason": "batchNotFound"}
    assert served.other_api.get(f"/orchestration/batches/{fx.batch_done}").status_code == 404
