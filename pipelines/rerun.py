"""``cargo-elt rerun``: the last step of Cargo's failure recipe, re-run only the failed records.

The failed records come from the warehouse (``batch_failures``, loaded by ``cargo-elt sync``), not
from Cargo: the same rows the report and the models show. They are grouped into the payload of
``POST /v1/orchestration/batches`` in the shape Cargo's client declares (``CreateBatchPayload``,
``@cargo-ai/api``): ``{"workflowUuid", "data": {"kind": "recordIds", "modelUuid", "ids"}}``; one
doc sample shows ``{"kind": "recordIds", "recordIds": [...]}``, which the client's type (and the
emulator) refuse. The model is the play's (``plays.model_uuid``); tools have none and cannot be
re-run this way.

Dry run by default (the payload is printed); ``send`` posts it once (never retried: a batch
creation is not idempotent) and records what was re-run in ``_cargo_reruns``, in the warehouse next
to ``batch_failures`` (its own dlt pipeline, ``<pipeline-name>_reruns``, so a ``sync --full-refresh``
of the source never drops it; SQL and the models can see which failures were re-run, and by which
batch). A failed run already re-run is skipped unless ``force``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .sync import (
    DEFAULT_DATASET,
    DEFAULT_DESTINATION,
    PIPELINE_NAME,
    SyncFailed,
    UserInputError,
    _redact,
    check_destination,
    connection_settings,
    duckdb_credentials,
    pipeline_settings,
    preflight,
)

RERUNS_TABLE = "_cargo_reruns"
RERUNS_PIPELINE_SUFFIX = "_reruns"
CREATE_BATCH_PATH = "orchestration/batches"


@dataclass
class RerunRequest:
    """What one ``cargo-elt rerun`` was asked to do (``batch``, or ``workflow`` and ``since``)."""

    batch: str | None = None
    workflow: str | None = None
    since: datetime | str | None = None
    """``--since``: a date or an ISO datetime; ``check_request`` parses it (``cargo_elt.source.config``)."""
    send: bool = False
    force: bool = False
    base_url: str | None = None
    destination: str = DEFAULT_DESTINATION
    dataset: str = DEFAULT_DATASET
    pipeline_name: str = PIPELINE_NAME
    pipelines_dir: str | None = None
    duckdb_path: str | None = None
    api_token: str | None = None


@dataclass(frozen=True)
class Failure:
    """One failed run of ``batch_failures``: the record to run again."""

    batch_uuid: str
    run_uuid: str
    workflow_uuid: str
    record_id: str


@dataclass
class RerunPlan:
    """The batch to create and what it covers."""

    scope: str
    workflow_uuid: str
    model_uuid: str
    failures: list[Failure]
    already_rerun: int = 0
    without_record_id: int = 0
    payload: dict[str, Any] = field(default_factory=dict)

    @property
    def ids(self) -> list[str]:
        return list(self.payload["data"]["ids"])


@dataclass(frozen=True)
class RerunOutcome:
    """What ``run_rerun`` did: the plan, and the created batch's uuid when it was sent."""

    plan: RerunPlan
    batch_uuid: str | None = None


def run_rerun(request: RerunRequest) -> RerunOutcome:
    """Read the failures, build the payload; with ``send``, create the batch and record it."""
    check_request(request)
    pipeline = _pipeline(request)
    plan = plan_rerun(pipeline, request)
    if not request.send:
        return RerunOutcome(plan)
    batch = _create_batch(request, plan)
    try:
        record_reruns(pipeline, plan, batch)
    except Exception as exc:
        raise SyncFailed(
            f"batch {batch['uuid']} was created in Cargo, but recording it in {RERUNS_TABLE} failed "
            f"({type(exc).__name__}: {exc}): a later rerun would offer these {len(plan.ids)} records again"
        ) from None
    return RerunOutcome(plan, str(batch["uuid"]))


def check_request(request: RerunRequest) -> None:
    """The command line alone: one scope, well-formed uuids and date (``since`` is parsed in place), a
    usable warehouse location."""
    from cargo_elt.source.config import parse_instant
    from cargo_elt.source.errors import CargoConfigurationError
    from cargo_elt.source.sqltext import is_uuid

    if (request.batch is None) == (request.workflow is None):
        raise UserInputError("give --batch UUID, or --workflow UUID with --since DATE")
    if request.batch is not None and not is_uuid(request.batch):
        raise UserInputError(f"--batch {request.batch!r} is not a UUID")
    try:
        request.since = parse_instant(request.since, "--since")
    except CargoConfigurationError as exc:
        raise UserInputError(str(exc)) from None
    if request.workflow is not None:
        if not is_uuid(request.workflow):
            raise UserInputError(f"--workflow {request.workflow!r} is not a UUID")
        if request.since is None:
            raise UserInputError("--workflow needs --since DATE (the failures of runs created since then)")
    elif request.since is not None:
        raise UserInputError("--since goes with --workflow (a batch's failures are all of its failures)")
    pipeline = pipeline_settings(request.pipeline_name, request.dataset, request.duckdb_path)
    if request.destination == "duckdb":
        path = pipeline.duckdb_file
        if not os.path.isfile(path):
            raise UserInputError(
                f"no warehouse at {path}: run cargo-elt sync first, or point --duckdb-path at its DuckDB file"
            )
    check_destination(request.destination)


