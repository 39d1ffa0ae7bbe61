"""Cargo's SQL examples for "the last day" answer the same on the emulator and on the synced warehouse.

Cargo's docs (REFERENCE.md 4.3) bound every question with ``created_at > now() - INTERVAL N DAY`` and
use ``countIf``, ``dateDiff``, ``toStartOfDay``, ``today()``/``yesterday()``. On the emulator those run
in ClickHouse with ``now()`` pinned to its virtual clock (``emulator/sqlclock.py``); the same questions,
in DuckDB's dialect, run on the warehouse a sync loaded, with Cargo's ``now`` (read through the
query endpoint) in place of ``now()``. Both must give the same rows, before and after the emulator's
clock is advanced: data and SQL time move together.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from cargo_elt.source import FACT_TABLES
from cargo_elt.source.client import CargoClient
from cargo_elt.source.server_clock import read_server_clock
from tests.conftest import FIXED_NOW
from tests.e2e.support import Sandbox

QUESTIONS: dict[str, tuple[str, str]] = {
    "runs by status, last day": (
        "SELECT toString(status) AS status, count() AS n FROM runs "
        "WHERE created_at > now() - INTERVAL 1 DAY GROUP BY status ORDER BY status",
        "SELECT status, count(*) AS n FROM cargo.runs WHERE created_at > $now - INTERVAL 1 DAY "
        "GROUP BY status ORDER BY status",
    ),
    "error rate per workflow, last day": (
        "SELECT toString(workflow_uuid) AS w, countIf(status = 'error') AS errors, count() AS runs FROM runs "
        "WHERE created_at > now() - INTERVAL 1 DAY AND deleted_at IS NULL GROUP BY w ORDER BY w",
        "SELECT workflow_uuid AS w, count(*) FILTER (WHERE status = 'error') AS errors, count(*) AS runs "
        "FROM cargo.runs WHERE created_at > $now - INTERVAL 1 DAY AND deleted_at IS NULL GROUP BY w ORDER BY w",
    ),
    "failing nodes, last day": (
        "SELECT node_slug, count() AS errors FROM spans WHERE execution_started_at > now() - INTERVAL 1 DAY "
        "AND execution_status = 'error' GROUP BY node_slug ORDER BY node_slug",
        "SELECT node_slug, count(*) AS errors FROM cargo.spans WHERE execution_started_at > $now - INTERVAL 1 DAY "
        "AND execution_status = 'error' GROUP BY node_slug ORDER BY node_slug",
    ),
    "runs and seconds per day since yesterday's start": (
        "SELECT toString(toDate(toStartOfDay(created_at))) AS day, count() AS n, "
        "sum(dateDiff('second', created_at, finished_at)) AS seconds FROM runs "
        "WHERE created_at >= toStartOfDay(now()) - INTERVAL 1 DAY AND finished_at IS NOT NULL "
        "GROUP BY day ORDER BY day",
        "SELECT CAST(CAST(date_trunc('day', created_at) AS DATE) AS VARCHAR) AS day, count(*) AS n, "
        "sum(date_diff('second', created_at, finished_at)) AS seconds FROM cargo.runs "
        "WHERE created_at >= date_trunc('day', $now) - INTERVAL 1 DAY AND finished_at IS NOT NULL "
        "GROUP BY day ORDER BY day",
    ),
    "yesterday's and today's records": (
        "SELECT countIf(toDate(created_at) = yesterday()) AS yesterday, countIf(toDate(created_at) = today()) "
        "AS today FROM records",
        "SELECT count(*) FILTER (WHERE CAST(created_at AS DATE) = CAST($now AS DATE) - 1) AS yesterday, "
        "count(*) FILTER (WHERE CAST(created_at AS DATE) = CAST($now AS DATE)) AS today FROM cargo.records",
    ),
    "batches finished in the last day": (
        "SELECT count() AS n, sum(runs_count) AS runs, sum(failed_runs_count) AS failed FROM batches "
        "WHERE finished_at > now() - INTERVAL 1 DAY",
        "SELECT count(*) AS n, coalesce(sum(runs_count), 0) AS runs, coalesce(sum(failed_runs_count), 0) AS failed "
        "FROM cargo.batches WHERE finished_at > $now - INTERVAL 1 DAY",
    ),
}


@pytest.fixture()
def emulator() -> Iterator[Any]:
    from cargo_elt.emulator.server import EmulatorOptions, running_emulator

    options = EmulatorOptions(port=0, seed=3, scale="tiny", workspaces=1, admin=True, now=FIXED_NOW)
    with running_emulator(options) as running:
        yield running


def _normalised(rows: list[Any]) -> list[tuple[Any, ...]]:
    """Rows as tuples of plain values (ClickHouse's JSON numbers and DuckDB's ints compare equal)."""
    return [tuple(int(v) if isinstance(v, float) and v.is_integer() else v for v in row) for row in rows]


def _answers_agree(box: Sandbox, client: CargoClient) -> datetime:
    cargo_now = read_server_clock(client).server_now
    with box.db() as con:
        con.execute("SET TimeZone = 'UTC'")
        for title, (clickhouse, duckdb_sql) in QUESTIONS.items():
            on_cargo = _normalised([tuple(r.values()) for r in client.query(clickhouse)])
            on_warehouse = _normalised(con.execute(duckdb_sql, {"now": cargo_now}).fetchall())
            assert on_cargo == on_warehouse, title
            assert any(any(v for v in row) for row in on_cargo), f"{title}: nothing in the last day, proves nothing"
    return cargo_now


def test_last_day_questions_answer_the_same_on_cargo_and_in_the_warehouse(emulator: Any, tmp_path: Path) -> None:
    box = Sandbox(tmp_path, emulator, name="last_day")
    with CargoClient(box.token, base_url=emulator.base_url) as client:
        box.sync(tables=list(FACT_TABLES))
        assert _answers_agree(box, client) == FIXED_NOW
        box.admin("POST", "/_emulator/advance", json={"seconds": 6 * 3600})
        box.sync(tables=list(FACT_TABLES))
        assert _answers_agree(box, client) == datetime(2026, 11, 1, 18, tzinfo=UTC)
