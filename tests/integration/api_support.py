"""A small, hand-written dataset and a served emulator for the REST endpoint tests.

The tests assert exact values (which run is in which batch, which node failed, ...), so they use
this fixture rather than the seeded generator: two workspaces, a play workflow with a deployed
release and a model of five companies, a tool workflow, a workflow whose nodes are all archived,
two batches (one finished, one running), seven runs (one failed, one running, one soft-deleted),
and the spans and records derived from those runs exactly as the generator derives them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson

from cargo_elt.emulator.api.catalog import ENTITIES_DDL
from cargo_elt.emulator.schema import EXECUTION_FIELDS
from cargo_elt.emulator.server import RunningEmulator, bind_socket
from cargo_elt.emulator.state import EmulatorState
from cargo_elt.emulator.store import ClickHouseStore
from cargo_elt.emulator.workspaces import Workspace, make_workspaces, seeded_uuid

SEED = 7
BASE = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)


def u(*parts: object) -> str:
    """A fixture UUID, stable across runs."""
    return seeded_uuid("api-fixture", *parts)


def ch(ts: datetime | None) -> str | None:
    """A datetime as ClickHouse DateTime64(3) text."""
    return None if ts is None else ts.strftime("%Y-%m-%d %H:%M:%S.") + f"{ts.microsecond // 1000:03d}"


def iso(ts: datetime | None) -> str | None:
    """A datetime as Cargo's API ISO text."""
    return None if ts is None else ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


@dataclass
class NodeDef:
    slug: str
    kind: str
    action: str | None = None
    integration: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    archived: bool = False

    def uuid(self, workflow: str) -> str:
        return u("node", workflow, self.slug)


W1_NODES = [
    NodeDef("start", "native", "start"),
    NodeDef(
        "enrich",
        "connector",
        "enrichCompany",
        "clearbit",
        {"domain": "{{nodes.start.domain}}", "note": "Company {{start.name}}"},
    ),
    NodeDef("score", "agent", config={"prompt": "Score {{nodes.enrich.data.title}}"}),
    NodeDef("end", "native", "end"),
    NodeDef("legacy", "native", "wait", archived=True),
]
W2_NODES = [
    NodeDef("start", "native", "start"),
    NodeDef("http", "connector", "request", "http"),
    NodeDef("end", "native", "end"),
]
W3_NODES = [NodeDef("old", "native", "start", archived=True)]

COMPANIES = [
    ("c1", "Acme", "acme.com", 120, True, ["saas"], {"tier": "gold"}, "2010-05-01"),
    ("c2", "Globex", "globex.com", 5000, False, [], {}, "1999-01-15"),
    ("c3", "Initech", "initech.com", 300, False, ["b2b", "it"], {"tier": "silver"}, "2005-09-09"),
    ("c4", "Hooli", "hooli.com", 20000, True, ["big"], {"tier": "gold"}, "2001-03-03"),
    ("c5", "Umbrella", "umbrella.com", 800, False, ["bio"], {}, "1980-07-07"),
]


@dataclass
class RunDef:
    key: str
    workflow: str
    record_id: str
    record_title: str
    status: str
    batch: str | None
    executed: list[tuple[str, str]]  # (node slug, execution status)
    minute: int
    error: str | None = None
    deleted: bool = False


@dataclass
class Fixture:
    """UUIDs and shapes the tests assert against."""

    ws: Workspace
    other: Workspace
    workflow: str = u("workflow", "w1")
    tool_workflow: str = u("workflow", "w2")
    archived_workflow: str = u("workflow", "w3")
    other_workflow: str = u("workflow", "wb")
    release: str = u("release", "r1")
    old_release: str = u("release", "r0")
    tool_release: str = u("release", "r2")
    play: str = u("play", "p1")
    tool: str = u("tool", "t1")
    agent: str = u("agent", "a1")
    connector: str = u("connector", "c1")
    dataset: str = u("dataset", "d1")
    model: str = u("model", "m1")
    segment: str = u("segment", "s1")
    batch_done: str = u("batch", "b1")
    batch_running: str = u("batch", "b2")
    runs: dict[str, str] = field(default_factory=dict)


