"""The export files Cargo may send, how each is recognised, and how its rows are read.

Cargo's exports come as files behind signed URLs (REFERENCE.md 7), and their layouts are partly
inferred: whether ``runs/download-outputs`` with ``format: "json"`` is a JSON array or NDJSON, gzipped
or not, how its keys are spelled, what the batch file's output column is called. Every assumption the
connector makes about those files is a constant of this module, so a layout that turns out different
on the live service is a one-line change, and ``cargo-elt check`` reports what it found with the same
detectors the sync uses (``inspect_export``).

What is accepted, and nothing else:

* **Compression**: gzip, recognised by its magic bytes (``1f 8b``) whatever the file or URL is called
  and whatever ``Content-Type`` it came with; otherwise none. (HTTP ``Content-Encoding: gzip`` is
  undone by the HTTP client before the file reaches this module.)
* **Layouts**, recognised by the first bytes of the (decompressed) file: a JSON array (``[``), NDJSON
  (``{``: one object per line; blank lines ignored), parquet (``PAR1``), an empty file (no rows), or
  otherwise CSV with a header row (RFC 4180, quoted newlines allowed). A file starting with ``<`` (an
  HTML or XML page, such as an error page served with status 200), holding NUL bytes, not UTF-8, or
  a ZIP archive is refused at once. Which layouts each export takes: ``RUN_OUTPUT_LAYOUTS``,
  ``BATCH_OUTPUT_LAYOUTS``, ``SEGMENT_LAYOUTS``.
* **Run outputs**: keys are matched after normalising (``_created_at``, ``createdAt``, ``created_at``
  and ``CreatedAt`` are the same key, ``RUN_OUTPUT_FIELDS``); the run's uuid and creation time are
  required (``RUN_OUTPUT_REQUIRED``), the output may also be named ``outputs``/``result``/... or
  after the output node's slug. A file whose output key is missing is refused if it has keys this
  module does not know (the output is probably one of them); with no unknown key, the outputs are
  loaded as null and an INFO says so (a server that omits null values).
* **Batch outputs**: the output column is the first of ``OUTPUT_COLUMNS`` in the header, else the one
  named after the output node's slug; every other column is an input field of the record.
* **Segment shards**: CSV or parquet holding the model's id column.

A file-level problem (unknown layout, a required key or column missing) raises ``ExportFormatError``
naming the table, the export, the first bytes or the header seen, and what was expected. A row-level
problem (one NDJSON line that is not JSON, one CSV row with the wrong number of cells, one entry
without a creation time) is returned as ``Unreadable`` for the caller to count as a skipped row
(``extract.TableStats.skip``): rows in the file always equal rows loaded plus rows skipped, and each
export checks that in code (``ExportTally``).
"""

from __future__ import annotations

import codecs
import csv
import gzip
import re
import sys
import zlib
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final, Literal

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from .errors import CargoError, CargoProtocolError
from .sqltext import parse_timestamp

__all__ = [
    "BATCH_OUTPUT_LAYOUTS",
    "OUTPUT_COLUMNS",
    "RECORD_ID_COLUMNS",
    "RUN_OUTPUT_FIELDS",
    "RUN_OUTPUT_LAYOUTS",
    "RUN_OUTPUT_REQUIRED",
    "SEGMENT_LAYOUTS",
    "ExportFormatError",
    "ExportInspection",
    "ExportTally",
    "FileFormat",
    "Records",
    "RunOutputKeys",
    "Unreadable",
    "batch_output_column",
    "detect_format",
    "export_urls",
    "inspect_export",
    "normalised_key",
    "open_records",
    "recognise",
    "run_output_entry",
    "run_output_keys",
]

# -- what is accepted --------------------------------------------------------------------------------

GZIP_MAGIC: Final = b"\x1f\x8b"
PARQUET_MAGIC: Final = b"PAR1"
ZIP_MAGIC: Final = b"PK\x03\x04"
UTF8_BOM: Final = codecs.BOM_UTF8
HEAD_BYTES: Final = 64 << 10
"""Bytes (after decompression) looked at to recognise a file."""
SHOWN_BYTES: Final = 48
"""Bytes of a refused file repeated in its error message."""
SHOWN_KEYS: Final = 12
"""Keys or header names repeated in an error message."""

