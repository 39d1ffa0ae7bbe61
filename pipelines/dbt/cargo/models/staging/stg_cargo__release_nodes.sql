-- The nodes of each release, with the names of their connector, agent and tool.
with nodes as (
    select * from {{ cargo_source('release_nodes') }}
),

connectors as (
    select * from {{ ref('stg_cargo__connectors') }}
),

agents as (
    select * from {{ ref('stg_cargo__agents') }}
),

tools as (
    select * from {{ ref('stg_cargo__tools') }}
)

select
    nodes.release_uuid,
    nodes.node_uuid,
    nodes.workflow_uuid,
    nodes.slug as node_slug,
    nodes.name as node_name,
    nodes.kind as node_kind,
    nodes.action_slug as node_action_slug,
    coalesce(nodes.integration_slug, connectors.integration_slug) as integration_slug,
    nodes.connector_uuid,
    connectors.connector_name,
    nodes.agent_uuid,
    agents.agent_name,
    nodes.tool_uuid,
    tools.tool_name,
    coalesce(nodes.is_terminal, false) as is_terminal
from nodes
left join connectors on connectors.connector_uuid = nodes.connector_uuid
left join agents on agents.agent_uuid = nodes.agent_uuid
left join tools on tools.tool_uuid = nodes.tool_uuid
