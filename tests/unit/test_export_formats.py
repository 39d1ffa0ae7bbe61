"""The export-file detectors and parsers (``sources/cargo/exportformats.py``), on files written here.

These are the pure parts of reading an export: recognising a file by its bytes, mapping its keys,
reading its rows, accounting for them. The same code runs against the emulator's files in
``tests/e2e/test_export_layouts.py``.
"""

from __future__ import annotations

import gzip
import logging
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cargo_elt.source.errors import CargoError, CargoProtocolError, SkippedRowsError
from cargo_elt.source.exportformats import (
    BATCH_OUTPUT_LAYOUTS,
    RUN_OUTPUT_LAYOUTS,
    SEGMENT_LAYOUTS,
    ExportFormatError,
    ExportTally,
    FileFormat,
    Unreadable,
    batch_output_column,
    detect_format,
    export_urls,
    inspect_export,
    normalised_key,
    open_records,
    recognise,
    run_output_entry,
    run_output_keys,
)
from cargo_elt.source.extract import TableStats
from cargo_elt.source.segmentfiles import read_export_files

RUN = "3b8f8a52-2c43-4a8e-9a4e-0e5b7f0a3c11"
ENTRY = {
    "_uuid": RUN,
    "_workspace_uuid": "a0000000-0000-4000-8000-000000000001",
    "_workflow_uuid": "b0000000-0000-4000-8000-000000000002",
    "_record_id": "rec-1",
    "_record_title": "Acme",
    "_created_at": "2026-10-01T10:00:00.123Z",
    "_finished_at": "2026-10-01T10:00:05.000Z",
    "_status": "success",
    "_error_message": None,
    "input": {"domain": "acme.com"},
    "output": {"employees": 12},
}


def camel(key: str) -> str:
    head, *rest = key.lstrip("_").split("_")
    return head + "".join(p.capitalize() for p in rest)


def write(tmp_path: Path, name: str, data: bytes, *, gz: bool = False) -> Path:
    path = tmp_path / name
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


# -- recognising files -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("head", "layout"),
    [
        (b"", "empty"),
        (b"  \n\t", "empty"),
        (b"[\n{}]", "json-array"),
        (b"\xef\xbb\xbf  [", "json-array"),
        (b'{"a": 1}\n{"a": 2}\n', "ndjson"),
        (b"PAR1\x15\x04", "parquet"),
        (b"_id,name\n1,x\n", "csv"),
        ("nom,prénom\n".encode(), "csv"),
    ],
)
def test_layouts_are_recognised_by_their_first_bytes(head: bytes, layout: str) -> None:
    found = recognise(head)
    assert isinstance(found, FileFormat) and found.layout == layout


@pytest.mark.parametrize(
    ("head", "why"),
    [
        (b"<?xml version='1.0'?><Error><Code>AccessDenied</Code></Error>", "HTML or XML"),
        (b"<!DOCTYPE html><html>", "HTML or XML"),
        (b"PK\x03\x04\x14\x00", "ZIP archive"),
        (b"abc\x00def", "binary data"),
        (b"\xff\xfe\xfd\xfc plus text afterwards", "neither UTF-8"),
    ],
)
def test_what_is_no_export_is_refused_by_its_first_bytes(head: bytes, why: str) -> None:
    found = recognise(head)
    assert isinstance(found, str) and why in found


def test_gzip_is_found_by_magic_bytes_whatever_the_name(tmp_path: Path) -> None:
    path = write(tmp_path, "outputs.json", b'{"a":1}\n', gz=True)  # named .json, holds gzip
    fmt = detect_format(path, table="run_outputs", export="x", accepted=RUN_OUTPUT_LAYOUTS)
    assert fmt == FileFormat("ndjson", gzip=True)
    plain = write(tmp_path, "outputs.csv.gz", b"[]")  # named .gz, holds plain JSON
    assert detect_format(plain, table="run_outputs", export="x", accepted=RUN_OUTPUT_LAYOUTS) == FileFormat(
        "json-array"
    )


