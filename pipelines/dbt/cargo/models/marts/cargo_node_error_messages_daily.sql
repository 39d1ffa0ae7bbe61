-- One row per UTC day (of run creation), workflow, node and error message: how often the node
-- failed with it. The most frequent message over any period is the sum of these rows, so a
-- report over a week names the week's top message, not a day's.
with executions as (
    select * from {{ ref('int_cargo__executions') }}
    where execution_status = 'error'
),

workflows as (
    select * from {{ ref('stg_cargo__workflows') }}
)

select
    executions.day,
    executions.workflow_uuid,
    workflows.workflow_name,
    executions.node_uuid,
    max(executions.node_slug) as node_slug,
    max(executions.node_kind) as node_kind,
    max(executions.integration_slug) as integration_slug,
    max(executions.connector_name) as connector_name,
    coalesce(executions.execution_error_message, '(no message)') as error_message,
    count(*) as occurrences
from executions
left join workflows on workflows.workflow_uuid = executions.workflow_uuid
group by
    executions.day,
    executions.workflow_uuid,
    workflows.workflow_name,
    executions.node_uuid,
    coalesce(executions.execution_error_message, '(no message)')
