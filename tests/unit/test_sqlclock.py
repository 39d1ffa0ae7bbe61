"""Pinning the clock functions of a caller's SQL to the emulator's virtual clock (``emulator/sqlclock.py``)."""

from __future__ import annotations

import pytest

from cargo_elt.emulator.sqlclock import aliases, pin_clock, remaining_clock
from cargo_elt.emulator.sqlguard import parse_ast_dump

NOW_MS = 1_793_534_400_123
"""2026-11-01 12:00:00.123 UTC."""
S = NOW_MS // 1000


@pytest.mark.parametrize(
    ("canonical", "pinned"),
    [
        ("SELECT now()", f"SELECT toDateTime({S})"),
        ("SELECT NOW()", f"SELECT toDateTime({S})"),
        ("SELECT now('UTC')", f"SELECT toDateTime({S}, 'UTC')"),
        ("SELECT now64()", f"SELECT fromUnixTimestamp64Milli({NOW_MS})"),
        ("SELECT now64(3)", f"SELECT toDateTime64(fromUnixTimestamp64Milli({NOW_MS}), 3)"),
        ("SELECT now64(6, 'UTC')", f"SELECT toDateTime64(fromUnixTimestamp64Milli({NOW_MS}), 6, 'UTC')"),
        ("SELECT today(), yesterday()", f"SELECT toDate(toDateTime({S})), subtractDays(toDate(toDateTime({S})), 1)"),
        ("SELECT toStartOfDay(now())", f"SELECT toStartOfDay(toDateTime({S}))"),
        (
            "SELECT count() FROM runs WHERE created_at > (now() - toIntervalDay(1))",
            f"SELECT count() FROM runs WHERE created_at > (toDateTime({S}) - toIntervalDay(1))",
        ),
        (
            "SELECT CURRENT_TIMESTAMP, current_date, LOCALTIMESTAMP",
            f"SELECT toDateTime({S}), toDate(toDateTime({S})), toDateTime({S})",
        ),
        ("SELECT current_timestamp(), curdate()", f"SELECT toDateTime({S}), toDate(toDateTime({S}))"),
        ("SELECT UTC_timestamp(), UTCTimestamp()", f"SELECT toDateTime({S}, 'UTC'), toDateTime({S}, 'UTC')"),
        (
            "SELECT nowInBlock(), nowInBlock64(3)",
            f"SELECT toDateTime({S}), toDateTime64(fromUnixTimestamp64Milli({NOW_MS}), 3)",
        ),
        ("SELECT x -> now()", f"SELECT x -> toDateTime({S})"),
    ],
)
def test_clock_calls_become_constants(canonical: str, pinned: str) -> None:
    assert pin_clock(canonical, NOW_MS) == pinned


@pytest.mark.parametrize(
    "untouched",
    [
        "SELECT 'now()' AS x",
        "SELECT 'it\\'s now() and today()' AS x",
        "SELECT now FROM (SELECT 1 AS now)",  # a column named now
        "SELECT `now` FROM t",
        "SELECT t.now FROM t",
        "SELECT toDate(created_at) AS current_date FROM runs WHERE current_date > '2026-01-01'",  # alias shadows
        "SELECT YESTERDAY()",  # not a function (ClickHouse's yesterday is case-sensitive): left to fail
        "SELECT 1e3, 0x1F",
    ],
)
def test_everything_else_is_left_as_it_is(untouched: str) -> None:
    assert pin_clock(untouched, NOW_MS) == untouched


def test_a_clock_function_left_in_the_parse_tree_is_found() -> None:
    head = "SelectWithUnionQuery (children 1)\n ExpressionList (children 1)\n  SelectQuery (children 1)\n"
    call = head + "   ExpressionList (children 2)\n    Function now (alias t) (children 1)\n     ExpressionList\n"
    bare = head + "   ExpressionList (children 1)\n    Identifier CURRENT_DATE\n"
    pinned = head + "   ExpressionList (children 1)\n    Function toDateTime (children 1)\n     ExpressionList\n"
    assert remaining_clock(parse_ast_dump(call + "    Literal UInt64_1\n"), set()) == "now"
    assert remaining_clock(parse_ast_dump(bare), set()) == "CURRENT_DATE"
    assert remaining_clock(parse_ast_dump(bare), {"current_date"}) is None  # an alias of the statement
    assert remaining_clock(parse_ast_dump(pinned), set()) is None


def test_aliases() -> None:
    assert aliases("SELECT 1 AS a, b AS `Current_Date` FROM t AS x") == {"a", "current_date", "x"}
