with source as (
    select * from {{ cargo_source('connectors') }}
)

select
    uuid as connector_uuid,
    name as connector_name,
    slug as connector_slug,
    integration_slug
from source
