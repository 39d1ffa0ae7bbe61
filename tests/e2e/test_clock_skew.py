"""The whole source against a server whose clock is far from the client's: every table stays exact.

Cargo's clock decides what exists (``created_at``, ``finished_at``, ``updated_at`` are its stamps), so
a sync takes every bound from it (``sources/cargo/bounds.py``). Here the emulator's clock is fixed
(``FIXED_NOW``, deterministic data) and the client's clock is moved instead, a day behind the server
and a month ahead of it, with ``time_machine`` (it changes what ``datetime.now()``/``time.time()``
answer in this process). That is the one mocked part, and why: this machine's clock cannot be set
wrong for a test; everything else is real (emulator over HTTP, DuckDB). The same scenario with the
client's clock deciding showed the issue's bugs: rows newer than the client's now not loaded, spans
short after an advance, and a batch that gains a failed run after it was loaded never reloaded.

Each case: a backfill of every table (facts, exports, catalogue), an advance of the emulator's clock
by an hour (new runs, finished runs, soft-deletes, one loaded batch gaining a failed run), an
incremental sync; after each sync the facts equal the emulator's ground truth key by key, and the
exports and catalogue equal what the emulator's SQL and endpoints answer.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import time_machine

from cargo_elt.source import EXPORT_TABLES, FACT_TABLES
from cargo_elt.source.catalogue import DIMENSION_NAMES
from cargo_elt.source.client import CargoClient
from tests.conftest import FIXED_NOW
from tests.e2e.support import Sandbox

ALL_TABLES = [*FACT_TABLES, *EXPORT_TABLES, *DIMENSION_NAMES]
ADVANCE = timedelta(hours=1)

CLIENT_CLOCKS = {
    "server a day ahead": FIXED_NOW - timedelta(days=1),
    "server a month behind": FIXED_NOW + timedelta(days=30),
}
"""Where the client's clock is set, for a server whose clock reads ``FIXED_NOW``."""

LISTS = {
    "workflows": ("orchestration/workflows/list", "workflows"),
    "plays": ("orchestration/plays/list", "plays"),
    "tools": ("orchestration/tools/list", "tools"),
    "agents": ("ai/agents/list", "agents"),
    "connectors": ("connection/connectors/list", "connectors"),
    "datasets": ("storage/datasets/list", "datasets"),
    "models": ("storage/models/list", "models"),
    "segments": ("segmentation/segments/list", "segments"),
}


@pytest.fixture()
def emulator() -> Iterator[Any]:
    """Seed 13: its advance makes a batch that already has a failed run gain a second one."""
    from cargo_elt.emulator.server import EmulatorOptions, running_emulator

    options = EmulatorOptions(port=0, seed=13, scale="tiny", workspaces=1, admin=True, now=FIXED_NOW)
    with running_emulator(options) as running:
        yield running


def _ts(value: datetime) -> str:
    return f"toDateTime64('{value:%Y-%m-%d %H:%M:%S}.{value.microsecond // 1000:03d}', 3, 'UTC')"


def _rows(box: Sandbox, sql: str) -> list[tuple[Any, ...]]:
    with box.db() as con:
        return [tuple(row) for row in con.execute(sql).fetchall()]


def _logged_skews(caplog: pytest.LogCaptureFixture) -> list[float]:
    found = (re.search(r"skew ([+-][0-9.]+) s", r.getMessage()) for r in caplog.records)
    return [float(m.group(1)) for m in found if m]


