"""The export files behind signed URLs: runs CSV (gzipped), run outputs, batch and segment CSVs.

Each producer turns a ``FileSpec`` (made by the endpoint that answered ``{url}``) into a stream of
chunks. Rows are read a page at a time (keyset paging on the table's sort key where the export can
be large) and encoded as they go, so memory stays flat whatever the file size. Layouts follow
REFERENCE.md section 7; where it says "unknown" the choice is documented on the producer.
"""

from __future__ import annotations

import csv
import io
import zlib
from collections.abc import Iterable, Iterator
from typing import Any

import orjson

from ..downloads import FileBody, FileSpec, register_producer
from ..layouts import DIGEST_MODULUS, MALFORMED_BODY, ExportLayout, noted, uuid_digest
from ..state import EmulatorState
from ..store import ClickHouseStore
from .common import Where, lit
from .facts import RUN_TABLE, run_json, table
from .filters import after_sql, key_select_sql, quoted
from .limits import EXPORT_PAGE_ROWS, HIDE_DELETED_RUNS, SEGMENT_EXPORT_PAGE_ROWS, SEGMENT_EXPORT_SORTED_PAGE_ROWS
from .payloads import RunsDownloadOutputsPayload, RunsDownloadPayload, SegmentDownloadPayload
from .resolver import WorkflowContext
from .runs import runs_where
from .segments import select
from .synth import last_executed_slug

RUN_META_COLUMNS = (
    "_uuid",
    "_workspace_uuid",
    "_workflow_uuid",
    "_record_id",
    "_record_title",
    "_created_at",
    "_finished_at",
    "_status",
    "_error_message",
)
"""[D] The leading columns of the runs download (and of download-outputs)."""

CSV_ROWS_PER_CHUNK = 500


def cell(value: Any) -> str:
    """One CSV cell: empty for null, ``true``/``false``, JSON text for objects and arrays."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return orjson.dumps(value).decode()
    return str(value)


def csv_chunks(header: list[str], rows: Iterable[list[Any]]) -> Iterator[bytes]:
    """RFC 4180 CSV (``\\n`` line ends), yielded every ``CSV_ROWS_PER_CHUNK`` rows."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    pending = 1
    for row in rows:
        writer.writerow([cell(v) for v in row])
        pending += 1
        if pending >= CSV_ROWS_PER_CHUNK:
            yield buffer.getvalue().encode()
            buffer.seek(0)
            buffer.truncate()
            pending = 0
    if pending or buffer.tell():
        yield buffer.getvalue().encode()


