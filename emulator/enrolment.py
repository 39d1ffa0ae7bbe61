"""Batches created through the API (``POST orchestration/batches``): runs planned for the clock.

A batch created at the virtual ``now`` has no runs yet, as on Cargo right after the request: it is
written ``pending``, and one group of one run per record is planned in ``gen_groups``, the runs
created a few milliseconds apart just after ``now``. The clock (``clock.advance``) then observes
them like every other planned run, so they start, progress, finish (or fail, at the workflow's
error rate) and update their records and their batch's counters over the next advances.

Each run's identity is a hash of (seed, batch, record), so the same request against the same data
gives the same batch and the same outcomes; a second identical request makes a second batch
(its serial number differs), as Cargo would.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

import orjson

from . import generator as gen
from .catalog import Flow, Model, ch_time, to_ms
from .store import ClickHouseStore
from .workspaces import Workspace, seeded_uuid

RUN_SPACING_MS = 20
"""[I] Milliseconds between the creation of two runs of a created batch (Cargo enqueues a batch's
records in a burst; 20 ms keeps even a 10,000-record batch within a few minutes of its creation)."""

RECORD_ID = re.compile(r"(?P<prefix>cmp|ctc)_(?P<number>\d{7})")
"""Record ids of the generated models: ``cmp_0000042`` (companies), ``ctc_0000042`` (contacts)."""

MODEL_PREFIX = {"companies": "cmp", "contacts": "ctc"}


def _group_key(*parts: object) -> int:
    """A ``gen_groups.group_key`` (UInt64) from ``parts``: a run's identity hashes it."""
    return int.from_bytes(hashlib.sha256("/".join(str(p) for p in parts).encode()).digest()[:8], "big")


