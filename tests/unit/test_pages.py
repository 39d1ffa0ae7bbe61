"""Page codecs: ClickHouse's own CSV into arrow, the packed page's shape, and the fallback to row objects.

The CSV is never written by hand: chDB (the ClickHouse engine the emulator runs on) renders it with
``formatRow('CSV', ...)`` and hands it over inside a JSON answer, exactly as the server would. The
same values are also read back as row objects, so every CSV case doubles as a check that both codecs
give the same table. The fetch and fallback tests run the codecs' real SQL on chDB tables of the
four orchestration tables (no network; the HTTP path is ``tests/integration/test_page_codecs.py``).
"""

from __future__ import annotations

import functools
import math
import os
import random
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import chdb
import orjson
import pyarrow as pa
import pytest

from cargo_elt.source import extract
from cargo_elt.source.arrow import rows_to_table
from cargo_elt.source.errors import (
    CargoProtocolError,
    CargoQueryError,
    ResultCapExceeded,
    WindowTooNarrow,
    query_error,
)
from cargo_elt.source.extract import CountingExecutor, TableStats, _read_window, read_range
from cargo_elt.source.fetch import fetch_pages
from cargo_elt.source.pages import CodecChoice, CsvCell, Page, PageCodec, RowObjects, csv_to_table
from cargo_elt.source.planner import (
    HISTOGRAM_CELL,
    KeysetCursor,
    QueryWindow,
    UpdatedAfter,
    cursor_after,
    histogram_query,
    packed_histogram_query,
    page_query,
    parse_histogram,
    parse_packed_histogram,
)
from cargo_elt.source.settings import MIN_PAGE_LIMIT, PAGE_LIMIT
from cargo_elt.source.specs import BATCHES, RECORDS, RUNS, SPANS, TABLE_SPECS, ColumnSpec, TableSpec, ValueKind
from cargo_elt.source.sqltext import sql_string

Row = dict[str, Any]

U1 = "0b7a6c1e-8f2d-4c3b-9a1e-5d6f7a8b9c0d"
U2 = "f0000000-0000-4000-8000-000000000001"
T_TEXT = "2026-11-01 12:00:00.123"
T_MOMENT = datetime(2026, 11, 1, 12, 0, 0, 123000, tzinfo=UTC)
EVERYTHING = QueryWindow(datetime(2026, 1, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC))

NASTY_STRINGS = (
    "",
    "plain",
    "a,b,,c",
    'say "hi", "twice"',
    '"',
    '""',
    "line one\nline two\n",
    "\n",
    "carriage\rreturn\r\n",
    "back\\slash\\",
    "\\N",
    "NULL",
    "null",
    "tab\tinside",
    "'single'",
    "  padded  ",
    "ünïcødé € 😀 中文 \u200b",
    "nul\x00byte",
    '{"not": "json", "but": "looks, like it"}',
)


# -- chDB: CSV and row objects from the real ClickHouse formatter --------------------------------


class _Session:
    """One chDB session for the module (``chdb.query`` would open a new one per call, 40 ms each)."""

    connection: Any = None


@pytest.fixture(scope="module", autouse=True)
def _chdb_session() -> Iterator[None]:
    _Session.connection = chdb.connect(":memory:")  # type: ignore[no-untyped-call]
    try:
        yield
    finally:
        _Session.connection.close()
        _Session.connection = None


def _ch_rows(sql: str) -> list[Row]:
    """A statement's rows as the API would send them (JSON objects), run on chDB."""
    data = _Session.connection.query(sql, "JSONEachRow").bytes()
    return [orjson.loads(line) for line in data.splitlines() if line]


def _nullable(clickhouse_type: str) -> str:
    if clickhouse_type.startswith("Nullable("):
        return clickhouse_type
    if clickhouse_type.startswith("LowCardinality("):
        return f"LowCardinality(Nullable({clickhouse_type[len('LowCardinality(') : -1]}))"
    return f"Nullable({clickhouse_type})"


def _literal(column: ColumnSpec, value: Any) -> str:
    """``value`` as an expression of the column's ClickHouse type (``NULL`` even in a non-null column)."""
    if value is None:
        return f"CAST(NULL AS {_nullable(column.clickhouse_type)})"
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, int | float):
        text = repr(value)  # nan, inf and -inf are ClickHouse literals too
    else:
        text = sql_string(value)
    return f"CAST({text} AS {column.clickhouse_type})"


def _full_row(spec: TableSpec, **values: Any) -> Row:
    """A row with every column: keys and cursor columns filled in, everything else null."""
    row: Row = dict.fromkeys(spec.column_names)
    for name in spec.required_columns:
        row[name] = 0 if spec.column(name).kind is ValueKind.INT else U1
    row[spec.time_column] = row[spec.update_column] = T_TEXT
    row.update(values)
    return row


def _csv(spec: TableSpec, rows: Sequence[Mapping[str, Any]]) -> str:
    """The rows as one CSV text, rendered by ClickHouse's ``formatRow('CSV', ...)``."""
    if not rows:
        return ""
    formatted = ", ".join(
        "formatRow('CSV', " + ", ".join(_literal(c, row[c.name]) for c in spec.columns) + ")" for row in rows
    )
    text = _ch_rows(f"SELECT arrayStringConcat([{formatted}], '') AS page")[0]["page"]
    assert isinstance(text, str)
    return text


def _objects(spec: TableSpec, rows: Sequence[Mapping[str, Any]]) -> list[Row]:
    """The same rows as the API's JSON row objects."""
    return [
        _ch_rows("SELECT " + ", ".join(f"{_literal(c, row[c.name])} AS {c.name}" for c in spec.columns))[0]
        for row in rows
    ]