def assert_exports_and_catalogue_exact(box: Sandbox, client: CargoClient, syncs: list[datetime]) -> None:
    """Exports and catalogue as the emulator answers them, after syncs at Cargo's times ``syncs``.

    A row is exported when a sync reads it, and a soft-deleted run leaves the exports but not the
    warehouse (merge never deletes): so each expectation is "as of the sync that exported it".
    """
    first, last = syncs[0], syncs[-1]

    def exported_at(finished: datetime) -> datetime:
        return next(s for s in syncs if finished < s)

    # batch_failures: every failed run of a batch, once, with its failing node
    failed = {
        (r["b"], r["u"])
        for r in client.query(
            "SELECT toString(batch_uuid) AS b, toString(uuid) AS u FROM runs WHERE status = 'error' "
            f"AND batch_uuid IS NOT NULL AND (deleted_at IS NULL OR deleted_at >= {_ts(first)})"
        )
    }
    loaded_failures = _rows(box, "SELECT batch_uuid, run_uuid, failed_node_slug FROM cargo.batch_failures")
    assert failed, "no failed run in a batch: the comparison proves nothing"
    assert {(str(b), str(u)) for b, u, _ in loaded_failures} == failed
    assert all(slug for _, _, slug in loaded_failures)

    # batch_outputs: one row per (visible) run of each finished batch, exported by the first sync after it finished
    runs = client.query(
        "SELECT toString(batch_uuid) AS b, toString(deleted_at) AS d FROM runs WHERE batch_uuid IS NOT NULL"
    )
    finished = {
        r["u"]: datetime.fromisoformat(r["f"] + "+00:00")
        for r in client.query(
            "SELECT toString(uuid) AS u, toString(finished_at) AS f FROM batches WHERE finished_at IS NOT NULL"
        )
    }
    expected_rows: dict[str, int] = {}
    for run in runs:
        if run["b"] not in finished:
            continue
        when = exported_at(finished[run["b"]])
        if run["d"] is None or datetime.fromisoformat(run["d"] + "+00:00") >= when:
            expected_rows[run["b"]] = expected_rows.get(run["b"], 0) + 1
    loaded_rows = {str(b): n for b, n in _rows(box, "SELECT batch_uuid, count(*) FROM cargo.batch_outputs GROUP BY 1")}
    assert loaded_rows == expected_rows

    # run_outputs: every run of each deployed workflow, with its current status
    deployed = [
        w["uuid"] for w in client.call("GET", "orchestration/workflows/list")["workflows"] if w["deployedRelease"]
    ]
    expected_runs = {
        r["u"]: r["s"]
        for r in client.query(
            "SELECT toString(uuid) AS u, toString(status) AS s FROM runs WHERE workflow_uuid IN ("
            + ", ".join(f"'{w}'" for w in deployed)
            + f") AND created_at < {_ts(last)} AND (deleted_at IS NULL OR deleted_at >= {_ts(first)})"
        )
    }
    loaded_runs = {str(u): s for u, s in _rows(box, "SELECT run_uuid, status FROM cargo.run_outputs")}
    assert loaded_runs == expected_runs

    # run_metrics: one snapshot per sync, stamped with Cargo's clock; the last one equals the endpoint now
    stamps = _rows(box, "SELECT DISTINCT snapshot_at FROM cargo.run_metrics ORDER BY 1")
    assert [s[0] for s in stamps] == syncs, "snapshot_at is Cargo's clock at each sync"
    for workflow in client.call("GET", "orchestration/workflows/list")["workflows"]:
        metrics = client.call("POST", "orchestration/runs/metrics", {"workflowUuid": workflow["uuid"]})["runMetrics"]
        latest = _rows(
            box,
            "SELECT node_uuid, total_executions_count, error_executions_count FROM cargo.run_metrics "
            f"WHERE workflow_uuid = '{workflow['uuid']}' AND snapshot_at = '{last.isoformat()}'",
        )
        assert sorted(latest) == sorted(
            (m["nodeUuid"], m["totalExecutionsCount"], m["errorExecutionsCount"]) for m in metrics
        ), workflow["uuid"]

    # the catalogue: each list, whole
    for table, (path, wrapper) in LISTS.items():
        listed = sorted(e["uuid"] for e in client.call("GET", path)[wrapper])
        assert listed, table
        assert (
            sorted(str(u[0]) for u in _rows(box, f"SELECT uuid FROM cargo.{table} WHERE removed_at IS NULL")) == listed
        )
    releases = client.call("GET", "orchestration/releases/list", params={"limit": 100})["releases"]
    nodes = sorted((r["uuid"], n["uuid"]) for r in releases for n in r["nodes"])
    assert (
        sorted((str(a), str(b)) for a, b in _rows(box, "SELECT release_uuid, node_uuid FROM cargo.release_nodes"))
        == nodes
    )


