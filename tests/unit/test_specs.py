"""Table specs: keys from DESIGN.md section 1, column types, the 50-column cap, dlt hints."""

from __future__ import annotations

import pyarrow as pa
import pytest

from cargo_elt.emulator import schema as emulator_schema
from cargo_elt.source.settings import MAX_COLUMNS_TO_READ
from cargo_elt.source.specs import BATCHES, RECORDS, RUNS, SPANS, TABLE_SPECS, TableSpec, ValueKind, column


def test_keys_and_cursor_columns_follow_the_design() -> None:
    expected = {
        "runs": ("created_at", "updated_at", ("uuid",), "status", {"success", "error", "cancelled", "skipped"}),
        "batches": ("created_at", "updated_at", ("uuid",), "status", {"success", "error", "cancelled", "skipped"}),
        "spans": (
            "execution_started_at",
            "execution_updated_at",
            ("run_uuid", "node_uuid", "execution_index"),
            "execution_status",
            {"success", "error"},
        ),
        "records": ("created_at", "updated_at", ("workflow_uuid", "id"), "status", {"success", "error", "cancelled"}),
    }
    assert set(TABLE_SPECS) == set(expected)
    for name, (time, update, key, status, terminal) in expected.items():
        spec = TABLE_SPECS[name]
        assert (spec.time_column, spec.update_column, spec.primary_key) == (time, update, key)
        assert (spec.status_column, spec.terminal_statuses) == (status, frozenset(terminal))
        assert spec.sort_key == (time, *key)


@pytest.mark.parametrize("spec", TABLE_SPECS.values(), ids=TABLE_SPECS.keys())
def test_every_column_matches_the_emulators_layout(spec: TableSpec) -> None:
    """Same names and ClickHouse types as the emulator serves (the source keeps its own copy)."""
    layout = emulator_schema.TABLES_BY_NAME[spec.name]
    served = dict(layout.columns)
    for c in spec.columns:
        assert c.name in served, f"{spec.name}.{c.name} is not served"
        assert c.clickhouse_type == served[c.name], f"{spec.name}.{c.name}"


@pytest.mark.parametrize("spec", TABLE_SPECS.values(), ids=TABLE_SPECS.keys())
def test_no_nested_bookkeeping_or_node_graph_columns(spec: TableSpec) -> None:
    names = set(spec.column_names)
    assert len(spec.columns) <= MAX_COLUMNS_TO_READ
    assert "_version" not in names
    assert "nodes" not in names
    assert not any("." in name for name in names)


def test_runs_spans_records_batches_sizes() -> None:
    # runs: the 26 scalar columns of the API type minus `nodes`, plus credits_used_count
    assert len(RUNS.columns) == 26
    assert len(SPANS.columns) == 41
    assert len(RECORDS.columns) == 25
    assert len(BATCHES.columns) == 19


def test_arrow_types() -> None:
    schema = SPANS.arrow_schema()
    assert schema.field("execution_started_at").type == pa.timestamp("us", tz="UTC")
    assert schema.field("execution_finished_at").type == pa.timestamp("us", tz="UTC")
    assert schema.field("execution_index").type == pa.int64()
    assert schema.field("node_child_index").type == pa.int64()
    assert schema.field("execution_credits_used_count").type == pa.float64()
    assert schema.field("node_wait_until_finished").type == pa.bool_()
    assert schema.field("is_group_parent").type == pa.bool_()
    assert schema.field("run_uuid").type == pa.string()
    assert BATCHES.arrow_schema().field("runs_count").type == pa.int64()


def test_only_keys_and_cursors_are_non_null_in_arrow() -> None:
    schema = SPANS.arrow_schema()
    required = {name for name in schema.names if not schema.field(name).nullable}
    assert required == {"execution_started_at", "execution_updated_at", "run_uuid", "node_uuid", "execution_index"}


def test_batches_data_is_json_and_drops_the_webhook_secret() -> None:
    data = BATCHES.column("data")
    assert data.kind is ValueKind.JSON
    assert data.secret_keys == ("webhookSecret",)
    assert BATCHES.json_columns == ("data",)
    assert RUNS.json_columns == ()


def test_dlt_column_hints() -> None:
    hints = BATCHES.dlt_columns()
    assert hints["data"] == {"name": "data", "data_type": "json"}
    assert hints["uuid"] == {"name": "uuid", "nullable": False}
    assert hints["updated_at"] == {"name": "updated_at", "nullable": False, "dedup_sort": "desc"}
    assert "status" not in hints
    assert set(SPANS.dlt_columns()) == {
        "execution_started_at",
        "execution_updated_at",
        "run_uuid",
        "node_uuid",
        "execution_index",
    }


def test_without_drops_optional_columns_only() -> None:
    slim = BATCHES.without(["data_kind", "runs_status"])
    assert "data_kind" not in slim.column_names
    assert len(slim.columns) == len(BATCHES.columns) - 2
    assert slim.column("data").kind is ValueKind.JSON
    with pytest.raises(ValueError, match="cannot work without"):
        BATCHES.without(["uuid"])
    with pytest.raises(ValueError, match="cannot work without"):
        BATCHES.without(["status"])
    with pytest.raises(ValueError, match="no columns"):
        BATCHES.without(["nope"])


def test_column_helper() -> None:
    assert column("a", "Nullable(UInt32)").nullable
    assert column("a", "Nullable(UInt32)").kind is ValueKind.INT
    assert not column("a", "DateTime64(3, 'UTC')").nullable
    with pytest.raises(ValueError, match="no mapping"):
        column("a", "Array(String)")
    with pytest.raises(ValueError, match="only String"):
        column("a", "UInt64", json=True)


def _spec(**overrides: object) -> TableSpec:
    fields: dict[str, object] = {
        "name": "t",
        "columns": (column("id", "UUID"), column("s", "String"), column("at", "DateTime64(3, 'UTC')")),
        "time_column": "at",
        "update_column": "at",
        "primary_key": ("id",),
        "status_column": "s",
        "terminal_statuses": frozenset({"done"}),
    }
    fields.update(overrides)
    return TableSpec(**fields)  # type: ignore[arg-type]


def test_spec_validation() -> None:
    assert _spec().sort_key == ("at", "id")
    many = tuple(column(f"c{i}", "String") for i in range(MAX_COLUMNS_TO_READ))
    with pytest.raises(ValueError, match="at most 50"):
        _spec(columns=(*many, column("id", "UUID"), column("at", "DateTime64(3, 'UTC')")), status_column="c0")
    with pytest.raises(ValueError, match="non-null timestamp"):
        _spec(columns=(column("id", "UUID"), column("s", "String"), column("at", "Nullable(DateTime64(3, 'UTC'))")))
    with pytest.raises(ValueError, match="not selected"):
        _spec(primary_key=("other",))
    with pytest.raises(ValueError, match="plain identifier"):
        _spec(name="t; DROP TABLE x")
    with pytest.raises(ValueError, match="plain identifier"):
        _spec(
            columns=(
                column("id", "UUID"),
                column("s", "String"),
                column("at", "DateTime64(3, 'UTC')"),
                column("a b", "String"),
            )
        )
    with pytest.raises(ValueError, match="nullable"):
        _spec(columns=(column("id", "Nullable(UUID)"), column("s", "String"), column("at", "DateTime64(3, 'UTC')")))
    with pytest.raises(ValueError, match="empty primary key"):
        _spec(primary_key=())