def test_a_refused_file_names_table_export_first_bytes_and_what_was_expected(tmp_path: Path) -> None:
    path = write(tmp_path, "f", b"<html><head><title>502 Bad Gateway</title></head></html>")
    with pytest.raises(ExportFormatError) as caught:
        detect_format(
            path, table="run_outputs", export="runs/download-outputs (workflow w)", accepted=RUN_OUTPUT_LAYOUTS
        )
    message = str(caught.value)
    assert message.startswith("run_outputs: ")
    assert "runs/download-outputs (workflow w)" in message
    assert "b'<html><head><title>502 Bad Gateway</title>" in message
    assert "expected a JSON array of objects, NDJSON (one JSON object per line) or CSV with a header row" in message


def test_a_layout_not_accepted_for_the_export_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "f", b'{"_id": 1}\n')
    with pytest.raises(ExportFormatError, match=r"NDJSON, starting b'\{\"_id\": 1\}\\n'; expected CSV with a header"):
        detect_format(path, table="segment_x", export="shard 1", accepted=SEGMENT_LAYOUTS)


def test_gzip_that_does_not_decompress_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "f", b"\x1f\x8b\x08\x00garbage")
    with pytest.raises(ExportFormatError, match="gzip data that does not decompress"):
        detect_format(path, table="batch_outputs", export="b", accepted=BATCH_OUTPUT_LAYOUTS)


# -- reading rows ------------------------------------------------------------------------------------


def test_json_array_rows_and_non_objects(tmp_path: Path) -> None:
    path = write(tmp_path, "f", orjson.dumps([{"a": 1}, 7, {"b": None}]))
    fmt = detect_format(path, table="t", export="e", accepted=RUN_OUTPUT_LAYOUTS)
    records = open_records(path, fmt, table="t", export="e")
    assert records.keys == ["a", "b"]
    assert list(records.items) == [
        {"a": 1},
        Unreadable("element 1", "an element that is not a JSON object", "a JSON number"),
        {"b": None},
    ]


def test_ndjson_bad_lines_are_unreadable_rows_blank_lines_no_rows(tmp_path: Path) -> None:
    path = write(tmp_path, "f", b'{"a": 1}\n\n{"a": 2\n[1]\n{"a": 3}\n', gz=True)
    fmt = detect_format(path, table="t", export="e", accepted=RUN_OUTPUT_LAYOUTS)
    items = list(open_records(path, fmt, table="t", export="e").items)
    assert items[0] == {"a": 1} and items[3] == {"a": 3}
    assert isinstance(items[1], Unreadable) and items[1].position == "line 3"
    assert items[1].reason == "a line that is not JSON" and items[1].detail
    assert items[2] == Unreadable("line 4", "a line that is not a JSON object", "a JSON array")


def test_a_pretty_printed_object_is_no_ndjson(tmp_path: Path) -> None:
    path = write(tmp_path, "f", b'{\n  "runs": [\n    {"a": 1}\n  ]\n}\n')
    fmt = detect_format(path, table="run_outputs", export="e", accepted=RUN_OUTPUT_LAYOUTS)
    with pytest.raises(ExportFormatError, match="whose first line is no JSON object"):
        open_records(path, fmt, table="run_outputs", export="e")


def test_a_truncated_json_array_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "f", b'[{"a": 1}, {"a"')
    fmt = detect_format(path, table="run_outputs", export="e", accepted=RUN_OUTPUT_LAYOUTS)
    with pytest.raises(ExportFormatError, match="a JSON array that does not parse"):
        open_records(path, fmt, table="run_outputs", export="e")


