"""SQL literals and timestamps: every value that reaches a query, validated or escaped by its type.

Each ``sql_*`` function accepts one Python type and refuses anything else (``UnsafeLiteralError``):
timestamps only from aware ``datetime`` objects, UUIDs by pattern, integers that are not ``bool``,
strings escaped. Identifiers never come from here: ``TableSpec`` validates them when it is built.
``parse_timestamp`` and ``floor_ms`` read the API's time texts and cut instants to the columns'
millisecond scale.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from .errors import UnsafeLiteralError
from .specs import ColumnSpec, ValueKind

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_TIMESTAMP = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})[ T](?P<time>\d{2}:\d{2}:\d{2})(?:\.(?P<fraction>\d{1,9}))?"
    r"(?P<zone>Z|[+-]\d{2}:?\d{2})?",
    re.ASCII,
)
_STRING_ESCAPES = {ord("\\"): "\\\\", ord("'"): "\\'"} | {code: f"\\x{code:02x}" for code in (*range(0x20), 0x7F)}


def is_uuid(value: object) -> bool:
    """Whether ``value`` is a UUID in its usual 8-4-4-4-12 hexadecimal text form."""
    return isinstance(value, str) and _UUID.fullmatch(value) is not None


def floor_ms(value: datetime) -> datetime:
    """``value`` in UTC, cut to whole milliseconds (the time columns are ``DateTime64(3)``)."""
    if not isinstance(value, datetime):
        raise UnsafeLiteralError(f"expected a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise UnsafeLiteralError(f"naive datetime {value.isoformat()} is ambiguous; pass a UTC-aware one")
    value = value.astimezone(UTC)
    return value.replace(microsecond=value.microsecond - value.microsecond % 1000)


def sql_timestamp(value: datetime) -> str:
    """A ``DateTime64`` literal from a timezone-aware datetime (never from a string).

    Millisecond values (all window bounds and cursors the source makes) render with scale 3, the
    columns' own scale, which keeps the comparison usable by the primary index.
    """
    if not isinstance(value, datetime):
        raise UnsafeLiteralError(f"timestamps reach SQL only from datetime objects, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise UnsafeLiteralError(f"naive datetime {value.isoformat()} is ambiguous; pass a UTC-aware one")
    utc = value.astimezone(UTC)
    if utc.microsecond % 1000 == 0:
        text, scale = utc.strftime("%Y-%m-%d %H:%M:%S.") + f"{utc.microsecond // 1000:03d}", 3
    else:
        text, scale = utc.strftime("%Y-%m-%d %H:%M:%S.%f"), 6
    return f"toDateTime64('{text}', {scale}, 'UTC')"


def sql_string(value: str) -> str:
    """A ClickHouse string literal; quotes, backslashes and control characters are escaped."""
    if not isinstance(value, str):
        raise UnsafeLiteralError(f"expected a string, got {type(value).__name__}")
    return "'" + value.translate(_STRING_ESCAPES) + "'"


def sql_uuid(value: str) -> str:
    """A UUID literal, after checking the value is exactly a UUID.

    Rendered as a string: ClickHouse converts it to the column's type, so the comparison is correct
    whether the server stores the column as ``UUID`` or ``String``.
    """
    if not isinstance(value, str) or not is_uuid(value):
        raise UnsafeLiteralError(f"not a UUID: {value!r}")
    return f"'{value.lower()}'"


def sql_int(value: int) -> str:
    """An integer literal (``bool`` refused: it is an ``int`` subclass but never a key value)."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise UnsafeLiteralError(f"expected an integer, got {type(value).__name__}")
    return str(value)


def parse_timestamp(value: object) -> datetime:
    """A UTC datetime from the API's DateTime text (``YYYY-MM-DD hh:mm:ss[.fff]``, or ISO with ``Z``).

    Text without a zone is UTC (ClickHouse prints UTC columns that way). Fractions past microseconds
    are cut, as ``DateTime64(9)`` would need.
    """
    if isinstance(value, datetime):
        return as_utc(value)
    if not isinstance(value, str):
        raise UnsafeLiteralError(f"expected a timestamp string, got {type(value).__name__}")
    found = _TIMESTAMP.fullmatch(value.strip())
    if not found:
        raise UnsafeLiteralError(f"not a timestamp: {value!r}")
    fraction = (found.group("fraction") or "").ljust(6, "0")[:6]
    zone = found.group("zone") or "+00:00"
    if zone == "Z":
        zone = "+00:00"
    elif ":" not in zone:
        zone = f"{zone[:3]}:{zone[3:]}"
    parsed = datetime.fromisoformat(f"{found.group('date')}T{found.group('time')}.{fraction}{zone}")
    return parsed.astimezone(UTC)


def as_utc(value: datetime) -> datetime:
    """An aware datetime in UTC (naive ones are taken as UTC, as the API's own texts are)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def key_literal(column: ColumnSpec, value: object) -> str:
    """The literal for one primary-key value, validated against the column's type."""
    if column.kind is ValueKind.INT:
        if isinstance(value, str) and value.isascii() and value.isdigit():
            value = int(value)
        if not isinstance(value, int):
            raise UnsafeLiteralError(f"{column.name}: expected an integer, got {value!r}")
        return sql_int(value)
    if column.kind is ValueKind.TIMESTAMP:
        return sql_timestamp(parse_timestamp(value))
    if column.kind is not ValueKind.STRING or not isinstance(value, str):
        raise UnsafeLiteralError(f"{column.name}: cannot be a keyset value: {value!r}")
    return sql_uuid(value) if column.clickhouse_type == "UUID" else sql_string(value)