FULL = [("start", "success"), ("enrich", "success"), ("score", "success"), ("end", "success")]
RUNS = [
    RunDef("r1", "w1", "c1", "Acme", "success", "b1", FULL, 1),
    RunDef("r2", "w1", "c2", "Globex", "success", "b1", FULL, 2),
    RunDef("r3", "w1", "c3", "Initech", "error", "b1", [*FULL[:1], ("enrich", "error")], 3, "Clearbit: rate limited"),
    RunDef("r4", "w1", "c4", "Hooli", "success", "b1", FULL, 4),
    RunDef("r5", "w1", "c5", "Umbrella", "running", "b2", [*FULL[:2], ("score", "pending")], 10),
    RunDef(
        "r6",
        "w2",
        "req-1",
        '{"url":"https://example.com"}',
        "success",
        None,
        [("start", "success"), ("http", "success"), ("end", "success")],
        5,
    ),
    RunDef("r7", "w1", "c1", "Acme", "success", None, FULL, 0, deleted=True),
]
OTHER_RUN = RunDef("rb", "wb", "x1", "Other", "success", None, [("start", "success")], 1)

NODES_BY_WORKFLOW = {"w1": W1_NODES, "w2": W2_NODES, "w3": W3_NODES, "wb": [NodeDef("start", "native", "start")]}


def _insert(store: ClickHouseStore, table: str, rows: list[dict[str, Any]]) -> None:
    if rows:
        lines = "\n".join(orjson.dumps(r).decode() for r in rows)
        store.execute(f"INSERT INTO {table} FORMAT JSONEachRow {lines}")


def _node_json(node: NodeDef, workflow: str, *, for_release: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"uuid": node.uuid(workflow), "slug": node.slug, "kind": node.kind}
    if node.kind in ("native", "connector"):
        body["actionSlug"] = node.action
    if node.kind == "connector":
        body["integrationSlug"] = node.integration
        body["connectorUuid"] = u("connector", "c1")
    if node.kind == "agent":
        body["agentUuid"] = u("agent", "a1")
    if for_release:
        body.update(
            {"config": node.config, "childrenUuids": [], "fallbackOnFailure": False, "position": {"x": 0, "y": 0}}
        )
    else:
        body.update({"isArchived": node.archived, "nodes": []})
    return body


def _entity(
    ws: str, kind: str, uuid: str, body: dict[str, Any], *, parent: str | None = None, minute: int = 0
) -> dict[str, Any]:
    return {
        "workspace_uuid": ws,
        "kind": kind,
        "uuid": uuid,
        "parent_uuid": parent,
        "created_at": ch(BASE - timedelta(days=10) + timedelta(minutes=minute)),
        "body": orjson.dumps(body).decode(),
    }


