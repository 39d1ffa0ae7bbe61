-- One row per UTC day (of run creation), workflow and node: executions, errors, the error rate over
-- finished executions, and the most frequent error message (ties: the alphabetically first), with
-- the node's kind, integration and connector. Executions of soft-deleted runs are left out.
with executions as (
    select * from {{ ref('int_cargo__executions') }}
),

workflows as (
    select * from {{ ref('stg_cargo__workflows') }}
),

nodes as (
    select
        day,
        workflow_uuid,
        node_uuid,
        max(node_slug) as node_slug,
        max(node_name) as node_name,
        max(node_kind) as node_kind,
        max(integration_slug) as integration_slug,
        max(connector_uuid) as connector_uuid,
        max(connector_name) as connector_name,
        count(*) as executions,
        sum(case when is_finished then 1 else 0 end) as finished_executions,
        sum(case when execution_status = 'error' then 1 else 0 end) as errors
    from executions
    group by day, workflow_uuid, node_uuid
),

messages as (
    select day, workflow_uuid, node_uuid, error_message, occurrences
    from {{ ref('cargo_node_error_messages_daily') }}
),

ranked_messages as (
    select
        messages.*,
        row_number() over (
            partition by day, workflow_uuid, node_uuid order by occurrences desc, error_message
        ) as rank_in_node
    from messages
)

select
    nodes.day,
    nodes.workflow_uuid,
    workflows.workflow_name,
    workflows.workflow_kind,
    nodes.node_uuid,
    nodes.node_slug,
    nodes.node_name,
    nodes.node_kind,
    nodes.integration_slug,
    nodes.connector_uuid,
    nodes.connector_name,
    nodes.executions,
    nodes.finished_executions,
    nodes.errors,
    {{ cargo_ratio('nodes.errors', 'nodes.finished_executions') }} as error_rate,
    ranked_messages.error_message as top_error_message,
    coalesce(ranked_messages.occurrences, 0) as top_error_occurrences
from nodes
left join workflows on workflows.workflow_uuid = nodes.workflow_uuid
left join ranked_messages
    on ranked_messages.day = nodes.day
    and ranked_messages.workflow_uuid = nodes.workflow_uuid
    and ranked_messages.node_uuid = nodes.node_uuid
    and ranked_messages.rank_in_node = 1
