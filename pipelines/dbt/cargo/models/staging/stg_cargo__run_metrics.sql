-- Snapshots of runs/metrics as the sync took them; the latest snapshot holds the current totals.
with source as (
    select * from {{ cargo_source('run_metrics') }}
)

select
    snapshot_at,
    workflow_uuid,
    release_uuid,
    node_uuid,
    {{ cargo_run_metric_counters() }}
from source