def test_csv_rows_with_the_wrong_number_of_cells_are_unreadable(tmp_path: Path) -> None:
    path = write(tmp_path, "f", b'a,b\n1,"two\nlines"\n3\n\n4,5\n')
    fmt = detect_format(path, table="t", export="e", accepted=BATCH_OUTPUT_LAYOUTS)
    records = open_records(path, fmt, table="t", export="e")
    assert records.keys == ["a", "b"] and records.text_values
    assert list(records.items) == [
        {"a": "1", "b": "two\nlines"},
        Unreadable("line 4", "a row whose cells do not match the header", "1 cells where the header has 2"),
        {"a": "4", "b": "5"},
    ]


# -- run outputs -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("_created_at", "created_at"),
        ("createdAt", "created_at"),
        ("CreatedAt", "created_at"),
        ("created-at", "created_at"),
        ("_uuid", "uuid"),
        ("workflowUUID", "workflow_uuid"),
    ],
)
def test_keys_are_normalised(key: str, expected: str) -> None:
    assert normalised_key(key) == expected


@pytest.mark.parametrize("style", ["underscore", "camel", "snake"])
def test_run_output_keys_in_every_spelling_give_the_same_row(style: str) -> None:
    spell = {"underscore": str, "camel": camel, "snake": lambda k: k.lstrip("_")}[style]
    entry = {spell(k): v for k, v in ENTRY.items()}
    keys = run_output_keys(list(entry), "end", table="run_outputs", export="e", fmt=FileFormat("json-array"))
    assert keys.unknown == ()
    row = run_output_entry(entry, keys, text_values=False)
    assert isinstance(row, dict)
    assert row["run_uuid"] == RUN and row["record_id"] == "rec-1" and row["output"] == {"employees": 12}
    assert row["created_at"].isoformat() == "2026-10-01T10:00:00.123000+00:00"


def test_run_output_csv_cells_are_parsed_like_json() -> None:
    text = {
        k: ("" if v is None else orjson.dumps(v).decode() if isinstance(v, dict) else str(v)) for k, v in ENTRY.items()
    }
    keys = run_output_keys(list(text), None, table="run_outputs", export="e", fmt=FileFormat("csv"))
    row = run_output_entry(text, keys, text_values=True)
    assert isinstance(row, dict)
    assert row["input"] == {"domain": "acme.com"} and row["error_message"] is None


def test_the_output_may_be_named_after_the_node_slug() -> None:
    entry = {**{k: v for k, v in ENTRY.items() if k != "output"}, "enrich": {"x": 1}}
    keys = run_output_keys(list(entry), "enrich", table="run_outputs", export="e", fmt=FileFormat("json-array"))
    assert keys.fields["output"] == "enrich"


def test_run_output_files_without_required_or_with_clashing_keys_are_refused() -> None:
    fmt = FileFormat("ndjson", gzip=True)
    without = [k for k in ENTRY if k != "_created_at"] + ["when"]
    with pytest.raises(
        ExportFormatError, match=r"none of which reads as created_at.*NDJSON \(gzip\)|NDJSON \(gzip\).*none"
    ):
        run_output_keys(without, None, table="run_outputs", export="e", fmt=fmt)
    with pytest.raises(ExportFormatError, match="'_created_at' and 'createdAt' both read as created_at"):
        run_output_keys([*ENTRY, "createdAt"], None, table="run_outputs", export="e", fmt=fmt)


def test_a_missing_output_key_is_refused_when_unknown_keys_may_hold_it() -> None:
    fmt = FileFormat("json-array")
    keys = [k for k in ENTRY if k != "output"]
    with pytest.raises(ExportFormatError, match=r"no output key, and \['payload'\] are unknown keys"):
        run_output_keys([*keys, "payload"], "end", table="run_outputs", export="e", fmt=fmt)
    mapped = run_output_keys(keys, "end", table="run_outputs", export="e", fmt=fmt)  # nulls left out: accepted
    assert "output" not in mapped.fields


