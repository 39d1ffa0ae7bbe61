-- One row per node of a workflow (a node keeps its uuid across releases), described as in the
-- newest release that has it: slug, name, kind, integration, connector, agent, tool.
with nodes as (
    select * from {{ ref('stg_cargo__release_nodes') }}
),

releases as (
    select * from {{ ref('stg_cargo__releases') }}
),

ranked as (
    select
        nodes.*,
        row_number() over (
            partition by nodes.workflow_uuid, nodes.node_uuid
            order by releases.created_at desc, nodes.release_uuid desc
        ) as newest_first
    from nodes
    left join releases on releases.release_uuid = nodes.release_uuid
)

select
    workflow_uuid,
    node_uuid,
    release_uuid as described_by_release_uuid,
    node_slug,
    node_name,
    node_kind,
    node_action_slug,
    integration_slug,
    connector_uuid,
    connector_name,
    agent_uuid,
    agent_name,
    tool_uuid,
    tool_name
from ranked
where newest_first = 1