def _pipeline(request: RerunRequest) -> Any:
    """The dlt pipeline that reads the warehouse and writes ``_cargo_reruns`` (not the sync's own:
    creating the sync's pipeline here would leave it a local state the next sync would start from)."""
    import dlt

    destination: Any = request.destination
    if request.destination == "duckdb":
        path = pipeline_settings(request.pipeline_name, request.dataset, request.duckdb_path).duckdb_file
        destination = dlt.destinations.duckdb(duckdb_credentials(os.path.abspath(path), None))
    extra: dict[str, Any] = {"pipelines_dir": request.pipelines_dir} if request.pipelines_dir else {}
    return dlt.pipeline(
        pipeline_name=request.pipeline_name + RERUNS_PIPELINE_SUFFIX,
        destination=destination,
        dataset_name=request.dataset,
        **extra,
    )


def _select(client: Any, table: str, columns: str, where: str, *args: Any) -> list[tuple[Any, ...]] | None:
    """Rows of ``table`` in the dataset, or None when the table does not exist (yet)."""
    from dlt.destinations.exceptions import DatabaseUndefinedRelation

    sql = f"SELECT {columns} FROM {client.make_qualified_table_name(table)} WHERE {where}"
    try:
        rows = client.execute_sql(sql, *args)
    except DatabaseUndefinedRelation:
        return None
    return [tuple(row) for row in rows or []]


def plan_rerun(pipeline: Any, request: RerunRequest) -> RerunPlan:
    """The failures of the scope minus those already re-run, and the payload that re-runs them."""
    with pipeline.sql_client() as client:
        columns = "batch_uuid, run_uuid, workflow_uuid, record_id"
        if request.batch is not None:
            scope = f"batch {request.batch}"
            rows = _select(client, "batch_failures", columns, "batch_uuid = %s", request.batch.lower())
        else:
            since = request.since.isoformat() if isinstance(request.since, datetime) else request.since
            scope = f"workflow {request.workflow} since {since or '?'}"
            rows = _select(
                client,
                "batch_failures",
                columns,
                "workflow_uuid = %s AND run_created_at >= %s",
                str(request.workflow).lower(),
                request.since,
            )
        if rows is None:
            raise UserInputError(
                f"dataset {request.dataset!r} has no batch_failures table: run cargo-elt sync first "
                "(batch_failures is loaded by default; --dataset / --destination name the warehouse)"
            )
        failures = [Failure(*(str(v) for v in row)) for row in rows if row[3] is not None]
        without_record_id = len(rows) - len(failures)
        if not failures:
            raise UserInputError(_no_failures(client, request, scope))
        workflows = sorted({f.workflow_uuid for f in failures})
        if len(workflows) != 1:  # a batch belongs to one workflow; --workflow names one
            raise SyncFailed(f"the failures of {scope} belong to {len(workflows)} workflows: {', '.join(workflows)}")
        workflow = workflows[0]
        done = _rerun_runs(client, workflow)
        remaining = failures if request.force else [f for f in failures if f.run_uuid not in done]
        if not remaining:
            raise UserInputError(
                f"the {len(failures)} failed records of {scope} were all re-run already "
                f"(batches {', '.join(sorted({done[f.run_uuid] for f in failures}))}): add --force to re-run them again"
            )
        models = _select(client, "plays", "model_uuid", "workflow_uuid = %s", workflow)
    if not models or models[0][0] is None:
        raise UserInputError(
            f"workflow {workflow} is not a play in the warehouse's plays table (a tool has no model to re-run "
            "records from, or the catalogue is not loaded: cargo-elt sync --tables workflows,plays)"
        )
    model = str(models[0][0])
    ids = sorted({f.record_id for f in remaining})
    plan = RerunPlan(
        scope,
        workflow,
        model,
        remaining,
        already_rerun=len(failures) - len(remaining),
        without_record_id=without_record_id,
    )
    plan.payload = {"workflowUuid": workflow, "data": {"kind": "recordIds", "modelUuid": model, "ids": ids}}
    return plan


