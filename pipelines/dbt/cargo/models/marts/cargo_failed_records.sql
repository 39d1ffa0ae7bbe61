-- One row per failed run of a batch (batch_failures): the record to run again, the node it failed
-- at and why, with names. `cargo-elt rerun --batch <batch_uuid>` re-runs a batch's records.
with failures as (
    select * from {{ ref('stg_cargo__batch_failures') }}
),

workflows as (
    select * from {{ ref('stg_cargo__workflows') }}
),

workflow_nodes as (
    select * from {{ ref('int_cargo__workflow_nodes') }}
)

select
    failures.batch_uuid,
    failures.run_uuid,
    failures.workflow_uuid,
    workflows.workflow_name,
    failures.record_id,
    failures.record_title,
    failures.failed_node_uuid,
    coalesce(failures.failed_node_slug, workflow_nodes.node_slug) as failed_node_slug,
    workflow_nodes.node_kind as failed_node_kind,
    workflow_nodes.integration_slug as failed_node_integration_slug,
    failures.node_error_message,
    failures.run_error_message,
    failures.run_created_at,
    failures.run_finished_at
from failures
left join workflows on workflows.workflow_uuid = failures.workflow_uuid
left join workflow_nodes
    on workflow_nodes.workflow_uuid = failures.workflow_uuid and workflow_nodes.node_uuid = failures.failed_node_uuid
