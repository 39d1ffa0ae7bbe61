"""``run_metrics_daily`` synced from the emulator into DuckDB: the days add up to the whole history.

Truth is the emulator's own ``runs/metrics`` without dates (whole history), asked per workflow and
per release: summed over the days, the loaded rows must give exactly those counters, after the
backfill, after the clock moved (runs finished, new runs, soft-deletes behind the frontier), and
after every run of a past day was deleted.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from cargo_elt.source.client import CargoClient
from cargo_elt.source.metrics import COUNTERS, snake
from tests.conftest import FIXED_NOW
from tests.e2e.support import Sandbox

TABLE = "run_metrics_daily"
COLUMNS = [snake(c) for c in COUNTERS]
Totals = dict[tuple[str, str | None, str], tuple[float, ...]]


@pytest.fixture(scope="module")
def emulator_now() -> Iterator[Any]:
    """An emulator this module advances and edits (clock fixed at FIXED_NOW: the same data every run)."""
    from cargo_elt.emulator.server import EmulatorOptions, running_emulator

    options = EmulatorOptions(port=0, seed=11, scale="tiny", workspaces=1, admin=True, now=FIXED_NOW)
    with running_emulator(options) as running:
        yield running


@pytest.fixture
def client(emulator_now: Any) -> Iterator[CargoClient]:
    with CargoClient(emulator_now.state.workspaces[0].token, base_url=emulator_now.base_url) as c:
        yield c


def sync(box: Sandbox, **args: Any) -> Any:
    return box.sync(tables=[TABLE], run_metrics_per_release=True, **args)[TABLE]


def nonzero(totals: Totals) -> Totals:
    return {key: values for key, values in totals.items() if any(values)}


def whole_history(client: CargoClient) -> Totals:
    """``runs/metrics`` without dates, per workflow and per release that has runs (the truth)."""
    scopes = client.query(
        "SELECT DISTINCT toString(workflow_uuid) AS w, toString(release_uuid) AS r FROM runs ORDER BY w, r"
    )
    totals: Totals = {}
    for workflow in sorted({str(s["w"]) for s in scopes}):
        for release in [None, *sorted(str(s["r"]) for s in scopes if s["w"] == workflow and s["r"])]:
            payload: dict[str, Any] = {"workflowUuid": workflow}
            if release is not None:
                payload["releaseUuid"] = release
            for metric in client.call("POST", "orchestration/runs/metrics", payload)["runMetrics"]:
                totals[(workflow, release, metric["nodeUuid"])] = tuple(float(metric[c]) for c in COUNTERS)
    return nonzero(totals)


def summed_days(box: Sandbox) -> Totals:
    sums = ", ".join(f"sum({c})" for c in COLUMNS)
    with box.db() as con:
        rows = con.execute(
            f"SELECT workflow_uuid, release_uuid, node_uuid, {sums} FROM cargo.{TABLE} GROUP BY ALL"
        ).fetchall()
    return nonzero({(r[0], r[1], r[2]): tuple(float(v or 0) for v in r[3:]) for r in rows})


def assert_days_add_up(box: Sandbox, client: CargoClient) -> None:
    truth = whole_history(client)
    loaded = summed_days(box)
    assert truth, "the emulator has no runs: the comparison would prove nothing"
    assert any(key[1] is not None for key in truth), "no release scopes: run_metrics_per_release untested"
    missing = truth.keys() - loaded.keys()
    extra = loaded.keys() - truth.keys()
    differ = [key for key in truth.keys() & loaded.keys() if truth[key] != loaded[key]]
    assert not missing and not extra and not differ, (
        f"{len(missing)} missing, {len(extra)} extra, {len(differ)} differ, e.g. "
        f"{next(iter(differ), None)}: {truth.get(next(iter(differ), ('', None, '')))} vs "
        f"{loaded.get(next(iter(differ), ('', None, '')))}"
    )


def test_daily_rows_add_up_to_the_whole_history_through_advances(
    emulator_now: Any, client: CargoClient, tmp_path: Path
) -> None:
    box = Sandbox(tmp_path, emulator_now)
    first = sync(box)
    assert_days_add_up(box, client)
    with box.db() as con:
        keys, duplicates, days = con.execute(
            f"SELECT count(DISTINCT (_scope_key, node_uuid)), count(*) - count(DISTINCT (_scope_key, node_uuid)), "
            f"count(DISTINCT day) FROM cargo.{TABLE}"
        ).fetchall()[0]
    assert keys > 0 and duplicates == 0 and days > 20  # a row per scope, node and day; weeks of days

    box.admin("POST", "/_emulator/advance", json={"seconds": 3600})  # runs finish, arrive, get deleted
    second = sync(box)
    assert 0 < second.data_queries < first.data_queries  # only open days and days whose runs changed
    assert_days_add_up(box, client)


def test_a_past_day_whose_runs_were_all_deleted_loses_its_rows(
    emulator_now: Any, client: CargoClient, tmp_path: Path
) -> None:
    box = Sandbox(tmp_path, emulator_now)
    sync(box)
    from cargo_elt.emulator.generator import current_now

    store = emulator_now.state.store
    # The past scope-day with the fewest runs: soft-delete all of them, as Cargo users do weeks later.
    victim = client.query(
        "SELECT toString(workflow_uuid) AS w, toString(toDate(created_at, 'UTC')) AS d, count() AS n FROM runs "
        "WHERE deleted_at IS NULL AND finished_at IS NOT NULL AND created_at < now() - INTERVAL 3 DAY "
        "GROUP BY w, d ORDER BY n, w, d LIMIT 1"
    )[0]
    virtual_now = current_now(store).strftime("%Y-%m-%d %H:%M:%S")
    moment = f"toDateTime64('{virtual_now}', 3, 'UTC')"
    store.execute(
        f"INSERT INTO {store.table('runs')} SELECT * REPLACE ({moment} AS updated_at, toNullable({moment}) AS "
        f"deleted_at, toUInt64(toUnixTimestamp64Milli({moment})) AS _version) FROM {store.table('runs')} FINAL "
        f"WHERE workspace_uuid = toUUID('{emulator_now.state.workspaces[0].uuid}') "
        f"AND workflow_uuid = toUUID('{victim['w']}') AND toDate(created_at, 'UTC') = toDate('{victim['d']}')"
    )
    scope = f"{victim['w']}/*/{victim['d']}"
    with box.db() as con:
        before = con.execute(f"SELECT count(*) FROM cargo.{TABLE} WHERE _scope_key = ?", [scope]).fetchone()
    assert before is not None and before[0] > 0

    sync(box)
    with box.db() as con:
        after = con.execute(
            f"SELECT count(*) FROM cargo.{TABLE} WHERE workflow_uuid = ? AND day = ?",
            [victim["w"], date.fromisoformat(victim["d"])],
        ).fetchone()
    assert after == (0,), "the rows of a day whose runs are all deleted must go (the tombstone's merge)"
    assert_days_add_up(box, client)


def test_a_since_until_chunk_reads_its_days_and_leaves_the_state_alone(
    emulator_now: Any, client: CargoClient, tmp_path: Path
) -> None:
    full = Sandbox(tmp_path, emulator_now, name="full")
    sync(full)
    chunk = Sandbox(tmp_path, emulator_now, name="chunk")
    today = FIXED_NOW.date()  # the emulator's (Cargo's) day, not this machine's
    since, until = today - timedelta(days=9), today - timedelta(days=6)
    sync(chunk, since=since.isoformat(), until=until.isoformat())
    query = f"SELECT _scope_key, node_uuid, total_executions_count FROM cargo.{TABLE}"
    with full.db() as con:
        expected = sorted(con.execute(f"{query} WHERE day >= ? AND day < ?", [since, until]).fetchall())
    with chunk.db() as con:
        loaded = sorted(con.execute(query).fetchall())
    assert expected and loaded == expected

    def frontier(box: Sandbox) -> Any:
        state = box.pipeline().state.get("sources", {}).get("cargo", {}).get("resources", {})
        return state.get(TABLE, {}).get("frontier")

    assert frontier(full) is not None and frontier(chunk) is None
