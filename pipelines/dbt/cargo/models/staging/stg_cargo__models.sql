with source as (
    select * from {{ cargo_source('models') }}
)

select
    uuid as model_uuid,
    slug as model_slug,
    name as model_name,
    dataset_uuid
from source
