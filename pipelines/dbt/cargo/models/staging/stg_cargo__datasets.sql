with source as (
    select * from {{ cargo_source('datasets') }}
)

select
    uuid as dataset_uuid,
    slug as dataset_slug,
    kind as dataset_kind
from source
