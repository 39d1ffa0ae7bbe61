"""Rows as the API returns them -> arrow tables with each table's fixed schema."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pyarrow as pa
import pytest

from cargo_elt.source.arrow import convert_column, rows_to_table, strip_secret_keys
from cargo_elt.source.errors import CargoProtocolError
from cargo_elt.source.specs import BATCHES, RUNS, SPANS, TableSpec, ValueKind, column

U1 = "0b7a6c1e-8f2d-4c3b-9a1e-5d6f7a8b9c0d"


def _row(spec: TableSpec, **values: Any) -> dict[str, Any]:
    """A row with every selected column: keys and cursors filled in, the rest null."""
    row: dict[str, Any] = dict.fromkeys(spec.column_names)
    for name in spec.required_columns:
        row[name] = 0 if spec.column(name).kind is ValueKind.INT else U1
    row[spec.time_column] = row[spec.update_column] = "2024-01-01 00:00:00.000"
    row.update(values)
    return row


def test_schema_is_fixed_even_for_empty_and_all_null_pages() -> None:
    assert rows_to_table(RUNS, []).schema == RUNS.arrow_schema()
    table = rows_to_table(SPANS, [_row(SPANS)])
    assert table.schema == SPANS.arrow_schema()
    assert table.column("execution_finished_at").type == pa.timestamp("us", tz="UTC")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-01-02 03:04:05.678", datetime(2024, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)),
        ("2024-01-02 03:04:05", datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2024-01-02T03:04:05.678Z", datetime(2024, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)),
        ("2024-01-02T03:04:05.678+00:00", datetime(2024, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)),
        ("2024-01-02 03:04:05.678999", datetime(2024, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)),
        (None, None),
    ],
)
def test_timestamps(text: str | None, expected: datetime | None) -> None:
    array = convert_column(column("t", "Nullable(DateTime64(3, 'UTC'))"), [text, "2024-01-01 00:00:00.000"])
    assert array.type == pa.timestamp("us", tz="UTC")
    assert array[0].as_py() == expected


def test_timestamps_with_other_offsets_are_converted_to_utc() -> None:
    array = convert_column(column("t", "DateTime64(3, 'UTC')"), ["2024-01-02T05:04:05.5+02:00", "2024-01-02 03:04:05"])
    assert array.to_pylist() == [
        datetime(2024, 1, 2, 3, 4, 5, 500000, tzinfo=UTC),
        datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
    ]


def test_bad_timestamps_fail_with_the_column_name() -> None:
    with pytest.raises(CargoProtocolError, match="'t'"):
        convert_column(column("t", "DateTime64(3, 'UTC')"), ["soon"])


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([1, 2, None], [1, 2, None]),
        (["1", "18446744073", None], [1, 18446744073, None]),
        ([1, "2"], [1, 2]),
    ],
)
def test_integers_as_numbers_or_strings(values: list[Any], expected: list[Any]) -> None:
    array = convert_column(column("n", "Nullable(UInt64)"), values)
    assert array.type == pa.int64()
    assert array.to_pylist() == expected


def test_floats_as_numbers_or_strings() -> None:
    array = convert_column(column("c", "Float64"), [1, 2.5, "0.25", None])
    assert array.type == pa.float64()
    assert array.to_pylist() == [1.0, 2.5, 0.25, None]


@pytest.mark.parametrize(
    "values",
    [
        [True, False, None],
        [1, 0, None],
        ["true", "false", None],
        ["1", "0", None],
        [True, 0, None],
        ["TRUE", False, None],
    ],
)
def test_booleans(values: list[Any]) -> None:
    array = convert_column(column("b", "Nullable(Bool)"), values)
    assert array.to_pylist() == [True, False, None]


def test_not_a_boolean() -> None:
    with pytest.raises(CargoProtocolError, match="'b'"):
        convert_column(column("b", "Bool"), ["maybe"])


def test_strings_keep_nulls_and_stringify_odd_values() -> None:
    array = convert_column(column("s", "Nullable(String)"), ["a", None, 5, True])
    assert array.to_pylist() == ["a", None, "5", "true"]


def test_json_column_accepts_objects_and_text() -> None:
    array = convert_column(
        column("d", "String", json=True), ['{"kind":"segment"}', {"kind": "file", "n": [1, 2]}, None]
    )
    assert array.to_pylist() == ['{"kind":"segment"}', '{"kind":"file","n":[1,2]}', None]


def test_batch_data_loses_its_webhook_secret() -> None:
    form = {"kind": "form", "s3Filename": "f", "webhookUrl": "https://x", "webhookSecret": "s3cr3t"}
    nested = {"kind": "group", "inner": [{"webhookSecret": "deep"}]}
    rows = [
        _row(BATCHES, data=orjson.dumps(form).decode()),
        _row(BATCHES, data=orjson.dumps(nested).decode()),
        _row(BATCHES, data='{"kind":"segment","segmentUuid":"x"}'),
        _row(BATCHES, data=None),
    ]
    data = rows_to_table(BATCHES, rows).column("data").to_pylist()
    assert "s3cr3t" not in str(data) and "deep" not in str(data)
    assert orjson.loads(data[0]) == {"kind": "form", "s3Filename": "f", "webhookUrl": "https://x"}
    assert orjson.loads(data[1]) == {"kind": "group", "inner": [{}]}
    assert data[2:] == ['{"kind":"segment","segmentUuid":"x"}', None]


def test_unparsable_text_naming_a_secret_is_dropped() -> None:
    array = strip_secret_keys(pa.array(['{"webhookSecret": "x"', "plain"]), ["webhookSecret"])
    assert array.to_pylist() == [None, "plain"]


def test_a_missing_column_is_a_protocol_error() -> None:
    row = _row(RUNS)
    del row["status"]
    with pytest.raises(CargoProtocolError, match="status"):
        rows_to_table(RUNS, [row])


def test_null_keys_are_refused() -> None:
    with pytest.raises(CargoProtocolError, match="uuid"):
        rows_to_table(RUNS, [_row(RUNS, uuid=None)])


def test_a_realistic_spans_page() -> None:
    rows = [
        _row(
            SPANS,
            execution_index=str(i % 3),
            node_child_index=None if i % 2 else i,
            node_wait_until_finished=i % 2,
            is_group_parent=None,
            execution_credits_used_count=i / 10,
            execution_status="success",
            execution_started_at=f"2024-01-01 00:00:{i % 60:02d}.{i % 1000:03d}",
        )
        for i in range(1000)
    ]
    table = rows_to_table(SPANS, rows)
    assert table.num_rows == 1000
    assert table.column("execution_index").to_pylist()[:4] == [0, 1, 2, 0]
    assert table.column("node_wait_until_finished").to_pylist()[:2] == [False, True]
    assert table.column("execution_started_at")[61].as_py() == datetime(2024, 1, 1, 0, 0, 1, 61000, tzinfo=UTC)
