with source as (
    select * from {{ cargo_source('batches') }}
)

select
    uuid as batch_uuid,
    workflow_uuid,
    release_uuid,
    user_uuid,
    data_kind as batch_data_kind,
    status as batch_status,
    runs_status as batch_runs_status,
    error_message as batch_error_message,
    coalesce(runs_count, 0) as runs_count,
    coalesce(executed_runs_count, 0) as executed_runs_count,
    coalesce(failed_runs_count, 0) as failed_runs_count,
    coalesce(credits_used_count, 0) as credits_used,
    created_at,
    updated_at,
    finished_at,
    {{ cargo_utc_day('created_at') }} as created_day
from source