Layout = Literal["empty", "json-array", "ndjson", "csv", "parquet"]

RUN_OUTPUT_LAYOUTS: Final[frozenset[Layout]] = frozenset({"empty", "json-array", "ndjson", "csv"})
"""``runs/download-outputs`` asked with ``format: "json"``: a JSON array (what the emulator serves) or
NDJSON [I: REFERENCE.md 7 leaves it open], or CSV, the endpoint's default format [D], should a server
ignore the ``format`` asked for."""

BATCH_OUTPUT_LAYOUTS: Final[frozenset[Layout]] = frozenset({"empty", "csv", "json-array", "ndjson"})
"""``batches/{uuid}/download``: CSV [I: "CSV likely"], or the JSON forms of the run outputs."""

SEGMENT_LAYOUTS: Final[frozenset[Layout]] = frozenset({"empty", "csv", "parquet"})
"""``segmentation/segments/download`` shards: CSV or parquet, what Cargo's warehouse exports write [I]."""

RUN_OUTPUT_FIELDS: Final[dict[str, tuple[str, ...]]] = {
    "run_uuid": ("uuid", "run_uuid"),
    "workspace_uuid": ("workspace_uuid",),
    "workflow_uuid": ("workflow_uuid",),
    "record_id": ("record_id",),
    "record_title": ("record_title",),
    "status": ("status",),
    "error_message": ("error_message",),
    "created_at": ("created_at",),
    "finished_at": ("finished_at",),
    "input": ("input", "inputs"),
    "output": ("output", "outputs", "result", "node_output"),
}
"""Field of a run-output row -> the key names it is read from, compared after ``normalised_key``
(leading underscores dropped, camelCase to snake_case): [D] ``_uuid``, ``_created_at``, ... and
``input``/``output``; [I] the other spellings. A key equal to the output node's slug is the output too."""

RUN_OUTPUT_REQUIRED: Final = ("run_uuid", "created_at")
"""Without these a run-output row cannot be merged (its key) or placed in a window (its time)."""

OUTPUT_COLUMNS: Final = ("output", "_output", "outputs", "_outputs", "result", "node_output", "nodeOutput")
"""The batch file's output column, first match wins [D: ``output`` per the docs' description; I: the
others]; after them, a column named after the output node's slug. Input fields are the record's own
column names, so names are matched exactly here, not normalised."""

RECORD_ID_COLUMNS: Final = ("_id", "id", "record_id")
"""[I] Input columns of a batch file that hold the record id (the model's ``_id`` in practice)."""

_TIMESTAMP_FIELDS: Final = ("created_at", "finished_at")
_JSON_FIELDS: Final = ("input", "output")
_KEY_SPLIT = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_NOT_WORD = re.compile(r"[^a-z0-9]+")


class ExportFormatError(CargoProtocolError):
    """An export file whose layout this connector does not read: the message names the table, the
    export, what the file holds (its first bytes or header) and what was expected."""

    def __init__(self, table: str, export: str, seen: str, expected: str) -> None:
        self.table = table
        self.export = export
        self.seen = seen
        self.expected = expected
        super().__init__(
            f"{table}: cannot read the file of {export}: {seen}; expected {expected} (a layout this connector "
            "does not read: please report it)"
        )


def export_urls(body: Mapping[str, Any], endpoint: str) -> list[str]:
    """The file URLs of an export answer: ``{urls: [...]}`` (the client type) or ``{url}`` (the docs).

    An answer with neither is an error, not an empty export (``noRunsFound`` is how Cargo says empty).
    """
    urls = body.get("urls")
    if isinstance(urls, list) and all(isinstance(u, str) and u for u in urls):
        return list(urls)
    url = body.get("url")
    if isinstance(url, str) and url:
        return [url]
    raise CargoProtocolError(f"{endpoint} answered without url(s): keys {sorted(body)[:SHOWN_KEYS]}")


