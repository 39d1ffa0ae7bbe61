with source as (
    select * from {{ cargo_source('run_outputs') }}
)

select
    run_uuid,
    output_node_slug,
    workflow_uuid,
    record_id,
    record_title,
    status as run_status,
    error_message as run_error_message,
    created_at,
    finished_at,
    input as run_input,
    output as node_output
from source
