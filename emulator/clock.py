"""The emulator's virtual clock: moving ``now`` forward changes the data the way time would.

Advancing from ``old_now`` to ``new_now``:

* new batches and runs arrive with ``created_at`` in ``(old_now, new_now]`` at the scale's recent
  rate (with a floor, so that even a tiny workspace sees a few dozen runs per hour);
* late arrivals: a few runs whose ``created_at`` lies up to two minutes *before* ``old_now`` appear
  only now (ClickHouse insert lag); they are still running at ``old_now`` so that every row version
  written by an advance has its update column after ``old_now``;
* runs that were pending or running progress (most finish): every run's future is fixed by its
  hash (see emulator/generator.py), so observing it again at ``new_now`` is all it takes, and its
  executions, spans, batch counters and record move together;
* a few finished runs are soft-deleted (``deleted_at`` set, ``updated_at`` bumped).

Each change is a new row version (ReplacingMergeTree; readers use FINAL). Unchanged rows are never
rewritten, so the report's counts are the rows a correct incremental sync must pick up.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

from . import generator as gen
from .catalog import DAY_MS, HOUR_MS, iso, to_ms
from .store import ClickHouseStore
from .workspaces import Workspace

LATE_MIN_SECONDS = 60
"""Late arrivals need room after ``old_now`` to have progressed (their first node finishes there)."""

DELETE_LOOKBACK_MS = 7 * DAY_MS
"""Soft-deletes pick among runs created in the last week (the window a sync re-reads)."""


@dataclass
class AdvanceReport:
    """What an advance changed, per table: rows with a new key, and new versions of existing keys."""

    old_now: str
    new_now: str
    new_rows: dict[str, int] = field(default_factory=dict)
    changed_rows: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """Plain dict (for logs and JSON)."""
        return asdict(self)


def _uuids(workspaces: list[Workspace]) -> str:
    return ", ".join(f"toUUID('{ws.uuid}')" for ws in workspaces)


def advance(store: ClickHouseStore, workspaces: list[Workspace], seconds: int, *, seed: int) -> AdvanceReport:  # noqa: PLR0915 (what happens in one tick, in order)
    """Move the clock forward by ``seconds`` and apply what happened meanwhile (see module doc).

    Deterministic given (seed, the store's state, seconds).
    """
    if seconds <= 0:
        raise ValueError("seconds must be positive")
    started = time.perf_counter()
    meta = gen.read_meta(store)
    if "now" not in meta:
        raise LookupError("the store has no generated data yet: call generate() first")
    spec = gen.SCALES[meta["scale"]]
    old_now = to_ms(gen.parse_iso(meta["now"]))
    generated_now = to_ms(gen.parse_iso(meta.get("generated_now", meta["now"])))
    epoch = int(meta.get("epoch", "0")) + 1
    new_now = old_now + int(seconds) * 1000
    report = AdvanceReport(old_now=iso(old_now), new_now=iso(new_now))
    db = store.database
    scope = f"workspace_uuid IN ({_uuids(workspaces)})"

    # 1. Plan the arrivals of (old_now, new_now] and the late ones.
    catalogs = gen.build_catalogs(workspaces, seed=seed, spec=spec, now_ms=generated_now)
    groups: list[gen.Group] = []
    for catalog in catalogs:
        sizes = gen.workspace_sizes(spec, catalog.workspace.index)
        planner = gen.Planner(catalog, sizes, seed=seed, epoch=epoch, tag=f"advance/{old_now}/{new_now}")
        window_start = (generated_now - sizes.days * DAY_MS) // HOUR_MS * HOUR_MS
        regular = max(sizes.runs - sum(sizes.bursts) - sizes.recent_runs - sizes.stuck_runs, 1)
        rates = planner.flow_rates(regular, window_start, generated_now)
        # The floor applies to what this window would really get (nights and weekends are quiet).
        weight = sum(
            gen.hour_weight(h) * (min(h + HOUR_MS, new_now) - max(h, old_now)) / HOUR_MS
            for h in range(old_now // HOUR_MS * HOUR_MS, new_now, HOUR_MS)
        )
        expected = sum(rates.values()) * weight
        floor = sizes.advance_runs_per_hour * seconds / 3600
        boost = max(1.0, floor / expected) if expected > 0 else 1.0
        planner.plan_regular({k: v * boost for k, v in rates.items()}, old_now, new_now)
        if seconds >= LATE_MIN_SECONDS:
            late_flow = gen.flow_by_key(catalog, "find-emails")
            planner.add(
                late_flow,
                kind="stream",
                start_ms=old_now - gen.LATE_WINDOW_MS,
                spread_ms=gen.LATE_WINDOW_MS - 1,
                count=max(3, round(sizes.advance_runs_per_hour * 0.02)),
                user=False,
                queue_max_ms=20_000,
                queue_floor_ms=old_now + 1000,
            )
        groups.extend(planner.groups)
    gen.insert_json_rows(store, store.table("gen_groups"), (g.row() for g in groups))
    report.new_rows["groups"] = len(groups)

    candidates = f"{scope} AND stuck = 0 AND start_ms + spread_ms + {gen.MAX_RUN_MS} >= {old_now - gen.LATE_WINDOW_MS}"
    min_start = store.scalar(f"SELECT min(start_ms) FROM {store.table('gen_groups')} WHERE {candidates}")
    if min_start is None:
        min_start = old_now
    since_ms = int(min_start)
    since = f"created_at >= {gen.ts(str(since_ms))}"

    for name in ("runs", "spans", "records", "batches"):
        store.execute(f"DROP TABLE IF EXISTS {db}.gen_stage_{name}")
        store.execute(f"CREATE TABLE {db}.gen_stage_{name} AS {store.table(name)} ENGINE = Memory")
    stage_runs = f"{db}.gen_stage_runs"
    try:
        # 2. Observe the candidate runs at new_now; keep those that are new or progressed.
        select = gen.runs_select(
            store,
            seed=seed,
            at_ms=gen.observed_at(new_now),
            source=gen.groups_source(store, candidates),
            with_deletes=False,
        )
        existing = f"SELECT uuid, _version, status FROM {store.table('runs')} FINAL WHERE {scope} AND {since}"
        cols = ", ".join(f"`{c}`" for c in gen.run_insert_columns())
        outs = ", ".join(gen.run_select_columns())
        store.execute(
            f"INSERT INTO {stage_runs} ({cols}) SELECT {outs} FROM ({select}) "
            f"WHERE uuid NOT IN (SELECT uuid FROM ({existing}) WHERE status NOT IN ('pending', 'running')) "
            f"AND (uuid, _version) NOT IN (SELECT uuid, _version FROM ({existing}))"
        )
        progressed = int(store.scalar(f"SELECT count() FROM {stage_runs}") or 0)
        fresh_runs = int(
            store.scalar(f"SELECT count() FROM {stage_runs} WHERE uuid NOT IN (SELECT uuid FROM ({existing}))") or 0
        )

        # 3. Spans of those runs: the new executions and the executions that changed.
        _advance_spans(store, report, scope, since_ms)

        # 4. A few finished runs get soft-deleted.
        deleted = _soft_delete(store, workspaces, seed=seed, old_now=old_now, seconds=seconds)
        report.new_rows["runs"] = fresh_runs
        report.changed_rows["runs"] = progressed - fresh_runs + deleted
        store.execute(f"INSERT INTO {store.table('runs')} SELECT * FROM {stage_runs}{gen.BULK}")

        # 5. Records and batches follow their runs.
        _advance_records(store, report, scope)
        _advance_batches(store, report, scope, epoch, new_now)
    finally:
        for name in ("runs", "spans", "records", "batches"):
            store.execute(f"DROP TABLE IF EXISTS {db}.gen_stage_{name}")

    report.changed_rows["entities"] = sum(gen.refresh_workflows(store, catalog) for catalog in catalogs)
    gen.set_meta(store, {"now": iso(new_now), "epoch": str(epoch)})
    report.seconds = round(time.perf_counter() - started, 3)
    return report


def _advance_spans(store: ClickHouseStore, report: AdvanceReport, scope: str, since_ms: int) -> None:
    """Stage the spans of the staged runs that are new or changed, count them, write them."""
    db = store.database
    stage = f"{db}.gen_stage_spans"
    span_cols = ", ".join(f"`{c}`" for c in gen.SPAN_COLUMNS)
    existing = (
        f"SELECT run_uuid, node_uuid, execution_index, _version FROM {store.table('spans')} FINAL "
        f"WHERE {scope} AND execution_started_at >= {gen.ts(str(since_ms))} "
        f"AND run_uuid IN (SELECT uuid FROM {db}.gen_stage_runs)"
    )
    store.execute(
        f"INSERT INTO {stage} ({span_cols}) SELECT * FROM ({gen.spans_select(f'{db}.gen_stage_runs')}) "
        f"WHERE (run_uuid, node_uuid, execution_index, _version) NOT IN ({existing})"
    )
    total = int(store.scalar(f"SELECT count() FROM {stage}") or 0)
    changed = int(
        store.scalar(
            f"SELECT count() FROM {stage} WHERE (run_uuid, node_uuid, execution_index) IN "
            f"(SELECT run_uuid, node_uuid, execution_index FROM ({existing}))"
        )
        or 0
    )
    report.new_rows["spans"] = total - changed
    report.changed_rows["spans"] = changed
    store.execute(f"INSERT INTO {store.table('spans')} SELECT * FROM {stage}{gen.BULK}")


def _soft_delete(store: ClickHouseStore, workspaces: list[Workspace], *, seed: int, old_now: int, seconds: int) -> int:
    """Stage soft-deletes of a few finished runs per workspace; returns how many."""
    db = store.database
    for ws in workspaces:
        count = 2 if ws.index == 0 else 1
        pick = f"cityHash64({int(seed)}, {old_now}, uuid)"
        deleted_ms = f"{old_now} + 1 + toInt64({pick} % {max(int(seconds) * 1000 - 1, 1)})"  # before new now
        # Filter in a subquery: the REPLACE aliases would otherwise shadow deleted_at in the WHERE.
        victims = (
            f"SELECT * FROM {store.table('runs')} FINAL WHERE workspace_uuid = toUUID('{ws.uuid}') "
            f"AND deleted_at IS NULL AND finished_at IS NOT NULL AND finished_at <= {gen.ts(str(old_now))} "
            f"AND created_at >= {gen.ts(str(old_now - DELETE_LOOKBACK_MS))} "
            f"AND uuid NOT IN (SELECT uuid FROM {db}.gen_stage_runs) ORDER BY {pick} LIMIT {count}"
        )
        store.execute(
            f"INSERT INTO {db}.gen_stage_runs SELECT * REPLACE ("
            f"{gen.ts(deleted_ms)} AS updated_at, toNullable({gen.ts(deleted_ms)}) AS deleted_at, "
            f"toUInt64({deleted_ms}) AS _version) FROM ({victims})"
        )
    # Progress rows never carry deleted_at (the clock does not delete by formula), so these are all.
    return int(store.scalar(f"SELECT count() FROM {db}.gen_stage_runs WHERE deleted_at IS NOT NULL") or 0)


def _advance_records(store: ClickHouseStore, report: AdvanceReport, scope: str) -> None:
    """Recompute the record of every (workflow, record id) a staged run touched; write what changed.

    A late run can be the *first* run of its record, which moves the record's ``created_at`` (part
    of the table's sort key, hence of its replacing key): the old row is deleted before the new one
    is written, so the key never shows twice.
    """
    db = store.database
    stage = f"{db}.gen_stage_records"
    keys = f"SELECT DISTINCT workspace_uuid, workflow_uuid, record_id FROM {db}.gen_stage_runs"
    runs_source = (
        f"SELECT * FROM {store.table('runs')} FINAL WHERE {scope} "
        f"AND (workspace_uuid, workflow_uuid, record_id) IN ({keys})"
    )
    existing = (
        f"SELECT workspace_uuid, workflow_uuid, id, run_uuid, updated_at, created_at FROM {store.table('records')} "
        f"FINAL WHERE {scope} AND (workspace_uuid, workflow_uuid, id) IN ({keys})"
    )
    cols = ", ".join(f"`{c}`" for c in gen.record_insert_columns())
    store.execute(
        f"INSERT INTO {stage} ({cols}) SELECT * FROM ({gen.records_select(runs_source)}) "
        f"WHERE (workspace_uuid, workflow_uuid, id, run_uuid, updated_at, created_at) NOT IN ({existing})"
    )
    total = int(store.scalar(f"SELECT count() FROM {stage}") or 0)
    key_in_existing = (
        f"(workspace_uuid, workflow_uuid, id) IN (SELECT workspace_uuid, workflow_uuid, id FROM ({existing}))"
    )
    changed = int(store.scalar(f"SELECT count() FROM {stage} WHERE {key_in_existing}") or 0)
    moved = (
        f"SELECT workspace_uuid, workflow_uuid, id, created_at FROM {stage} WHERE (workspace_uuid, workflow_uuid, id) "
        f"IN (SELECT workspace_uuid, workflow_uuid, id FROM ({existing})) AND (workspace_uuid, workflow_uuid, id, "
        f"created_at) NOT IN (SELECT workspace_uuid, workflow_uuid, id, created_at FROM ({existing}))"
    )
    if int(store.scalar(f"SELECT count() FROM ({moved})") or 0) > 0:
        store.execute(
            f"DELETE FROM {store.table('records')} WHERE {scope} AND (workspace_uuid, workflow_uuid, id) IN "
            f"(SELECT workspace_uuid, workflow_uuid, id FROM ({moved})) "
            f"AND (workspace_uuid, workflow_uuid, id, created_at) NOT IN ({moved})"
        )
    report.new_rows["records"] = total - changed
    report.changed_rows["records"] = changed
    store.execute(f"INSERT INTO {store.table('records')} SELECT * FROM {stage}{gen.BULK}")


def _advance_batches(store: ClickHouseStore, report: AdvanceReport, scope: str, epoch: int, new_now: int) -> None:
    """Recompute the batches of the staged runs and the batches planned by this advance.

    A batch planned to start at ``new_now`` itself is left for the next advance (its runs too).
    """
    db = store.database
    stage = f"{db}.gen_stage_batches"
    affected = (
        f"SELECT batch_uuid FROM {db}.gen_stage_runs WHERE batch_uuid IS NOT NULL "
        f"UNION DISTINCT SELECT batch_uuid FROM {store.table('gen_groups')} "
        f"WHERE epoch = {epoch} AND kind = 'batch' AND {scope}"
    )
    runs_source = f"SELECT * FROM {store.table('runs')} FINAL WHERE {scope} AND batch_uuid IN ({affected})"
    existing = f"SELECT uuid, _version FROM {store.table('batches')} FINAL WHERE {scope} AND uuid IN ({affected})"
    cols = ", ".join(f"`{c}`" for c in gen.BATCH_COLUMNS)
    select = gen.batches_select(store, runs_source, f"{scope} AND batch_uuid IN ({affected}) AND start_ms < {new_now}")
    store.execute(f"INSERT INTO {stage} ({cols}) SELECT * FROM ({select}) WHERE (uuid, _version) NOT IN ({existing})")
    total = int(store.scalar(f"SELECT count() FROM {stage}") or 0)
    changed = int(store.scalar(f"SELECT count() FROM {stage} WHERE uuid IN (SELECT uuid FROM ({existing}))") or 0)
    report.new_rows["batches"] = total - changed
    report.changed_rows["batches"] = changed
    store.execute(f"INSERT INTO {store.table('batches')} SELECT * FROM {stage}{gen.BULK}")
