"""``cargo-elt check`` without a server: the schema comparison, what each cap answer means, the
sample-export verdicts, and the report (rows, verdict, exit code, JSON). The probes against a
server are tested end to end in ``tests/e2e/test_check.py``."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cargo_elt.pipelines.check import CheckReport, format_report, report_json, verdict
from cargo_elt.pipelines.probes import (
    Check,
    ProbeContext,
    ProbeSettings,
    _batch_differences,
    _export_check,
    _result_cap_answered,
    _result_cap_throws,
    _run_output_differences,
    probe_pages,
    result_cap_sql,
)
from cargo_elt.source.errors import ScanCapExceeded
from cargo_elt.source.exportformats import ExportInspection
from cargo_elt.source.extract import loadable_added, schema_diff, schema_query, server_column_types
from cargo_elt.source.planner import is_histogram_query
from cargo_elt.source.specs import TABLE_SPECS


def served(table: str, **changes: str | None) -> dict[str, str]:
    """The spec's own columns and types, with ``changes`` applied (None drops a column)."""
    types = {c.name: c.clickhouse_type for c in TABLE_SPECS[table].columns}
    for name, value in changes.items():
        if value is None:
            types.pop(name)
        else:
            types[name] = value
    return types


def test_a_server_with_the_specs_columns_differs_in_nothing() -> None:
    diff = schema_diff(TABLE_SPECS["spans"], served("spans"))
    assert (diff.renamed, diff.missing_required, diff.dropped, diff.added, diff.retyped) == ({}, (), (), {}, {})


def test_a_missing_time_column_is_required_and_another_missing_column_is_dropped() -> None:
    diff = schema_diff(TABLE_SPECS["runs"], served("runs", created_at=None, record_title=None, created="DateTime"))
    assert diff.missing_required == ("created_at",)
    assert diff.dropped == ("record_title",)
    assert diff.added == {"created": "DateTime"}


def test_the_record_key_under_its_other_name_is_mapped_not_missing() -> None:
    diff = schema_diff(TABLE_SPECS["records"], served("records", id=None, record_id="String"))
    assert diff.renamed == {"id": "record_id"}
    assert diff.missing_required == () and diff.dropped == () and diff.added == {}


def test_type_changes_and_added_columns_are_told_apart_by_what_the_sync_can_load() -> None:
    spec = TABLE_SPECS["batches"]
    diff = schema_diff(spec, served("batches", runs_count="String", tags="Array(String)", score="Float64"))
    assert diff.retyped == {"runs_count": "String"}
    loaded, left_out = loadable_added(spec, diff)
    assert [c.name for c in loaded] == ["score"] and left_out == {"tags": "Array(String)"}


def test_ignored_columns_are_neither_added_nor_compared() -> None:
    diff = schema_diff(TABLE_SPECS["runs"], served("runs", _version="UInt64", **{"executions.status": "Array(String)"}))
    assert diff.added == {}


def test_schema_answers_are_read_by_their_type_keys_only() -> None:
    row = {"toTypeName(any(uuid))": "UUID", "toTypeName(any(`odd name`))": "String", "__cargo_open": 3}
    assert server_column_types(row) == {"uuid": "UUID", "odd name": "String"}
    assert schema_query(TABLE_SPECS["spans"]).endswith("FROM spans WHERE 0")


# -- caps ---------------------------------------------------------------------------------------------


def test_the_result_cap_probe_asks_for_eleven_thousand_rows_in_branches() -> None:
    sql = result_cap_sql("spans")
    assert sql.count("UNION ALL") == 10 and sql.count("LIMIT 100") == 11 and "range(10)" in sql


