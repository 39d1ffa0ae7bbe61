-- Workflows with the name and kind of the play or tool that owns them.
with workflows as (
    select * from {{ cargo_source('workflows') }}
),

plays as (
    select * from {{ cargo_source('plays') }}
),

tools as (
    select * from {{ cargo_source('tools') }}
)

select
    workflows.uuid as workflow_uuid,
    coalesce(workflows.name, plays.name, tools.name) as workflow_name,
    coalesce(
        workflows.owner_kind,
        case when workflows.play_uuid is not null then 'play' when workflows.tool_uuid is not null then 'tool' end
    ) as workflow_kind,
    workflows.play_uuid,
    plays.name as play_name,
    workflows.tool_uuid,
    tools.name as tool_name,
    workflows.deployed_release_uuid,
    workflows.created_at,
    workflows.deleted_at,
    workflows.removed_at,
    workflows.deleted_at is null and workflows.removed_at is null as is_active
from workflows
left join plays on plays.uuid = workflows.play_uuid
left join tools on tools.uuid = workflows.tool_uuid
