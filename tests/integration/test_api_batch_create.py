"""``POST orchestration/batches`` (data kind ``recordIds``) over real HTTP: the batch at once, its runs
through the clock, and the refusals of Cargo's client (``zodCreateBatchErrorReason``)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import pytest

NOW = datetime(2026, 11, 1, 12, tzinfo=UTC)


@pytest.fixture(scope="module")
def emu() -> Iterator[Any]:
    """An emulator of its own: these tests create batches and move the clock."""
    from cargo_elt.emulator.server import EmulatorOptions, running_emulator

    with running_emulator(EmulatorOptions(port=0, seed=3, scale="tiny", workspaces=1, admin=True, now=NOW)) as running:
        yield running


@pytest.fixture(scope="module")
def api(emu: Any) -> Iterator[httpx.Client]:
    token = emu.state.workspaces[0].token
    with httpx.Client(base_url=f"{emu.base_url}/v1", headers={"authorization": f"Bearer {token}"}, timeout=60) as c:
        yield c


def rows(api: httpx.Client, sql: str) -> list[dict[str, Any]]:
    response = api.post("orchestration/query", json={"query": sql})
    assert response.status_code == 200, response.text
    result: list[dict[str, Any]] = response.json()["rows"]
    return result


def play(api: httpx.Client, workflow: str | None = None) -> dict[str, Any]:
    plays = api.get("orchestration/plays/list").json()["plays"]
    return next(p for p in plays if workflow is None or p["workflowUuid"] == workflow)


def failed_records(api: httpx.Client) -> tuple[str, list[str]]:
    """The workflow with the most failed records, and those record ids."""
    found = rows(
        api,
        "SELECT toString(workflow_uuid) AS w, groupUniqArray(record_id) AS ids FROM runs WHERE status = 'error' "
        "AND batch_uuid IS NOT NULL GROUP BY w ORDER BY length(ids) DESC, w LIMIT 1",
    )[0]
    return str(found["w"]), sorted(found["ids"])


def test_a_record_ids_batch_is_pending_then_runs_its_records_as_the_clock_moves(emu: Any, api: httpx.Client) -> None:
    workflow, ids = failed_records(api)
    model = play(api, workflow)["modelUuid"]
    payload = {"workflowUuid": workflow, "data": {"kind": "recordIds", "modelUuid": model, "ids": [*ids, ids[0]]}}
    response = api.post("orchestration/batches", json=payload)
    assert response.status_code == 200, response.text
    batch = response.json()["batch"]
    assert batch["status"] == "pending" and batch["finishedAt"] is None and batch["runsCount"] == 0
    assert batch["data"] == {"kind": "recordIds", "modelUuid": model, "ids": ids}  # the duplicate id once
    assert batch["workflowUuid"] == workflow and batch["createdAt"] == "2026-11-01T12:00:00.000Z"
    assert api.get(f"orchestration/batches/{batch['uuid']}").json()["batch"] == batch
    listed = api.get("orchestration/batches/list", params={"includedDataKinds[]": "recordIds"}).json()["batches"]
    assert [b["uuid"] for b in listed] == [batch["uuid"]]
    assert rows(api, f"SELECT count() AS n FROM runs WHERE batch_uuid = '{batch['uuid']}'") == [{"n": 0}]

    httpx.post(f"{emu.base_url}/_emulator/advance", json={"seconds": 1800}, timeout=300).raise_for_status()
    runs = rows(
        api,
        f"SELECT record_id, status, toString(created_at) AS created FROM runs WHERE batch_uuid = '{batch['uuid']}' "
        "ORDER BY record_id",
    )
    assert [r["record_id"] for r in runs] == ids  # one run per record, none lost or doubled
    assert all(r["created"] > "2026-11-01 12:00:00" for r in runs)  # created after the request
    assert all(r["status"] in ("success", "error") for r in runs)  # 30 minutes: all finished
    done = api.get(f"orchestration/batches/{batch['uuid']}").json()["batch"]
    assert done["status"] == "success" and done["finishedAt"] is not None
    assert done["runsCount"] == done["executedRunsCount"] == len(ids)
    assert done["failedRunsCount"] == sum(r["status"] == "error" for r in runs)
    latest = rows(
        api,
        f"SELECT id, toString(batch_uuid) AS b FROM records WHERE workflow_uuid = '{workflow}' "
        f"AND id IN ({', '.join(repr(i) for i in ids)}) ORDER BY id",
    )
    assert [r["b"] for r in latest] == [batch["uuid"]] * len(ids)  # each record's latest run is the re-run

    again = api.post("orchestration/batches", json=payload).json()["batch"]
    assert again["uuid"] != batch["uuid"]  # the same request twice makes two batches, as on Cargo


def zod(response: httpx.Response) -> list[dict[str, Any]]:
    assert response.status_code == 400, response.text
    issues: list[dict[str, Any]] = orjson.loads(response.json()["errorMessage"])
    return issues


def test_refusals(api: httpx.Client) -> None:
    workflow, ids = failed_records(api)
    model = play(api, workflow)["modelUuid"]
    ok_data = {"kind": "recordIds", "modelUuid": model, "ids": ids}
    batches = rows(api, "SELECT count() AS n FROM batches")

    def post(**payload: Any) -> httpx.Response:
        return api.post("orchestration/batches", json=payload)

    seed_shape = zod(post(workflowUuid=workflow, data={"kind": "recordIds", "recordIds": ids}))
    assert {(i["code"], tuple(i["path"])) for i in seed_shape} == {
        ("invalid_type", ("data", "modelUuid")),
        ("invalid_type", ("data", "ids")),
        ("unrecognized_keys", ("data",)),
    }
    unknown_kind = zod(post(workflowUuid=workflow, data={"kind": "recordIdz"}))
    assert unknown_kind[0]["code"] == "invalid_union_discriminator" and unknown_kind[0]["path"] == ["data", "kind"]
    not_here = post(workflowUuid=workflow, data={"kind": "segment", "segmentUuid": model})
    assert not_here.status_code == 400 and "recordIds" in not_here.json()["errorMessage"]

    def reason(response: httpx.Response) -> tuple[int, dict[str, Any]]:
        return response.status_code, response.json()

    assert reason(post(data=ok_data)) == (404, {"reason": "workflowNotFound"})
    assert reason(post(workflowUuid="00000000-0000-4000-8000-000000000000", data=ok_data)) == (
        404,
        {"reason": "workflowNotFound"},
    )
    tool = api.get("orchestration/tools/list").json()["tools"][0]["workflowUuid"]
    assert reason(post(workflowUuid=tool, data=ok_data)) == (400, {"reason": "invalidDataKind"})
    other = next(p for p in api.get("orchestration/plays/list").json()["plays"] if p["modelUuid"] != model)
    wrong_model = {**ok_data, "modelUuid": other["modelUuid"]}
    invalid = {"reason": "dataError", "dataError": {"reason": "invalidData"}}
    assert reason(post(workflowUuid=workflow, data=wrong_model)) == (400, invalid)
    assert reason(post(workflowUuid=workflow, data={**ok_data, "ids": ["cmp_9999999"]})) == (400, invalid)
    no_records = {"reason": "dataError", "dataError": {"reason": "noRecords"}}
    assert reason(post(workflowUuid=workflow, data={**ok_data, "ids": []})) == (400, no_records)
    foreign_release = api.get("orchestration/releases/deployed", params={"workflowUuid": other["workflowUuid"]})
    release = foreign_release.json()["release"]["uuid"]
    bad_release = {"reason": "invalidReleaseOrCustomNodes"}
    assert reason(post(workflowUuid=workflow, releaseUuid=release, data=ok_data)) == (400, bad_release)
    assert reason(post(workflowUuid=workflow, nodes=[], data=ok_data)) == (400, bad_release)
    assert rows(api, "SELECT count() AS n FROM batches") == batches  # no refusal created anything
