with source as (
    select * from {{ cargo_source('records') }}
)

select
    workflow_uuid,
    id as record_id,
    title as record_title,
    run_uuid as last_run_uuid,
    release_uuid,
    batch_uuid,
    status as record_status,
    error_message as record_error_message,
    coalesce(credits_used_count, 0) as credits_used,
    created_at,
    updated_at,
    finished_at
from source