def _both(spec: TableSpec, rows: Sequence[Mapping[str, Any]]) -> pa.Table:
    """The rows through the packed codec, after checking the row-object codec reads them the same."""
    packed = csv_to_table(spec, _csv(spec, rows))
    plain = rows_to_table(spec, _objects(spec, rows))
    assert packed.schema == plain.schema == spec.arrow_schema()
    assert packed.to_pylist() == plain.to_pylist()
    return packed


# -- csv_to_table -----------------------------------------------------------------------------------


def test_null_and_empty_string_stay_apart() -> None:
    table = _both(
        RUNS,
        [
            _full_row(RUNS, error_message=None, record_title="", record_id="\\N", status="NULL", user_uuid=None),
            _full_row(RUNS, uuid=U2, error_message="", record_title="x", record_id="", status="", user_uuid=U2),
        ],
    )
    assert table.column("error_message").to_pylist() == [None, ""]
    assert table.column("record_title").to_pylist() == ["", "x"]
    assert table.column("record_id").to_pylist() == ["\\N", ""]
    assert table.column("status").to_pylist() == ["NULL", ""]
    assert table.column("user_uuid").to_pylist() == [None, U2]


@pytest.mark.parametrize("text", NASTY_STRINGS, ids=repr)
def test_quoted_strings_come_back_exactly(text: str) -> None:
    row = _full_row(RUNS, record_title=text, error_message=text, record_id=f"{text}|{text}", status=text)
    table = _both(RUNS, [row, _full_row(RUNS, uuid=U2, record_title=text)])
    assert table.column("record_title").to_pylist() == [text, text]
    assert table.column("error_message").to_pylist() == [text, None]
    assert table.column("record_id")[0].as_py() == f"{text}|{text}"
    assert table.column("status")[0].as_py() == text


def test_every_nasty_string_in_one_page() -> None:
    """Quotes, separators and newlines of one row must not leak into the next one."""
    rows = [
        _full_row(
            RECORDS, id=f"{i}:{text}", title=text, error_message=NASTY_STRINGS[-1 - i], is_group_parent=i % 2 == 0
        )
        for i, text in enumerate(NASTY_STRINGS)
    ]
    table = _both(RECORDS, rows)
    assert table.num_rows == len(NASTY_STRINGS)
    assert table.column("title").to_pylist() == list(NASTY_STRINGS)
    assert table.column("error_message").to_pylist() == list(reversed(NASTY_STRINGS))


def test_booleans() -> None:
    rows = [
        _full_row(SPANS, execution_index=i, is_group_parent=flag, node_wait_until_finished=i % 2 == 1)
        for i, flag in enumerate((True, False, None))
    ]
    table = _both(SPANS, rows)
    assert table.column("is_group_parent").to_pylist() == [True, False, None]
    assert table.column("node_wait_until_finished").to_pylist() == [False, True, False]
    assert table.column("is_group_parent").type == pa.bool_()


def test_integers_and_floats() -> None:
    ints = (0, 1, 2**53 + 1, 2**63 - 1)
    floats = (0.0, 1.5, -2.25, 0.1 + 0.2, 1e-7, 1e300, 123456789.123456789)
    rows = [
        _full_row(
            BATCHES,
            uuid=f"00000000-0000-4000-8000-{i:012d}",
            runs_count=ints[i % len(ints)],
            failed_runs_count=i,
            credits_used_count=floats[i],
        )
        for i in range(len(floats))
    ]
    table = _both(BATCHES, rows)
    assert table.column("runs_count").type == pa.int64()
    assert table.column("runs_count").to_pylist() == [ints[i % len(ints)] for i in range(len(floats))]
    assert table.column("credits_used_count").type == pa.float64()
    assert table.column("credits_used_count").to_pylist() == list(floats)  # exact: shortest round-trip text
    nullable = _both(
        SPANS, [_full_row(SPANS, node_child_index=None), _full_row(SPANS, node_uuid=U2, node_child_index=7)]
    )
    assert nullable.column("node_child_index").to_pylist() == [None, 7]


def test_non_finite_floats_read_as_null_like_the_json_answer() -> None:
    """ClickHouse writes ``nan``/``inf``/``-inf`` in CSV but ``null`` in JSON; both codecs must agree."""
    values = (math.nan, math.inf, -math.inf, 2.5)
    rows = [
        _full_row(RUNS, uuid=f"00000000-0000-4000-8000-{i:012d}", credits_used_count=v) for i, v in enumerate(values)
    ]
    assert "nan" in _csv(RUNS, rows) and "-inf" in _csv(RUNS, rows)
    table = _both(RUNS, rows)
    assert table.column("credits_used_count").to_pylist() == [None, None, None, 2.5]