def test_entries_that_cannot_be_placed_say_why() -> None:
    keys = run_output_keys(list(ENTRY), None, table="run_outputs", export="e", fmt=FileFormat("json-array"))
    missing = {k: v for k, v in ENTRY.items() if k != "_created_at"}
    assert run_output_entry(missing, keys, text_values=False, position="row 2") == Unreadable(
        "row 2", "no creation time (_created_at)", f"run {RUN}"
    )
    wrong = {**ENTRY, "_created_at": "yesterday"}
    assert run_output_entry(wrong, keys, text_values=False) == Unreadable(
        "", "_created_at is not a timestamp", f"run {RUN}: 'yesterday'"
    )
    assert run_output_entry({**ENTRY, "_uuid": None}, keys, text_values=False) == Unreadable("", "no run uuid (_uuid)")
    numbered = run_output_entry({**ENTRY, "_record_id": 42}, keys, text_values=False)
    assert isinstance(numbered, dict) and numbered["record_id"] == "42"


# -- batch outputs -----------------------------------------------------------------------------------


def test_batch_output_column_by_name_then_slug() -> None:
    fmt = FileFormat("csv")
    assert batch_output_column(["_id", "name", "output"], "end", table="b", export="e", fmt=fmt) == "output"
    assert batch_output_column(["_id", "result", "_output"], "end", table="b", export="e", fmt=fmt) == "_output"
    assert batch_output_column(["_id", "end"], "end", table="b", export="e", fmt=fmt) == "end"
    with pytest.raises(ExportFormatError) as caught:
        batch_output_column(["_id", "name", "zzz"], "end", table="batch_outputs", export="batches/b/download", fmt=fmt)
    message = str(caught.value)
    assert "batch_outputs" in message and "batches/b/download" in message
    assert "CSV with header ['_id', 'name', 'zzz'], which has no output column" in message
    assert "'output' or '_output'" in message and "'end'" in message


# -- accounting and skips ----------------------------------------------------------------------------


def test_a_tally_that_does_not_add_up_is_an_error() -> None:
    tally = ExportTally("run_outputs", "e", in_file=10, loaded=7, skipped=1, elsewhere=1)
    with pytest.raises(CargoError, match="holds 10 rows, but 7 were loaded, 1 skipped and 1 left to another window"):
        tally.check()
    ExportTally("run_outputs", "e", in_file=9, loaded=7, skipped=1, elsewhere=1).check()


def test_skips_are_logged_counted_and_fail_past_the_allowance(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="cargo_elt.source")
    stats = TableStats("run_outputs")
    for index in range(5):
        stats.skip(1, "an entry without a creation time", f"element {index}")
    stats.skip(2, "a row that cannot be read", "line 7")
    logged = [r.getMessage() for r in caplog.records]
    assert sum("an entry without a creation time" in m for m in logged) == 3, "three logged one by one"
    assert stats.skipped == 7
    with pytest.raises(SkippedRowsError) as caught:
        stats.enforce_skip_limit()
    message = str(caught.value)
    assert "run_outputs: 7 row(s) could not be read or placed" in message
    assert "5 x an entry without a creation time" in message and "2 x a row that cannot be read" in message
    assert "set sources.cargo.max_skipped_rows to at least 7" in message
    stats.max_skipped = 7
    stats.enforce_skip_limit()
    assert "within sources.cargo.max_skipped_rows = 7" in caplog.records[-1].getMessage()


def test_export_urls_takes_both_shapes_and_refuses_neither() -> None:
    assert export_urls({"url": "https://f/1"}, "x") == ["https://f/1"]
    assert export_urls({"urls": ["https://f/1", "https://f/2"]}, "x") == ["https://f/1", "https://f/2"]
    assert export_urls({"urls": []}, "x") == []
    with pytest.raises(CargoProtocolError, match=r"runs/download-outputs answered without url\(s\): keys \['file'\]"):
        export_urls({"file": "https://f/1"}, "runs/download-outputs")


# -- segment shards ----------------------------------------------------------------------------------