def _entities(fx: Fixture) -> list[dict[str, Any]]:
    ws = fx.ws.uuid
    created = iso(BASE - timedelta(days=10))
    common = {"workspaceUuid": ws, "createdAt": created, "updatedAt": created, "deletedAt": None}
    rows: list[dict[str, Any]] = []
    for key, uuid, play, tool in (
        ("w1", fx.workflow, fx.play, None),
        ("w2", fx.tool_workflow, None, fx.tool),
        ("w3", fx.archived_workflow, None, None),
    ):
        body = {
            "uuid": uuid,
            **common,
            "nodes": [_node_json(n, key, for_release=False) for n in NODES_BY_WORKFLOW[key]],
            "playUuid": play,
            "toolUuid": tool,
            "folderUuid": None,
            "template": None,
            "lastBatch": None,
            "deployedRelease": None,
        }
        rows.append(_entity(ws, "workflow", uuid, body, minute=len(rows)))
    for uuid, key, status, version, minute in (
        (fx.old_release, "w1", "archived", "1", 1),
        (fx.release, "w1", "deployed", "2", 2),
        (fx.tool_release, "w2", "deployed", "1", 3),
    ):
        workflow = fx.workflow if key == "w1" else fx.tool_workflow
        body = {
            "uuid": uuid,
            "parentUuid": None,
            "workspaceUuid": ws,
            "userUuid": fx.ws.user_uuid,
            "workflowUuid": workflow,
            "description": None,
            "version": version,
            "status": status,
            "templateSlug": None,
            "nodes": [_node_json(n, key, for_release=True) for n in NODES_BY_WORKFLOW[key] if not n.archived],
            "formFields": None,
            "testRecords": [{"kind": "id", "id": "c1", "data": None}],
            "deployedAt": created if status == "deployed" else None,
            "createdAt": created,
            "updatedAt": created,
            "deletedAt": None,
        }
        rows.append(_entity(ws, "release", uuid, body, parent=workflow, minute=minute))
    rows.append(
        _entity(
            ws,
            "play",
            fx.play,
            {
                "uuid": fx.play,
                **common,
                "workflowUuid": fx.workflow,
                "userUuid": fx.ws.user_uuid,
                "modelUuid": fx.model,
                "segmentUuid": fx.segment,
                "changeKinds": ["added"],
                "runCreationRule": "always",
                "name": "Enrich companies",
                "description": None,
                "schedule": {"type": "cron", "cron": "0 * * * *", "temporalScheduleWorkflowId": "sched-1"},
                "isEnabled": True,
                "healthThreshold": 0.8,
                "healthAlertActions": [],
                "folderUuid": None,
            },
        )
    )
    rows.append(
        _entity(
            ws,
            "tool",
            fx.tool,
            {
                "uuid": fx.tool,
                "icon": {"kind": "emoji", "emojiSlug": "robot"},
                **common,
                "workflowUuid": fx.tool_workflow,
                "userUuid": fx.ws.user_uuid,
                "name": "Fetch URL",
                "folderUuid": None,
                "creditsCost": {"kind": "sum"},
                "description": None,
                "isReadOnly": False,
                "triggers": [],
                "publicForm": None,
            },
        )
    )
    rows.append(_entity(ws, "agent", fx.agent, {"uuid": fx.agent, **common, "name": "Scorer", "description": None}))
    for uuid, slug in ((fx.connector, "clearbit"), (u("connector", "c2"), "hubspot")):
        rows.append(
            _entity(
                ws,
                "connector",
                uuid,
                {"uuid": uuid, **common, "integrationSlug": slug, "name": slug.title(), "isDefault": True},
            )
        )
    rows.append(_entity(ws, "dataset", fx.dataset, {"uuid": fx.dataset, **common, "slug": "default", "kind": "native"}))
    columns = [
        {"slug": "name", "type": "string", "label": "Name"},
        {"slug": "domain", "type": "string", "label": "Domain"},
        {"slug": "employees", "type": "number", "label": "Employees"},
        {"slug": "is_customer", "type": "boolean", "label": "Customer"},
        {"slug": "tags", "type": "array", "label": "Tags"},
        {"slug": "metadata", "type": "object", "label": "Metadata"},
        {"slug": "founded_on", "type": "date", "label": "Founded"},
    ]
    rows.append(
        _entity(
            ws,
            "model",
            fx.model,
            {
                "uuid": fx.model,
                **common,
                "slug": "companies",
                "name": "Companies",
                "description": None,
                "datasetUuid": fx.dataset,
                "extractorSlug": "native",
                "position": {"x": 0, "y": 0},
                "config": {},
                "schedule": None,
                "meta": None,
                "columns": columns,
                "additionalColumns": [],
                "idColumnSlug": "domain",
                "unification": None,
                "titleColumnSlug": "name",
                "timeColumnSlug": None,
                "folderUuid": None,
                "playsCount": 1,
                "segmentsCount": 1,
                "isPaused": False,
                "lastEmittedAt": None,
                "lastRun": None,
                "kind": "native",
            },
        )
    )
    rows.append(
        _entity(
            ws,
            "segment",
            fx.segment,
            {
                "uuid": fx.segment,
                **common,
                "userUuid": fx.ws.user_uuid,
                "modelUuid": fx.model,
                "slug": "abc123",
                "name": "All companies",
                "filter": {"conjonction": "and", "groups": []},
                "sort": None,
                "limit": None,
                "recordsCount": 5,
                "fromPlay": True,
                "trackingColumnSlugs": None,
                "columnSlugs": None,
                "syncedAt": created,
                "lastChange": None,
            },
        )
    )
    rows.append(
        _entity(
            ws,
            "user",
            fx.ws.user_uuid,
            {
                "uuid": fx.ws.user_uuid,
                "email": fx.ws.user_email,
                "firstName": "Ada",
                "lastName": "Ops",
                "picture": None,
                "lastSignInAt": None,
                "createdAt": created,
                "updatedAt": created,
                "webExtensionData": None,
            },
        )
    )
    other = fx.other.uuid
    rows.append(
        _entity(
            other,
            "workflow",
            fx.other_workflow,
            {"uuid": fx.other_workflow, "workspaceUuid": other, "nodes": [], "createdAt": created},
        )
    )
    return rows


