with source as (
    select * from {{ cargo_source('tools') }}
)

select
    uuid as tool_uuid,
    workflow_uuid,
    name as tool_name,
    removed_at
from source