# -- recognising a file ------------------------------------------------------------------------------


@dataclass(frozen=True)
class FileFormat:
    """What a file was recognised as: its layout and whether it was gzip-compressed."""

    layout: Layout
    gzip: bool = False

    def __str__(self) -> str:
        name = {
            "empty": "an empty file",
            "json-array": "a JSON array",
            "ndjson": "NDJSON",
            "csv": "CSV",
            "parquet": "parquet",
        }[self.layout]
        return f"{name} (gzip)" if self.gzip else name


def describe_layouts(accepted: Collection[Layout]) -> str:
    """``a JSON array, NDJSON or CSV with a header`` for an error message."""
    names = {
        "json-array": "a JSON array of objects",
        "ndjson": "NDJSON (one JSON object per line)",
        "csv": "CSV with a header row",
        "parquet": "parquet",
    }
    chosen = set(accepted)
    shown = [names[layout] for layout in ("json-array", "ndjson", "csv", "parquet") if layout in chosen]
    listed = ", ".join(shown[:-1]) + (" or " if len(shown) > 1 else "") + shown[-1]
    return f"{listed}, optionally gzip-compressed"


def shown_bytes(head: bytes) -> str:
    """The first bytes of a file as they appear in messages."""
    return repr(head[:SHOWN_BYTES]) + ("..." if len(head) > SHOWN_BYTES else "")


def shown_keys(keys: Sequence[str]) -> str:
    """Keys or a header for a message: all of them, or the first and the last ones (the output column
    of a batch file is its last)."""
    if len(keys) <= SHOWN_KEYS:
        return f"[{', '.join(repr(k) for k in keys)}]"
    head, tail = keys[: SHOWN_KEYS - 4], keys[-4:]
    return f"[{', '.join(repr(k) for k in head)}, ..., {', '.join(repr(k) for k in tail)}] ({len(keys)} in all)"


def recognise(head: bytes, *, gzipped: bool = False) -> FileFormat | str:
    """The format of a file from its first (decompressed) bytes, or why it is none this module reads."""
    body = head.removeprefix(UTF8_BOM)
    text = body.lstrip(b" \t\r\n")
    if not text:
        return FileFormat("empty", gzipped)
    if body.startswith(PARQUET_MAGIC):
        return "parquet inside gzip" if gzipped else FileFormat("parquet")
    if body.startswith(ZIP_MAGIC):
        return "a ZIP archive"
    if text[:1] == b"[":
        return FileFormat("json-array", gzipped)
    if text[:1] == b"{":
        return FileFormat("ndjson", gzipped)
    if text[:1] == b"<":
        return "an HTML or XML document (an error page?)"
    if b"\x00" in body:
        return "binary data"
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(body) - 3:  # a character cut by the end of the head is fine
            return "neither UTF-8 text nor a known binary format"
    return FileFormat("csv", gzipped)


def read_head(path: Path) -> tuple[bytes, bool]:
    """The first ``HEAD_BYTES`` of a file, decompressed if it is gzip, and whether it was."""
    with path.open("rb") as handle:
        raw = handle.read(HEAD_BYTES)
    if not raw.startswith(GZIP_MAGIC):
        return raw, False
    with gzip.open(path, "rb") as unpacked:
        return unpacked.read(HEAD_BYTES), True


def detect_format(path: Path, *, table: str, export: str, accepted: frozenset[Layout]) -> FileFormat:
    """The format of a downloaded file; ``ExportFormatError`` unless it is one of ``accepted``."""
    expected = describe_layouts(accepted)
    try:
        head, gzipped = read_head(path)
    except (OSError, EOFError, zlib.error) as exc:
        with path.open("rb") as handle:
            raw = handle.read(SHOWN_BYTES + 1)
        raise ExportFormatError(
            table, export, f"gzip data that does not decompress ({exc}), starting {shown_bytes(raw)}", expected
        ) from None
    found = recognise(head, gzipped=gzipped)
    if isinstance(found, str):
        raise ExportFormatError(table, export, f"{found}, starting {shown_bytes(head)}", expected)
    if found.layout not in accepted:
        raise ExportFormatError(table, export, f"{found}, starting {shown_bytes(head)}", expected)
    return found


