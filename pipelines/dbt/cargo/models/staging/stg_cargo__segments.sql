with source as (
    select * from {{ cargo_source('segments') }}
)

select
    uuid as segment_uuid,
    model_uuid,
    name as segment_name,
    records_count
from source
