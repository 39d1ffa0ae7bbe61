"""The seeded generator, the clock and the ground truth, checked on real (embedded) ClickHouse.

Most tests share one ``tiny`` generation (two workspaces); tests that change data build their own
store. Every ClickHouseStore gets its own namespace in the process's embedded ClickHouse, so stores
never see each other's rows.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from cargo_elt.emulator import clock
from cargo_elt.emulator.clock import AdvanceReport, advance
from cargo_elt.emulator.generator import SCALES, GenerationReport, current_now, generate, read_meta
from cargo_elt.emulator.store import ClickHouseStore
from cargo_elt.emulator.truth import TRUTH_SPECS, consistency_problems, ground_truth, truth_rows
from cargo_elt.emulator.workspaces import Workspace, make_workspaces

NOW = datetime(2026, 7, 22, 0, 20, 41, 999000, tzinfo=UTC)
SEED = 11
ISO = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
ORCHESTRATION = ("runs", "spans", "records", "batches")

Generated = tuple[ClickHouseStore, list[Workspace], GenerationReport]


def _generate(seed: int = SEED, scale: str = "tiny", workspaces: int = 2) -> Generated:
    store = ClickHouseStore()
    spaces = make_workspaces(seed, workspaces)
    report = generate(store, spaces, seed=seed, scale=scale, now=NOW)
    return store, spaces, report


@pytest.fixture(scope="module")
def tiny() -> Generated:
    return _generate()


def _scalar(store: ClickHouseStore, sql: str) -> Any:
    return store.scalar(sql)


def _ws(ws: Workspace) -> str:
    return f"workspace_uuid = toUUID('{ws.uuid}')"


def _fingerprints(store: ClickHouseStore) -> dict[str, tuple[int, str]]:
    """Row count and hash of every column of every row (all versions) of every generated table."""
    tables = [
        str(r["name"])
        for r in store.rows(
            f"SELECT name FROM system.tables WHERE database = '{store.database}' "
            "AND (name IN ('runs', 'spans', 'records', 'batches', 'entities') OR name LIKE 'model_%') ORDER BY name"
        )
    ]
    out: dict[str, tuple[int, str]] = {}
    for name in tables:
        row = store.rows(f"SELECT count() AS n, toString(sum(toUInt128(cityHash64(*)))) AS h FROM {store.table(name)}")
        out[name] = (int(row[0]["n"]), str(row[0]["h"]))
    return out


def _entities(store: ClickHouseStore, ws: Workspace, kind: str) -> list[dict[str, Any]]:
    rows = store.rows(
        f"SELECT body FROM {store.table('entities')} FINAL WHERE {_ws(ws)} AND kind = '{kind}' ORDER BY uuid"
    )
    return [orjson.loads(r["body"]) for r in rows]


# -- generation --------------------------------------------------------------------------------------


def test_tiny_is_fast_and_the_report_counts_rows(tiny: Generated) -> None:
    store, _, report = tiny
    # The budget is 2 s on an idle machine; the margin absorbs CPUs shared with other work.
    assert report.total_seconds < 5
    for table in ORCHESTRATION:
        assert report.rows[table] == _scalar(store, f"SELECT count() FROM {store.table(table)}")
    assert set(report.seconds) >= {"runs", "spans", "records", "batches"}


@pytest.mark.parametrize("index", [0, 1])
def test_generated_data_is_consistent(tiny: Generated, index: int) -> None:
    store, spaces, _ = tiny
    problems = consistency_problems(store, spaces[index].uuid)
    assert problems == dict.fromkeys(problems, 0)


def test_first_workspace_has_the_shape_of_the_scale(tiny: Generated) -> None:
    store, spaces, _ = tiny
    first, other = spaces
    runs = store.table("runs")
    n_first = _scalar(store, f"SELECT count() FROM {runs} WHERE {_ws(first)}")
    n_other = _scalar(store, f"SELECT count() FROM {runs} WHERE {_ws(other)}")
    assert 250 <= n_first <= 600
    assert 20 <= n_other <= n_first // 4
    spans = _scalar(store, f"SELECT count() FROM {store.table('spans')} WHERE {_ws(first)}")
    assert 3 * n_first <= spans <= 7 * n_first
    statuses = {
        r["status"]: int(r["n"])
        for r in store.rows(f"SELECT status, count() AS n FROM {runs} WHERE {_ws(first)} GROUP BY status")
    }
    assert {"success", "error", "pending", "running"} <= set(statuses)
    in_batches = _scalar(store, f"SELECT countIf(batch_uuid IS NOT NULL) / count() FROM {runs} WHERE {_ws(first)}")
    assert in_batches > 0.3


def test_recent_runs_are_unfinished_and_some_are_stuck(tiny: Generated) -> None:
    store, spaces, _ = tiny
    runs = store.table("runs")
    now_sql = "toDateTime64('2026-07-22 00:20:41.999', 3, 'UTC')"
    unfinished = store.rows(
        f"SELECT created_at, status FROM {runs} WHERE {_ws(spaces[0])} AND finished_at IS NULL ORDER BY created_at"
    )
    recent = [r for r in unfinished if r["created_at"] >= "2026-07-22 00:10:00"]
    assert len(recent) >= 3
    assert (
        _scalar(
            store,
            f"SELECT count() FROM {runs} WHERE {_ws(spaces[0])} AND status = 'pending' "
            f"AND created_at < {now_sql} - INTERVAL 8 DAY",
        )
        == SCALES["tiny"].stuck_runs
    )
    # Nothing that old finished recently is still open: only the stuck ones are old and unfinished.
    old_open = [r for r in unfinished if r["created_at"] < "2026-07-21 00:00:00"]
    assert all(r["status"] == "pending" for r in old_open)


def test_time_spreads_over_four_weeks_with_hourly_bursts(tiny: Generated) -> None:
    store, spaces, _ = tiny
    runs = store.table("runs")
    oldest = _scalar(store, f"SELECT min(created_at) FROM {runs} WHERE {_ws(spaces[0])} AND status != 'pending'")
    assert "2026-06-23" <= oldest[:10] <= "2026-06-26"
    days = _scalar(store, f"SELECT uniqExact(toDate(created_at)) FROM {runs} WHERE {_ws(spaces[0])}")
    assert days >= 20
    on_the_hour = _scalar(
        store,
        f"SELECT countIf(toMinute(created_at) = 0) / count() FROM {store.table('batches')} WHERE {_ws(spaces[0])}",
    )
    assert on_the_hour > 0.5  # cron plays fire at :00


def test_meta_holds_the_clock(tiny: Generated) -> None:
    store, _, _ = tiny
    assert current_now(store) == NOW
    meta = read_meta(store)
    assert meta["seed"] == str(SEED) and meta["scale"] == "tiny"


def test_generate_refuses_a_used_store_and_unknown_scales(tiny: Generated) -> None:
    store, spaces, _ = tiny
    with pytest.raises(ValueError, match="already holds"):
        generate(store, spaces, seed=SEED, scale="tiny", now=NOW)
    with pytest.raises(ValueError, match="unknown scale"):
        generate(ClickHouseStore(), spaces, seed=SEED, scale="huge", now=NOW)


# -- catalogue ---------------------------------------------------------------------------------------


def _iso_values(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in _iso_values(v) if k.endswith("At") or isinstance(v, dict | list)]
    if isinstance(value, list):
        return [s for v in value for s in _iso_values(v)]
    return [value] if isinstance(value, str) else []


def test_catalogue_has_every_kind_in_api_shape(tiny: Generated) -> None:
    store, spaces, _ = tiny
    ws = spaces[0]
    counts = {
        r["kind"]: int(r["n"])
        for r in store.rows(
            f"SELECT kind, count() AS n FROM {store.table('entities')} FINAL WHERE {_ws(ws)} GROUP BY kind"
        )
    }
    assert 6 <= counts["play"] <= 10
    assert 2 <= counts["tool"] <= 4
    assert counts["agent"] == 2
    assert 3 <= counts["connector"] <= 4
    assert counts["dataset"] == 1 and counts["model"] == 2
    assert counts["workflow"] == counts["play"] + counts["tool"]
    assert counts["user"] == 1 and counts["workspace"] == 1
    standalone = [s for s in _entities(store, ws, "segment") if not s["fromPlay"]]
    assert 3 <= len(standalone) <= 5
    for kind in counts:
        for body in _entities(store, ws, kind):
            assert all(ISO.match(v) for v in _iso_values(body) if v and v[:2] == "20"), (kind, body)
    play = _entities(store, ws, "play")[0]
    assert {"description", "folderUuid", "deletedAt", "schedule", "segmentUuid"} <= set(play)
    assert play["deletedAt"] is None


def test_workflows_have_releases_with_node_graphs(tiny: Generated) -> None:
    store, spaces, _ = tiny
    ws = spaces[0]
    releases = _entities(store, ws, "release")
    workflows = {w["uuid"]: w for w in _entities(store, ws, "workflow")}
    parents = {
        str(r["uuid"]): str(r["parent_uuid"])
        for r in store.rows(
            f"SELECT uuid, parent_uuid FROM {store.table('entities')} FINAL WHERE {_ws(ws)} AND kind = 'release'"
        )
    }
    by_workflow: dict[str, list[dict[str, Any]]] = {}
    for release in releases:
        assert parents[release["uuid"]] == release["workflowUuid"]
        by_workflow.setdefault(release["workflowUuid"], []).append(release)
        nodes = release["nodes"]
        assert 3 <= len(nodes) <= 7
        assert nodes[0]["slug"] == "start" and nodes[-1]["slug"] == "end"
        for node in nodes:
            assert node["kind"] in ("native", "connector", "tool", "agent")
            if node["kind"] in ("native", "connector"):
                assert node["actionSlug"]
            if node["kind"] == "connector":
                assert node["integrationSlug"] and node["connectorUuid"]
    assert set(by_workflow) == set(workflows)
    for uuid, found in by_workflow.items():
        assert 1 <= len(found) <= 2
        deployed = [r for r in found if r["status"] == "deployed"]
        assert len(deployed) == 1
        assert workflows[uuid]["deployedRelease"]["uuid"] == deployed[0]["uuid"]
    with_batches = [w for w in workflows.values() if w["lastBatch"] is not None]
    assert with_batches and all(ISO.match(w["lastBatch"]["createdAt"]) for w in with_batches)


def test_model_tables_hold_the_records_runs_refer_to(tiny: Generated) -> None:
    store, spaces, _ = tiny
    ws = spaces[0]
    models = {m["slug"]: m for m in _entities(store, ws, "model")}
    sizes = {"companies": 200, "contacts": 500}
    for slug, model in models.items():
        table = store.table("model_" + model["uuid"].replace("-", ""))
        assert _scalar(store, f"SELECT count() FROM {table}") == sizes[slug]
        columns = {c["slug"]: c["type"] for c in model["columns"]}
        described = {r["name"] for r in store.rows(f"DESCRIBE TABLE {table}")}
        assert set(columns) == described
        prefix = "cmp_" if slug == "companies" else "ctc_"
        unknown = _scalar(
            store,
            f"SELECT count() FROM {store.table('runs')} AS r LEFT ANTI JOIN {table} AS m "
            f"ON m._id = r.record_id AND m._title = r.record_title "
            f"WHERE r.{_ws(ws)} AND startsWith(r.record_id, '{prefix}')",
        )
        assert unknown == 0
    assert models["companies"]["columns"][6] == {
        "kind": "original",
        "slug": "employees",
        "type": "number",
        "label": "Employees",
        "originalSlug": "employees",
    }


def test_segment_counts_match_their_models(tiny: Generated) -> None:
    store, spaces, _ = tiny
    ws = spaces[0]
    models = {m["uuid"]: m for m in _entities(store, ws, "model")}
    for segment in _entities(store, ws, "segment"):
        table = store.table("model_" + segment["modelUuid"].replace("-", ""))
        total = _scalar(store, f"SELECT count() FROM {table}")
        assert 0 <= segment["recordsCount"] <= total
        assert segment["modelUuid"] in models
        if segment["fromPlay"]:
            assert segment["recordsCount"] == total
    customers = [s for s in _entities(store, ws, "segment") if s["name"] == "Current customers"]
    for segment in customers:
        table = store.table("model_" + segment["modelUuid"].replace("-", ""))
        assert segment["recordsCount"] == _scalar(store, f"SELECT count() FROM {table} WHERE is_customer")


# -- truth -------------------------------------------------------------------------------------------


def test_truth_rows_match_ground_truth(tiny: Generated) -> None:
    store, spaces, _ = tiny
    truth = ground_truth(store, spaces[0].uuid)
    for table, spec in TRUTH_SPECS.items():
        rows = truth_rows(store, spaces[0].uuid, table)
        assert len(rows) == truth[table]["count"] > 0
        first = rows[0]
        assert set(first) == {*spec.primary_key, spec.update_column, spec.status_column} | (
            {"deleted_at"} if table == "runs" else set()
        )
        assert ISO.match(first[spec.update_column])
    spans = truth_rows(store, spaces[0].uuid, "spans")
    assert isinstance(spans[0]["execution_index"], int)
    with pytest.raises(ValueError):
        truth_rows(store, spaces[0].uuid, "traces")


def test_same_seed_gives_identical_data(tiny: Generated) -> None:
    store, spaces, _ = tiny
    again, again_spaces, _ = _generate()
    assert again.database != store.database
    for ws, ws_again in zip(spaces, again_spaces, strict=True):
        assert ground_truth(store, ws.uuid) == ground_truth(again, ws_again.uuid)
    assert truth_rows(store, spaces[0].uuid, "runs") == truth_rows(again, again_spaces[0].uuid, "runs")
    assert _fingerprints(store) == _fingerprints(again)


def test_another_seed_gives_other_data(tiny: Generated) -> None:
    store, spaces, _ = tiny
    other, other_spaces, _ = _generate(seed=SEED + 1)
    mine = ground_truth(store, spaces[0].uuid)
    theirs = ground_truth(other, other_spaces[0].uuid)
    assert all(mine[t]["checksum"] != theirs[t]["checksum"] for t in ORCHESTRATION)


# -- clock -------------------------------------------------------------------------------------------


def _open_runs(store: ClickHouseStore, ws: Workspace) -> dict[str, str]:
    rows = store.rows(
        f"SELECT toString(uuid) AS uuid, toString(created_at) AS created FROM {store.table('runs')} FINAL "
        f"WHERE {_ws(ws)} AND status IN ('pending', 'running')"
    )
    return {r["uuid"]: r["created"] for r in rows}


def test_advance_moves_time_and_keeps_the_data_consistent() -> None:
    store, spaces, _ = _generate()
    first = spaces[0]
    before = {ws.uuid: ground_truth(store, ws.uuid) for ws in spaces}
    open_before = _open_runs(store, first)
    known = {r["uuid"] for r in truth_rows(store, first.uuid, "runs")}

    report = advance(store, spaces, 3600, seed=SEED)

    new_now = NOW + timedelta(hours=1)
    assert current_now(store) == new_now
    assert report.old_now == "2026-07-22T00:20:41.999Z" and report.new_now == "2026-07-22T01:20:41.999Z"
    for ws in spaces:
        problems = consistency_problems(store, ws.uuid)
        assert problems == dict.fromkeys(problems, 0), ws.index
    after = ground_truth(store, first.uuid)
    for table in ORCHESTRATION:
        assert after[table]["count"] > before[first.uuid][table]["count"], table
    total_new = {
        t: sum(ground_truth(store, ws.uuid)[t]["count"] - before[ws.uuid][t]["count"] for ws in spaces)
        for t in ORCHESTRATION
    }
    assert {t: report.new_rows[t] for t in ORCHESTRATION} == total_new
    assert report.changed_rows["runs"] > 0 and report.changed_rows["spans"] > 0

    # Runs open at the old now finished, except the ones stuck for days.
    open_after = _open_runs(store, first)
    still_open = {u: c for u, c in open_before.items() if u in open_after}
    assert still_open and all(c < "2026-07-14" for c in still_open.values())
    assert len(still_open) == SCALES["tiny"].stuck_runs

    runs = truth_rows(store, first.uuid, "runs")
    arrived = [r for r in runs if r["uuid"] not in known]
    assert len(arrived) >= 24  # a few dozen per hour even at the tiny scale
    created = {
        str(r["uuid"]): str(r["created"])
        for r in store.rows(
            f"SELECT toString(uuid) AS uuid, toString(created_at) AS created FROM {store.table('runs')}"
        )
    }
    late = [r for r in arrived if created[r["uuid"]] <= "2026-07-22 00:20:41.999"]
    assert late and all(created[r["uuid"]] >= "2026-07-22 00:18:41.999" for r in late)
    assert all(r["updated_at"] > "2026-07-22T00:20:41.999Z" for r in arrived)
    deleted = [r for r in runs if r["deleted_at"] is not None and r["deleted_at"] > "2026-07-22T00:20:41.999Z"]
    assert deleted and all(r["updated_at"] == r["deleted_at"] for r in deleted)

    # A short second step: little happens, nothing breaks, time moves on.
    advance(store, spaces, 45, seed=SEED)
    assert current_now(store) == new_now + timedelta(seconds=45)
    problems = consistency_problems(store, first.uuid)
    assert problems == dict.fromkeys(problems, 0)


def test_advance_is_deterministic() -> None:
    stores = [_generate(), _generate()]
    for store, spaces, _ in stores:
        advance(store, spaces, 1800, seed=SEED)
        advance(store, spaces, 600, seed=SEED)
    (one, spaces_one, _), (two, spaces_two, _) = stores
    for ws_one, ws_two in zip(spaces_one, spaces_two, strict=True):
        assert ground_truth(one, ws_one.uuid) == ground_truth(two, ws_two.uuid)
    assert _fingerprints(one) == _fingerprints(two)


def test_a_late_first_run_moves_the_record_instead_of_duplicating_it() -> None:
    """``created_at`` of a record is part of its replacing key: moving it must not leave two rows."""
    store, spaces, _ = _generate(workspaces=1)
    ws = spaces[0]
    db = store.database
    target = store.rows(
        f"SELECT toString(workflow_uuid) AS wf, id, toString(run_uuid) AS run, "
        f"toUnixTimestamp64Milli(created_at) AS created FROM {db}.records FINAL WHERE {_ws(ws)} "
        "AND status = 'success' ORDER BY created_at, id LIMIT 1"
    )[0]
    earlier = int(target["created"]) - 60_000
    late_uuid = "11111111-1111-4111-8111-111111111111"
    for name in ("runs", "records"):
        store.execute(f"CREATE TABLE {db}.gen_stage_{name} AS {db}.{name} ENGINE = Memory")
    store.execute(
        f"INSERT INTO {db}.gen_stage_runs SELECT * REPLACE (toUUID('{late_uuid}') AS uuid, "
        f"fromUnixTimestamp64Milli(toInt64({earlier}), 'UTC') AS created_at) "
        f"FROM (SELECT * FROM {db}.runs WHERE uuid = toUUID('{target['run']}'))"
    )
    store.execute(f"INSERT INTO {db}.runs SELECT * FROM {db}.gen_stage_runs")
    report = AdvanceReport(old_now="", new_now="")
    clock._advance_records(store, report, _ws(ws))
    rows = store.rows(
        f"SELECT toString(run_uuid) AS run, toUnixTimestamp64Milli(created_at) AS created FROM {db}.records FINAL "
        f"WHERE workflow_uuid = toUUID('{target['wf']}') AND id = '{target['id']}'"
    )
    assert rows == [{"run": target["run"], "created": earlier}]
    assert report.changed_rows["records"] == 1 and report.new_rows["records"] == 0


def test_advance_needs_generated_data_and_positive_seconds(tiny: Generated) -> None:
    store, spaces, _ = tiny
    with pytest.raises(ValueError):
        advance(store, spaces, 0, seed=SEED)
    with pytest.raises(LookupError):
        advance(ClickHouseStore(), spaces, 60, seed=SEED)


# -- bigger scales -----------------------------------------------------------------------------------


def test_small_scale_sizes_and_consistency() -> None:
    store, spaces, report = _generate(scale="small", workspaces=1)
    ws = spaces[0]
    truth = ground_truth(store, ws.uuid)
    assert 4_000 <= truth["runs"]["count"] <= 6_500
    assert 18_000 <= truth["spans"]["count"] <= 32_000
    problems = consistency_problems(store, ws.uuid)
    assert problems == dict.fromkeys(problems, 0)
    assert report.total_seconds < 30


@pytest.mark.slow
def test_medium_scale_hits_the_caps() -> None:
    store, spaces, _ = _generate(scale="medium", workspaces=1)
    ws = spaces[0]
    truth = ground_truth(store, ws.uuid)
    assert 100_000 <= truth["runs"]["count"] <= 200_000
    assert 500_000 <= truth["spans"]["count"] <= 1_000_000
    busiest_second = _scalar(
        store,
        f"SELECT max(n) FROM (SELECT count() AS n FROM {store.table('runs')} WHERE {_ws(ws)} "
        "GROUP BY toStartOfSecond(created_at))",
    )
    assert busiest_second > 10_000
    crowded = _scalar(
        store,
        f"SELECT count() FROM (SELECT count() AS n FROM {store.table('spans')} WHERE {_ws(ws)} "
        "GROUP BY toStartOfSecond(execution_started_at) HAVING n > 10000)",
    )
    assert crowded >= 3
