-- One row per run, soft-deleted runs included and flagged (is_deleted): the marts exclude them.
with source as (
    select * from {{ cargo_source('runs') }}
)

select
    uuid as run_uuid,
    workflow_uuid,
    release_uuid,
    batch_uuid,
    user_uuid,
    parent_uuid as parent_run_uuid,
    record_id,
    record_title,
    coalesce(is_group_parent, false) as is_group_parent,
    status as run_status,
    error_message as run_error_message,
    coalesce(credits_used_count, 0) as credits_used,
    created_at,
    updated_at,
    finished_at,
    deleted_at,
    deleted_at is not null as is_deleted,
    status in ({{ cargo_finished_run_statuses() }}) as is_finished,
    {{ cargo_utc_day('created_at') }} as created_day,
    case
        when finished_at is not null then {{ cargo_seconds_between('created_at', 'finished_at') }}
    end as duration_s
from source
