"""Export endpoints and the signed-URL file server over real HTTP."""

from __future__ import annotations

import csv
import gzip
import io
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import orjson
import pytest

from cargo_elt.emulator.api import exports
from tests.integration.api_support import Served, served_fixture, u, zod_issues

RUN_META = ["_uuid", "_workspace_uuid", "_workflow_uuid", "_record_id", "_record_title", "_created_at",
            "_finished_at", "_status", "_error_message"]  # fmt: skip
MATCH_ALL: dict[str, Any] = {"conjonction": "and", "groups": []}


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    with served_fixture() as running:
        yield running


def url_of(served: Served, path: str, payload: dict[str, Any], key: str = "url") -> str:
    response = served.api.post(path, json=payload)
    assert response.status_code == 200, response.text
    body = response.json()
    assert list(body) == [key]
    url = body[key][0] if key == "urls" else body[key]
    assert isinstance(url, str) and url.startswith(served.base_url + "/_files/")
    return url


def fetch(url: str) -> httpx.Response:
    """Fetch a signed URL the way a client must: without Cargo's auth headers."""
    response = httpx.get(url, timeout=30)
    assert response.status_code == 200, response.text
    return response


def rows_of(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


# -- runs download ---------------------------------------------------------------------------------


def test_runs_download_gzipped_csv(served: Served) -> None:
    fx = served.fixture
    response = fetch(url_of(served, "/orchestration/runs/download", {"workflowUuid": fx.workflow}))
    assert response.headers["content-type"] == "application/gzip"
    assert response.content[:2] == b"\x1f\x8b"
    text = gzip.decompress(response.content).decode()
    header = text.splitlines()[0].split(",")
    assert header == [*RUN_META, "start", "enrich", "score", "end"]  # live nodes only, archived "legacy" left out
    rows = rows_of(text)
    assert [r["_record_id"] for r in rows] == ["c1", "c2", "c3", "c4", "c5"]
    failed = rows[2]
    assert failed["_status"] == "error" and failed["_error_message"] == "Clearbit: rate limited"
    assert failed["start"] == "start of Initech" and failed["enrich"] == "" and failed["end"] == ""
    assert rows[4]["_finished_at"] == "" and rows[0]["_finished_at"].endswith("Z")


def test_runs_download_filters_and_paging(served: Served, monkeypatch: pytest.MonkeyPatch) -> None:
    fx = served.fixture
    monkeypatch.setattr(exports, "EXPORT_PAGE_ROWS", 2)  # keyset paging across three pages
    url = url_of(served, "/orchestration/runs/download", {"workflowUuid": fx.workflow, "statuses": ["success"]})
    rows = rows_of(gzip.decompress(fetch(url).content).decode())
    assert [r["_record_id"] for r in rows] == ["c1", "c2", "c4"]
    many = [fx.runs["r1"], fx.runs["r4"], *(u("filler", i) for i in range(100))]
    url = url_of(served, "/orchestration/runs/download", {"workflowUuid": fx.workflow, "uuids": many})
    assert "/_files/s" in url  # a spec too long for a URL is kept server-side
    rows = rows_of(gzip.decompress(fetch(url).content).decode())
    assert [r["_record_id"] for r in rows] == ["c1", "c4"]


def test_runs_download_errors(served: Served) -> None:
    fx = served.fixture
    issues = zod_issues(served.api.post("/orchestration/runs/download", json={"workflowUuid": fx.workflow,
                                                                                "isFinished": True}))  # fmt: skip
    assert issues == [{"code": "unrecognized_keys", "keys": ["isFinished"], "path": [],
                       "message": 'Unrecognized key: "isFinished"'}]  # fmt: skip
    issues = zod_issues(served.api.post("/orchestration/runs/download", json={}))
    assert (
        issues[0]["path"] == ["workflowUuid"]
        and issues[0]["message"] == "Invalid input: expected string, received undefined"
    )
    for workflow in (u("unknown"), fx.archived_workflow):
        response = served.api.post("/orchestration/runs/download", json={"workflowUuid": workflow})
        assert response.status_code == 500


# -- run outputs -----------------------------------------------------------------------------------


def test_run_outputs_csv_default_last_node(served: Served) -> None:
    fx = served.fixture
    response = fetch(url_of(served, "/orchestration/runs/download-outputs", {"workflowUuid": fx.workflow}))
    assert response.headers["content-type"].startswith("text/csv")
    rows = rows_of(response.text)
    assert list(rows[0]) == [*RUN_META, "input", "output"]
    assert [r["_record_id"] for r in rows] == ["c1", "c2", "c3", "c4", "c5"]
    run = served.api.get(f"/orchestration/runs/{fx.runs['r1']}").json()
    assert orjson.loads(rows[0]["input"]) == run["runComputedConfigs"]["start"]
    assert orjson.loads(rows[0]["output"]) == run["runContext"]["end"]
    assert rows[2]["output"] == ""  # the failed run's last node (enrich) has no output
    assert rows[4]["output"] == ""  # the running run's last node (score) is still pending


def test_run_outputs_json_with_node_and_window(served: Served) -> None:
    fx = served.fixture
    payload = {"workflowUuid": fx.workflow, "format": "json", "outputNodeSlug": "enrich", "limit": 2, "offset": 1}
    response = fetch(url_of(served, "/orchestration/runs/download-outputs", payload))
    assert response.headers["content-type"] == "application/json"
    items = response.json()
    assert [i["_record_id"] for i in items] == ["c2", "c3"]
    assert list(items[0]) == [*RUN_META, "input", "output"]
    assert items[0]["output"]["integrationSlug"] == "clearbit"
    assert items[1]["output"] is None and items[1]["_status"] == "error"
    assert items[0]["input"]["_id"] == "c2"


def test_run_outputs_errors(served: Served, monkeypatch: pytest.MonkeyPatch) -> None:
    fx = served.fixture
    none = served.api.post("/orchestration/runs/download-outputs", json={"workflowUuid": fx.archived_workflow})
    assert none.status_code == 400 and none.json() == {"reason": "noRunsFound"}
    past_end = served.api.post("/orchestration/runs/download-outputs", json={"workflowUuid": fx.workflow, "offset": 5})
    assert past_end.json() == {"reason": "noRunsFound"}
    from cargo_elt.emulator.api import runs

    monkeypatch.setattr(runs, "DOWNLOAD_OUTPUTS_MAX_ROWS", 4)
    too_many = served.api.post("/orchestration/runs/download-outputs", json={"workflowUuid": fx.workflow})
    assert too_many.status_code == 400 and too_many.json() == {"reason": "tooManyRuns"}
    narrowed = served.api.post("/orchestration/runs/download-outputs", json={"workflowUuid": fx.workflow, "limit": 4})
    assert narrowed.status_code == 200
    issues = zod_issues(served.api.post("/orchestration/runs/download-outputs",
                                        json={"workflowUuid": fx.workflow, "format": "xlsx"}))  # fmt: skip
    assert issues[0]["code"] == "invalid_value" and issues[0]["values"] == ["csv", "json"]


# -- batch download --------------------------------------------------------------------------------


def test_batch_download(served: Served) -> None:
    fx = served.fixture
    rows = rows_of(fetch(url_of(served, f"/orchestration/batches/{fx.batch_done}/download", {})).text)
    assert list(rows[0]) == ["_id", "_title", "name", "domain", "employees", "is_customer", "tags", "metadata",
                             "founded_on", "output"]  # fmt: skip
    assert [r["_id"] for r in rows] == ["c1", "c2", "c3", "c4"]
    assert rows[0]["tags"] == '["saas"]' and rows[0]["is_customer"] == "true"
    assert rows[2]["output"] == ""  # errored run: input fields, empty output
    assert orjson.loads(rows[0]["output"])["title"] == "end of Acme"
    chosen = rows_of(fetch(url_of(served, f"/orchestration/batches/{fx.batch_done}/download",
                                  {"outputNodeSlug": "score"})).text)  # fmt: skip
    assert "answer" in orjson.loads(chosen[0]["output"])


def test_batch_download_errors(served: Served) -> None:
    fx = served.fixture
    missing = served.api.post(f"/orchestration/batches/{u('nope')}/download", json={})
    assert missing.status_code == 404 and missing.json() == {"reason": "batchNotFound"}
    running = served.api.post(f"/orchestration/batches/{fx.batch_running}/download", json={})
    assert running.status_code == 400 and running.json() == {"reason": "batchNotFinished"}
    node = served.api.post(f"/orchestration/batches/{fx.batch_done}/download", json={"outputNodeSlug": "nope"})
    assert node.status_code == 404 and node.json() == {"reason": "nodeNotFound"}
    issues = zod_issues(served.api.post(f"/orchestration/batches/{fx.batch_done}/download", json={"uuid": "x"}))
    assert issues[0]["keys"] == ["uuid"]
    other = served.other_api.post(f"/orchestration/batches/{fx.batch_done}/download", json={})
    assert other.status_code == 404


# -- segment download ------------------------------------------------------------------------------


def test_segment_download(served: Served) -> None:
    fx = served.fixture
    payload = {"modelUuid": fx.model, "filter": MATCH_ALL, "sort": [{"columnSlug": "employees", "kind": "asc"}],
               "limit": 3}  # fmt: skip
    rows = rows_of(fetch(url_of(served, "/segmentation/segments/download", payload, key="urls")).text)
    assert [r["_id"] for r in rows] == ["c1", "c3", "c5"]
    assert list(rows[0])[:4] == ["_id", "_title", "_emitted_at", "name"]
    hostile = {"kind": "sql", "name": "x", "clause": "_id IN (SELECT record_id FROM runs)"}
    bad = served.api.post("/segmentation/segments/download", json={"modelUuid": fx.model, "filter": {
        "conjonction": "and", "groups": [{"conjonction": "and", "conditions": [hostile]}]}})  # fmt: skip
    assert bad.status_code == 400 and bad.json() == {"reason": "invalidFilter"}


# -- signed URLs -----------------------------------------------------------------------------------


def _with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    query.update(changes)
    return f"{parts.scheme}://{parts.netloc}{parts.path}?" + "&".join(f"{k}={v}" for k, v in query.items())


def test_signed_url_is_tamper_proof(served: Served) -> None:
    fx = served.fixture
    url = url_of(served, "/orchestration/runs/download", {"workflowUuid": fx.workflow})
    forged = _with_query(url, signature="0" * 64)
    response = httpx.get(forged)
    assert response.status_code == 403 and "<Code>SignatureDoesNotMatch</Code>" in response.text
    stretched = _with_query(url, expires=str(int(parse_qs(urlsplit(url).query)["expires"][0]) + 3600))
    assert httpx.get(stretched).status_code == 403
    other_url = url_of(served, "/orchestration/runs/download", {"workflowUuid": fx.tool_workflow})
    swapped = other_url.split("?")[0] + "?" + url.split("?")[1]  # another file with this file's signature
    assert httpx.get(swapped).status_code == 403
    unsigned = httpx.get(url.split("?")[0])
    assert unsigned.status_code == 403 and "<Code>AccessDenied</Code>" in unsigned.text


def test_signed_url_expires(served: Served) -> None:
    fx = served.fixture
    served.state.signed_url_ttl_s = -1
    try:
        url = url_of(served, "/orchestration/runs/download", {"workflowUuid": fx.workflow})
    finally:
        served.state.signed_url_ttl_s = 900
    response = httpx.get(url)
    assert response.status_code == 403
    assert response.headers["content-type"] == "application/xml"
    assert "<Message>Request has expired</Message>" in response.text


def test_signed_url_needs_no_auth_and_streams(served: Served) -> None:
    fx = served.fixture
    url = url_of(served, "/segmentation/segments/download", {"modelUuid": fx.model, "filter": MATCH_ALL}, key="urls")
    with httpx.stream("GET", url, headers={"authorization": "Bearer wrong"}) as response:
        assert response.status_code == 200
        assert response.headers.get("transfer-encoding") == "chunked"
        assert "content-length" not in response.headers
        body = b"".join(response.iter_bytes())
    assert body.startswith(b"_id,_title,")
