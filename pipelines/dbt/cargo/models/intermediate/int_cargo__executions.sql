-- Node executions of runs that are not soft-deleted, dated by their run's UTC creation day (every
-- mart's day), with the node described by the run's own release (else the newest release that has
-- the node, else what the span itself says) and the connector's name.
with spans as (
    select * from {{ ref('stg_cargo__spans') }}
),

runs as (
    select * from {{ ref('stg_cargo__runs') }}
),

release_nodes as (
    select * from {{ ref('stg_cargo__release_nodes') }}
),

workflow_nodes as (
    select * from {{ ref('int_cargo__workflow_nodes') }}
),

connectors as (
    select * from {{ ref('stg_cargo__connectors') }}
)

select
    spans.span_key,
    spans.run_uuid,
    spans.workflow_uuid,
    runs.release_uuid,
    runs.batch_uuid,
    runs.created_day as day,
    spans.node_uuid,
    coalesce(release_nodes.node_slug, workflow_nodes.node_slug, spans.node_slug) as node_slug,
    coalesce(release_nodes.node_name, workflow_nodes.node_name) as node_name,
    coalesce(release_nodes.node_kind, workflow_nodes.node_kind, spans.node_kind) as node_kind,
    coalesce(release_nodes.integration_slug, workflow_nodes.integration_slug, spans.integration_slug)
        as integration_slug,
    coalesce(spans.connector_uuid, release_nodes.connector_uuid, workflow_nodes.connector_uuid) as connector_uuid,
    coalesce(connectors.connector_name, release_nodes.connector_name, workflow_nodes.connector_name)
        as connector_name,
    spans.execution_index,
    spans.execution_status,
    spans.execution_error_message,
    spans.is_finished,
    spans.credits_used,
    spans.started_at,
    spans.finished_at,
    spans.duration_s
from spans
inner join runs on runs.run_uuid = spans.run_uuid
left join release_nodes
    on release_nodes.release_uuid = runs.release_uuid and release_nodes.node_uuid = spans.node_uuid
left join workflow_nodes
    on workflow_nodes.workflow_uuid = spans.workflow_uuid and workflow_nodes.node_uuid = spans.node_uuid
left join connectors
    on connectors.connector_uuid = coalesce(spans.connector_uuid, release_nodes.connector_uuid, workflow_nodes.connector_uuid)
where not runs.is_deleted
