-- Cargo's own runs/metrics counters per workflow (and release, when the sync asks per release) and
-- closed UTC day, with the workflow's name. Empty until the sync loads run_metrics_daily.
with metrics as (
    select * from {{ ref('stg_cargo__run_metrics_daily') }}
),

workflows as (
    select * from {{ ref('stg_cargo__workflows') }}
)

select
    metrics.day,
    metrics.workflow_uuid,
    workflows.workflow_name,
    workflows.workflow_kind,
    metrics.release_uuid,
    {%- for name in cargo_run_metric_counter_names() %}
    metrics.{{ name }},
    {%- endfor %}
    {{ cargo_ratio('metrics.error_executions_count', 'metrics.total_executions_count') }} as error_rate
from metrics
left join workflows on workflows.workflow_uuid = metrics.workflow_uuid