def _execution_row(run: RunDef, workflow_uuid: str, index: int, slug: str, status: str) -> dict[str, Any]:
    node = next(n for n in NODES_BY_WORKFLOW[run.workflow] if n.slug == slug)
    started = BASE + timedelta(minutes=run.minute, seconds=index + 1)
    finished = None if status == "pending" else started + timedelta(milliseconds=500)
    return {
        "node_uuid": node.uuid(run.workflow),
        "node_slug": slug,
        "node_kind": node.kind,
        "node_batch_uuid": None,
        "node_run_uuid": None,
        "node_message_uuid": u("message", run.key) if node.kind == "agent" else None,
        "node_child_index": None,
        "next_node_uuid": None,
        "status": status,
        "error_message": run.error if status == "error" else None,
        "title": None if status != "success" else f"{slug} of {run.record_title}",
        "icon_url": None,
        "credits_used_count": 1.5 if node.kind == "connector" and status == "success" else 0.0,
        "started_at": ch(started),
        "updated_at": ch(finished or started),
        "finished_at": ch(finished),
        "node_wait_until_finished": False,
        "node_action_slug": node.action or "",
        "node_connector_uuid": u("connector", "c1") if node.kind == "connector" else None,
        "node_integration_slug": node.integration,
        "node_tool_uuid": None,
        "node_agent_uuid": u("agent", "a1") if node.kind == "agent" else None,
        "node_release_uuid": None,
    }