class EnrolmentRefused(Exception):
    """The request cannot make a batch; ``reason`` is Cargo's (``zodCreateBatchErrorReason``)."""

    def __init__(self, status: int, reason: str, message: str, data_error: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message
        self.data_error = data_error


@dataclass(frozen=True)
class CreatedBatch:
    """What the handler answers with: the new batch's uuid (its row is in ``batches`` already)."""

    uuid: str
    runs: int


def _flow(store: ClickHouseStore, workspace: Workspace, seed: int, workflow_uuid: str) -> tuple[Flow, Model]:
    meta = gen.read_meta(store)
    spec = gen.SCALES[meta["scale"]]
    generated_now = to_ms(gen.parse_iso(meta.get("generated_now", meta["now"])))
    catalog = gen.build_catalogs([workspace], seed=seed, spec=spec, now_ms=generated_now)[0]
    for flow in catalog.flows:
        if flow.workflow_uuid == workflow_uuid.lower():
            return flow, catalog.models[flow.model]
    raise EnrolmentRefused(404, "workflowNotFound", "Workflow not found.")


def record_keys(model: Model, ids: list[str]) -> list[int]:
    """Each record id's index in the model's table; an id the model does not hold refuses the batch.

    [I] Cargo's answer to an unknown id is not documented; refusing it (``dataError`` /
    ``invalidData``) keeps a typo from turning into a silently smaller batch.
    """
    keys: list[int] = []
    for record_id in ids:
        found = RECORD_ID.fullmatch(record_id)
        if found is None or found["prefix"] != MODEL_PREFIX[model.slug] or int(found["number"]) >= model.size:
            raise EnrolmentRefused(
                400, "dataError", f"record {record_id!r} is not in model {model.uuid}", data_error="invalidData"
            )
        keys.append(int(found["number"]))
    return keys


def create_record_ids_batch(
    store: ClickHouseStore,
    workspace: Workspace,
    *,
    seed: int,
    workflow_uuid: str,
    release_uuid: str | None,
    model_uuid: str,
    ids: list[str],
) -> CreatedBatch:
    """A ``recordIds`` batch of ``workflow_uuid`` over ``ids`` (deduplicated, first occurrence first).

    Refusals ([I] where Cargo's client only names the reason): an unknown workflow
    (``workflowNotFound``); a tool, which has no model (``invalidDataKind``); a release of another
    workflow (``invalidReleaseOrCustomNodes``); another model than the play's, or an unknown record
    id (``dataError``/``invalidData``); no ids (``dataError``/``noRecords``).
    """
    flow, model = _flow(store, workspace, seed, workflow_uuid)
    if flow.owner_kind != "play":
        raise EnrolmentRefused(400, "invalidDataKind", "Invalid data kind for workflow type.")
    now_ms = to_ms(gen.current_now(store))
    release = flow.release_at(now_ms)
    if release_uuid is not None:
        chosen = [r for r in flow.releases if r.uuid == release_uuid.lower()]
        if not chosen:
            raise EnrolmentRefused(400, "invalidReleaseOrCustomNodes", "Invalid release or custom nodes.")
        release = chosen[0]
    if model_uuid.lower() != model.uuid:
        raise EnrolmentRefused(
            400, "dataError", f"model {model_uuid} is not the play's model {model.uuid}", data_error="invalidData"
        )
    unique = list(dict.fromkeys(ids))
    if not unique:
        raise EnrolmentRefused(400, "dataError", "No records.", data_error="noRecords")
    keys = record_keys(model, unique)

    serial = int(
        store.scalar(
            f"SELECT count() FROM {store.table('gen_groups')} WHERE workspace_uuid = toUUID('{workspace.uuid}') "
            "AND kind = 'batch' AND data_kind = 'recordIds'"
        )
        or 0
    )
    epoch = int(gen.read_meta(store).get("epoch", "0"))
    batch_uuid = seeded_uuid("batch", seed, workspace.uuid, "recordIds", now_ms, serial)
    data = orjson.dumps({"kind": "recordIds", "modelUuid": model.uuid, "ids": unique}).decode()
    model_kind = 0 if model.slug == "companies" else 1

    def group(kind: str, key: int, start_ms: int, count: int, record: int) -> gen.Group:
        return gen.Group(
            workspace_uuid=workspace.uuid,
            group_key=key,
            kind=kind,
            workflow_uuid=flow.workflow_uuid,
            release_uuid=release.uuid,
            user_uuid=workspace.user_uuid,
            start_ms=start_ms,
            spread_ms=0,
            cnt=count,
            spread_mode=0,
            model_kind=model_kind,
            model_salt=model.salt,
            model_size=model.size,
            record_offset=record,
            record_mode=0,
            error_pm=flow.error_pm,
            epoch=epoch,
            batch_uuid=batch_uuid,
            data_kind="recordIds",
            data=data,
        )

    # The batch row comes from the one ``batch`` group (no runs of its own); each record is a group of
    # one run carrying the batch's uuid, so the clock's batch counters aggregate them.
    groups = [group("batch", _group_key("recordIds", seed, batch_uuid), now_ms, 0, 0)]
    for index, record in enumerate(keys):
        key = _group_key("recordIds", seed, batch_uuid, record)
        groups.append(group("records", key, now_ms + 1 + index * RUN_SPACING_MS, 1, record))
    gen.insert_json_rows(store, store.table("gen_groups"), (g.row() for g in groups))
    _write_pending_batch(store, workspace, batch_uuid, flow, release.uuid, data, now_ms)
    return CreatedBatch(uuid=batch_uuid, runs=len(keys))


def _write_pending_batch(
    store: ClickHouseStore, workspace: Workspace, batch_uuid: str, flow: Flow, release_uuid: str, data: str, now_ms: int
) -> None:
    """The batch as it stands right after the request: pending, no runs, not finished."""
    created = ch_time(now_ms)
    row = {
        "uuid": batch_uuid,
        "workspace_uuid": workspace.uuid,
        "workflow_uuid": flow.workflow_uuid,
        "user_uuid": workspace.user_uuid,
        "release_uuid": release_uuid,
        "nodes": None,
        "trace_uuid": None,
        "temporal_workflow_id": f"batch-{batch_uuid}",
        "data_kind": "recordIds",
        "data": data,
        "parent_batch_uuid": None,
        "parent_run_uuid": None,
        "parent_node_uuid": None,
        "status": "pending",
        "runs_status": None,
        "error_message": None,
        "runs_count": 0,
        "executed_runs_count": 0,
        "failed_runs_count": 0,
        "credits_used_count": 0.0,
        "created_at": created,
        "updated_at": created,
        "finished_at": None,
        "_version": now_ms,
    }
    gen.insert_json_rows(store, store.table("batches"), [row])