# -- reading records ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Unreadable:
    """A row of the file that cannot be read or placed: where it is, why (a short text, the same for
    every row with this problem, which the skipped rows are summed up by) and the row's particulars."""

    position: str
    reason: str
    detail: str = ""

    def __str__(self) -> str:
        where = f"{self.position}: " if self.position else ""
        return f"{where}{self.reason}" + (f" ({self.detail})" if self.detail else "")


Record = dict[str, Any]


@dataclass
class Records:
    """The rows of one file, as it holds them: ``keys`` in first-seen order, then every row in order
    (a readable row as a dict, an unreadable one as ``Unreadable``). CSV values are text."""

    format: FileFormat
    keys: list[str]
    items: Iterable[Record | Unreadable]
    text_values: bool = False


def _text(path: Path, fmt: FileFormat) -> IO[str]:
    if fmt.gzip:
        return gzip.open(path, "rt", encoding="utf-8-sig", newline="")
    return path.open(encoding="utf-8-sig", newline="")


def open_records(path: Path, fmt: FileFormat, *, table: str, export: str) -> Records:
    """Every row of a file recognised as ``fmt`` (not parquet: ``segments`` reads those with arrow).

    JSON forms are read whole (an export is bounded: 10,000 runs, or one batch); CSV is streamed.
    """
    if fmt.layout == "empty":
        return Records(fmt, [], [])
    if fmt.layout == "json-array":
        return _json_array(path, fmt, table=table, export=export)
    if fmt.layout == "ndjson":
        return _ndjson(path, fmt, table=table, export=export)
    if fmt.layout == "csv":
        return _csv(path, fmt)
    raise ExportFormatError(table, export, str(fmt), "a row format (JSON, NDJSON, CSV)")


def _keys_of(items: Iterable[Record | Unreadable]) -> list[str]:
    seen: dict[str, None] = {}
    for item in items:
        if isinstance(item, dict):
            seen.update(dict.fromkeys(item))
    return list(seen)


def _json_kind(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number"
    )


def _json_array(path: Path, fmt: FileFormat, *, table: str, export: str) -> Records:
    with _text(path, fmt) as handle:
        data = handle.read()
    try:
        parsed = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ExportFormatError(
            table, export, f"{fmt} that does not parse ({exc}), starting {shown_bytes(data.encode())}", "valid JSON"
        ) from None
    if not isinstance(parsed, list):
        raise ExportFormatError(table, export, f"a JSON {_json_kind(parsed)}", "a JSON array of objects")
    del data
    items: list[Record | Unreadable] = [
        entry
        if isinstance(entry, dict)
        else Unreadable(f"element {index}", "an element that is not a JSON object", f"a JSON {_json_kind(entry)}")
        for index, entry in enumerate(parsed)
    ]
    return Records(fmt, _keys_of(items), items)


def _ndjson(path: Path, fmt: FileFormat, *, table: str, export: str) -> Records:
    items: list[Record | Unreadable] = []
    with _text(path, fmt) as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                entry = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                items.append(Unreadable(f"line {number}", "a line that is not JSON", str(exc)))
                continue
            if isinstance(entry, dict):
                items.append(entry)
            else:
                items.append(
                    Unreadable(f"line {number}", "a line that is not a JSON object", f"a JSON {_json_kind(entry)}")
                )
    if items and isinstance(items[0], Unreadable):
        head, _ = read_head(path)
        raise ExportFormatError(
            table,
            export,
            f"{fmt} whose first line is no JSON object ({items[0].detail}; a pretty-printed JSON document?), "
            f"starting {shown_bytes(head)}",
            "NDJSON (one JSON object per line) or a JSON array",
        )
    return Records(fmt, _keys_of(items), items)