@pytest.mark.parametrize(
    ("message", "result", "cap"),
    [
        (
            "Code: 396. DB::Exception: Limit for result exceeded, max rows: 10.00 thousand, current rows: 11.00 k",
            "ok",
            10_000,
        ),
        (
            "Code: 396. DB::Exception: Limit for result exceeded, max rows: 5.00 thousand, current rows: 5.50 thousand",
            "warn",
            5_000,
        ),
        ("Code: 396. DB::Exception: Limit for result exceeded", "ok", None),
    ],
)
def test_a_396_is_read_for_the_cap_it_states(message: str, result: str, cap: int | None) -> None:
    check = _result_cap_throws("result cap", message)
    assert check.result == result and check.data == {"mode": "throw", "code": 396, "max_rows": cap}
    assert not check.blocks


def test_truncation_below_a_page_loses_rows_and_fails_the_sql_tables() -> None:
    check = _result_cap_answered("result cap", 8_192, 11_000, ("runs", "batch_failures"))
    assert check.result == "fail" and check.blocks == ("runs", "batch_failures")
    assert "8,192 of 11,000" in check.detail and "losing rows" in check.detail


def test_truncation_at_or_above_a_page_is_a_difference_not_a_loss() -> None:
    check = _result_cap_answered("result cap", 10_000, 11_000, ("runs",))
    assert check.result == "warn" and not check.blocks and check.data["mode"] == "truncate"
    assert _result_cap_answered("result cap", 11_000, 11_000, ("runs",)).data["mode"] == "none"


# -- sample exports ------------------------------------------------------------------------------------

RUN_FIELDS = {"run_uuid": "_uuid", "created_at": "_created_at", "output": "output"}


def inspection(fmt: str, fields: dict[str, str], **kwargs: object) -> ExportInspection:
    keys = tuple(kwargs.pop("keys", tuple(fields.values())))  # type: ignore[arg-type]
    return ExportInspection("run_outputs", fmt, keys, fields, rows=3, parsed=3, **kwargs)  # type: ignore[arg-type]


def test_the_assumed_run_output_layout_has_no_differences() -> None:
    assert _run_output_differences(inspection("a JSON array", RUN_FIELDS)) == []


def test_every_difference_from_the_assumed_run_output_layout_is_named() -> None:
    fields = {"run_uuid": "uuid", "created_at": "createdAt"}
    found = _run_output_differences(inspection("NDJSON (gzip)", fields, keys=("uuid", "createdAt", "extra")))
    assert found == [
        "arrives as NDJSON, not a JSON array",
        "gzip-compressed",
        "keys spelled like 'createdAt', not '_created_at' (mapped)",
        "no output key (outputs load as null)",
        "keys not loaded: extra",
    ]
    assert _batch_differences(inspection("CSV", {"output": "result"})) == [
        "the output is in column 'result', not 'output'"
    ]


def test_a_refused_file_fails_its_table_and_a_readable_one_lists_what_differs() -> None:
    refused = ExportInspection("batch_outputs", "unknown", (), problem="batch_outputs: cannot read ... an HTML page")
    check = _export_check(
        "export batch_outputs", "batches/x/download", [refused], _batch_differences, ("batch_outputs",), 0
    )
    assert check.result == "fail" and check.blocks == ("batch_outputs",) and "HTML page" in check.detail
    other = inspection("CSV (gzip)", {"output": "result"}, keys=("_id", "result"))
    check = _export_check(
        "export batch_outputs", "batches/x/download", [other], _batch_differences, ("batch_outputs",), 0
    )
    assert check.result == "warn" and not check.blocks
    assert "gzip-compressed" in check.detail and "'result'" in check.detail


@pytest.mark.parametrize(("allowed", "result"), [(0, "fail"), (1, "fail"), (2, "warn")])
def test_rows_a_sync_would_skip_fail_unless_max_skipped_rows_allows_them(allowed: int, result: str) -> None:
    skipping = inspection("a JSON array", RUN_FIELDS, skipped=("row 2: no creation time", "row 3: no run uuid"))
    check = _export_check(
        "export run_outputs", "runs/download-outputs", [skipping], _run_output_differences, ("run_outputs",), allowed
    )
    assert check.result == result and "2 the sync would skip (row 2: no creation time)" in check.detail
    assert check.blocks == (("run_outputs",) if result == "fail" else ())