def _no_failures(client: Any, request: RerunRequest, scope: str) -> str:
    """Why there is nothing to re-run: an unknown batch or workflow, or one without failed records."""
    if request.batch is not None:
        found = _select(client, "batches", "status, failed_runs_count", "uuid = %s", request.batch.lower())
        if not found:
            return (
                f"batch {request.batch} is not in the warehouse (batches, batch_failures): check the uuid, "
                "or run cargo-elt sync to load recent batches"
            )
        status, failed = found[0]
        if failed:
            return (
                f"batch {request.batch} ({status}) has {failed} failed runs but none in batch_failures yet: "
                "run cargo-elt sync, then rerun"
            )
        return f"batch {request.batch} ({status}) has no failed records: nothing to re-run"
    known = _select(client, "batches", "uuid", "workflow_uuid = %s", str(request.workflow).lower())
    if not known:
        return (
            f"workflow {request.workflow} has no batches in the warehouse: check the uuid, "
            "or run cargo-elt sync to load recent batches"
        )
    return f"{scope}: no failed records in batch_failures, nothing to re-run"


def _rerun_runs(client: Any, workflow_uuid: str) -> dict[str, str]:
    """Failed run uuid -> the batch that re-ran it, from ``_cargo_reruns`` (empty before the first)."""
    rows = _select(client, RERUNS_TABLE, "failed_run_uuid, rerun_batch_uuid", "workflow_uuid = %s", workflow_uuid)
    return {str(run): str(batch) for run, batch in rows or []}


def _create_batch(request: RerunRequest, plan: RerunPlan) -> dict[str, Any]:
    """``POST orchestration/batches`` once; the answer's ``batch``."""
    from cargo_elt.source.client import CargoClient, RetryPolicy
    from cargo_elt.source.errors import CargoApiError, CargoError

    connection = connection_settings(request.api_token, request.base_url)
    token, base_url, workspace = connection.token, connection.base_url, connection.workspace_uuid
    preflight(base_url, token, workspace)
    once = RetryPolicy(max_attempts=1)
    try:
        with CargoClient(token, base_url=base_url, workspace_uuid=workspace, retry=once) as client:
            body = client.call("POST", CREATE_BATCH_PATH, plan.payload)
    except CargoApiError as exc:
        reason = _redact(str(exc), [str(token)])
        raise UserInputError(f"Cargo refused the re-run of {plan.scope}: {reason}") from None
    except CargoError as exc:
        reason = _redact(str(exc), [str(token)])
        raise SyncFailed(
            f"creating the re-run batch of {plan.scope} failed ({reason}); the request may have reached Cargo: "
            f"look for a recordIds batch of workflow {plan.workflow_uuid} before running this again"
        ) from None
    batch = body.get("batch")
    if not isinstance(batch, dict) or not isinstance(batch.get("uuid"), str):
        raise SyncFailed(f"Cargo answered the batch creation without a batch uuid: {str(body)[:200]}")
    return batch


def record_reruns(pipeline: Any, plan: RerunPlan, batch: dict[str, Any]) -> None:
    """One ``_cargo_reruns`` row per failed run the new batch re-runs (merged: recording twice is harmless)."""
    import dlt

    from cargo_elt.source.sqltext import parse_timestamp

    requested = batch.get("createdAt")
    rows = [
        {
            "rerun_batch_uuid": batch["uuid"],
            "failed_run_uuid": f.run_uuid,
            "source_batch_uuid": f.batch_uuid,
            "workflow_uuid": plan.workflow_uuid,
            "model_uuid": plan.model_uuid,
            "record_id": f.record_id,
            "requested_at": parse_timestamp(requested) if isinstance(requested, str) else None,
        }
        for f in plan.failures
    ]
    resource = dlt.resource(
        rows,
        name=RERUNS_TABLE,
        primary_key=["rerun_batch_uuid", "failed_run_uuid"],
        write_disposition={"disposition": "merge", "strategy": "delete-insert"},
        columns={"requested_at": {"data_type": "timestamp", "timezone": True}},
    )
    pipeline.run(resource).raise_on_failed_jobs()


def format_plan(plan: RerunPlan, sent: str | None) -> list[str]:
    """The lines on stderr that say what was (or would be) re-run."""
    skipped = f"; {plan.already_rerun} already re-run, skipped (--force re-runs them)" if plan.already_rerun else ""
    if plan.without_record_id:
        skipped += f"; {plan.without_record_id} failed runs without a record id, skipped (nothing to re-run)"
    count = len(plan.ids)
    what = f"{count} failed record{'s' if count != 1 else ''} of {plan.scope} (workflow {plan.workflow_uuid})"
    if sent is None:
        return [
            f"dry run: would re-run {what}{skipped}",
            f"POST /v1/{CREATE_BATCH_PATH} with the body below; send it with --yes",
        ]
    return [f"re-running {what} as batch {sent}{skipped}"]


def payload_json(plan: RerunPlan) -> str:
    """The body of ``POST /v1/orchestration/batches``, as JSON (stdout: ready to pipe elsewhere)."""
    import json

    return json.dumps(plan.payload, indent=2)
