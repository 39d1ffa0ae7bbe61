{# Lists the staging models share, so a status or counter is named in one place. #}

{# Run statuses after which a run no longer changes (REFERENCE.md, RunStatus). #}
{% macro cargo_finished_run_statuses() -%}
    'success', 'error', 'cancelled', 'skipped'
{%- endmacro %}

{# The counters of runs/metrics, as run_metrics and run_metrics_daily name them. #}
{% macro cargo_run_metric_counter_names() -%}
    {{ return([
        'total_executions_count', 'idle_executions_count', 'pending_executions_count',
        'running_executions_count', 'success_executions_count', 'error_executions_count',
        'cancelling_executions_count', 'cancelled_executions_count', 'skipped_executions_count',
        'credits_used_count',
    ]) }}
{%- endmacro %}

{% macro cargo_run_metric_counters() -%}
    {%- for name in cargo_run_metric_counter_names() %}
    {{ name }}{{ "," if not loop.last }}
    {%- endfor %}
{%- endmacro %}