COLUMNS = {"_id": "string", "n": "number"}


def test_segment_shards_need_the_id_column_and_skip_rows_without_one(tmp_path: Path) -> None:
    stats = TableStats("segment_x")
    good = write(tmp_path, "s0", b"_id,n\na,1\n,2\nc,3\n", gz=True)
    [table] = list(read_export_files([good], COLUMNS, table="segment_x", export="shard", id_column="_id", stats=stats))
    assert table.column("_id").to_pylist() == ["a", "c"]
    assert stats.skipped == 1 and stats.skip_reasons == {"a row without its _id": 1}
    no_id = write(tmp_path, "s1", b"id,n\na,1\n")
    with pytest.raises(ExportFormatError, match=r"CSV with columns \['id', 'n'\], without the model's id column '_id'"):
        list(read_export_files([no_id], COLUMNS, table="segment_x", export="shard", id_column="_id", stats=stats))
    page = write(tmp_path, "s2", b"<?xml version='1.0'?><Error><Code>NoSuchKey</Code></Error>")
    with pytest.raises(ExportFormatError, match=r"segment_x: cannot read the file of shard: an HTML or XML document"):
        list(read_export_files([page], COLUMNS, table="segment_x", export="shard", id_column="_id", stats=stats))
    assert not any(p.exists() for p in (good, no_id, page)), "spooled shards are deleted, read or refused"


def test_parquet_shards_are_accounted_too(tmp_path: Path) -> None:
    path = tmp_path / "s.parquet"
    pq.write_table(pa.table({"_id": ["a", None, "c"], "n": [1.0, 2.0, 3.0]}), path)
    stats = TableStats("segment_x")
    tables = list(read_export_files([path], COLUMNS, delete=False, table="segment_x", id_column="_id", stats=stats))
    assert sum(t.num_rows for t in tables) == 2 and stats.skipped == 1
    seen = inspect_export(path, "segment")
    assert (seen.format, seen.rows, seen.parsed, seen.skipped) == ("parquet", 3, 2, ("1 rows: no _id",))


# -- inspection (what ``cargo-elt check`` reuses) ---------------------------------------------------------


def test_inspect_run_outputs(tmp_path: Path) -> None:
    entries: list[dict[str, Any]] = [
        {camel(k): v for k, v in ENTRY.items()},
        {camel(k): v for k, v in ENTRY.items() if k != "_created_at"},
    ]
    path = write(tmp_path, "f", b"".join(orjson.dumps(e) + b"\n" for e in entries), gz=True)
    seen = inspect_export(path, "run_outputs", output_node_slug="end")
    assert seen.format == "NDJSON (gzip)" and seen.problem is None
    assert seen.fields["created_at"] == "createdAt" and seen.fields["run_uuid"] == "uuid"
    assert "createdAt" in seen.keys
    assert (seen.rows, seen.parsed) == (2, 1)
    assert seen.skipped == (f"row 2: no creation time (createdAt) (run {RUN})",)


def test_inspect_batch_outputs_and_refusals(tmp_path: Path) -> None:
    path = write(tmp_path, "b", b"_id,name,result\na,x,{}\nb,y\n")
    seen = inspect_export(path, "batch_outputs", output_node_slug="end")
    assert (seen.format, seen.fields, seen.rows, seen.parsed) == ("CSV", {"output": "result"}, 2, 1)
    assert seen.skipped == ("line 3: a row whose cells do not match the header (2 cells where the header has 3)",)
    refused = inspect_export(write(tmp_path, "c", b"_id,name\na,x\n"), "batch_outputs")
    assert refused.problem is not None and "has no output column" in refused.problem
    html = inspect_export(write(tmp_path, "d", b"<html></html>"), "run_outputs")
    assert html.format == "unknown" and html.problem is not None and "HTML or XML" in html.problem


