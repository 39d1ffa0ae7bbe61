"""Catalogue, segmentation and identity endpoints over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.api_support import Served, served_fixture, u, zod_issues

MATCH_ALL: dict[str, Any] = {"conjonction": "and", "groups": []}


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    with served_fixture() as running:
        yield running


def get(served: Served, path: str, **params: Any) -> dict[str, Any]:
    response = served.api.get(path, params=params)
    assert response.status_code == 200, response.text
    body = response.json()
    assert isinstance(body, dict)
    return body


@pytest.mark.parametrize(
    ("path", "wrapper", "count"),
    [
        ("/orchestration/workflows/list", "workflows", 3),
        ("/orchestration/plays/list", "plays", 1),
        ("/orchestration/tools/list", "tools", 1),
        ("/ai/agents/list", "agents", 1),
        ("/connection/connectors/list", "connectors", 2),
        ("/storage/datasets/list", "datasets", 1),
        ("/storage/models/list", "models", 1),
        ("/segmentation/segments/list", "segments", 1),
        ("/orchestration/releases/list", "releases", 3),
    ],
)
def test_lists(served: Served, path: str, wrapper: str, count: int) -> None:
    body = get(served, path)
    assert list(body) == [wrapper]
    assert len(body[wrapper]) == count
    other = served.other_api.get(path).json()
    assert len(other[wrapper]) == (1 if wrapper == "workflows" else 0)


@pytest.mark.parametrize(
    ("path", "wrapper", "attr", "reason"),
    [
        ("/orchestration/plays/{}", "play", "play", "playNotFound"),
        ("/orchestration/tools/{}", "tool", "tool", "toolNotFound"),
        ("/orchestration/releases/{}", "release", "release", "releaseNotFound"),
        ("/ai/agents/{}", "agent", "agent", "agentNotFound"),
        ("/connection/connectors/{}", "connector", "connector", "connectorNotFound"),
        ("/storage/datasets/{}", "dataset", "dataset", "datasetNotFound"),
        ("/storage/models/{}", "model", "model", "modelNotFound"),
        ("/segmentation/segments/{}", "segment", "segment", "segmentNotFound"),
    ],
)
def test_gets(served: Served, path: str, wrapper: str, attr: str, reason: str) -> None:
    uuid = getattr(served.fixture, attr)
    body = get(served, path.format(uuid))
    assert list(body) == [wrapper] and body[wrapper]["uuid"] == uuid
    missing = served.api.get(path.format("00000000-0000-4000-8000-000000000000"))
    assert missing.status_code == 404 and missing.json() == {"reason": reason}
    assert served.other_api.get(path.format(uuid)).status_code == 404


def test_release_nodes_and_deployed(served: Served) -> None:
    fx = served.fixture
    release = get(served, f"/orchestration/releases/{fx.release}")["release"]
    assert [n["slug"] for n in release["nodes"]] == ["start", "enrich", "score", "end"]
    assert release["testRecords"] == [{"kind": "id", "id": "c1", "data": None}]
    deployed = get(served, "/orchestration/releases/deployed", workflowUuid=fx.workflow)
    assert deployed["release"]["uuid"] == fx.release
    missing = served.api.get("/orchestration/releases/deployed", params={"workflowUuid": fx.archived_workflow})
    assert missing.status_code == 404 and missing.json() == {"reason": "releaseNotFound"}
    issues = zod_issues(served.api.get("/orchestration/releases/deployed"))
    assert (
        issues[0]["path"] == ["workflowUuid"]
        and issues[0]["message"] == "Invalid input: expected string, received undefined"
    )


def test_releases_list_filters(served: Served) -> None:
    fx = served.fixture
    by_workflow = get(served, "/orchestration/releases/list", workflowUuid=fx.workflow)["releases"]
    assert [r["uuid"] for r in by_workflow] == [fx.release, fx.old_release]  # newest first
    archived = served.api.get(f"/orchestration/releases/list?workflowUuid={fx.workflow}&statuses%5B%5D=archived")
    assert [r["uuid"] for r in archived.json()["releases"]] == [fx.old_release]
    paged = get(served, "/orchestration/releases/list", limit=1, offset=1)["releases"]
    assert len(paged) == 1
    issues = zod_issues(served.api.get("/orchestration/releases/list?statuses%5B%5D=live"))
    assert issues[0]["code"] == "invalid_value"


def test_plays_list_filters(served: Served) -> None:
    fx = served.fixture
    assert len(get(served, "/orchestration/plays/list", isEnabled="true", scheduleType="cron")["plays"]) == 1
    assert get(served, "/orchestration/plays/list", isEnabled="false")["plays"] == []
    assert len(get(served, "/orchestration/plays/list", modelUuid=fx.model)["plays"]) == 1
    assert get(served, "/orchestration/plays/list", segmentUuid=u("nothing"))["plays"] == []
    issues = zod_issues(served.api.get("/orchestration/plays/list", params={"scheduleType": "hourly"}))
    assert issues[0]["path"] == ["scheduleType"]


def test_connectors_filter(served: Served) -> None:
    connectors = get(served, "/connection/connectors/list", integrationSlug="hubspot")["connectors"]
    assert [c["integrationSlug"] for c in connectors] == ["hubspot"]


def test_identity(served: Served) -> None:
    ws = served.fixture.ws
    workspace = get(served, "/workspaceManagement/workspaces/current")["workspace"]
    assert workspace["uuid"] == ws.uuid and workspace["name"] == ws.name
    assert {"allowedEmailDomains", "maxConcurrentRuns", "logoUrl", "createdAt", "quotaBuckets"} <= set(workspace)
    assert get(served, "/workspaceManagement/workspaces/list")["workspaces"] == [workspace]
    user = get(served, "/userManagement/users/current")["user"]
    assert list(user) == ["uuid", "email", "firstName", "lastName", "picture", "lastSignInAt", "createdAt",
                          "updatedAt", "webExtensionData"]  # fmt: skip
    assert user["uuid"] == ws.user_uuid and user["firstName"] == "Ada"
    scoped = get(served, "/workspaceManagement/users/current")["user"]
    assert scoped["workspaceUuid"] == ws.uuid and isinstance(scoped["permissions"], list) and "role" in scoped
    other = served.other_api.get("/userManagement/users/current").json()["user"]
    assert other["uuid"] == served.fixture.other.user_uuid and other["firstName"] is None  # synthesized


# -- segments --------------------------------------------------------------------------------------


def fetch(served: Served, **payload: Any) -> dict[str, Any]:
    response = served.api.post("/segmentation/segments/fetch", json={"modelUuid": served.fixture.model, **payload})
    assert response.status_code == 200, response.text
    body = response.json()
    assert isinstance(body, dict)
    return body


def test_segments_fetch_match_all(served: Served) -> None:
    body = fetch(served, filter=MATCH_ALL, fetchingLimit=2, fetchingOffset=1)
    assert list(body) == ["records", "count", "columns", "isRefreshing"]
    assert body["count"] == 5 and body["isRefreshing"] is False
    assert [r["_id"] for r in body["records"]] == ["c2", "c3"]
    record = body["records"][1]
    assert record["tags"] == ["b2b", "it"] and record["metadata"] == {"tier": "silver"}
    assert record["is_customer"] is False and record["founded_on"] == "2005-09-09"
    assert record["_emitted_at"].endswith("Z")
    assert body["columns"][0] == {"slug": "name", "type": "string", "label": "Name", "modelUuid": served.fixture.model}


def _cond(**condition: Any) -> dict[str, Any]:
    return {"conjonction": "and", "groups": [{"conjonction": "and", "conditions": [condition]}]}


@pytest.mark.parametrize(
    ("flt", "sort", "limit", "expected"),
    [
        (MATCH_ALL, [{"columnSlug": "employees", "kind": "desc"}], None, ["c4", "c2", "c5", "c3", "c1"]),
        (MATCH_ALL, [{"columnSlug": "employees", "kind": "desc"}], 2, ["c4", "c2"]),
        (_cond(kind="number", columnSlug="employees", operator="greaterThan", value=1000), None, None, ["c2", "c4"]),
        (_cond(kind="number", columnSlug="employees", operator="between", firstValue=300, lastValue=800), None, None,
         ["c3", "c5"]),
        (_cond(kind="string", columnSlug="domain", operator="is", values=["acme.com", "hooli.com"]), None, None,
         ["c1", "c4"]),
        (_cond(kind="string", columnSlug="name", operator="contains", values="O"), None, None, ["c2", "c4"]),
        (_cond(kind="boolean", columnSlug="is_customer", operator="isTrue"), None, None, ["c1", "c4"]),
        (_cond(kind="date", columnSlug="founded_on", operator="lowerThan", value="2000-01-01"), None, None,
         ["c2", "c5"]),
        (_cond(kind="string", columnSlug="name", operator="is", value="Acme"), None, None,
         ["c1", "c2", "c3", "c4", "c5"]),
        ({"conjunction": "and", "groups": []}, None, None, []),
    ],
)  # fmt: skip
def test_segments_fetch_filters(
    served: Served, flt: dict[str, Any], sort: list[dict[str, str]] | None, limit: int | None, expected: list[str]
) -> None:
    payload: dict[str, Any] = {"filter": flt}
    if sort is not None:
        payload["sort"] = sort
    if limit is not None:
        payload["limit"] = limit
    body = fetch(served, **payload)
    assert [r["_id"] for r in body["records"]] == expected
    assert body["count"] == len(expected)


def test_segments_fetch_errors(served: Served) -> None:
    fx = served.fixture
    bad = served.api.post("/segmentation/segments/fetch", json={"modelUuid": fx.model, "filter": _cond(
        kind="occurrence", relatedModelUuid=fx.model, frequency={"operator": "not"})})  # fmt: skip
    assert bad.status_code == 400 and bad.json() == {"reason": "invalidFilter"}
    unknown_column = served.api.post(
        "/segmentation/segments/fetch",
        json={"modelUuid": fx.model, "filter": _cond(kind="string", columnSlug="nope", operator="isNull")},
    )
    assert unknown_column.json() == {"reason": "invalidFilter"}
    missing = served.api.post("/segmentation/segments/fetch", json={"modelUuid": fx.segment, "filter": MATCH_ALL})
    assert missing.status_code == 404 and missing.json() == {"reason": "modelNotFound"}
    issues = zod_issues(served.api.post("/segmentation/segments/fetch", json={"filter": MATCH_ALL, "segmentUuid": "x"}))
    assert [i["code"] for i in issues] == ["invalid_type", "unrecognized_keys"]
    assert issues[0]["path"] == ["modelUuid"] and issues[1]["keys"] == ["segmentUuid"]
