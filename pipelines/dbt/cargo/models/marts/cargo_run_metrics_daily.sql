-- Cargo's own runs/metrics counters per workflow (and release, when the sync asks per release) and
-- UTC day, summed over the workflow's nodes (runs/metrics counts per node), with the workflow's
-- name. Empty until the sync loads run_metrics_daily.
with metrics as (
    select * from {{ ref('stg_cargo__run_metrics_daily') }}
),

per_day as (
    select
        day,
        workflow_uuid,
        release_uuid,
        {%- for name in cargo_run_metric_counter_names() %}
        sum({{ name }}) as {{ name }},
        {%- endfor %}
        count(*) as nodes
    from metrics
    group by day, workflow_uuid, release_uuid
),

workflows as (
    select * from {{ ref('stg_cargo__workflows') }}
)

select
    per_day.day,
    per_day.workflow_uuid,
    workflows.workflow_name,
    workflows.workflow_kind,
    per_day.release_uuid,
    {%- for name in cargo_run_metric_counter_names() %}
    per_day.{{ name }},
    {%- endfor %}
    per_day.nodes,
    {{ cargo_ratio('per_day.error_executions_count', 'per_day.total_executions_count') }} as error_rate
from per_day
left join workflows on workflows.workflow_uuid = per_day.workflow_uuid