def _csv(path: Path, fmt: FileFormat) -> Records:
    csv.field_size_limit(sys.maxsize)
    with _text(path, fmt) as handle:
        header = next(csv.reader(handle), None)
    keys = [str(name) for name in header or []]
    return Records(fmt, keys, _csv_rows(path, fmt, keys), text_values=True)


def _csv_rows(path: Path, fmt: FileFormat, keys: list[str]) -> Iterator[Record | Unreadable]:
    with _text(path, fmt) as handle:
        reader = csv.reader(handle)
        next(reader, None)
        for cells in reader:
            if not cells:
                continue  # a blank line holds no row
            if len(cells) != len(keys):
                yield Unreadable(
                    f"line {reader.line_num}",
                    "a row whose cells do not match the header",
                    f"{len(cells)} cells where the header has {len(keys)}",
                )
                continue
            yield dict(zip(keys, cells, strict=True))


def json_cell(text: Any) -> Any:
    """A CSV cell of a JSON column (objects and arrays are written as JSON text): parsed when it is JSON,
    else kept as text; empty is null."""
    if not isinstance(text, str):
        return text
    if text == "":
        return None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return text


def _as_text(value: Any) -> str:
    """A JSON scalar or structure in a text column (a record id sent as a number, say)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return orjson.dumps(value).decode()
    return str(value)


def blank(value: Any) -> Any:
    """CSV cannot tell an empty string from null: empty is null."""
    return None if value == "" else value


# -- run outputs -------------------------------------------------------------------------------------


def normalised_key(key: str) -> str:
    """``_created_at``, ``createdAt``, ``CreatedAt`` and ``created-at`` all become ``created_at``."""
    spaced = _KEY_SPLIT.sub("_", key.strip().lstrip("_"))
    return _NOT_WORD.sub("_", spaced.lower()).strip("_")


_RUN_OUTPUT_BY_NAME: Final = {name: fieldname for fieldname, names in RUN_OUTPUT_FIELDS.items() for name in names}


@dataclass(frozen=True)
class RunOutputKeys:
    """Which key of a run-outputs file feeds which field, and the keys left unread."""

    fields: dict[str, str]
    unknown: tuple[str, ...] = ()


def run_output_keys(
    keys: Sequence[str], slug: str | None, *, table: str, export: str, fmt: FileFormat
) -> RunOutputKeys:
    """Map the keys found in a run-outputs file to the row's fields, or refuse the file."""
    found: dict[str, list[str]] = {}
    unknown: list[str] = []
    for key in keys:
        fieldname = _RUN_OUTPUT_BY_NAME.get(normalised_key(key))
        if fieldname is None and slug is not None and key == slug:
            fieldname = "output"
        if fieldname is None:
            unknown.append(key)
        else:
            found.setdefault(fieldname, []).append(key)
    twice = {name: spelled for name, spelled in found.items() if len(spelled) > 1}
    expected = f"one key per field: {_expected_run_keys(slug)}"
    if twice:
        clash = "; ".join(f"{' and '.join(map(repr, spelled))} both read as {name}" for name, spelled in twice.items())
        raise ExportFormatError(table, export, f"{fmt} with keys {shown_keys(keys)} ({clash})", expected)
    missing = [name for name in RUN_OUTPUT_REQUIRED if name not in found]
    if keys and missing:
        raise ExportFormatError(
            table,
            export,
            f"{fmt} with keys {shown_keys(keys)}, none of which reads as {' or '.join(missing)}",
            f"keys {_expected_run_keys(slug)}",
        )
    if keys and "output" not in found and unknown:
        raise ExportFormatError(
            table,
            export,
            f"{fmt} with keys {shown_keys(keys)}: no output key, and {shown_keys(unknown)} are unknown keys",
            f"the output under one of {list(RUN_OUTPUT_FIELDS['output'])}" + (f" or {slug!r}" if slug else ""),
        )
    return RunOutputKeys({name: spelled[0] for name, spelled in found.items()}, tuple(unknown))


