"""Callers' SQL reads the emulator's virtual clock: ``now()``, ``today()`` ... are pinned to it.

ClickHouse evaluates ``now()`` on the machine's clock, but the emulator's data lives on a virtual
one (``emulator/clock.py``): generated up to the virtual ``now``, moved by ``/_emulator/advance``.
Cargo's own advice, ``WHERE created_at > now() - INTERVAL 1 DAY``, must see exactly the last day of
that data, and a client reading Cargo's clock (``SELECT now64(3)``) must get the virtual one. So
every call of a clock function in a caller's statement is replaced, before it runs, by the same
function of a constant: ``now('UTC')`` by ``toDateTime(<seconds>, 'UTC')``, ``now64(3)`` by
``toDateTime64(fromUnixTimestamp64Milli(<ms>), 3)``, ``today()`` by ``toDate(toDateTime(<seconds>))``;
types, time zones and precisions are kept, and so is ClickHouse's constant folding (a predicate on
the result still uses the primary index).

The rewrite works on ClickHouse's canonical text of the statement (``formatQuerySingleLine``: no
comments, strings single-quoted), skipping string literals and quoted identifiers; the guard then
parses the rewritten statement (``EXPLAIN AST``) and refuses it if a clock function is still there
(``remaining_clock``), so a form this rewrite does not know can never read the machine's clock.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from .sqlguard import AstNode

Builder = Callable[[int, str], str]
"""(virtual now in epoch milliseconds, the call's argument text) -> the replacement expression."""


def _seconds(ms: int) -> int:
    return ms // 1000


def _date_time(ms: int, args: str) -> str:
    return f"toDateTime({_seconds(ms)}{', ' + args if args else ''})"


def _date_time64(ms: int, args: str) -> str:
    exact = f"fromUnixTimestamp64Milli({ms})"
    return f"toDateTime64({exact}, {args})" if args else exact


def _today(ms: int, args: str) -> str:
    return f"toDate(toDateTime({_seconds(ms)}))"


def _yesterday(ms: int, args: str) -> str:
    return f"subtractDays({_today(ms, args)}, 1)"


def _utc(ms: int, args: str) -> str:
    return f"toDateTime({_seconds(ms)}, 'UTC')"


def _time_of_day(ms: int, args: str) -> str:
    return f"toTime({_date_time(ms, args)})"


CASE_INSENSITIVE: dict[str, Builder] = {
    "now": _date_time,
    "current_timestamp": _date_time,
    "localtimestamp": _date_time,
    "now64": _date_time64,
    "today": _today,
    "current_date": _today,
    "curdate": _today,
    "utctimestamp": _utc,
    "utc_timestamp": _utc,
    "localtime": _time_of_day,
}
"""ClickHouse's clock functions registered case-insensitively (``system.functions``), and their aliases."""

CASE_SENSITIVE: dict[str, Builder] = {
    "nowInBlock": _date_time,
    "nowInBlock64": _date_time64,
    "yesterday": _yesterday,
}

BARE_IDENTIFIERS: dict[str, Builder] = {
    "current_timestamp": _date_time,
    "localtimestamp": _date_time,
    "current_date": _today,
}
"""SQL-standard names ClickHouse evaluates without parentheses (case-insensitive), unless an alias
of the statement has the same name."""


def clock_builder(name: str) -> Builder | None:
    """The replacement of a call of ``name``, or None when it is not a clock function."""
    return CASE_SENSITIVE.get(name) or CASE_INSENSITIVE.get(name.lower())


_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*")
_NUMBER = re.compile(r"[0-9][0-9A-Za-z_.]*")


def _quoted_end(sql: str, start: int) -> int:
    """Index just past the quoted token starting at ``start`` (backslash escapes and doubled quotes)."""
    quote = sql[start]
    i = start + 1
    while i < len(sql):
        if sql[i] == "\\":
            i += 2
            continue
        if sql[i] == quote:
            if i + 1 < len(sql) and sql[i + 1] == quote:
                i += 2
                continue
            return i + 1
        i += 1
    return len(sql)


def _closing_paren(sql: str, opening: int) -> int:
    """Index of the parenthesis closing the one at ``opening`` (strings skipped), or -1."""
    depth = 0
    i = opening
    while i < len(sql):
        char = sql[i]
        if char in "'`\"":
            i = _quoted_end(sql, i)
            continue
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1


def aliases(sql: str) -> set[str]:
    """Lower-cased names the statement gives with ``AS`` (they shadow the bare clock identifiers)."""
    return {m.group(1).lower() for m in re.finditer(r"\bAS\s+`?([A-Za-z_][A-Za-z0-9_]*)`?", sql, re.IGNORECASE)}


def pin_clock(sql: str, now_ms: int) -> str:
    """``sql`` (canonical text) with every clock function call replaced by its value at ``now_ms``."""
    shadowed = aliases(sql)
    out: list[str] = []
    i = 0
    while i < len(sql):
        char = sql[i]
        if char == "'":
            end = _quoted_end(sql, i)
            out.append(sql[i:end])
            i = end
            continue
        word = _WORD.match(sql, i) if char in '`"' or char.isalpha() or char == "_" else None
        if char in '`"':
            end = _quoted_end(sql, i)
            name, token = sql[i + 1 : end - 1], sql[i:end]
        elif word is not None:
            end = word.end()
            name = token = word.group(0)
        elif char.isdigit():
            number = _NUMBER.match(sql, i)
            end = number.end() if number else i + 1
            out.append(sql[i:end])
            i = end
            continue
        else:
            out.append(char)
            i += 1
            continue
        before = i - 1
        while before >= 0 and sql[before] == " ":
            before -= 1
        qualified = before >= 0 and sql[before] == "."
        after = end
        while after < len(sql) and sql[after] == " ":
            after += 1
        builder = None if qualified else clock_builder(name)
        if builder is not None and after < len(sql) and sql[after] == "(":
            close = _closing_paren(sql, after)
            if close > 0:
                out.append(builder(now_ms, sql[after + 1 : close].strip()))
                i = close + 1
                continue
        bare = BARE_IDENTIFIERS.get(name.lower())
        if bare is not None and not qualified and name.lower() not in shadowed and sql[after : after + 1] != "(":
            out.append(bare(now_ms, ""))
            i = end
            continue
        out.append(token)
        i = end
    return "".join(out)


def remaining_clock(tree: AstNode, statement_aliases: set[str]) -> str | None:
    """The name of a clock function (or bare clock identifier) still in a parsed statement, if any."""
    stack = [tree]
    while stack:
        node = stack.pop()
        stack.extend(node.children)
        if node.kind == "Function" and clock_builder(node.arg.split(" ", 1)[0]) is not None:
            return node.arg.split(" ", 1)[0]
        if (
            node.kind == "Identifier"
            and node.arg.lower() in BARE_IDENTIFIERS
            and node.arg.lower() not in statement_aliases
        ):
            return node.arg
    return None
