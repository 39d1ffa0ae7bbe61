"""How a page of rows travels: one JSON object per row, or the whole page as one CSV cell.

``orchestration/query`` answers ``{"rows": [{column: value, ...}, ...]}``. For a 10,000-row page of a
40-column table that is 400,000 keyed values to parse into Python objects before arrow sees them,
which measured as the connector's bottleneck (about 0.25 s of CPU per spans page, more than the
server's own time). So the source first asks ClickHouse to pack the same page into one CSV cell:

    SELECT arrayStringConcat(groupArray(formatRow('CSV', <columns>)), '') AS page,
           count() AS n, max(tuple(<time>, <key>...)) AS last
    FROM (<the usual page query: ORDER BY time, key LIMIT 10000>)

The page is still at most 10,000 rows (the inner ``LIMIT``), read with the same predicates and the
same primary-index ranges; only its encoding changes. It comes back as half the bytes and is parsed
by arrow's C++ CSV reader straight into the table's schema (about 4x less client CPU per page, and
no per-row Python objects, which keeps memory flat). ``last`` is ClickHouse's own maximum of the
sort key, so the keyset cursor never depends on how a client would order UUIDs.

If a server refuses the packed form (an unknown or denied function), the source falls back to row
objects for the rest of the run; both forms give identical tables.
"""

from __future__ import annotations

import io
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.csv as pcsv

from .arrow import convert_column, finish_table, rows_to_table
from .errors import CargoProtocolError
from .planner import Predicate, QueryWindow, page_query
from .specs import TableSpec, ValueKind

Row = dict[str, Any]


@dataclass
class Page:
    """One page: its row count, the sort key of its last row, and its rows (as arrow, or as received)."""

    count: int
    last: Mapping[str, Any] | None
    table: pa.Table | None = None
    rows: list[Row] | None = None
    ends_window: bool = False
    """Set by ``fetch_pages``: the page came back short, so nothing of its window is left to read."""


class PageCodec(Protocol):
    """Builds a page query and decodes its answer."""

    name: str

    def sql(self, spec: TableSpec, window: QueryWindow, predicate: Predicate | None, limit: int) -> str: ...

    def decode(self, spec: TableSpec, rows: list[Row]) -> Page: ...


class RawRows:
    """The plain form, left as the row objects the server sent."""

    name = "raw rows"

    def sql(self, spec: TableSpec, window: QueryWindow, predicate: Predicate | None, limit: int) -> str:
        return page_query(spec, window, predicate, limit)

    def decode(self, spec: TableSpec, rows: list[Row]) -> Page:
        return Page(len(rows), rows[-1] if rows else None, rows=rows)


class RowObjects(RawRows):
    """The plain form: one JSON object per row, converted to arrow."""

    name = "rows"

    def decode(self, spec: TableSpec, rows: list[Row]) -> Page:
        return Page(len(rows), rows[-1] if rows else None, table=rows_to_table(spec, rows))


PACKED_KEYS = ("page", "n", "last")
"""The columns of a packed page's one row."""


class CsvCell:
    """The packed form: the page as one CSV text, parsed by arrow."""

    name = "csv"

    def sql(self, spec: TableSpec, window: QueryWindow, predicate: Predicate | None, limit: int) -> str:
        inner = page_query(spec, window, predicate, limit)
        columns = ", ".join(spec.column_names)
        key = ", ".join((spec.time_column, *spec.primary_key))
        return (
            f"SELECT arrayStringConcat(groupArray(formatRow('CSV', {columns})), '') AS page, "
            f"count() AS n, max(tuple({key})) AS last FROM ({inner})"
        )

    def decode(self, spec: TableSpec, rows: list[Row]) -> Page:
        if len(rows) != 1 or not {"page", "n", "last"} <= rows[0].keys():
            raise CargoProtocolError(f"{spec.name}: a packed page must be one row of page, n, last; got {rows[:1]!r}")
        row = rows[0]
        count = int(row["n"])
        text = row["page"]
        if not isinstance(text, str):
            raise CargoProtocolError(f"{spec.name}: the packed page is not text")
        table = csv_to_table(spec, text)
        if table.num_rows != count:
            raise CargoProtocolError(
                f"{spec.name}: the packed page holds {table.num_rows} rows, the server said {count}"
            )
        last = _last_key(spec, row["last"]) if count else None
        return Page(count, last, table=table)


def _last_key(spec: TableSpec, value: Any) -> dict[str, Any]:
    """``max(tuple(time, key...))`` as a mapping; ClickHouse renders tuples as arrays or as objects."""
    names = (spec.time_column, *spec.primary_key)
    parts: Sequence[Any] = list(value.values()) if isinstance(value, Mapping) else value
    if not isinstance(parts, Sequence) or isinstance(parts, str) or len(parts) != len(names):
        raise CargoProtocolError(f"{spec.name}: unexpected last key {value!r}")
    return dict(zip(names, parts, strict=True))


_CSV_NULLS = ["\\N", "nan", "inf", "-inf"]
"""Unquoted CSV fields read as NULL: ClickHouse's ``\\N``, and the non-finite floats, which its JSON
answer renders as ``null`` (so both codecs give the same table). Strings are always quoted, so a
string ``"nan"`` or ``"\\N"`` stays text."""

_ROW_TEXT = re.compile(r"(Expected \d+ columns?, got \d+): .*", re.S)


def csv_to_table(spec: TableSpec, text: str) -> pa.Table:
    """ClickHouse CSV (``\\N`` for NULL, quoted strings, ``true``/``false``) into the spec's schema."""
    schema = spec.arrow_schema()
    if not text:
        return schema.empty_table()
    read_types = {
        field.name: (pa.timestamp("ms") if pa.types.is_timestamp(field.type) else field.type) for field in schema
    }
    try:
        parsed = pcsv.read_csv(
            io.BytesIO(text.encode()),
            read_options=pcsv.ReadOptions(column_names=list(schema.names), block_size=1 << 26),
            parse_options=pcsv.ParseOptions(newlines_in_values=True, escape_char=False, double_quote=True),
            convert_options=pcsv.ConvertOptions(
                column_types=read_types,
                null_values=_CSV_NULLS,
                strings_can_be_null=True,
                quoted_strings_can_be_null=False,
                true_values=["true"],
                false_values=["false"],
            ),
        )
        arrays = []
        for column in spec.columns:
            array = parsed.column(column.name)
            if column.kind is ValueKind.TIMESTAMP:
                array = array.cast(column.arrow_type)
            elif column.kind is ValueKind.JSON and column.secret_keys:
                array = convert_column(column, array.to_pylist())
            arrays.append(array)
    except pa.ArrowException as exc:
        # a form arrow cannot read (ISO timestamps, finer fractions, ...): the caller falls back to row
        # objects, which read every form; the offending row's text (maybe a secret) stays out of the message
        reason = _ROW_TEXT.sub(r"\1", str(exc))
        raise CargoProtocolError(f"{spec.name}: cannot read the packed page: {reason}") from None
    return finish_table(spec, pa.Table.from_arrays(arrays, schema=schema))


class CodecChoice:
    """The codec a table's reads use: packed first, row objects once a server refuses packing."""

    def __init__(self, prefer_packed: bool = True) -> None:
        self._codec: PageCodec = CsvCell() if prefer_packed else RowObjects()
        self._lock = threading.Lock()
        self.fell_back = False

    @property
    def codec(self) -> PageCodec:
        """The codec to use now."""
        with self._lock:
            return self._codec

    def fall_back(self) -> None:
        """Use row objects from now on."""
        with self._lock:
            self._codec = RowObjects()
            self.fell_back = True