def test_a_long_header_is_shown_by_its_first_and_last_names() -> None:
    header = [f"field_{i}" for i in range(30)] + ["payload"]
    with pytest.raises(ExportFormatError) as caught:
        batch_output_column(header, None, table="batch_outputs", export="e", fmt=FileFormat("csv", gzip=True))
    assert "CSV (gzip) with header ['field_0', " in str(caught.value)
    assert "..., 'field_27', 'field_28', 'field_29', 'payload'] (31 in all), which has no output column" in str(
        caught.value
    )


# -- list endpoints: catalogue and run metrics --------------------------------------------------------


class Answers:
    """Stands in for ``CargoClient.call`` with fixed answers: the emulator lists only well-formed objects,
    so a list holding a broken item cannot be served by it; the parsing under test is the real one."""

    def __init__(self, answers: dict[str, list[dict[str, Any]]]) -> None:
        self.answers = answers

    def call(self, method: str, path: str, payload: Any = None, params: Any = None) -> dict[str, Any]:
        pages = self.answers[path]
        offset = int((params or {}).get("offset", 0)) // 100
        return pages[offset] if offset < len(pages) else {"releases": []}


def test_catalogue_items_without_a_uuid_are_counted_not_dropped() -> None:
    from cargo_elt.source.catalogue import DIMENSIONS, current_rows

    agent = {"uuid": "c0000000-0000-4000-8000-000000000003", "name": "a", "slug": "a"}
    client: Any = Answers({"ai/agents/list": [{"agents": [agent, {"name": "no uuid"}, "text"]}]})
    stats = TableStats("agents")
    rows = current_rows(client, DIMENSIONS["agents"], stats.skip)
    assert [r["uuid"] for r in rows] == [agent["uuid"]]
    assert stats.skipped == 2
    with pytest.raises(SkippedRowsError, match="agents: 2 row"):
        stats.enforce_skip_limit()


def test_release_nodes_without_a_uuid_are_skipped_and_short_pages_follow_the_items_sent() -> None:
    from cargo_elt.source.catalogue import DIMENSIONS, current_rows

    def release(index: int, nodes: list[Any]) -> dict[str, Any]:
        return {"uuid": f"d0000000-0000-4000-8000-{index:012d}", "workflowUuid": "w", "nodes": nodes}

    node = {"uuid": "e0000000-0000-4000-8000-000000000001", "slug": "end", "childrenUuids": []}
    first = [release(i, [node]) for i in range(99)] + [{"no": "uuid"}]  # a full page, one item unusable
    second = [release(100, [node, {"slug": "lost"}, 7])]
    client: Any = Answers({"orchestration/releases/list": [{"releases": first}, {"releases": second}]})
    stats = TableStats("release_nodes")
    rows = current_rows(client, DIMENSIONS["release_nodes"], stats.skip)
    assert len(rows) == 100, "the second page is read although the first held an unusable item"
    assert all(r["node_uuid"] == node["uuid"] for r in rows)
    assert stats.skip_reasons == {
        "an item of orchestration/releases/list that is not an object with a uuid": 1,
        "a row of release_nodes without its key ['release_uuid', 'node_uuid']": 2,
    }


def test_run_metrics_without_a_node_are_counted_and_an_answer_without_metrics_is_refused() -> None:
    from datetime import UTC, datetime

    from cargo_elt.source.metrics import metric_rows

    at = datetime(2026, 11, 1, tzinfo=UTC)
    stats = TableStats("run_metrics")
    body = {"runMetrics": [{"nodeUuid": "n1", "totalExecutionsCount": 3}, {"totalExecutionsCount": 1}]}
    rows = metric_rows(body, "w", None, at, stats)
    assert [r["node_uuid"] for r in rows] == ["n1"] and stats.skipped == 1
    assert metric_rows({"runMetrics": None}, "w", None, at, stats) == []
    with pytest.raises(CargoProtocolError, match="without a 'runMetrics' list"):
        metric_rows({"metrics": []}, "w", None, at, stats)
