"""Batches endpoints (REFERENCE.md section 3.7): list (query string, no count), get, download, create."""

from __future__ import annotations

from typing import Any, get_args

from starlette.responses import Response

from ..downloads import FileSpec, sign_file_url
from ..enrolment import EnrolmentRefused, create_record_ids_batch
from ..http import json_response
from ..validation import ValidationFailed, validate_body
from . import catalog
from .common import ApiError, Call, Where, lit, not_found, ok, rejected, uuid_lit
from .facts import BATCH_TABLE, batch_json, table
from .limits import BATCHES_LIST_DEFAULT_LIMIT
from .payloads import (
    BatchCreatePayload,
    BatchDownloadPayload,
    BatchesListParams,
    CreateBatchDataKind,
    RecordIdsBatchData,
)

BATCH_ORDER = "created_at DESC, uuid DESC"


def batches_list(call: Call) -> Response:
    """``GET orchestration/batches/list?workflowUuids[]=...`` -> ``{batches}`` (no total count)."""
    p = call.params(BatchesListParams)
    w = Where(call.ws)
    w.uuid_in("workflow_uuid", p.workflowUuids)
    w.uuid_eq("release_uuid", p.releaseUuid)
    w.uuid_eq("parent_batch_uuid", p.parentBatchUuid)
    w.uuid_eq("parent_run_uuid", p.parentRunUuid)
    w.uuid_eq("parent_node_uuid", p.parentNodeUuid)
    w.in_("status", p.statuses)
    if p.hasRuns is not None:
        w.add(f"runs_count {'>' if p.hasRuns else '='} 0")
    if p.isSkipped is not None:
        w.add(f"status {'=' if p.isSkipped else '!='} 'skipped'")
    w.is_set("finished_at", p.isFinished)
    w.in_("data_kind", p.includedDataKinds)
    if p.excludedDataKinds:
        w.add(f"data_kind NOT IN ({', '.join(lit(k) for k in p.excludedDataKinds)})")
    limit = p.limit if p.limit is not None else BATCHES_LIST_DEFAULT_LIMIT
    rows = call.store.rows(
        f"SELECT * FROM {table(call.store, BATCH_TABLE)} WHERE {w.sql()} "
        f"ORDER BY {BATCH_ORDER} LIMIT {limit} OFFSET {p.offset or 0}"
    )
    return ok({"batches": [batch_json(r) for r in rows]})


def _batch_row(call: Call, uuid: str) -> dict[str, object] | None:
    rows = call.store.rows(
        f"SELECT * FROM {table(call.store, BATCH_TABLE)} "
        f"WHERE workspace_uuid = toUUID({lit(call.ws)}) AND uuid = {uuid_lit(uuid)} LIMIT 1"
    )
    return rows[0] if rows else None


def batches_get(call: Call) -> Response:
    """``GET orchestration/batches/{uuid}`` -> ``{batch}`` (404 ``batchNotFound``)."""
    row = _batch_row(call, call.path_params["uuid"])
    if row is None:
        raise not_found("batchNotFound")
    return ok({"batch": batch_json(row)})


def _node_slugs(call: Call, workflow_uuid: str, release_uuid: str | None) -> set[str]:
    """Every node slug the batch's runs can have executed (release nodes + workflow nodes)."""
    slugs: set[str] = set()
    release = catalog.get_entity(call.store, call.ws, "release", release_uuid) if release_uuid else None
    if release is None:
        release = catalog.deployed_release(call.store, call.ws, workflow_uuid)
    workflow = catalog.get_entity(call.store, call.ws, "workflow", workflow_uuid)
    for source in (release, workflow):
        if source is not None:
            slugs.update(str(n["slug"]) for n in catalog.flatten_nodes(source.body.get("nodes")) if "slug" in n)
    return slugs


