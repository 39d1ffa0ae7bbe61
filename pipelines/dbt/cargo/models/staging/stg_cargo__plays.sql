with source as (
    select * from {{ cargo_source('plays') }}
)

select
    uuid as play_uuid,
    workflow_uuid,
    name as play_name,
    model_uuid,
    segment_uuid,
    is_enabled,
    health_threshold,
    removed_at
from source
