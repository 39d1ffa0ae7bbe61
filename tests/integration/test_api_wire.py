"""Wire compatibility: Cargo's own TypeScript client (``@cargo-ai/api``) against the emulator.

``tests/node`` is a tiny npm project pinned to the client version REFERENCE.md was written from. The
test installs it when ``node_modules`` is missing (``npm ci``, from the committed lock file), runs
``wire_check.mjs`` against a served emulator and checks what the client made of each answer: URL
building, headers, Axios query strings, wrappers, ``null`` handling and the error classes.
Node.js and npm are part of this project's machines and CI's: without them
``test_nodejs_and_npm_are_installed`` fails (one failure, not a broken collection) and the wire checks
are skipped behind it.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from tests.integration.api_support import Served, served_fixture
from tests.node_project import missing_node_tools, node_project


def test_nodejs_and_npm_are_installed() -> None:
    missing = missing_node_tools()
    assert not missing, f"{', '.join(missing)} not found: Cargo's own client (tests/node) needs Node.js and npm"


@pytest.fixture(scope="module")
def wire(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Served, dict[str, Any]]]:
    node = node_project()
    with served_fixture() as served:
        fx = served.fixture
        env = {
            **os.environ,
            "CARGO_BASE_URL": served.base_url,
            "CARGO_TOKEN": "tok-a",
            "CARGO_WORKSPACE_UUID": fx.ws.uuid,
            "WORKFLOW_UUID": fx.workflow,
            "RUN_UUID": fx.runs["r1"],
            "RELEASE_UUID": fx.release,
            "MODEL_UUID": fx.model,
            "RUNNING_BATCH_UUID": fx.batch_running,
        }
        done = subprocess.run(
            ["node", "wire_check.mjs"], cwd=node, env=env, capture_output=True, timeout=120, check=False
        )
        assert done.returncode == 0, done.stderr.decode()
        yield served, orjson.loads(done.stdout)


def ok(results: dict[str, Any], name: str) -> Any:
    result = results[name]
    assert result["ok"], result
    return result["value"]


def failed(results: dict[str, Any], name: str) -> dict[str, Any]:
    result = results[name]
    assert not result["ok"], result
    error = result["error"]
    assert isinstance(error, dict)
    return error


def test_identity_calls(wire: tuple[Served, dict[str, Any]]) -> None:
    served, results = wire
    assert ok(results, "workspaceCurrent")["workspace"]["uuid"] == served.fixture.ws.uuid
    assert ok(results, "userCurrent")["user"]["email"] == served.fixture.ws.user_email


def test_runs(wire: tuple[Served, dict[str, Any]]) -> None:
    served, results = wire
    runs = ok(results, "runsList")
    assert runs["count"] == 4 and [r["recordId"] for r in runs["runs"]] == ["c4", "c3"]
    assert "finishedAt" in runs["runs"][0] and "parentUuid" not in runs["runs"][0]  # nulls became undefined
    assert ok(results, "runsCount") == {"count": 4}
    run = ok(results, "runGet")
    assert run["run"]["uuid"] == served.fixture.runs["r1"] and run["runContext"]["start"]["_id"] == "c1"


def test_batches_query_string(wire: tuple[Served, dict[str, Any]]) -> None:
    served, results = wire
    assert [b["uuid"] for b in ok(results, "batchesList")["batches"]] == [served.fixture.batch_done]


def test_query_and_spans(wire: tuple[Served, dict[str, Any]]) -> None:
    _, results = wire
    assert ok(results, "query") == {"rows": [{"n": 7}]}
    spans = ok(results, "spansList")
    assert spans["count"] == 6 and {s["nodeSlug"] for s in spans["spans"]} == {"enrich"}  # incl. the deleted run's


def test_definitions(wire: tuple[Served, dict[str, Any]]) -> None:
    served, results = wire
    release = ok(results, "releaseGet")["release"]
    assert release["uuid"] == served.fixture.release and release["testRecords"] == [
        {"kind": "id", "id": "c1", "data": None}
    ]
    assert [r["uuid"] for r in ok(results, "releasesList")["releases"]] == [served.fixture.release]
    assert len(ok(results, "workflowsAll")["workflows"]) == 3
    assert len(ok(results, "agentsAll")["agents"]) == 1
    assert [c["integrationSlug"] for c in ok(results, "connectorsList")["connectors"]] == ["clearbit"]
    assert [m["uuid"] for m in ok(results, "modelsAll")["models"]] == [served.fixture.model]
    segment = ok(results, "segmentFetch")
    assert segment["count"] == 5 and len(segment["records"]) == 2


def test_download_through_signed_url(wire: tuple[Served, dict[str, Any]]) -> None:
    _, results = wire
    download = ok(results, "runsDownload")
    assert download["status"] == 200 and download["lines"][0].startswith("_uuid,_workspace_uuid,")
    assert len(download["lines"]) == 6


def test_errors_as_the_client_sees_them(wire: tuple[Served, dict[str, Any]]) -> None:
    _, results = wire
    invalid = failed(results, "validationError")
    assert invalid["type"] == "RequestError" and invalid["status"] == 400
    assert orjson.loads(invalid["message"])[0]["keys"] == ["isFinished"]
    missing = failed(results, "spansMissingField")
    assert missing["type"] == "RequestError" and "executionStartedAfter" in missing["message"]
    seed_shape = failed(results, "batchCreateSeedShape")
    assert seed_shape["type"] == "RequestError" and seed_shape["status"] == 400
    assert {tuple(i["path"]) for i in orjson.loads(seed_shape["message"])} >= {("data", "modelUuid"), ("data", "ids")}
    business = failed(results, "batchNotFinished")
    assert business["status"] == 400 and business["reason"] == "batchNotFinished"
    assert business["message"] == "Batch not finished."  # the client's own text for the reason
    unauthorized = failed(results, "unauthorized")
    assert unauthorized == {"type": "AuthorizationError", "status": 401, "message": "Unauthorized",
                            "data": {"errorMessage": "Unauthorized"}}  # fmt: skip
