-- Credits per UTC day (of run creation), workflow and node, with names: node_credits from the
-- node's executions, workflow_credits from the workflow's runs that day (Cargo's own run totals;
-- the nodes' credits add up to them when Cargo accounts every credit to a node).
-- Soft-deleted runs are left out.
with executions as (
    select * from {{ ref('int_cargo__executions') }}
),

runs_daily as (
    select * from {{ ref('cargo_runs_daily') }}
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
        max(connector_name) as connector_name,
        count(*) as executions,
        sum(credits_used) as node_credits
    from executions
    group by day, workflow_uuid, node_uuid
)

select
    nodes.day,
    nodes.workflow_uuid,
    runs_daily.workflow_name,
    runs_daily.workflow_kind,
    nodes.node_uuid,
    nodes.node_slug,
    nodes.node_name,
    nodes.node_kind,
    nodes.integration_slug,
    nodes.connector_name,
    nodes.executions,
    nodes.node_credits,
    runs_daily.credits as workflow_credits,
    {{ cargo_ratio('nodes.node_credits', 'runs_daily.credits') }} as share_of_workflow_credits
from nodes
left join runs_daily on runs_daily.workflow_uuid = nodes.workflow_uuid and runs_daily.day = nodes.day