@pytest.mark.parametrize(
    ("text", "moment"),
    [
        (T_TEXT, T_MOMENT),
        ("2026-11-01 12:00:00.000", datetime(2026, 11, 1, 12, tzinfo=UTC)),
        ("2026-03-29 01:30:00.999", datetime(2026, 3, 29, 1, 30, 0, 999000, tzinfo=UTC)),  # a DST night elsewhere
        ("1969-12-31 23:59:59.999", datetime(1969, 12, 31, 23, 59, 59, 999000, tzinfo=UTC)),
        ("2299-12-31 23:59:59.999", datetime(2299, 12, 31, 23, 59, 59, 999000, tzinfo=UTC)),
    ],
)
def test_timestamps_are_utc_instants(text: str, moment: datetime) -> None:
    table = _both(RUNS, [_full_row(RUNS, created_at=text, finished_at=text, deleted_at=None)])
    for name in ("created_at", "finished_at", "deleted_at"):
        assert table.schema.field(name).type == pa.timestamp("us", tz="UTC")
    assert table.column("created_at")[0].as_py() == moment
    assert table.column("finished_at")[0].as_py() == moment
    assert table.column("deleted_at")[0].as_py() is None
    assert table.column("created_at")[0].value == (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(
        microseconds=1
    )


def test_webhook_secrets_are_stripped_from_batch_data() -> None:
    form = {"kind": "form", "s3Filename": 'f, "x"\n', "webhookUrl": "https://x", "webhookSecret": "s3cr3t"}
    nested = {"kind": "group", "inner": [{"webhookSecret": "deep", "keep": 1}]}
    texts = [
        orjson.dumps(form).decode(),
        orjson.dumps(nested).decode(),
        '{"kind": "segment", "segmentUuid": "x"}',  # no secret: kept byte for byte
        '{"webhookSecret": "broken',  # names a secret but does not parse: dropped
        "",
    ]
    rows = [_full_row(BATCHES, uuid=f"00000000-0000-4000-8000-{i:012d}", data=t) for i, t in enumerate(texts)]
    data = _both(BATCHES, rows).column("data").to_pylist()
    assert not any("webhookSecret" in (d or "") or "s3cr3t" in (d or "") or "deep" in (d or "") for d in data)
    assert orjson.loads(data[0]) == {"kind": "form", "s3Filename": 'f, "x"\n', "webhookUrl": "https://x"}
    assert orjson.loads(data[1]) == {"kind": "group", "inner": [{"keep": 1}]}
    assert data[2:] == ['{"kind": "segment", "segmentUuid": "x"}', None, ""]


@pytest.mark.parametrize("spec", TABLE_SPECS.values(), ids=lambda s: s.name)
def test_an_empty_page_is_an_empty_table_with_the_schema(spec: TableSpec) -> None:
    table = csv_to_table(spec, "")
    assert table.num_rows == 0
    assert table.schema == spec.arrow_schema()


@pytest.mark.parametrize(
    ("spec", "column"),
    [(RUNS, "uuid"), (RUNS, "created_at"), (RUNS, "updated_at"), (SPANS, "execution_index"), (RECORDS, "id")],
)
def test_a_null_in_a_key_or_cursor_column_is_refused(spec: TableSpec, column: str) -> None:
    text = _csv(spec, [_full_row(spec), _full_row(spec, **{column: None})])
    with pytest.raises(CargoProtocolError, match=column):
        csv_to_table(spec, text)


@pytest.mark.parametrize(
    "text",
    [
        '"2026-11-01T12:00:00.123Z"',  # ISO with a zone
        '"2026-11-01 12:00:00.123456"',  # finer than the columns' milliseconds
        '"soon"',
    ],
)
def test_unreadable_csv_is_a_protocol_error(text: str) -> None:
    """Arrow's own errors are turned into ``CargoProtocolError``: the reader then falls back to row objects."""
    good = _csv(RUNS, [_full_row(RUNS)])
    with pytest.raises(CargoProtocolError, match="runs"):
        csv_to_table(RUNS, good.replace(f'"{T_TEXT}"', text, 1))


def test_a_ragged_row_is_a_protocol_error_that_does_not_repeat_the_row() -> None:
    with pytest.raises(CargoProtocolError, match=f"Expected {len(RUNS.columns)} columns, got 2") as raised:
        csv_to_table(RUNS, '"{""webhookSecret"": ""s3cr3t""}","b"\n')
    assert "s3cr3t" not in str(raised.value)


# -- CsvCell: the packed answer ---------------------------------------------------------------------


def _packed_answer(spec: TableSpec, rows: Sequence[Mapping[str, Any]], last: Any, n: Any = None) -> list[Row]:
    return [{"page": _csv(spec, rows), "n": len(rows) if n is None else n, "last": last}]


def test_decode_reads_last_as_an_array() -> None:
    rows = [_full_row(RUNS), _full_row(RUNS, uuid=U2, created_at="2026-11-01 12:00:01.000")]
    page = CsvCell().decode(RUNS, _packed_answer(RUNS, rows, ["2026-11-01 12:00:01.000", U2]))
    assert page.count == 2
    assert page.rows is None
    assert page.table is not None and page.table.num_rows == 2
    assert page.last == {"created_at": "2026-11-01 12:00:01.000", "uuid": U2}
    assert cursor_after(RUNS, page.last) == KeysetCursor(datetime(2026, 11, 1, 12, 0, 1, tzinfo=UTC), (U2,))


def test_decode_reads_last_as_an_object() -> None:
    """A named tuple (``output_format_json_named_tuples_as_objects``) comes as an object, in tuple order."""
    rows = [_full_row(SPANS, execution_index=3)]
    last = {"execution_started_at": T_TEXT, "run_uuid": U1, "node_uuid": U1, "execution_index": 3}
    page = CsvCell().decode(SPANS, _packed_answer(SPANS, rows, last, n="1"))  # 64-bit counts may come quoted
    assert page.count == 1
    assert page.last == last
    assert cursor_after(SPANS, page.last) == KeysetCursor(T_MOMENT, (U1, U1, 3))
    positional = {"1": T_TEXT, "2": U1, "3": U1, "4": 3}
    assert CsvCell().decode(SPANS, _packed_answer(SPANS, rows, positional)).last == last


def test_decode_of_an_empty_page() -> None:
    # max() of no rows is the tuple of default values: it must not become a cursor
    page = CsvCell().decode(
        RUNS, [{"page": "", "n": 0, "last": ["1970-01-01 00:00:00.000", "0" * 8 + "-0000" * 3 + "-" + "0" * 12]}]
    )
    assert page.count == 0
    assert page.last is None
    assert page.table is not None and page.table.num_rows == 0 and page.table.schema == RUNS.arrow_schema()


@pytest.mark.parametrize(
    "answer",
    [
        [],
        [{"page": "", "n": 0, "last": None}, {"page": "", "n": 0, "last": None}],
        [{"page": "", "n": 0}],
        [{"uuid": U1, "created_at": T_TEXT}],  # row objects where a packed page was expected
        [{"page": None, "n": 0, "last": None}],
        [{"page": 5, "n": 0, "last": None}],
    ],
    ids=["no row", "two rows", "no last", "row objects", "null page", "number page"],
)
def test_decode_refuses_answers_of_another_shape(answer: list[Row]) -> None:
    with pytest.raises(CargoProtocolError, match="runs"):
        CsvCell().decode(RUNS, answer)


@pytest.mark.parametrize("n", [1, 3, 0])
def test_decode_checks_the_row_count(n: int) -> None:
    rows = [_full_row(RUNS), _full_row(RUNS, uuid=U2)]
    with pytest.raises(CargoProtocolError, match="2 rows"):
        CsvCell().decode(RUNS, _packed_answer(RUNS, rows, [T_TEXT, U2], n=n))


@pytest.mark.parametrize("last", [[T_TEXT], [T_TEXT, U1, U2], T_TEXT, None, 5], ids=repr)
def test_decode_refuses_a_last_key_of_the_wrong_shape(last: Any) -> None:
    with pytest.raises(CargoProtocolError, match="last key"):
        CsvCell().decode(RUNS, _packed_answer(RUNS, [_full_row(RUNS)], last))


@pytest.mark.parametrize("spec", TABLE_SPECS.values(), ids=lambda s: s.name)
@pytest.mark.parametrize("resumed", [False, True], ids=["whole", "resumed"])
def test_packed_sql_wraps_the_page_query_unchanged(spec: TableSpec, resumed: bool) -> None:
    key = tuple(0 if spec.column(name).kind is ValueKind.INT else U1 for name in spec.primary_key)
    window = EVERYTHING.resumed_at(KeysetCursor(T_MOMENT, key)) if resumed else EVERYTHING
    predicate = UpdatedAfter(T_MOMENT)
    inner = page_query(spec, window, predicate, 97)
    sql = CsvCell().sql(spec, window, predicate, 97)
    assert sql.endswith(f"FROM ({inner})")
    assert inner.endswith(f"ORDER BY {spec.page_order} LIMIT 97")
    assert f"formatRow('CSV', {', '.join(spec.column_names)})" in sql
    assert f"max(tuple({', '.join(spec.sort_key)})) AS last" in sql
    assert RowObjects().sql(spec, window, predicate, 97) == inner


# -- the codecs on real tables (chDB, no HTTP) ------------------------------------------------------

_T0 = datetime(2026, 10, 1, tzinfo=UTC)
_ROWS_PER_TABLE = 60


def _uuid(rng: random.Random) -> str:
    h = f"{rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-8{h[17:20]}-{h[20:]}"


def _ts(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S.") + f"{moment.microsecond // 1000:03d}"


def _value(spec: TableSpec, column: ColumnSpec, rng: random.Random, index: int) -> Any:
    if column.nullable and rng.random() < 0.3:
        return None
    if column.kind is ValueKind.TIMESTAMP:
        # few distinct instants, so pages end inside runs of equal times and continue on the key
        return _ts(_T0 + timedelta(hours=rng.randrange(6), milliseconds=rng.choice((0, 1, 999))))
    if column.kind is ValueKind.BOOL:
        return rng.random() < 0.5
    if column.kind is ValueKind.INT:
        small = "UInt32" in column.clickhouse_type
        return rng.choice((0, 1, 7, 2**32 - 1) if small else (0, 3, 2**53 + 1, 2**63 - 1))
    if column.kind is ValueKind.FLOAT:
        return rng.choice((0.0, 0.5, 0.1 + 0.2, 1e-7, 12345.678))
    if column.kind is ValueKind.JSON:
        secret = rng.choice(("", ', "webhookSecret": "s3cr3t"'))
        return f'{{"kind": "form", "note": {orjson.dumps(rng.choice(NASTY_STRINGS)).decode()}{secret}}}'
    if "UUID" in column.clickhouse_type:
        return _uuid(rng)
    text = rng.choice(NASTY_STRINGS)
    return f"{text}#{index}" if column.name in spec.primary_key else text


def _table_rows(spec: TableSpec, count: int, seed: int) -> list[Row]:
    rng = random.Random(seed)
    rows = [{c.name: _value(spec, c, rng, i) for c in spec.columns} for i in range(count)]
    # execution_index 0..2 and records sharing a workflow: composite keys that differ in one part only
    if spec is SPANS:
        for i, row in enumerate(rows):
            row["execution_index"] = i % 3
            if i % 3:
                row.update(run_uuid=rows[i - 1]["run_uuid"], node_uuid=rows[i - 1]["node_uuid"])
    if spec is RECORDS:
        for row in rows[1::2]:
            row["workflow_uuid"] = rows[0]["workflow_uuid"]
    return rows


class ChdbTables:
    """The four orchestration tables in a private chDB database, answering SQL with JSON row objects.

    64-bit integers come quoted (ClickHouse's default on Cargo; the emulator sends them as numbers).
    """

    def __init__(self, rows_per_table: int) -> None:
        self.database = f"cargo_test_pages_{os.getpid()}_{id(self)}"
        self._conn = chdb.connect(":memory:")  # type: ignore[no-untyped-call]
        self._lock = threading.Lock()
        self.rows: dict[str, list[Row]] = {}
        self._run(f"CREATE DATABASE {self.database}")
        self._run(f"USE {self.database}")
        self._run("SET output_format_json_quote_64bit_integers = 1")
        for seed, spec in enumerate(TABLE_SPECS.values()):
            columns = ", ".join(f"{c.name} {c.clickhouse_type}" for c in spec.columns)
            self._run(f"CREATE TABLE {spec.name} ({columns}) ENGINE = MergeTree ORDER BY ({', '.join(spec.sort_key)})")
            rows = _table_rows(spec, rows_per_table, seed)
            assert len({tuple(r[k] for k in spec.primary_key) for r in rows}) == rows_per_table
            self._run(
                f"INSERT INTO {spec.name} FORMAT JSONEachRow " + "\n".join(orjson.dumps(r).decode() for r in rows)
            )
            self.rows[spec.name] = rows

    def _run(self, sql: str) -> Any:
        with self._lock:
            return self._conn.query(sql, "JSONEachRow")

    def query(self, sql: str) -> list[Row]:
        try:
            data = self._run(sql).bytes()
        except Exception as exc:  # chDB raises a plain RuntimeError carrying ClickHouse's message
            raise query_error(400, str(exc), sql) from None
        return [orjson.loads(line) for line in data.splitlines() if line]

    def close(self) -> None:
        self._run(f"DROP DATABASE IF EXISTS {self.database}")
        self._conn.close()


@pytest.fixture(scope="module")
def tables() -> Iterator[ChdbTables]:
    engine = ChdbTables(_ROWS_PER_TABLE)
    try:
        yield engine
    finally:
        engine.close()


def _sorted(spec: TableSpec, table: pa.Table) -> pa.Table:
    return table.sort_by([(name, "ascending") for name in spec.primary_key])


def _keys(spec: TableSpec, table: pa.Table) -> set[tuple[Any, ...]]:
    return set(zip(*(table.column(name).to_pylist() for name in spec.primary_key), strict=True))


def _concat(spec: TableSpec, tables: Sequence[pa.Table]) -> pa.Table:
    return _sorted(spec, pa.concat_tables([spec.arrow_schema().empty_table(), *tables]))


def _assert_same(spec: TableSpec, left: pa.Table, right: pa.Table) -> None:
    assert left.schema == right.schema == spec.arrow_schema()
    assert left.to_pylist() == right.to_pylist()
    assert left.equals(right)


def _read_all(engine: Any, spec: TableSpec, codec: PageCodec, page_limit: int) -> list[Page]:
    return list(fetch_pages(engine, spec, EVERYTHING, codec=codec, page_limit=page_limit))


@pytest.mark.parametrize("spec", TABLE_SPECS.values(), ids=lambda s: s.name)
def test_both_codecs_page_through_a_table_alike(tables: ChdbTables, spec: TableSpec) -> None:
    assert tables.query(f"SELECT count() AS n FROM {spec.name}") == [{"n": str(_ROWS_PER_TABLE)}]  # quoted
    packed = _read_all(tables, spec, CsvCell(), 7)
    plain = _read_all(tables, spec, RowObjects(), 7)
    assert [p.count for p in packed] == [p.count for p in plain]
    assert len(packed) == math.ceil(_ROWS_PER_TABLE / 7)
    # ClickHouse's max(tuple(time, key)) is the last row of the ORDER BY, UUID order included
    assert [cursor_after(spec, p.last or {}) for p in packed] == [cursor_after(spec, p.last or {}) for p in plain]
    for packed_page, plain_page in zip(packed, plain, strict=True):
        _assert_same(spec, _sorted(spec, packed_page.table), _sorted(spec, plain_page.table))
    whole = _concat(spec, [p.table for p in packed if p.table is not None])
    assert whole.num_rows == _ROWS_PER_TABLE
    assert len(_keys(spec, whole)) == _ROWS_PER_TABLE
    expected = rows_to_table(spec, tables.rows[spec.name])
    _assert_same(spec, whole, _sorted(spec, expected))
    for name in spec.json_columns:
        assert not any("webhookSecret" in (text or "") for text in whole.column(name).to_pylist())


class Refusing:
    """Answers like ``engine``, except for packed pages after the first ``allow``: ``refusal(sql)`` is raised."""

    def __init__(self, engine: ChdbTables, refusal: Callable[[str], Exception], allow: int = 0) -> None:
        self.engine = engine
        self.refusal = refusal
        self.allow = allow
        self.queries: list[str] = []
        self._lock = threading.Lock()

    def query(self, sql: str) -> list[Row]:
        with self._lock:
            self.queries.append(sql)
            refuse = "formatRow" in sql and sum("formatRow" in q for q in self.queries) > self.allow
        if refuse:
            raise self.refusal(sql)
        return self.engine.query(sql)

    @property
    def packed(self) -> list[str]:
        return [q for q in self.queries if "formatRow" in q]

    @property
    def plain_pages(self) -> list[str]:
        return [q for q in self.queries if "formatRow" not in q and " LIMIT " in q]


def _unknown_function(sql: str) -> Exception:
    message = "Code: 46. DB::Exception: Function with name `formatRow` does not exist. (UNKNOWN_FUNCTION)"
    return query_error(400, message, sql)


def _access_denied(sql: str) -> Exception:
    return query_error(400, "Code: 497. DB::Exception: cargo_reader: Not enough privileges. (ACCESS_DENIED)", sql)


def _malformed(sql: str) -> Exception:
    return CargoProtocolError("expected a body of the form {'rows': [{...}]}")


def _scan_cap(sql: str) -> Exception:
    return query_error(400, "Code: 158. DB::Exception: Limit for rows (controlled by 'max_rows_to_read')", sql)


def _result_cap(sql: str) -> Exception:
    return query_error(400, "Code: 396. DB::Exception: Limit for result exceeded, max rows: 10.00 thousand", sql)


def _read_range(engine: Any, spec: TableSpec, codecs: CodecChoice) -> pa.Table:
    stats = TableStats(spec.name)
    return _concat(spec, list(read_range(engine, spec, EVERYTHING, None, concurrency=2, stats=stats, codecs=codecs)))


@pytest.mark.parametrize("spec", TABLE_SPECS.values(), ids=lambda s: s.name)
def test_read_range_packs_pages_when_the_server_can(tables: ChdbTables, spec: TableSpec) -> None:
    engine = Refusing(tables, _unknown_function, allow=10**6)
    codecs = CodecChoice()
    table = _read_range(engine, spec, codecs)
    assert not codecs.fell_back
    assert engine.packed and not engine.plain_pages
    _assert_same(spec, table, _read_range(tables, spec, CodecChoice(prefer_packed=False)))
    assert table.num_rows == _ROWS_PER_TABLE


@pytest.mark.parametrize("refusal", [_unknown_function, _access_denied, _malformed])
@pytest.mark.parametrize("spec", [RUNS, SPANS], ids=lambda s: s.name)
def test_read_range_falls_back_to_row_objects(
    tables: ChdbTables, spec: TableSpec, refusal: Callable[[str], Exception]
) -> None:
    engine = Refusing(tables, refusal)
    codecs = CodecChoice()
    table = _read_range(engine, spec, codecs)
    assert codecs.fell_back
    assert isinstance(codecs.codec, RowObjects)
    assert engine.plain_pages
    _assert_same(spec, table, _read_range(tables, spec, CodecChoice(prefer_packed=False)))
    assert table.num_rows == _ROWS_PER_TABLE


class IsoTimestamps:
    """A server that renders DateTime64 as ISO 8601 with ``Z`` (``date_time_output_format = 'iso'``)."""

    def __init__(self, engine: ChdbTables) -> None:
        self.engine = engine

    def query(self, sql: str) -> list[Row]:
        return self.engine.query(f"{sql} SETTINGS date_time_output_format = 'iso'")


def test_a_packed_page_arrow_cannot_read_falls_back_to_row_objects(tables: ChdbTables) -> None:
    engine = IsoTimestamps(tables)
    packed = CsvCell().sql(RUNS, EVERYTHING, None, 5)
    assert 'Z"' in engine.query(packed)[0]["page"]  # the server really sends ISO text
    codecs = CodecChoice()
    table = _read_range(engine, RUNS, codecs)
    assert codecs.fell_back
    _assert_same(RUNS, table, _read_range(tables, RUNS, CodecChoice(prefer_packed=False)))


def _window_reader(engine: Any, spec: TableSpec, codecs: CodecChoice) -> extract._WindowResult:
    executor = CountingExecutor(engine, TableStats(spec.name), "data_queries")
    return _read_window(executor, spec, EVERYTHING, None, codecs)


@pytest.fixture()
def small_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    """Windows read in pages of 7 rows, so one window takes several pages."""
    monkeypatch.setattr(extract, "fetch_pages", functools.partial(fetch_pages, page_limit=7))


@pytest.mark.usefixtures("small_pages")
@pytest.mark.parametrize("spec", TABLE_SPECS.values(), ids=lambda s: s.name)
def test_a_refusal_mid_window_keeps_the_pages_read_and_continues_after_them(
    tables: ChdbTables, spec: TableSpec
) -> None:
    engine = Refusing(tables, _unknown_function, allow=3)
    codecs = CodecChoice()
    result = _window_reader(engine, spec, codecs)
    assert codecs.fell_back
    assert not result.remainder
    assert len(engine.packed) == 4  # three pages packed, then the refusal
    table = _concat(spec, result.tables)
    assert table.num_rows == _ROWS_PER_TABLE  # every row once: none lost, none read twice
    _assert_same(spec, table, _sorted(spec, rows_to_table(spec, tables.rows[spec.name])))


class _RefusingEverything:
    """A server without ``formatRow`` that also refuses the plain page (say, a column it does not know)."""

    def __init__(self) -> None:
        self.queries: list[str] = []

    def query(self, sql: str) -> list[Row]:
        self.queries.append(sql)
        raise _unknown_function(sql)


def test_a_read_that_fails_with_row_objects_too_raises() -> None:
    engine = _RefusingEverything()
    codecs = CodecChoice()
    with pytest.raises(CargoQueryError) as raised:
        _window_reader(engine, RUNS, codecs)
    assert raised.value.code == 46
    assert codecs.fell_back
    assert ["formatRow" in q for q in engine.queries] == [True, False]  # one try each, no loop


def test_the_result_cap_does_not_make_the_reader_fall_back(tables: ChdbTables) -> None:
    engine = Refusing(tables, _result_cap)
    codecs = CodecChoice()
    with pytest.raises(ResultCapExceeded):
        _window_reader(engine, RUNS, codecs)
    assert not codecs.fell_back
    assert isinstance(codecs.codec, CsvCell)
    assert not engine.plain_pages
    # the page shrank down to the smallest size, packed all along
    assert [q.rsplit(" LIMIT ", 1)[1].split(")")[0] for q in engine.packed] == [
        str(n) for n in (PAGE_LIMIT, 5000, 2500, 1250, 625, MIN_PAGE_LIMIT)
    ]


def test_a_window_over_the_scan_cap_is_split_not_read_as_row_objects(tables: ChdbTables) -> None:
    engine = Refusing(tables, _scan_cap)
    codecs = CodecChoice()
    result = _window_reader(engine, RUNS, codecs)
    assert not codecs.fell_back
    assert isinstance(codecs.codec, CsvCell)
    assert result.tables == []
    assert result.remainder == EVERYTHING.bisect()
    assert len(engine.queries) == 1


@pytest.mark.usefixtures("small_pages")
def test_a_scan_cap_after_some_pages_hands_back_the_unread_part(tables: ChdbTables) -> None:
    engine = Refusing(tables, _scan_cap, allow=2)
    codecs = CodecChoice()
    result = _window_reader(engine, RUNS, codecs)
    assert not codecs.fell_back
    assert sum(t.num_rows for t in result.tables) == 14
    first, second = result.remainder
    assert first.cursor is not None and first.start == EVERYTHING.start and second.end == EVERYTHING.end
    assert not engine.plain_pages


def test_codec_choice_starts_packed_or_plain() -> None:
    assert isinstance(CodecChoice().codec, CsvCell)
    plain = CodecChoice(prefer_packed=False)
    assert isinstance(plain.codec, RowObjects) and not plain.fell_back
    chosen = CodecChoice()
    chosen.fall_back()
    assert isinstance(chosen.codec, RowObjects) and chosen.fell_back


@pytest.mark.parametrize("codec", [CsvCell(), RowObjects()], ids=["packed", "plain"])
@pytest.mark.parametrize("page_limit", [1, 3, 7])
@pytest.mark.parametrize("older_part_first", [True, False], ids=["older-part-first", "older-part-last"])
def test_a_page_ending_between_two_versions_of_a_row_keeps_the_newest(
    codec: PageCodec, page_limit: int, older_part_first: bool
) -> None:
    """A read without FINAL can see a row twice (REFERENCE.md 4.6); the keyset cursor moves past a key
    after its first row, so the first must be the newest version (``TableSpec.page_order``). Older
    versions sit in their own part, as an unmerged ReplacingMergeTree keeps them: with the order of
    ``(time, key)`` alone, which version comes first is the engine's choice (here: the part written
    last), so with the older part written last every page ending between versions kept an old one."""
    spec = RUNS
    newest = _table_rows(spec, 40, seed=11)
    for row in newest:
        row["updated_at"] = _ts(_T0 + timedelta(days=2))
    older = [{**row, "updated_at": _ts(_T0 + timedelta(days=1)), "status": "running"} for row in newest]
    conn = chdb.connect(":memory:")  # type: ignore[no-untyped-call]
    database = f"cargo_test_versions_{os.getpid()}_{page_limit}_{type(codec).__name__}_{older_part_first}"
    lock = threading.Lock()

    def run(sql: str) -> Any:
        with lock:
            return conn.query(sql, "JSONEachRow")

    class Versions:
        def query(self, sql: str) -> list[Row]:
            return [orjson.loads(line) for line in run(sql).bytes().splitlines() if line]

    try:
        run(f"CREATE DATABASE {database}")
        run(f"USE {database}")
        columns = ", ".join(f"{c.name} {c.clickhouse_type}" for c in spec.columns)
        run(f"CREATE TABLE runs ({columns}) ENGINE = MergeTree ORDER BY ({', '.join(spec.sort_key)})")
        parts = (older, newest) if older_part_first else (newest, older)
        for rows in parts:  # two inserts: two parts, never merged into one version per key
            run("INSERT INTO runs FORMAT JSONEachRow " + "\n".join(orjson.dumps(r).decode() for r in rows))
        pages = list(fetch_pages(Versions(), spec, EVERYTHING, codec=codec, page_limit=page_limit))
    finally:
        run(f"DROP DATABASE IF EXISTS {database}")
        conn.close()
    read = pa.concat_tables([p.table for p in pages if p.table is not None and p.table.num_rows])
    newest_seen: dict[str, Any] = {}
    for uuid, updated in zip(read.column("uuid").to_pylist(), read.column("updated_at").to_pylist(), strict=True):
        newest_seen[uuid] = max(updated, newest_seen.get(uuid, updated))
    assert set(newest_seen) == {row["uuid"] for row in newest}, "every key read"
    stale = [uuid for uuid, updated in newest_seen.items() if updated != _T0 + timedelta(days=2)]
    assert not stale, f"{len(stale)} keys kept an older version"


# -- the first page carries the plan ------------------------------------------------------------


class Answering:
    """Answers like ``engine`` and keeps every statement; ``change(sql)`` may refuse a statement or
    return the rows to answer with instead (None: the engine's own answer)."""

    def __init__(self, engine: ChdbTables, change: Callable[[str, ChdbTables], list[Row] | None]) -> None:
        self.engine = engine
        self.change = change
        self.queries: list[str] = []
        self._lock = threading.Lock()

    def query(self, sql: str) -> list[Row]:
        with self._lock:
            self.queries.append(sql)
        changed = self.change(sql, self.engine)
        return self.engine.query(sql) if changed is None else changed


def _histograms(queries: Sequence[str]) -> list[int]:
    """Indexes of the statements that count rows per bucket."""
    return [i for i, sql in enumerate(queries) if "toStartOfInterval" in sql]


@pytest.mark.parametrize("predicate", [None, UpdatedAfter(_T0 + timedelta(hours=3))], ids=["all", "changed"])
@pytest.mark.parametrize("spec", [RUNS, SPANS], ids=lambda s: s.name)
def test_the_packed_histogram_counts_what_the_plain_one_counts(
    tables: ChdbTables, spec: TableSpec, predicate: UpdatedAfter | None
) -> None:
    step = 600_000
    plain_rows = tables.query(histogram_query(spec, EVERYTHING, step, predicate))
    plain = parse_histogram(plain_rows, EVERYTHING, step)
    [answer] = tables.query(packed_histogram_query(spec, EVERYTHING, step, predicate))
    assert parse_packed_histogram(answer[HISTOGRAM_CELL], EVERYTHING, step) == plain
    assert len(plain) > 3
    if predicate is None:
        assert sum(b.rows for b in plain) == _ROWS_PER_TABLE
    else:
        assert sum(b.rows for b in plain) < sum(b.scanned for b in plain) == _ROWS_PER_TABLE


@pytest.mark.parametrize("text", [3, "2026-11-01 12:00:00\n", '"not a time",4\n', '"2026-11-01 12:00:00",many\n'])
def test_an_unreadable_packed_histogram_is_an_error(text: object) -> None:
    with pytest.raises(ValueError):
        parse_packed_histogram(text, EVERYTHING, 1000)


@pytest.fixture()
def small_windows(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pages of 7 rows and windows of 10, so a 60-row table needs a plan of several windows."""
    monkeypatch.setattr(extract, "fetch_pages", functools.partial(fetch_pages, page_limit=7))
    monkeypatch.setattr(extract, "DEFAULT_WINDOW_TARGET_ROWS", 10)


def _read_counted(engine: Any, spec: TableSpec) -> tuple[pa.Table, TableStats]:
    stats = TableStats(spec.name)
    tables = list(read_range(engine, spec, EVERYTHING, None, concurrency=2, stats=stats, codecs=CodecChoice()))
    return _concat(spec, tables), stats


@pytest.mark.usefixtures("small_windows")
@pytest.mark.parametrize("spec", TABLE_SPECS.values(), ids=lambda s: s.name)
def test_a_range_past_one_page_is_planned_from_its_first_page(tables: ChdbTables, spec: TableSpec) -> None:
    engine = Answering(tables, lambda sql, _: None)
    table, stats = _read_counted(engine, spec)
    _assert_same(spec, table, _sorted(spec, rows_to_table(spec, tables.rows[spec.name])))
    assert _histograms(engine.queries) == [0]  # the histogram rode with the first page, and only there
    assert HISTOGRAM_CELL in engine.queries[0] and "toTypeName" in engine.queries[0]
    assert stats.planning_queries == 0 and stats.data_queries == len(engine.queries)
    assert stats.windows > 3  # the plan really packed the folded histogram's buckets


def _refuse_folded(sql: str, _: ChdbTables) -> list[Row] | None:
    if HISTOGRAM_CELL in sql:
        raise _scan_cap(sql)
    return None


def _garble_folded(sql: str, engine: ChdbTables) -> list[Row] | None:
    if HISTOGRAM_CELL not in sql:
        return None
    return [{**row, HISTOGRAM_CELL: '"yesterday",12\n'} for row in engine.query(sql)]


@pytest.mark.usefixtures("small_windows")
@pytest.mark.parametrize("change", [_refuse_folded, _garble_folded], ids=["scan cap", "unreadable"])
def test_a_first_page_without_its_plan_is_planned_apart_and_read_exactly(
    tables: ChdbTables, change: Callable[[str, ChdbTables], list[Row] | None]
) -> None:
    engine = Answering(tables, change)
    table, stats = _read_counted(engine, SPANS)
    _assert_same(SPANS, table, _sorted(SPANS, rows_to_table(SPANS, tables.rows[SPANS.name])))
    later = engine.queries[1:]
    assert not any(HISTOGRAM_CELL in sql for sql in later)  # asked once, then planned apart
    assert len(_histograms(later)) == 1 and any("toTypeName" in sql for sql in later)
    assert stats.planning_queries >= 2 and stats.windows > 3


def test_a_refusal_inside_one_millisecond_names_the_last_row_read(
    tables: ChdbTables, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(extract, "fetch_pages", functools.partial(fetch_pages, page_limit=2))
    instants = Counter(row[RUNS.time_column] for row in tables.rows[RUNS.name])
    text, count = instants.most_common(1)[0]
    assert count >= 3  # a full page, then a refused one, inside the same millisecond
    moment = datetime.strptime(text, "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=UTC)
    window = QueryWindow(moment, moment + timedelta(milliseconds=1))
    engine = Refusing(tables, _scan_cap, allow=1)
    executor = CountingExecutor(engine, TableStats(RUNS.name), "data_queries")
    with pytest.raises(WindowTooNarrow) as refused:
        _read_window(executor, RUNS, window, None, CodecChoice())
    last_read = tables.query(page_query(RUNS, window, None, 2))[-1]["uuid"]  # in ClickHouse's UUID order
    assert refused.value.after == (moment, (last_read,))
    assert f"after the row at {moment.isoformat()} with key ({last_read})" in str(refused.value)
