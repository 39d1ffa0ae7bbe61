"""The REST endpoints over the seeded generator's data (the shared session emulator of conftest.py).

The fixture-based tests pin exact semantics; these check that the endpoints agree with what the
generator actually produces: every catalogue body is served, every saved segment's filter evaluates
to its ``recordsCount``, runs/spans/records/batches lists agree with SQL counts, and exports work.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable
from typing import Any

import httpx
import pytest

pytest.importorskip("cargo_elt.emulator.generator")

Api = Callable[..., httpx.Client]


def ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, f"{response.request.url}: {response.status_code} {response.text[:500]}"
    body = response.json()
    assert isinstance(body, dict)
    return body


def sql_count(client: httpx.Client, query: str) -> int:
    rows = ok(client.post("/orchestration/query", json={"query": query}))["rows"]
    return int(next(iter(rows[0].values())))


def busiest_workflow(client: httpx.Client) -> str:
    """The workflow with the most runs (found with SQL, as a connector would)."""
    rows = ok(
        client.post(
            "/orchestration/query",
            json={"query": "SELECT toString(workflow_uuid) AS w FROM runs GROUP BY w ORDER BY count() DESC LIMIT 1"},
        )
    )["rows"]
    workflow = rows[0]["w"]
    assert isinstance(workflow, str)
    return workflow


def test_catalogue_lists_and_gets(api: Api, emulator: Any) -> None:
    client = api()
    for path, wrapper, single, prefix in (
        ("/orchestration/workflows/list", "workflows", None, None),
        ("/orchestration/plays/list", "plays", "play", "/orchestration/plays/"),
        ("/orchestration/tools/list", "tools", "tool", "/orchestration/tools/"),
        ("/ai/agents/list", "agents", "agent", "/ai/agents/"),
        ("/connection/connectors/list", "connectors", "connector", "/connection/connectors/"),
        ("/storage/datasets/list", "datasets", "dataset", "/storage/datasets/"),
        ("/storage/models/list", "models", "model", "/storage/models/"),
        ("/segmentation/segments/list", "segments", "segment", "/segmentation/segments/"),
        ("/orchestration/releases/list?limit=100", "releases", "release", "/orchestration/releases/"),
    ):
        items = ok(client.get(path))[wrapper]
        assert items, f"{path} is empty"
        if single is not None and prefix is not None:
            assert ok(client.get(prefix + items[0]["uuid"]))[single] == items[0]
    workspace = ok(client.get("/workspaceManagement/workspaces/current"))["workspace"]
    assert workspace["uuid"] == emulator.state.workspaces[0].uuid
    user = ok(client.get("/workspaceManagement/users/current"))["user"]
    assert user["role"] is None or {"uuid", "workspaceUuid", "slug", "permissions", "createdAt"} <= set(user["role"])
    ok(client.get("/userManagement/users/current"))


def test_saved_segments_evaluate_to_their_counts(api: Api) -> None:
    client = api()
    for segment in ok(client.get("/segmentation/segments/list"))["segments"]:
        payload: dict[str, Any] = {"modelUuid": segment["modelUuid"], "filter": segment["filter"], "fetchingLimit": 5}
        if segment.get("sort"):
            payload["sort"] = segment["sort"]
        if segment.get("limit") is not None:
            payload["limit"] = segment["limit"]
        body = ok(client.post("/segmentation/segments/fetch", json=payload))
        assert body["count"] == segment["recordsCount"], segment["name"]
        assert len(body["records"]) == min(5, segment["recordsCount"])


def test_runs_spans_records_batches_agree_with_sql(api: Api) -> None:
    client = api()
    uuid = busiest_workflow(client)
    runs = ok(client.post("/orchestration/runs/list", json={"workflowUuid": uuid, "limit": 100}))
    expected = sql_count(client, f"SELECT count() FROM runs WHERE workflow_uuid = '{uuid}' AND deleted_at IS NULL")
    assert runs["count"] == expected and len(runs["runs"]) == min(100, expected)
    run = ok(client.get(f"/orchestration/runs/{runs['runs'][0]['uuid']}"))
    assert set(run) == {"run", "runContext", "runComputedConfigs"}
    spans = ok(client.post("/orchestration/spans/count", json={"executionStartedAfter": "2000-01-01"}))
    assert spans["count"] == sql_count(client, "SELECT count() FROM spans")
    records = ok(client.post("/orchestration/records/count", json={}))
    assert records["count"] == sql_count(client, "SELECT count() FROM records")
    metrics = ok(client.post("/orchestration/runs/metrics", json={"workflowUuid": uuid}))["runMetrics"]
    assert sum(m["totalExecutionsCount"] for m in metrics) == sql_count(
        client,
        f"SELECT count() FROM spans WHERE workflow_uuid = '{uuid}' AND run_uuid IN "
        f"(SELECT uuid FROM runs WHERE deleted_at IS NULL)",
    )
    batches = ok(client.get("/orchestration/batches/list", params={"workflowUuids[]": uuid, "limit": 100}))["batches"]
    assert len(batches) == min(100, sql_count(client, f"SELECT count() FROM batches WHERE workflow_uuid = '{uuid}'"))


def test_exports_over_generated_data(api: Api) -> None:
    client = api()
    uuid = busiest_workflow(client)
    url = ok(client.post("/orchestration/runs/download", json={"workflowUuid": uuid}))["url"]
    text = gzip.decompress(httpx.get(url, timeout=60).content).decode()
    assert text.startswith("_uuid,_workspace_uuid,_workflow_uuid,")
    outputs = ok(
        client.post("/orchestration/runs/download-outputs", json={"workflowUuid": uuid, "format": "json", "limit": 50})
    )
    items = httpx.get(outputs["url"], timeout=60).json()
    assert 0 < len(items) <= 50 and {"input", "output"} <= set(items[0])
    finished = ok(client.get("/orchestration/batches/list?isFinished=true&limit=5"))["batches"]
    if finished:
        url = ok(client.post(f"/orchestration/batches/{finished[0]['uuid']}/download", json={}))["url"]
        assert httpx.get(url, timeout=60).text.splitlines()[0].endswith(",output")
    model = ok(client.get("/storage/models/list"))["models"][0]
    urls = ok(
        client.post(
            "/segmentation/segments/download",
            json={"modelUuid": model["uuid"], "filter": {"conjonction": "and", "groups": []}},
        )
    )
    assert httpx.get(urls["urls"][0], timeout=60).text.startswith("_id,")