@pytest.mark.parametrize("client_clock", list(CLIENT_CLOCKS.values()), ids=list(CLIENT_CLOCKS))
def test_every_table_is_exact_whatever_the_clients_clock(
    client_clock: datetime, emulator: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="cargo_elt.source.server_clock")
    box = Sandbox(tmp_path, emulator, name="skewed")
    with (
        time_machine.travel(client_clock, tick=True),
        CargoClient(box.token, base_url=emulator.base_url) as client,
    ):
        assert abs(datetime.now(UTC) - client_clock) < timedelta(minutes=5), "the client's clock did not move"
        box.sync(tables=ALL_TABLES)
        box.assert_equals_truth()
        assert_exports_and_catalogue_exact(box, client, [FIXED_NOW])
        failed_before = {str(b): n for b, n in _rows(box, "SELECT uuid, failed_runs_count FROM cargo.batches")}

        box.admin("POST", "/_emulator/advance", json={"seconds": int(ADVANCE.total_seconds())})
        grown = [
            r["u"]
            for r in client.query("SELECT toString(uuid) AS u, failed_runs_count AS n FROM batches")
            if failed_before.get(r["u"], 0) >= 1 and int(r["n"]) > failed_before[r["u"]]
        ]
        assert grown, "no loaded batch gained a failed run: the case the issue reports is not exercised"

        box.sync(tables=ALL_TABLES)
        box.assert_equals_truth()
        assert_exports_and_catalogue_exact(box, client, [FIXED_NOW, FIXED_NOW + ADVANCE])
        for batch in grown:
            count = _rows(box, f"SELECT count(*) FROM cargo.batch_failures WHERE batch_uuid = '{batch}'")[0][0]
            assert count == int(
                client.query(f"SELECT failed_runs_count AS n FROM batches WHERE uuid = '{batch}'")[0]["n"]
            )

    skews = _logged_skews(caplog)
    expected = (FIXED_NOW - client_clock).total_seconds()
    assert len(skews) == 2, "Cargo's clock is read once per sync"
    assert all(abs(s - expected - hours * 3600) < 300 for s, hours in zip(skews, (0, 1), strict=True)), skews
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "skew" in r.getMessage()]
    assert len(warnings) == 2, "a skew past a minute is a WARNING"


def test_default_settle_leaves_the_last_two_minutes_of_cargos_clock_for_the_next_sync(
    emulator: Any, tmp_path: Path
) -> None:
    """With the default ``settle_seconds`` (120) a sync reads up to Cargo's now minus two minutes, on
    Cargo's clock: exactly the rows created before that are loaded, the rest by the next sync."""
    box = Sandbox(tmp_path, emulator, name="settle")
    with CargoClient(box.token, base_url=emulator.base_url) as client:

        def before_settle() -> set[str]:  # now() is the emulator's clock in its SQL too
            rows = client.query("SELECT toString(uuid) AS u FROM runs WHERE created_at < now() - INTERVAL 120 SECOND")
            return {r["u"] for r in rows}

        box.sync(tables=["runs"], settle_seconds=120)
        loaded = set(box.loaded_rows("runs"))
        expected = before_settle()
        assert {k[0] for k in loaded} == expected
        assert len(box.truth_rows("runs")) > len(expected), "nothing in the last two minutes: proves nothing"

        box.admin("POST", "/_emulator/advance", json={"seconds": 600})
        box.sync(tables=["runs"], settle_seconds=120)
        assert {k[0] for k in box.loaded_rows("runs")} == before_settle()