def _expected_run_keys(slug: str | None) -> str:
    parts = [f"{name} ({'/'.join(names)})" for name, names in RUN_OUTPUT_FIELDS.items()]
    return (
        ", ".join(parts)
        + (f", or the output under the node slug {slug!r}" if slug else "")
        + (", with or without a leading underscore, snake_case or camelCase")
    )


def run_output_entry(
    record: Mapping[str, Any], keys: RunOutputKeys, *, text_values: bool, position: str = ""
) -> Record | Unreadable:
    """One run-output row (``created_at``/``finished_at`` parsed), or why the row cannot be placed."""
    row: Record = {}
    for fieldname in RUN_OUTPUT_FIELDS:
        key = keys.fields.get(fieldname)
        value = record.get(key) if key is not None else None
        if text_values:
            value = json_cell(value) if fieldname in _JSON_FIELDS else blank(value)
        elif fieldname not in _JSON_FIELDS and value is not None and not isinstance(value, str):
            value = value if fieldname in _TIMESTAMP_FIELDS else _as_text(value)
        row[fieldname] = value
    run_uuid = row["run_uuid"]
    if not isinstance(run_uuid, str) or not run_uuid:
        return Unreadable(position, f"no run uuid ({keys.fields['run_uuid']})")
    for fieldname in _TIMESTAMP_FIELDS:
        value = row[fieldname]
        if value in (None, ""):
            if fieldname == "created_at":
                return Unreadable(position, f"no creation time ({keys.fields['created_at']})", f"run {run_uuid}")
            row[fieldname] = None
            continue
        try:
            row[fieldname] = parse_timestamp(value)
        except CargoError:
            return Unreadable(position, f"{keys.fields[fieldname]} is not a timestamp", f"run {run_uuid}: {value!r}")
    return row


# -- batch outputs -----------------------------------------------------------------------------------


def batch_output_column(keys: Sequence[str], slug: str | None, *, table: str, export: str, fmt: FileFormat) -> str:
    """The output column of a batch file's header, or ``ExportFormatError`` naming the header."""
    for name in OUTPUT_COLUMNS:
        if name in keys:
            return name
    if slug and slug in keys:
        return slug
    candidates = [*OUTPUT_COLUMNS, *([slug] if slug else [])]
    raise ExportFormatError(
        table,
        export,
        f"{fmt} with header {shown_keys(keys)}, which has no output column",
        f"the node's output in a column named {' or '.join(repr(c) for c in candidates)} "
        "(the other columns are the record's input fields)",
    )


def record_id(inputs: Mapping[str, Any]) -> str | None:
    """The record id among a batch row's input fields (``RECORD_ID_COLUMNS``), if any."""
    found = next((inputs[c] for c in RECORD_ID_COLUMNS if inputs.get(c) is not None), None)
    return None if found is None else str(found)


# -- accounting --------------------------------------------------------------------------------------


@dataclass
class ExportTally:
    """Rows of one export file: what the file holds, and where each row went.

    ``check`` is the in-code proof that nothing was dropped: every row of the file was loaded, counted
    as skipped, or (run outputs) left to the neighbouring window it belongs to.
    """

    table: str
    export: str
    in_file: int = 0
    loaded: int = 0
    skipped: int = 0
    elsewhere: int = 0
    """Rows outside the export's window (the padded millisecond): loaded by the window they belong to."""

    def check(self) -> None:
        accounted = self.loaded + self.skipped + self.elsewhere
        if accounted != self.in_file:
            raise CargoError(
                f"{self.table}: the file of {self.export} holds {self.in_file} rows, but {self.loaded} were loaded, "
                f"{self.skipped} skipped and {self.elsewhere} left to another window ({accounted}): a connector "
                "bug lost or invented rows; nothing of this sync was loaded, please report it"
            )


# -- inspection (``cargo-elt check``) ----------------------------------------------------------------

ExportKind = Literal["run_outputs", "batch_outputs", "segment"]