def _fact_rows(fx: Fixture, ws: Workspace, run: RunDef) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
    workflow_uuid = {"w1": fx.workflow, "w2": fx.tool_workflow, "wb": fx.other_workflow}[run.workflow]
    release = {"w1": fx.release, "w2": fx.tool_release}.get(run.workflow)
    batch = {"b1": fx.batch_done, "b2": fx.batch_running}.get(run.batch or "")
    uuid = u("run", run.key)
    fx.runs[run.key] = uuid
    created = BASE + timedelta(minutes=run.minute)
    execs = [_execution_row(run, workflow_uuid, i, slug, st) for i, (slug, st) in enumerate(run.executed)]
    finished = None if run.status in ("running", "pending") else created + timedelta(seconds=len(execs) + 1)
    updated = finished or created + timedelta(seconds=len(execs))
    common = {
        "workspace_uuid": ws.uuid,
        "workflow_uuid": workflow_uuid,
        "user_uuid": ws.user_uuid,
        "release_uuid": release,
        "batch_uuid": batch,
        "trace_uuid": u("trace", run.key),
        "temporal_workflow_id": f"run-{run.key}",
        "context_s3_filename": f"ctx/{uuid}.json",
        "computed_configs_s3_filename": f"cfg/{uuid}.json",
        "parent_node_uuid": None,
        "parent_batch_uuid": None,
        "parent_agent_uuid": None,
        "parent_chat_uuid": None,
        "parent_message_uuid": None,
        "is_group_parent": None,
        "status": run.status,
        "error_message": run.error,
        "credits_used_count": sum(e["credits_used_count"] for e in execs),
        "created_at": ch(created),
        "updated_at": ch(updated),
        "finished_at": ch(finished),
        "nodes": None,
    }
    nested = {f"executions.{name}": [e[name] for e in execs] for name, _ in EXECUTION_FIELDS}
    run_row = {
        "uuid": uuid,
        **common,
        "record_id": run.record_id,
        "record_title": run.record_title,
        "parent_uuid": None,
        "deleted_at": ch(updated) if run.deleted else None,
        "_version": 1,
        **nested,
    }
    spans = []
    for index, e in enumerate(execs):
        spans.append(
            {
                "workspace_uuid": ws.uuid,
                "workflow_uuid": workflow_uuid,
                "user_uuid": ws.user_uuid,
                "batch_uuid": batch or "00000000-0000-0000-0000-000000000000",
                "trace_uuid": u("trace", run.key),
                "record_id": run.record_id,
                "record_title": run.record_title,
                "run_uuid": uuid,
                "run_context_s3_filename": f"ctx/{uuid}.json",
                "run_computed_configs_s3_filename": f"cfg/{uuid}.json",
                "parent_run_uuid": None,
                "parent_node_uuid": None,
                "parent_batch_uuid": None,
                "parent_agent_uuid": None,
                "parent_chat_uuid": None,
                "parent_message_uuid": None,
                "is_group_parent": None,
                "node_uuid": e["node_uuid"],
                "node_kind": e["node_kind"],
                "node_slug": e["node_slug"],
                "node_action_slug": e["node_action_slug"],
                "node_connector_uuid": e["node_connector_uuid"],
                "node_integration_slug": e["node_integration_slug"],
                "node_tool_uuid": None,
                "node_agent_uuid": e["node_agent_uuid"],
                "node_release_uuid": None,
                "node_batch_uuid": None,
                "node_run_uuid": None,
                "node_message_uuid": e["node_message_uuid"],
                "node_child_index": None,
                "node_wait_until_finished": False,
                "node_next_uuid": None,
                "execution_index": index,
                "execution_status": e["status"],
                "execution_error_message": e["error_message"],
                "execution_title": e["title"],
                "execution_icon_url": None,
                "execution_credits_used_count": e["credits_used_count"],
                "execution_started_at": e["started_at"],
                "execution_updated_at": e["updated_at"],
                "execution_finished_at": e["finished_at"],
                "_version": 1,
            }
        )
    record = {
        "id": run.record_id,
        "title": run.record_title,
        "run_uuid": uuid,
        "parent_run_uuid": None,
        **common,
        **nested,
    }
    return run_row, spans, record


def _batches(fx: Fixture) -> list[dict[str, Any]]:
    rows = []
    for uuid, status, finished, runs, failed, kind, data, minute in (
        (
            fx.batch_done,
            "success",
            BASE + timedelta(minutes=6),
            4,
            1,
            "segment",
            {"kind": "segment", "segmentUuid": fx.segment},
            0,
        ),
        (
            fx.batch_running,
            "running",
            None,
            1,
            0,
            "recordIds",
            {"kind": "recordIds", "modelUuid": fx.model, "ids": ["c5"]},
            9,
        ),
    ):
        created = BASE + timedelta(minutes=minute)
        rows.append(
            {
                "uuid": uuid,
                "workspace_uuid": fx.ws.uuid,
                "workflow_uuid": fx.workflow,
                "user_uuid": fx.ws.user_uuid,
                "release_uuid": fx.release,
                "nodes": None,
                "trace_uuid": None,
                "temporal_workflow_id": f"batch-{minute}",
                "data_kind": kind,
                "data": orjson.dumps(data).decode(),
                "parent_batch_uuid": None,
                "parent_run_uuid": None,
                "parent_node_uuid": None,
                "status": status,
                "runs_status": "unhealthy" if failed else "healthy",
                "error_message": None,
                "runs_count": runs,
                "executed_runs_count": runs if finished else 0,
                "failed_runs_count": failed,
                "credits_used_count": 4.5 if finished else 1.5,
                "created_at": ch(created),
                "updated_at": ch(finished or created),
                "finished_at": ch(finished),
                "_version": 1,
            }
        )
    return rows


