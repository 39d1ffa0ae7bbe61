"""The sync's report: the ``sync --json`` document and the ``_cargo_sync_runs`` rows carry every figure of
``TableSummary``, so a figure added there (``skipped`` was one) needs no change in the report."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime

from cargo_elt.pipelines.sync import TableSummary
from cargo_elt.pipelines.syncruns import SyncReport, frontiers_of, rows_as_arrow, sync_run_columns

STARTED = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
FINISHED = datetime(2026, 11, 1, 12, 0, 42, 500000, tzinfo=UTC)


@dataclass
class SummaryWithPages(TableSummary):
    """``TableSummary`` with one more figure, as a later change may add one."""

    pages: int = 0


def report(summaries: list[TableSummary], status: str = "ok", error: str | None = None) -> SyncReport:
    return SyncReport(
        sync_id="5b0c8e6e-0000-4000-8000-000000000001",
        pipeline_name="cargo",
        destination="duckdb",
        dataset="cargo",
        mode="incremental",
        status=status,
        started_at=STARTED,
        finished_at=FINISHED,
        seconds=42.5004,
        load_ids=["1790000000.1", "1790000001.2"],
        summaries=summaries,
        frontiers={"runs": "2026-11-01T11:58:00+00:00", "workflows": None},
        error=error,
    )


def test_the_json_document_has_every_figure_and_the_frontier_per_table() -> None:
    done = report([TableSummary("runs", 120, 3, 1, 2.34567), TableSummary("workflows", 9, 2, 0, 0.2)])
    document = json.loads(json.dumps(done.document()))
    assert document["tables"] == {
        "runs": {
            "rows": 120,
            "queries": 3,
            "retries": 1,
            "seconds": 2.346,
            "skipped": 0,
            "frontier": "2026-11-01T11:58:00+00:00",
        },
        "workflows": {"rows": 9, "queries": 2, "retries": 0, "seconds": 0.2, "skipped": 0, "frontier": None},
    }
    assert document["started_at"] == "2026-11-01T12:00:00Z"
    assert document["finished_at"] == "2026-11-01T12:00:42.500000Z"
    assert (document["status"], document["seconds"], document["error"]) == ("ok", 42.5, None)
    assert document["load_ids"] == ["1790000000.1", "1790000001.2"]


def test_an_added_figure_reaches_the_document_the_rows_and_the_columns() -> None:
    done = report([SummaryWithPages("runs", 120, 3, 1, 2.0, skipped=4, pages=7)])
    assert done.document()["tables"]["runs"]["pages"] == 7
    (row,) = done.rows()
    assert (row["pages"], row["skipped"]) == (7, 4)
    columns = sync_run_columns(SummaryWithPages)
    assert columns["pages"]["data_type"] == "bigint"
    assert list(columns).index("pages") < list(columns).index("frontier")
    table = rows_as_arrow(done.rows(), columns)
    assert table.column_names == list(columns)
    assert table.column("pages").to_pylist() == [7]


def test_the_rows_load_as_arrow_typed_from_the_columns() -> None:
    """Parquet, like the source's tables: a column null in every row (``error`` of a good sync) keeps its type."""
    columns = sync_run_columns(TableSummary)
    table = rows_as_arrow(report([TableSummary("runs", 120, 3, 1, 2.0, 4)]).rows(), columns)
    assert str(table.schema.field("error").type) == "string"
    assert str(table.schema.field("started_at").type) == "timestamp[us, tz=UTC]"
    assert str(table.schema.field("seconds").type) == "double"
    assert str(table.schema.field("skipped").type) == "int64"
    assert table.column("skipped").to_pylist() == [4]
    assert table.column("error").to_pylist() == [None]
    assert not table.schema.field("sync_id").nullable


def test_one_row_per_table_with_the_sync_it_belongs_to() -> None:
    failed = report([TableSummary("runs", 0, 8, 7, 1.0), TableSummary("workflows", 9, 2, 0, 0.2)], "failed", "boom")
    rows = failed.rows()
    assert [r["table_name"] for r in rows] == ["runs", "workflows"]
    assert {r["sync_id"] for r in rows} == {"5b0c8e6e-0000-4000-8000-000000000001"}
    assert all(r["load_id"] == "1790000001.2" and r["status"] == "failed" and r["error"] == "boom" for r in rows)
    assert rows[0]["retries"] == 7
    assert rows[1]["frontier"] is None
    columns = sync_run_columns(TableSummary)
    assert set(rows[0]) == set(columns)
    assert all(c.get("description") for c in columns.values()), "every column is described (column comments)"
    assert {n: columns[n]["data_type"] for n in ("rows", "seconds", "started_at", "frontier")} == {
        "rows": "bigint",
        "seconds": "double",
        "started_at": "timestamp",
        "frontier": "text",
    }


def test_frontiers_come_from_the_source_schema_of_the_pipeline_state() -> None:
    state = {
        "default_schema_name": "cargo",
        "sources": {
            "cargo": {"resources": {"runs": {"frontier": "2026-11-01T11:58:00+00:00"}, "workflows": {"rows": {}}}}
        },
    }
    assert frontiers_of(state, ["runs", "workflows", "spans"]) == {
        "runs": "2026-11-01T11:58:00+00:00",
        "workflows": None,
        "spans": None,
    }
    assert frontiers_of({}, ["runs"]) == {"runs": None}
