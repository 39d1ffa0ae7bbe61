-- One row per batch: did it really process every record? Cargo calls a batch "success" even when
-- some of its runs failed (REFERENCE.md: read failedRunsCount), so completeness and the failed
-- records are spelled out: the failing nodes (most frequent first) and the record ids to run again.
with batches as (
    select * from {{ ref('stg_cargo__batches') }}
),

workflows as (
    select * from {{ ref('stg_cargo__workflows') }}
),

failed as (
    select * from {{ ref('cargo_failed_records') }}
),

failed_counts as (
    select
        batch_uuid,
        count(*) as failed_records_listed,
        count(distinct record_id) as failed_record_ids_count
    from failed
    group by batch_uuid
),

record_ids as (
    select distinct batch_uuid, record_id
    from failed
    where record_id is not null
),

record_lists as (
    select
        batch_uuid,
        {{ dbt.listagg('record_id', "','", 'order by record_id') }} as rerun_record_ids
    from record_ids
    group by batch_uuid
),

node_counts as (
    select batch_uuid, coalesce(failed_node_slug, '(unknown node)') as node_slug, count(*) as failures
    from failed
    group by batch_uuid, coalesce(failed_node_slug, '(unknown node)')
),

node_lists as (
    select
        batch_uuid,
        {{ dbt.listagg(
            dbt.concat(["node_slug", "' ('", dbt.safe_cast("failures", api.Column.translate_type("string")), "')'"]),
            "', '",
            'order by failures desc, node_slug'
        ) }} as failing_nodes
    from node_counts
    group by batch_uuid
)

select
    batches.batch_uuid,
    batches.workflow_uuid,
    workflows.workflow_name,
    workflows.workflow_kind,
    batches.batch_status,
    batches.batch_runs_status,
    batches.batch_data_kind,
    batches.created_at,
    batches.finished_at,
    batches.created_day as day,
    batches.runs_count,
    batches.executed_runs_count,
    batches.failed_runs_count,
    batches.runs_count - batches.executed_runs_count as unexecuted_runs_count,
    {{ cargo_ratio('batches.executed_runs_count', 'batches.runs_count') }} as completeness,
    {{ cargo_ratio('batches.executed_runs_count - batches.failed_runs_count', 'batches.runs_count') }}
        as success_share,
    (
        batches.runs_count > 0
        and batches.executed_runs_count = batches.runs_count
        and batches.failed_runs_count = 0
    ) as is_fully_processed,
    (
        batches.batch_status = 'success'
        and (batches.failed_runs_count > 0 or batches.executed_runs_count < batches.runs_count)
    ) as is_success_with_failures,
    coalesce(failed_counts.failed_records_listed, 0) as failed_records_listed,
    coalesce(failed_counts.failed_record_ids_count, 0) as failed_record_ids_count,
    node_lists.failing_nodes,
    record_lists.rerun_record_ids,
    batches.credits_used as credits
from batches
left join workflows on workflows.workflow_uuid = batches.workflow_uuid
left join failed_counts on failed_counts.batch_uuid = batches.batch_uuid
left join record_lists on record_lists.batch_uuid = batches.batch_uuid
left join node_lists on node_lists.batch_uuid = batches.batch_uuid
