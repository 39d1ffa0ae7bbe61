-- One row per node execution. span_key is the table's compound key as one column
-- (run_uuid, node_uuid, execution_index), for tests and joins.
with source as (
    select * from {{ cargo_source('spans') }}
)

select
    {{ dbt.concat(["run_uuid", "'/'", "node_uuid", "'/'", dbt.safe_cast("execution_index", api.Column.translate_type("string"))]) }}
        as span_key,
    run_uuid,
    workflow_uuid,
    batch_uuid,
    record_id,
    node_uuid,
    node_kind,
    node_slug,
    node_action_slug,
    node_connector_uuid as connector_uuid,
    node_integration_slug as integration_slug,
    node_tool_uuid as tool_uuid,
    node_agent_uuid as agent_uuid,
    execution_index,
    execution_status,
    execution_error_message,
    coalesce(execution_credits_used_count, 0) as credits_used,
    execution_started_at as started_at,
    execution_updated_at as updated_at,
    execution_finished_at as finished_at,
    execution_status in ('success', 'error') as is_finished,
    case
        when execution_finished_at is not null
            then {{ cargo_seconds_between('execution_started_at', 'execution_finished_at') }}
    end as duration_s
from source