def batches_download(call: Call) -> Response:
    """``POST orchestration/batches/{uuid}/download`` -> ``{url}`` of a CSV: record fields + ``output``.

    Reasons: ``batchNotFound`` (404), ``batchNotFinished`` (400); an ``outputNodeSlug`` the workflow
    does not have answers 404 ``nodeNotFound`` ([I]: the docs only say "node not found").
    """
    p = call.payload(BatchDownloadPayload)
    uuid = call.path_params["uuid"]
    row = _batch_row(call, uuid)
    if row is None:
        raise not_found("batchNotFound")
    if row.get("finished_at") is None:
        raise rejected("batchNotFinished")
    workflow_uuid = str(row["workflow_uuid"])
    release_uuid = row.get("release_uuid")
    if p.outputNodeSlug is not None:
        slugs = _node_slugs(call, workflow_uuid, str(release_uuid) if release_uuid else None)
        if slugs and p.outputNodeSlug not in slugs:
            raise not_found("nodeNotFound")
    spec = FileSpec(
        workspace_uuid=call.ws,
        kind="batch",
        params={"batchUuid": str(row["uuid"]), "workflowUuid": workflow_uuid, "outputNodeSlug": p.outputNodeSlug},
        filename=f"batch-{row['uuid']}.csv",
    )
    return ok({"url": sign_file_url(call.state, spec)})


def _data_issues(issues: list[dict[str, Any]]) -> ValidationFailed:
    """Issues of the nested ``data`` object, with their paths rooted at the payload (as zod reports them)."""
    return ValidationFailed([{**issue, "path": ["data", *issue.get("path", [])]} for issue in issues])


def _refusal(refused: EnrolmentRefused) -> Response:
    """Cargo's error body for a refused creation; a ``dataError`` carries its own reason ([I] shape,
    from the client: ``data.dataError.reason`` picks the message)."""
    body: dict[str, Any] = {"reason": refused.reason}
    if refused.data_error is not None:
        body["dataError"] = {"reason": refused.data_error}
    return json_response(body, refused.status)


def batches_create(call: Call) -> Response:
    """``POST orchestration/batches`` -> ``{batch}``: a batch from record ids, its runs left to the clock.

    Only ``data.kind = "recordIds"`` is implemented (``modelUuid`` + ``ids``, the shape of Cargo's
    client, not the ``{"kind": "recordIds", "recordIds": [...]}`` of one doc sample, which is refused
    here as zod would: ``modelUuid`` and ``ids`` required, ``recordIds`` unrecognised). The batch is
    answered ``pending`` with no runs; each ``POST /_emulator/advance`` then moves its runs along.
    """
    p = call.payload(BatchCreatePayload)
    kinds = get_args(CreateBatchDataKind)
    kind = p.data.get("kind")
    if kind not in kinds:
        expected = " | ".join(f"'{k}'" for k in kinds)
        raise ValidationFailed(
            [
                {
                    "code": "invalid_union_discriminator",
                    "options": list(kinds),
                    "path": ["data", "kind"],
                    "message": f"Invalid discriminator value. Expected {expected}",
                }
            ]
        )
    if kind != "recordIds":
        raise ApiError(400, message=f'the emulator creates batches of data.kind "recordIds" only, not {kind!r}')
    try:
        data = validate_body(RecordIdsBatchData, p.data)
    except ValidationFailed as failed:
        raise _data_issues(failed.issues) from None
    if p.nodes is not None:
        raise ApiError(400, reason="invalidReleaseOrCustomNodes")
    if p.workflowUuid is None:
        raise not_found("workflowNotFound")
    workspace = call.workspace
    try:
        with call.state.clock_lock:
            created = create_record_ids_batch(
                call.store,
                workspace,
                seed=call.state.seed,
                workflow_uuid=p.workflowUuid,
                release_uuid=p.releaseUuid,
                model_uuid=data.modelUuid,
                ids=data.ids,
            )
    except EnrolmentRefused as refused:
        return _refusal(refused)
    row = _batch_row(call, created.uuid)
    if row is None:
        raise ApiError(500, message="Internal Server Error")
    return ok({"batch": batch_json(row)})
