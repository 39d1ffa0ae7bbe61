with source as (
    select * from {{ cargo_source('batch_failures') }}
)

select
    batch_uuid,
    run_uuid,
    workflow_uuid,
    record_id,
    record_title,
    run_error_message,
    failed_node_uuid,
    failed_node_slug,
    node_error_message,
    run_created_at,
    run_finished_at
from source
