with source as (
    select * from {{ cargo_source('agents') }}
)

select
    uuid as agent_uuid,
    name as agent_name,
    slug as agent_slug
from source