def gzip_chunks(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """A gzip member compressed on the fly (the runs download is a ``.csv.gz``)."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, 31)
    for chunk in chunks:
        out = compressor.compress(chunk)
        if out:
            yield out
    yield compressor.flush()


def keyset_runs(store: ClickHouseStore, where: Where) -> Iterator[dict[str, Any]]:
    """Every run matching ``where`` in ``(created_at, uuid)`` order, one page per query (keyset)."""
    last: tuple[str, str] | None = None
    while True:
        predicate = where.sql()
        if last is not None:
            predicate += f" AND (created_at, uuid) > (toDateTime64({lit(last[0])}, 3, 'UTC'), toUUID({lit(last[1])}))"
        rows = store.rows(
            f"SELECT * FROM {table(store, RUN_TABLE)} WHERE {predicate} "
            f"ORDER BY created_at, uuid LIMIT {EXPORT_PAGE_ROWS}"
        )
        yield from rows
        if len(rows) < EXPORT_PAGE_ROWS:
            return
        last = (str(rows[-1]["created_at"]), str(rows[-1]["uuid"]))


def _run_meta(run: dict[str, Any]) -> list[Any]:
    return [
        run["uuid"],
        run["workspaceUuid"],
        run["workflowUuid"],
        run["recordId"],
        run["recordTitle"],
        run["createdAt"],
        run["finishedAt"],
        run["status"],
        run["errorMessage"],
    ]


def produce_runs(state: EmulatorState, spec: FileSpec) -> FileBody:
    """Runs download: gzipped CSV, run metadata then one column per live node slug holding the
    execution ``title`` (the last execution of that node; empty when it did not run)."""
    payload = RunsDownloadPayload.model_validate(spec.params["payload"])
    slugs: list[str] = list(spec.params["slugs"])
    where = runs_where(spec.workspace_uuid, payload)

    def rows() -> Iterator[list[Any]]:
        for row in keyset_runs(state.store, where):
            run = run_json(row)
            titles = {e["nodeSlug"]: e.get("title") for e in run["executions"]}
            yield [*_run_meta(run), *(titles.get(slug) for slug in slugs)]

    return FileBody("application/gzip", gzip_chunks(csv_chunks([*RUN_META_COLUMNS, *slugs], rows())))


def _paged(store: ClickHouseStore, select: str, order: str, offset: int, limit: int | None) -> Iterator[dict[str, Any]]:
    """Rows ``[offset, offset + limit)`` of ``select`` in ``order``, ``EXPORT_PAGE_ROWS`` per query."""
    position = offset
    end = None if limit is None else offset + limit
    while end is None or position < end:
        size = EXPORT_PAGE_ROWS if end is None else min(EXPORT_PAGE_ROWS, end - position)
        rows = store.rows(f"{select} ORDER BY {order} LIMIT {size} OFFSET {position}")
        yield from rows
        if len(rows) < size:
            return
        position += size


def _with_payloads(
    context: WorkflowContext, rows: Iterable[dict[str, Any]]
) -> Iterator[tuple[dict[str, Any], dict[str, Any], dict[str, Any], dict[str, Any]]]:
    """``(run, first output, runContext, computed configs)`` per row, records fetched per page."""
    page: list[dict[str, Any]] = []

    def flush() -> Iterator[tuple[dict[str, Any], dict[str, Any], dict[str, Any], dict[str, Any]]]:
        runs = [run_json(r) for r in page]
        records = context.records(str(r["recordId"]) for r in runs)
        for run in runs:
            first, run_context, configs = context.payloads(run, records)
            yield run, first, run_context, configs
        page.clear()

    for row in rows:
        page.append(row)
        if len(page) >= EXPORT_PAGE_ROWS:
            yield from flush()
    yield from flush()


def _finish(
    state: EmulatorState, kind: str, media_type: str, chunks: Iterator[bytes], entry: dict[str, Any]
) -> FileBody:
    """The file as the export layout wants it (``layouts.py``: gzip, or malformed), noted once served."""
    layout: ExportLayout = state.export_layout
    if kind in layout.malformed_exports:
        entry.update(malformed=True, rows=0)
        return FileBody("application/octet-stream", noted(iter([MALFORMED_BODY]), state.served_files, entry))
    if layout.gzip_exports:
        chunks = gzip_chunks(chunks)
        entry["gzip"] = True
    return FileBody(media_type, noted(chunks, state.served_files, entry))


def produce_run_outputs(state: EmulatorState, spec: FileSpec) -> FileBody:
    """Run outputs: one row per run, run metadata + ``input`` (first node's resolved config) +
    ``output`` (the chosen node's output, default the last executed node; null when it has none).

    [I] CSV cells hold ``input``/``output`` as JSON text; ``format: "json"`` is one JSON array of
    objects (not NDJSON), not gzipped. ``state.export_layout`` can change that (``layouts.py``).
    """
    layout: ExportLayout = state.export_layout
    payload = RunsDownloadOutputsPayload.model_validate(spec.params["payload"])
    where = runs_where(spec.workspace_uuid, payload)
    context = WorkflowContext(state.store, spec.workspace_uuid, payload.workflowUuid, state.seed)
    select = f"SELECT * FROM {table(state.store, RUN_TABLE)} WHERE {where.sql()}"
    source = _paged(state.store, select, "created_at, uuid", payload.offset or 0, payload.limit)

    def items() -> Iterator[tuple[dict[str, Any], Any, Any]]:
        for run, _, run_context, configs in _with_payloads(context, source):
            executions = run["executions"]
            first_slug = executions[0]["nodeSlug"] if executions else None
            output_slug = payload.outputNodeSlug or last_executed_slug(run)
            yield run, configs.get(first_slug) if first_slug else None, run_context.get(output_slug or "")

    keys = [*(layout.key(k) for k in RUN_META_COLUMNS), "input", "output"]
    created = layout.key("_created_at")
    form = layout.run_outputs_format if payload.format == "json" else "csv"
    written: dict[str, Any] = {"kind": "run-outputs", "format": form, "keys": keys, "rows": 0, "defective": 0}
    written.update(runsDigest=0, workflow=payload.workflowUuid, outputNodeSlug=payload.outputNodeSlug)

    def entries() -> Iterator[dict[str, Any]]:
        for run, given, produced in items():
            entry = dict(zip(keys, [*_run_meta(run), given, produced], strict=True))
            written["rows"] += 1
            if state.served_files.next_row_defective("run-outputs", layout.defective_rows):
                entry[created] = None
                written["defective"] += 1
            else:
                written["runsDigest"] = (written["runsDigest"] + uuid_digest(str(run["uuid"]))) % DIGEST_MODULUS
            yield entry

    def json_chunks() -> Iterator[bytes]:
        yield b"["
        for index, entry in enumerate(entries()):
            if entry[created] is None:
                del entry[created]
            yield (b",\n" if index else b"\n") + orjson.dumps(entry)
        yield b"\n]\n"

    def ndjson_chunks() -> Iterator[bytes]:
        for entry in entries():
            if entry[created] is None:
                del entry[created]
            yield orjson.dumps(entry) + b"\n"

    if form == "array":
        return _finish(state, "run-outputs", "application/json", json_chunks(), written)
    if form == "ndjson":
        return _finish(state, "run-outputs", "application/x-ndjson", ndjson_chunks(), written)
    rows = (list(entry.values()) for entry in entries())
    return _finish(state, "run-outputs", "text/csv; charset=utf-8", csv_chunks(keys, rows), written)


def produce_batch(state: EmulatorState, spec: FileSpec) -> FileBody:
    """Batch download: one row per run of the batch, the record's input fields (the model's columns
    when the workflow's play has a model) then ``output`` (JSON text of the chosen node's output;
    empty for a run that errored, REFERENCE.md 7)."""
    batch_uuid = str(spec.params["batchUuid"])
    output_node = spec.params.get("outputNodeSlug")
    context = WorkflowContext(state.store, spec.workspace_uuid, str(spec.params["workflowUuid"]), state.seed)
    where = Where(spec.workspace_uuid)
    where.add(f"batch_uuid = toUUID({lit(batch_uuid)})")
    if HIDE_DELETED_RUNS:
        where.add("deleted_at IS NULL")
    columns = context.input_columns()
    layout: ExportLayout = state.export_layout
    output = layout.output_column(output_node if isinstance(output_node, str) else None)
    written: dict[str, Any] = {"kind": "batch", "batch": batch_uuid, "format": "csv", "rows": 0, "defective": 0}
    written["outputColumn"] = output

    def rows() -> Iterator[list[Any]]:
        runs = _with_payloads(context, keyset_runs(state.store, where))
        for run, first, run_context, _ in runs:
            slug = output_node if isinstance(output_node, str) else last_executed_slug(run)
            produced = None if run["status"] == "error" else run_context.get(slug or "")
            row = [*(first.get(c) for c in columns), produced]
            written["rows"] += 1
            if state.served_files.next_row_defective("batch", layout.defective_rows):
                row = row[:-1]  # one cell short
                written["defective"] += 1
            yield row

    return _finish(state, "batch", "text/csv; charset=utf-8", csv_chunks([*columns, output], rows()), written)


def produce_segment(state: EmulatorState, spec: FileSpec) -> FileBody:
    """One segment download shard: CSV with a header, every table column, in the segment's order.

    The shard is the key range ``(after, through]`` fixed by ``segments_download``; rows are read by
    keyset pages of ``SEGMENT_EXPORT_PAGE_ROWS`` (no OFFSET re-scans), so a shard of any size streams
    in flat memory. ClickHouse renders each CSV line (``formatRow``) with the same cell encoding as
    the other exports (``cell``): empty for null, ``true``/``false``, JSON text for arrays and
    objects, ISO ``_emitted_at``. That keeps a million-row export to seconds rather than minutes of
    Python encoding. A model without order keys (no ``_id``, no sort) is one shard read by offset.
    """
    payload = SegmentDownloadPayload.model_validate(spec.params["payload"])
    selection = select(state.store, spec.workspace_uuid, payload.modelUuid, payload.filter, payload.sort, payload.limit)
    columns = list(selection.model.columns)
    after = _key_texts(spec.params.get("after"))
    through = _key_texts(spec.params.get("through"))
    keys = selection.keys
    page_rows = SEGMENT_EXPORT_PAGE_ROWS if len(keys) <= 1 else SEGMENT_EXPORT_SORTED_PAGE_ROWS
    line = "formatRow('CSV', " + ", ".join(_csv_cell_sql(n, t) for n, t in selection.model.columns.items()) + ")"

    def pages() -> Iterator[list[dict[str, Any]]]:
        if not keys:
            source = f"SELECT {line} AS __line FROM ({selection.members()})"
            position = 0
            while True:
                page = state.store.rows(f"{source} ORDER BY tuple() LIMIT {page_rows} OFFSET {position}{_CSV_SETTINGS}")
                yield page
                if len(page) < page_rows:
                    return
                position += len(page)
        base = (
            f"SELECT {line} AS __line, {key_select_sql(keys)} FROM {selection.model.table} WHERE {selection.predicate}"
        )
        if through is not None:
            base += f" AND NOT {after_sql(keys, through)}"
        last = after
        while True:
            step = f" AND {after_sql(keys, last)}" if last is not None else ""
            page = state.store.rows(f"{base}{step} ORDER BY {selection.order} LIMIT {page_rows}{_CSV_SETTINGS}")
            yield page
            if len(page) < page_rows:
                return
            last = [str(page[-1][f"__k{i}"]) for i in range(len(keys))]

    written: dict[str, Any] = {"kind": "segment", "shard": spec.params.get("shard"), "format": "csv", "rows": 0}

    def chunks() -> Iterator[bytes]:
        yield from csv_chunks(columns, [])
        if not columns:
            return
        for page in pages():
            if page:
                written["rows"] += len(page)
                yield "".join(str(row["__line"]) for row in page).encode()

    return _finish(state, "segment", "text/csv; charset=utf-8", chunks(), written)


_CSV_SETTINGS = " SETTINGS format_csv_null_representation = '', output_format_json_escape_forward_slashes = 0"


def _csv_cell_sql(name: str, physical: str) -> str:
    """A model column as ``formatRow('CSV', ...)`` should render it to match ``cell(model_record(...))``."""
    column = quoted(name)
    inner = physical.removeprefix("LowCardinality(").removeprefix("Nullable(")
    if name == "_emitted_at" and inner.startswith("DateTime"):
        return f"concat(replaceOne(toString(toDateTime64({column}, 3, 'UTC')), ' ', 'T'), 'Z')"
    if inner.startswith(("Array(", "Map(", "Tuple(")):
        return f"toJSONString({column})"
    return column


def _key_texts(raw: Any) -> list[str] | None:
    return [str(v) for v in raw] if isinstance(raw, list) else None


register_producer("runs", produce_runs)
register_producer("run-outputs", produce_run_outputs)
register_producer("batch", produce_batch)
register_producer("segment", produce_segment)
