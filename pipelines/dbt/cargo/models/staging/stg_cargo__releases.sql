with source as (
    select * from {{ cargo_source('releases') }}
)

select
    uuid as release_uuid,
    workflow_uuid,
    version as release_version,
    status as release_status,
    deployed_at,
    created_at
from source
