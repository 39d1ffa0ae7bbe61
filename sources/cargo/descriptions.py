"""What each table and column means: the data dictionary, in one place.

The same text goes into the dlt schema (column ``description``; BigQuery and Snowflake turn it into
column comments), into ``cargo-elt tables`` and into ``docs/TABLES.md``, so the three never disagree.
A column name means the same thing in every table (``COMMON``) unless a table says otherwise
(``BY_TABLE``). ``REFERENCES`` are dlt's ``references`` hints from the facts to the catalogue.

Segment export tables are not described here: their columns are the user's model's columns.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from dlt.common.schema.typing import TTableReferenceParam, TTableSchemaColumns
from dlt.extract.resource import DltResource

from .specs import TABLE_SPECS

TABLES: Final[dict[str, str]] = {
    "runs": "One row per run: a workflow (play, tool or agent) executed once on one record or payload.",
    "batches": "One row per batch: a group of runs started together (a play's sync, an upload, an API call).",
    "spans": "One row per node execution of a run (a run executes each node of its release once or more).",
    "records": "One row per record and workflow: the record's latest run in that workflow.",
    "run_outputs": "The output of one node for each run of a workflow, from Cargo's runs export.",
    "batch_outputs": "One row per run of a finished batch: the record's input fields and the chosen node's output.",
    "run_metrics": "Per-node run counters of each workflow (and release), appended as a snapshot each sync.",
    "run_metrics_daily": "Per-node run counters of each workflow (and release) for the runs created on each UTC day.",
    "batch_failures": "One row per failed run of a batch: the record, the run's error and the failing node.",
    "workflows": "Workflows (the graph a play or tool runs); named after the play or tool that owns them.",
    "plays": "Plays: workflows run on the records of a model or segment, on a schedule or on change.",
    "tools": "Tools: workflows run on demand, from other workflows, forms or the API.",
    "agents": "AI agents of the workspace.",
    "connectors": "Connections to integrations (CRM, enrichment providers, ...).",
    "datasets": "Datasets: where models' records come from.",
    "models": "Models: record types (contacts, companies, ...) with their columns.",
    "segments": "Saved segments: a model's records selected by a filter.",
    "releases": "Versions of workflows; a run executes one release.",
    "release_nodes": "The nodes of each release, flattened: slug, kind, integration and position in the graph.",
}
"""One line per table (also BigQuery's table description)."""

COMMON: Final[dict[str, str]] = {
    # identity and links
    "uuid": "The row's identifier (UUID).",
    "workspace_uuid": "The Cargo workspace the row belongs to.",
    "workflow_uuid": "The workflow (join workflows.uuid for its name and owner).",
    "release_uuid": "The release (version) of the workflow that ran (join releases.uuid).",
    "batch_uuid": "The batch the run belongs to (join batches.uuid); empty for runs started alone.",
    "run_uuid": "The run (join runs.uuid).",
    "node_uuid": "The node of the release (join release_nodes on release_uuid, node_uuid).",
    "user_uuid": "The user who started it, when a user did.",
    "trace_uuid": "Cargo's trace of the execution.",
    "temporal_workflow_id": "Cargo's internal orchestration id.",
    "record_id": "The id of the record processed (the model's _id).",
    "record_title": "The record's title, or for runs without a record, their input payload.",
    "context_s3_filename": "Where Cargo keeps the run's context (internal).",
    "computed_configs_s3_filename": "Where Cargo keeps the run's computed configuration (internal).",
    "parent_uuid": "The run that started this one, when a run did.",
    "parent_run_uuid": "The run that started this one, when a run did.",
    "parent_node_uuid": "The node of the parent run that started this one.",
    "parent_batch_uuid": "The batch of the parent run.",
    "parent_agent_uuid": "The agent that started this one, when an agent did.",
    "parent_chat_uuid": "The agent chat that started this one.",
    "parent_message_uuid": "The agent message that started this one.",
    "is_group_parent": "Whether the run groups child runs.",
    "play_uuid": "The play (join plays.uuid).",
    "tool_uuid": "The tool (join tools.uuid).",
    "agent_uuid": "The agent (join agents.uuid).",
    "connector_uuid": "The connector (join connectors.uuid).",
    "model_uuid": "The model (join models.uuid).",
    "segment_uuid": "The segment (join segments.uuid).",
    "dataset_uuid": "The dataset (join datasets.uuid).",
    "folder_uuid": "The folder it is filed in.",
    # state
    "status": "Status (runs: pending, running, success, error, cancelled, skipped).",
    "error_message": "The error, when it failed.",
    "credits_used_count": "Credits used (provider costs; Cargo's 0.01 per node execution is not included).",
    # names
    "name": "Name.",
    "slug": "Slug (a stable, readable identifier).",
    "description": "Description.",
    "kind": "Kind.",
    "integration_slug": "The integration (hubspot, salesforce, clearbit, ...).",
    "template_slug": "The template it was created from.",
    # times (UTC)
    "created_at": "When it was created (UTC).",
    "updated_at": "When it last changed (UTC); the newest version of a row wins on merge.",
    "finished_at": "When it finished (UTC); empty while it runs.",
    "deleted_at": "When it was deleted in Cargo (UTC); deleted runs are kept unless hard_delete is set.",
    "removed_at": "When the sync first missed it upstream (UTC): kept because facts may still point at it.",
    # JSON
    "input": "The record's input fields (JSON).",
    "output": "The node's output (JSON).",
}
"""Descriptions by column name, for every table that does not override them."""

_COUNTERS: Final[dict[str, str]] = {
    f"{state}_executions_count": f"Node executions {label} (as of the snapshot)."
    for state, label in (
        ("total", "in all"),
        ("idle", "idle"),
        ("pending", "pending"),
        ("running", "running"),
        ("success", "succeeded"),
        ("error", "failed"),
        ("cancelling", "being cancelled"),
        ("cancelled", "cancelled"),
        ("skipped", "skipped"),
    )
}

BY_TABLE: Final[dict[str, dict[str, str]]] = {
    "runs": {
        "status": "pending, running, success, error, cancelled or skipped.",
        "credits_used_count": "Credits the run's nodes used (provider costs).",
    },
    "batches": {
        "data_kind": "What the batch runs on (records of a segment, record ids, a file, a form, ...).",
        "data": "The batch's input definition (JSON; any webhook secret removed).",
        "status": "pending, running, success, error, cancelled or skipped.",
        "runs_status": "healthy or unhealthy (too many failed runs).",
        "runs_count": "Runs in the batch.",
        "executed_runs_count": "Runs of the batch that have finished.",
        "failed_runs_count": "Runs of the batch that failed.",
        "credits_used_count": "Credits the batch's runs used.",
    },
    "spans": {
        "run_context_s3_filename": "Where Cargo keeps the run's context (internal).",
        "run_computed_configs_s3_filename": "Where Cargo keeps the run's computed configuration (internal).",
        "node_kind": "native, connector, tool or agent.",
        "node_slug": "The node's slug in the workflow.",
        "node_action_slug": "The action the node performs.",
        "node_connector_uuid": "The connector the node calls (join connectors.uuid).",
        "node_integration_slug": "The integration the node calls.",
        "node_tool_uuid": "The tool the node runs (join tools.uuid).",
        "node_agent_uuid": "The agent the node runs (join agents.uuid).",
        "node_release_uuid": "The release of the workflow the node runs.",
        "node_batch_uuid": "The batch the node started.",
        "node_run_uuid": "The run the node started.",
        "node_message_uuid": "The agent message of the node.",
        "node_child_index": "Position among the children of a group node.",
        "node_wait_until_finished": "Whether the node waits for what it started to finish.",
        "node_next_uuid": "The node executed next.",
        "execution_index": "Which execution of the node in the run (0 first; loops execute a node again).",
        "execution_status": "pending, success or error.",
        "execution_error_message": "The node's error, when it failed.",
        "execution_title": "The execution's title as Cargo shows it.",
        "execution_icon_url": "The execution's icon.",
        "execution_credits_used_count": "Credits the execution used (provider cost; native nodes read 0).",
        "execution_started_at": "When the execution started (UTC).",
        "execution_updated_at": "When the execution last changed (UTC).",
        "execution_finished_at": "When the execution finished (UTC); empty while pending.",
    },
    "records": {
        "id": "The record's id (the model's _id).",
        "title": "The record's title.",
        "run_uuid": "The record's latest run in the workflow (join runs.uuid).",
        "status": "The latest run's status: pending, running, success, error or cancelled.",
        "created_at": "When the record first ran in the workflow (UTC).",
        "updated_at": "When the record's latest run last changed (UTC).",
    },
    "run_outputs": {
        "output_node_slug": "The node whose output was exported (sources.cargo.run_outputs).",
        "status": "The run's status when exported.",
        "created_at": "When the run was created (UTC).",
        "finished_at": "When the run finished (UTC); empty if it had not when exported.",
    },
    "batch_outputs": {
        "output_node_slug": "The node whose output was exported.",
        "row_number": "The row's position in the batch's export file.",
        "batch_finished_at": "When the batch finished (UTC).",
    },
    "run_metrics": {
        "snapshot_at": "When the counters were read (server time, UTC).",
        "release_uuid": "The release counted; empty for the whole workflow.",
        "credits_used_count": "Credits used by the node's executions (as of the snapshot).",
        **_COUNTERS,
    },
    "run_metrics_daily": {
        "day": "The UTC day the counted runs were created on.",
        "_scope_key": "workflow/release (or *)/day: the merge key (a day's rows are replaced whole when re-read).",
        "_deleted": "Always empty in the table: marks a day whose runs were all deleted (dlt's hard delete).",
        "release_uuid": "The release counted; empty for the whole workflow.",
        "credits_used_count": "Credits used by the node's executions of that day's runs.",
        **{name: text.replace("(as of the snapshot)", "(runs created that day)") for name, text in _COUNTERS.items()},
    },
    "batch_failures": {
        "run_error_message": "The run's error.",
        "failed_node_uuid": "The node that failed (the run's last failed execution).",
        "failed_node_slug": "The slug of the node that failed.",
        "node_error_message": "The failing node's error.",
        "run_created_at": "When the failed run was created (UTC).",
        "run_finished_at": "When the failed run finished (UTC).",
    },
    "workflows": {
        "name": "The name of the play or tool that owns the workflow.",
        "owner_kind": "play or tool: what owns the workflow.",
        "deployed_release_uuid": "The release that runs now (join releases.uuid).",
        "last_batch_uuid": "The workflow's latest batch.",
        "last_batch_status": "The latest batch's status.",
        "nodes": "The workflow's draft node graph (JSON).",
    },
    "plays": {
        "is_enabled": "Whether the play runs.",
        "run_creation_rule": "Which records start runs (new, changed, all, ...).",
        "schedule_type": "How the play is triggered.",
        "schedule": "The play's schedule (JSON).",
        "change_kinds": "Which record changes start runs (JSON).",
        "health_threshold": "Failed-run rate past which the play's batches count as unhealthy.",
    },
    "tools": {
        "is_read_only": "Whether the tool only reads.",
        "credits_cost_kind": "How the tool's credits are counted.",
        "public_form_enabled": "Whether the tool has a public form (its secret is never loaded).",
    },
    "datasets": {"kind": "Where the data comes from (connector, upload, ...)."},
    "models": {
        "kind": "The model's kind.",
        "extractor_slug": "How the model's records are extracted.",
        "id_column_slug": "The column holding the record id.",
        "title_column_slug": "The column holding the record title.",
        "time_column_slug": "The column holding the record's time.",
        "is_paused": "Whether extraction is paused.",
        "plays_count": "Plays on the model.",
        "segments_count": "Segments of the model.",
        "last_emitted_at": "When records were last emitted (UTC).",
        "columns": "The model's columns (JSON).",
    },
    "segments": {
        "from_play": "Whether the segment belongs to a play.",
        "records_count": "Records in the segment when last synced.",
        "limit": "At most this many records.",
        "filter": "The segment's filter (JSON, Cargo's filter syntax).",
        "sort": "The segment's sort (JSON).",
        "synced_at": "When Cargo last computed the segment (UTC).",
    },
    "releases": {
        "parent_uuid": "The release it was made from.",
        "version": "The release's version number.",
        "status": "draft, deployed or archived.",
        "nodes_count": "Nodes in the release.",
        "deployed_at": "When it was deployed (UTC).",
    },
    "release_nodes": {
        "slug": "The node's slug in the workflow (spans.node_slug).",
        "name": "The node's name.",
        "kind": "native, connector, tool or agent.",
        "action_slug": "The action the node performs.",
        "node_release_uuid": "The release of the workflow the node runs.",
        "position_index": "The node's position in the release's node list.",
        "graph_depth": "Steps from the workflow's start.",
        "is_terminal": "Whether the node ends the workflow (no children).",
        "position_x": "Position on Cargo's canvas.",
        "position_y": "Position on Cargo's canvas.",
        "children_uuids": "The nodes that follow (JSON array).",
        "fallback_child_uuid": "The node that follows on failure.",
    },
}
"""Per-table meanings that differ from or add to ``COMMON``."""

_CATALOGUE: Final[dict[str, str]] = {
    "workflow_uuid": "workflows",
    "release_uuid": "releases",
    "batch_uuid": "batches",
    "run_uuid": "runs",
}

REFERENCES: Final[dict[str, list[dict[str, Any]]]] = {
    table: [
        {"columns": [column], "referenced_table": target, "referenced_columns": ["uuid"]}
        for column, target in _CATALOGUE.items()
        if column in columns and target != table
    ]
    for table, columns in {
        "runs": ("workflow_uuid", "release_uuid", "batch_uuid"),
        "batches": ("workflow_uuid", "release_uuid"),
        "spans": ("workflow_uuid", "batch_uuid", "run_uuid"),
        "records": ("workflow_uuid", "release_uuid", "batch_uuid", "run_uuid"),
        "run_outputs": ("workflow_uuid", "run_uuid"),
        "batch_outputs": ("workflow_uuid", "batch_uuid"),
        "batch_failures": ("workflow_uuid", "batch_uuid", "run_uuid"),
        "run_metrics": ("workflow_uuid", "release_uuid"),
        "run_metrics_daily": ("workflow_uuid", "release_uuid"),
    }.items()
}
"""Facts to the catalogue (dlt ``references``): every uuid column that names a catalogue row."""


def describe(table: str, column: str) -> str | None:
    """What ``table.column`` means, or None when the dictionary has no entry for it."""
    return BY_TABLE.get(table, {}).get(column) or COMMON.get(column)


def table_references(table: str) -> TTableReferenceParam:
    return list(REFERENCES.get(table, []))  # type: ignore[arg-type]


def describe_resource(resource: DltResource) -> DltResource:
    """Add the dictionary's descriptions to a resource's column hints, and its references."""
    hinted = resource.columns
    if isinstance(hinted, Mapping):
        # the facts hint only the columns arrow cannot type alone; their spec lists the rest
        spec = TABLE_SPECS.get(resource.name)
        names = [*hinted, *(n for n in spec.column_names if n not in hinted)] if spec else list(hinted)
        texts = {name: describe(resource.name, name) for name in names}
        described: TTableSchemaColumns = {
            name: {"name": name, "description": text} for name, text in texts.items() if text
        }
        resource.apply_hints(columns=described)
    if resource.name in REFERENCES:
        resource.apply_hints(references=table_references(resource.name))
    return resource


LOADING: Final[dict[str, str]] = {
    "runs": "incremental: new rows by created_at, and rows changed since the last sync by updated_at",
    "batches": "incremental: new rows by created_at, and rows changed since the last sync by updated_at",
    "spans": "incremental: new rows by execution_started_at, changes within max_lookback_days",
    "records": "incremental: new rows by created_at, and rows changed since the last sync by updated_at",
    "run_outputs": "incremental on run creation time, per (workflow, output node); unfinished runs exported again",
    "batch_outputs": "incremental on batch finished_at: each batch's file once it has finished",
    "run_metrics": "a snapshot per sync, appended",
    "run_metrics_daily": "by UTC day: open days re-read until closed (+ settle), closed days when their runs change",
    "batch_failures": "incremental: batches with failed runs that changed since the last sync",
}
"""How each table is read; the catalogue tables are read whole each sync (``CATALOGUE_LOADING``)."""

CATALOGUE_LOADING: Final = "whole list each sync; rows gone upstream kept with removed_at"
