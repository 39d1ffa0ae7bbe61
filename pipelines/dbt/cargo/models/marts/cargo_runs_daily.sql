-- One row per workflow and UTC day of run creation: how many runs, how they ended, what they cost
-- and how long they took. Soft-deleted runs are left out. error_rate is error_runs over
-- finished_runs (success, error, cancelled, skipped): a run still going has no outcome yet.
-- Durations (created to finished) are those of runs that ended in success or error.
with runs as (
    select * from {{ ref('stg_cargo__runs') }}
    where not is_deleted
),

workflows as (
    select * from {{ ref('stg_cargo__workflows') }}
),

counts as (
    select
        workflow_uuid,
        created_day as day,
        count(*) as runs,
        sum(case when run_status = 'success' then 1 else 0 end) as success_runs,
        sum(case when run_status = 'error' then 1 else 0 end) as error_runs,
        sum(case when run_status = 'cancelled' then 1 else 0 end) as cancelled_runs,
        sum(case when is_finished then 1 else 0 end) as finished_runs,
        sum(credits_used) as credits
    from runs
    group by workflow_uuid, created_day
),

durations as (
    select
        workflow_uuid,
        created_day as day,
        {{ cargo_percentile_over('duration_s', 0.5, 'workflow_uuid, created_day') }} as p50_duration_s,
        {{ cargo_percentile_over('duration_s', 0.95, 'workflow_uuid, created_day') }} as p95_duration_s
    from runs
    where run_status in ('success', 'error') and duration_s is not null
),

percentiles as (
    select workflow_uuid, day, max(p50_duration_s) as p50_duration_s, max(p95_duration_s) as p95_duration_s
    from durations
    group by workflow_uuid, day
)

select
    counts.day,
    counts.workflow_uuid,
    workflows.workflow_name,
    workflows.workflow_kind,
    counts.runs,
    counts.success_runs,
    counts.error_runs,
    counts.cancelled_runs,
    counts.finished_runs,
    {{ cargo_ratio('counts.error_runs', 'counts.finished_runs') }} as error_rate,
    counts.credits,
    percentiles.p50_duration_s,
    percentiles.p95_duration_s
from counts
left join workflows on workflows.workflow_uuid = counts.workflow_uuid
left join percentiles on percentiles.workflow_uuid = counts.workflow_uuid and percentiles.day = counts.day