# -- the report ----------------------------------------------------------------------------------------


def report(*checks: Check) -> CheckReport:
    return CheckReport(
        "http://cargo.test", ["runs", "spans", "batch_failures"], list(checks), {"uuid": "u", "name": "W"}
    )


def test_a_report_without_failures_exits_0_and_says_every_table_loads() -> None:
    found = report(Check("a", "ok", "fine"), Check("b", "warn", "differs"))
    assert found.exit_code == 0 and found.blocked == {}
    assert verdict(found) == "every selected table can be loaded (3 tables, 1 warning)"


def test_a_failure_names_the_tables_it_stops_and_exits_1() -> None:
    found = report(
        Check("columns of runs", "fail", "no runs.created_at", ("runs",)),
        Check("queries of batch_failures", "fail", "Code 47", ("batch_failures",)),
        Check("unselected", "fail", "not a selected table", ("records",)),
    )
    assert found.exit_code == 1
    assert found.blocked == {"runs": ["columns of runs"], "batch_failures": ["queries of batch_failures"]}
    assert verdict(found) == (
        "2 of 3 selected tables cannot be loaded: runs (columns of runs); batch_failures (queries of batch_failures)"
    )
    document = json.loads(report_json(found))
    assert document["exit_code"] == 1
    assert document["tables"]["spans"] == {"loadable": True, "failed_checks": []}
    assert document["tables"]["runs"] == {"loadable": False, "failed_checks": ["columns of runs"]}
    assert [c["result"] for c in document["checks"]] == ["fail", "fail", "fail"]


def test_the_table_wraps_details_under_their_column_within_the_width() -> None:
    long = "a detail " * 40
    text = format_report(report(Check("server clock", "ok", "+0 s"), Check("columns of runs", "warn", long)), 100)
    lines = text.splitlines()
    assert lines[0] == "cargo-elt check of http://cargo.test (workspace W, u)"
    header = lines[2]
    assert header.split() == ["check", "result", "detail"]
    column = header.index("detail")
    assert all(len(line) <= 100 for line in lines[:-1])
    continued = [line for line in lines[4:-2] if not line.startswith("columns of runs")]
    assert continued and all(line[:column].strip() == "" for line in continued)
    assert lines[-1] == "every selected table can be loaded (3 tables, 1 warning)"


# -- the page probe on a table too large to scan far (a stub server: no 10 M-row table runs here) --------


class _ScanCappedServer:
    """Answers the empty-range histogram and the hour's page with no rows, and refuses any longer
    stretch with the scan cap, as a server holding millions of rows a day would."""

    def __init__(self) -> None:
        self.pages: list[str] = []

    def query(self, sql: str) -> list[dict[str, object]]:
        if is_histogram_query(sql):
            return []
        self.pages.append(sql)
        if len(self.pages) > 1:
            raise ScanCapExceeded(400, 158, "Code: 158. DB::Exception: Limit for rows exceeded", sql)
        return []


def test_the_page_probe_stops_at_the_scan_cap_and_says_what_it_could_not_verify(tmp_path: Path) -> None:
    server = _ScanCappedServer()
    ctx = ProbeContext(server, ["spans"], ProbeSettings(), tmp_path, server_time=datetime(2026, 11, 1, tzinfo=UTC))  # type: ignore[arg-type]
    ctx.specs["spans"] = TABLE_SPECS["spans"]
    check = probe_pages(ctx, "spans")
    assert check.result == "warn" and not check.blocks
    assert check.detail == (
        "no rows in the last hour, and a page of the last day was refused (code 158): "
        "the values' encoding is not verified"
    )
    assert len(server.pages) == 2, "the 7- and 90-day pages are not asked once a day is refused"
