-- Read as empty where batch_outputs was not loaded (the demo leaves it out: one export per batch).
with source as (
    select * from {{ cargo_source('batch_outputs') }}
)

select
    batch_uuid,
    output_node_slug,
    row_number as output_row_number,
    workflow_uuid,
    record_id,
    input as record_input,
    output as node_output,
    batch_finished_at
from source