def _model_table(store: ClickHouseStore, fx: Fixture) -> None:
    table = f"{store.database}.model_{fx.model.replace('-', '')}"
    store.execute(
        f"CREATE TABLE IF NOT EXISTS {table} (_id String, _title String, _emitted_at DateTime64(3, 'UTC'), "
        "name String, domain String, employees Int64, is_customer Bool, tags Array(String), metadata String, "
        "founded_on Date) ENGINE = MergeTree ORDER BY _id"
    )
    rows = [
        {
            "_id": cid,
            "_title": name,
            "_emitted_at": ch(BASE - timedelta(days=1)),
            "name": name,
            "domain": domain,
            "employees": employees,
            "is_customer": customer,
            "tags": tags,
            "metadata": orjson.dumps(meta).decode(),
            "founded_on": founded,
        }
        for cid, name, domain, employees, customer, tags, meta, founded in COMPANIES
    ]
    _insert(store, table, rows)


def build_fixture(store: ClickHouseStore, workspaces: list[Workspace]) -> Fixture:
    """Insert the fixture into ``store`` (fact tables, catalogue, one model table)."""
    fx = Fixture(ws=workspaces[0], other=workspaces[1])
    for ws in workspaces:
        store.ensure_workspace(ws.uuid)
    store.execute(ENTITIES_DDL.format(database=store.database))
    _insert(store, f"{store.database}.entities", _entities(fx))
    runs, spans, records = [], [], {}
    for run in [*RUNS, OTHER_RUN]:
        ws = fx.other if run is OTHER_RUN else fx.ws
        run_row, span_rows, record = _fact_rows(fx, ws, run)
        runs.append(run_row)
        spans.extend(span_rows)
        if not run.deleted:
            records[(record["workflow_uuid"], record["id"])] = record
    _insert(store, store.table("runs"), runs)
    _insert(store, store.table("spans"), spans)
    _insert(store, store.table("records"), list(records.values()))
    _insert(store, store.table("batches"), _batches(fx))
    _model_table(store, fx)
    return fx


@dataclass
class Served:
    """A running emulator over the fixture, with clients for both workspaces."""

    emulator: RunningEmulator
    fixture: Fixture
    api: httpx.Client
    other_api: httpx.Client
    base_url: str

    @property
    def state(self) -> EmulatorState:
        return self.emulator.state


@contextlib.contextmanager
def served_fixture() -> Iterator[Served]:
    """Build the fixture in a fresh store and serve it over real HTTP on a free port."""
    workspaces = make_workspaces(SEED, 2, ["tok-a", "tok-b"])
    store = ClickHouseStore()
    fixture = build_fixture(store, workspaces)
    state = EmulatorState(store=store, workspaces=workspaces, seed=SEED, scale="tiny")
    emulator = RunningEmulator(state, bind_socket("127.0.0.1", 0)).start()
    base = emulator.base_url
    api = httpx.Client(base_url=base + "/v1", headers={"authorization": "Bearer tok-a"}, timeout=30)
    other = httpx.Client(base_url=base + "/v1", headers={"authorization": "Bearer tok-b"}, timeout=30)
    try:
        yield Served(emulator=emulator, fixture=fixture, api=api, other_api=other, base_url=base)
    finally:
        api.close()
        other.close()
        emulator.stop()


def zod_issues(response: httpx.Response) -> list[dict[str, Any]]:
    """The zod issue list of a 400 validation answer."""
    assert response.status_code == 400, response.text
    issues = orjson.loads(response.json()["errorMessage"])
    assert isinstance(issues, list)
    return issues
