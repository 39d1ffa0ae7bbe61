"""Every value that reaches SQL is validated or quoted: hostile strings, over real HTTP to the emulator.

Quoting is proven by round trips (ClickHouse must give back exactly the string it was sent), validation
by refusals (a UUID or integer slot takes nothing else, look-alike characters included), and the
destination side by a dataset name that tries to end its statement.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pytest

from cargo_elt.source.client import CargoClient, RetryPolicy
from cargo_elt.source.errors import UnsafeLiteralError
from cargo_elt.source.planner import KeysetCursor, QueryWindow, cursor_after, page_query
from cargo_elt.source.specs import TABLE_SPECS
from cargo_elt.source.sqltext import key_literal, sql_int, sql_string, sql_timestamp, sql_uuid

HOSTILE = [
    "' OR 1=1 --",
    "'; DROP TABLE runs; --",
    "\\' OR 1=1 --",
    "' UNION ALL SELECT uuid FROM runs --",
    "x'); DROP TABLE runs; --",
    "/* */' OR '1'='1",
    "\x00' OR 1=1 --",
    "line\nbreak' --",
    "tab\t\r\x1b[31m",
    "\uff07 OR 1=1 --",  # full-width apostrophe
    "\u2019 OR 1=1 --",  # right single quotation mark
    "\u02bc OR 1=1 --",  # modifier letter apostrophe
    "\u202e' RO 1=1 --",  # right-to-left override
    "caf\u00e9 \u200d\U0001f600 \ud7ff",
    "`runs`; SELECT 1",
    "$$ OR 1=1 $$",
    "\\\\'",
]
GOOD_UUID = "0b0e3c1c-6a4f-4f6e-9a1a-3c2d1e0f9a8b"
LOOK_ALIKE_UUIDS = [
    GOOD_UUID + "' OR 1=1 --",
    GOOD_UUID + "\n",
    " " + GOOD_UUID,
    GOOD_UUID.replace("a", "\u0430"),  # Cyrillic a
    GOOD_UUID.replace("0", "\uff10"),  # full-width zero
    GOOD_UUID.replace("1", "\u0661"),  # Arabic-Indic one (a \d digit to re.UNICODE)
    GOOD_UUID.replace("-", "\u2010"),  # hyphen
    "'; DROP TABLE runs; --",
]


@pytest.fixture(scope="module")
def client(emulator: Any) -> Iterator[CargoClient]:
    token = emulator.state.workspaces[0].token
    with CargoClient(token, base_url=emulator.base_url, retry=RetryPolicy(max_attempts=1)) as cargo:
        yield cargo


@pytest.mark.parametrize("hostile", HOSTILE, ids=range(len(HOSTILE)))
def test_a_quoted_string_comes_back_exactly(client: CargoClient, hostile: str) -> None:
    rows = client.query(f"SELECT {sql_string(hostile)} AS v, count() AS n FROM runs")
    assert rows[0]["v"] == hostile
    assert rows[0]["n"] > 0, "the statement ran as one SELECT over runs"


def test_quoted_strings_used_as_keys_run_as_one_query(client: CargoClient) -> None:
    """A keyset cursor of ``records`` (a free-text ``id``) holding each hostile string: one valid statement."""
    spec = TABLE_SPECS["records"]
    window = QueryWindow(datetime(2020, 1, 1, tzinfo=UTC), datetime(2030, 1, 1, tzinfo=UTC))
    for hostile in HOSTILE:
        cursor = KeysetCursor(datetime(2020, 1, 1, tzinfo=UTC), (GOOD_UUID, hostile))
        sql = page_query(spec, window.resumed_at(cursor), None, 5)
        rows = client.query(sql)
        assert len(rows) == 5, f"the cursor {hostile!r} changed what the query reads"


@pytest.mark.parametrize("value", LOOK_ALIKE_UUIDS, ids=range(len(LOOK_ALIKE_UUIDS)))
def test_uuid_slots_take_only_uuids(value: str) -> None:
    with pytest.raises(UnsafeLiteralError):
        sql_uuid(value)
    with pytest.raises(UnsafeLiteralError):
        key_literal(TABLE_SPECS["runs"].column("uuid"), value)
    with pytest.raises(UnsafeLiteralError):  # a server answering a hostile key cannot steer the next query
        cursor_after(TABLE_SPECS["runs"], {"created_at": "2026-01-01 00:00:00.000", "uuid": value})


@pytest.mark.parametrize("value", ["1; DROP TABLE runs", "1 OR 1=1", "\u0661", " 1", True, 1.5, None])
def test_integer_slots_take_only_integers(value: object) -> None:
    with pytest.raises(UnsafeLiteralError):
        sql_int(value)  # type: ignore[arg-type]
    with pytest.raises(UnsafeLiteralError):
        key_literal(TABLE_SPECS["spans"].column("execution_index"), value)


def test_integer_keys_may_arrive_quoted_but_leave_as_numbers() -> None:
    """ClickHouse quotes 64-bit integers in JSON: ASCII digits are read as the number they spell."""
    assert key_literal(TABLE_SPECS["spans"].column("execution_index"), "12") == "12"


@pytest.mark.parametrize("value", ["2026-01-01' OR 1=1 --", "2026-01-01", datetime(2026, 1, 1), 0])
def test_timestamps_reach_sql_only_from_aware_datetimes(value: object) -> None:
    with pytest.raises(UnsafeLiteralError):
        sql_timestamp(value)  # type: ignore[arg-type]


def test_a_hostile_dataset_name_cannot_end_the_destination_statement(emulator: Any, tmp_path: Path) -> None:
    """``--dataset`` reaches the warehouse's DDL: dlt normalises it to an identifier; the sentinel survives."""
    from cargo_elt.pipelines.sync import SyncRequest, run_sync

    database = tmp_path / "hostile.duckdb"
    con = duckdb.connect(str(database))
    try:
        con.execute("CREATE SCHEMA cargo; CREATE TABLE cargo.sentinel AS SELECT 42 AS answer")
    finally:
        con.close()
    hostile = 'x"; DROP SCHEMA cargo CASCADE; --'
    request = SyncRequest(
        base_url=emulator.base_url,
        api_token=emulator.state.workspaces[0].token,
        dataset=hostile,
        tables=["runs"],
        progress="none",
        pipeline_name="hostile",
        pipelines_dir=str(tmp_path / "pipelines"),
        duckdb_path=str(database),
        extra_source_args={"start_date": "2026-01-01"},
    )
    summaries, _ = run_sync(request)
    assert [s.table for s in summaries] == ["runs"] and summaries[0].rows > 0
    con = duckdb.connect(str(database), read_only=True)
    try:
        assert con.execute("SELECT answer FROM cargo.sentinel").fetchall() == [(42,)]
        schemas = {r[0] for r in con.execute("SELECT schema_name FROM information_schema.schemata").fetchall()}
        created = sorted(s for s in schemas if s not in ("cargo", "main", "information_schema", "pg_catalog"))
        assert created and all(s.replace("_", "").isalnum() for s in created), schemas  # dataset (+ _staging)
        assert con.execute(f'SELECT count(*) FROM "{created[-1]}".runs').fetchone() == (summaries[0].rows,)
    finally:
        con.close()