@dataclass(frozen=True)
class ExportInspection:
    """What a downloaded export file is, as the sync would read it."""

    kind: str
    format: str
    keys: tuple[str, ...]
    """The keys (JSON) or header (CSV, parquet schema) found."""
    fields: dict[str, str] = field(default_factory=dict)
    """Field -> the key it is read from (run outputs), ``output`` -> its column (batch outputs)."""
    rows: int = 0
    """Rows in the file."""
    parsed: int = 0
    """Rows the sync would load."""
    skipped: tuple[str, ...] = ()
    """``position: reason`` of each row the sync would skip."""
    problem: str | None = None
    """Why the sync would refuse the file (``ExportFormatError``), or None."""


def inspect_export(
    path: Path, kind: ExportKind, *, output_node_slug: str | None = None, id_column: str = "_id"
) -> ExportInspection:
    """Recognise and parse a downloaded export with the sync's own detectors, without loading it."""
    accepted = {"run_outputs": RUN_OUTPUT_LAYOUTS, "batch_outputs": BATCH_OUTPUT_LAYOUTS, "segment": SEGMENT_LAYOUTS}
    label = path.name
    try:
        fmt = detect_format(path, table=kind, export=label, accepted=accepted[kind])
    except ExportFormatError as exc:
        return ExportInspection(kind, "unknown", (), problem=str(exc))
    if fmt.layout == "parquet":
        return _inspect_parquet(path, kind, fmt, id_column)
    try:
        records = open_records(path, fmt, table=kind, export=label)
        fields: dict[str, str] = {}
        if kind == "run_outputs":
            mapping = run_output_keys(records.keys, output_node_slug, table=kind, export=label, fmt=fmt)
            fields = dict(mapping.fields)
        elif kind == "batch_outputs" and records.keys:
            fields = {"output": batch_output_column(records.keys, output_node_slug, table=kind, export=label, fmt=fmt)}
        elif kind == "segment" and records.keys and id_column not in records.keys:
            raise _missing_id(kind, label, fmt, records.keys, id_column)
        rows = parsed = 0
        skipped: list[str] = []
        for item in records.items:
            rows += 1
            if isinstance(item, Unreadable):
                skipped.append(str(item))
                continue
            if kind == "run_outputs":
                entry = run_output_entry(item, mapping, text_values=records.text_values, position=f"row {rows}")
                if isinstance(entry, Unreadable):
                    skipped.append(str(entry))
                    continue
            elif kind == "segment" and blank(item.get(id_column)) is None:
                skipped.append(f"row {rows}: no {id_column}")
                continue
            parsed += 1
    except ExportFormatError as exc:
        return ExportInspection(kind, str(fmt), (), problem=str(exc))
    return ExportInspection(kind, str(fmt), tuple(records.keys), fields, rows, parsed, tuple(skipped))


def _missing_id(table: str, export: str, fmt: FileFormat, keys: Sequence[str], id_column: str) -> ExportFormatError:
    return ExportFormatError(
        table,
        export,
        f"{fmt} with columns {shown_keys(keys)}, without the model's id column {id_column!r}",
        f"the model's columns, {id_column!r} among them",
    )


def _inspect_parquet(path: Path, kind: str, fmt: FileFormat, id_column: str) -> ExportInspection:
    label = path.name
    try:
        parquet = pq.ParquetFile(path)
    except pa.ArrowException as exc:
        return ExportInspection(kind, str(fmt), (), problem=f"{kind}: {label} is not readable parquet ({exc})")
    names = tuple(parquet.schema_arrow.names)
    if id_column not in names:
        return ExportInspection(kind, str(fmt), names, problem=str(_missing_id(kind, label, fmt, names, id_column)))
    rows = parquet.metadata.num_rows
    nulls = sum(int(batch.column(id_column).null_count) for batch in parquet.iter_batches(columns=[id_column]))
    skipped = (f"{nulls} rows: no {id_column}",) if nulls else ()
    return ExportInspection(kind, str(fmt), names, {}, rows, rows - nulls, skipped)
