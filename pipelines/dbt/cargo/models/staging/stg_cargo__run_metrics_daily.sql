-- runs/metrics per workflow (release when asked), node and UTC day. Read as empty until the
-- source loads run_metrics_daily (macros/cargo_source.sql).
with source as (
    select * from {{ cargo_source('run_metrics_daily') }}
)

select
    workflow_uuid,
    release_uuid,
    node_uuid,
    cast(day as date) as day,
    {{ cargo_run_metric_counters() }}
from source
