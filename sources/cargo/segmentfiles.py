"""Segment export files: the arrow types of a model's columns, and the spooled shards read as arrow tables.

A shard is CSV or parquet, gzip or not (recognised by its magic bytes, ``exportformats.py``); it is
parsed in blocks into tables of about ``YIELD_ROWS`` rows that dlt writes straight to parquet, so
memory stays flat whatever the export's size. The download and the resource are ``segments.py``'s.
"""

from __future__ import annotations

import csv
import gzip
import logging
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
from dlt.common.schema.typing import TColumnSchema

from .errors import CargoProtocolError
from .exportformats import SEGMENT_LAYOUTS, ExportFormatError, ExportTally, FileFormat, detect_format, shown_keys
from .extract import TableStats
from .instants import to_instant

logger = logging.getLogger(__name__)

DOWNLOAD_ENDPOINT = "segmentation/segments/download"
"""The endpoint a shard was exported by (named in messages about its files)."""


CSV_BLOCK_BYTES = 256 << 10
"""Bytes of CSV parsed per block. Small on purpose: arrow's streaming reader reads a fixed number of
blocks ahead (about 32), so 8 MB blocks held 255 MB of a 245 MB file in memory at once; 256 KB
blocks hold about 8 MB."""
YIELD_ROWS = 20_000
"""Rows per yielded table: blocks are gathered up to this many rows (not copied into one chunk),
so dlt handles about fifty tables per million rows. Measured on 1M companies: 20,000 rows peaked
at about 80 MB above the imports, 50,000 at about 110 MB, 100,000 at about 140 MB."""
CSV_THREADS = False
"""One parsing thread: with two, the speed was the same on two cores and each thread's allocator
arena added resident memory."""
PARQUET_BATCH_ROWS = YIELD_ROWS

_JSON_TYPES = ("object", "array", "vector")
_TRUE = ["true", "True", "TRUE"]
_FALSE = ["false", "False", "FALSE"]


# -- types -----------------------------------------------------------------------------------------


def arrow_type(cargo_type: str | None) -> pa.DataType:
    """The arrow type a Cargo column type is loaded as.

    ``number`` is a double (Cargo's numbers are JSON/JavaScript numbers); ``date`` a UTC timestamp
    (it holds dates and datetimes alike, so one type keeps the table's schema stable); objects,
    arrays and vectors stay JSON text, marked as dlt ``json`` columns; ``any`` stays text.
    """
    if cargo_type == "number":
        return pa.float64()
    if cargo_type == "boolean":
        return pa.bool_()
    if cargo_type == "date":
        return pa.timestamp("us", tz="UTC")
    return pa.string()


def column_hints(columns: Mapping[str, str], id_column: str) -> dict[str, TColumnSchema]:
    """dlt column hints: JSON columns marked ``json``, the id column not null."""
    hints: dict[str, TColumnSchema] = {
        slug: {"name": slug, "data_type": "json"} for slug, kind in columns.items() if kind in _JSON_TYPES
    }
    hints[id_column] = {**hints.get(id_column, {"name": id_column}), "nullable": False}
    return hints


# -- reading files ---------------------------------------------------------------------------------


def _header(path: Path, compressed: bool) -> list[str]:
    opener: Any = gzip.open if compressed else open
    with opener(path, "rt", encoding="utf-8-sig", newline="") as handle:
        for row in csv.reader(handle):
            return [str(name) for name in row]
    return []


def read_export_files(
    paths: Sequence[Path],
    columns: Mapping[str, str],
    delete: bool = True,
    *,
    table: str = "segment export",
    export: str = DOWNLOAD_ENDPOINT,
    id_column: str | None = None,
    stats: TableStats | None = None,
) -> Iterator[pa.Table]:
    """Arrow tables of the spooled shards, chunk by chunk; each file is deleted once read (``delete``).

    With ``id_column``, a shard without that column is refused (``ExportFormatError``) and rows whose
    id is null are skipped, counted in ``stats``. Every shard's rows are accounted for (``ExportTally``).
    """
    pool = pa.default_memory_pool()
    for index, path in enumerate(paths):
        shard = f"{export}, shard {index + 1} of {len(paths)}" if len(paths) > 1 else export
        tally = ExportTally(table, shard)
        try:
            for chunk in _read_file(path, columns, tally, id_column, stats):
                tally.loaded += chunk.num_rows
                yield chunk
                del chunk
                pool.release_unused()  # hand freed chunks back: the next tables' sizes differ
            tally.check()
        finally:
            if delete:
                path.unlink(missing_ok=True)


def _read_file(
    path: Path, columns: Mapping[str, str], tally: ExportTally, id_column: str | None, stats: TableStats | None
) -> Iterator[pa.Table]:
    fmt = detect_format(path, table=tally.table, export=tally.export, accepted=SEGMENT_LAYOUTS)
    if fmt.layout == "empty":
        return
    if fmt.layout == "parquet":
        parquet = pq.ParquetFile(path)
        _require_id(parquet.schema_arrow.names, id_column, tally, fmt)
        for batch in parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS):
            tally.in_file += batch.num_rows
            yield _with_ids(_convert(pa.Table.from_batches([batch]), columns), id_column, tally, stats)
        return
    header = _header(path, fmt.gzip)
    if not header:
        return
    _require_id(header, id_column, tally, fmt)
    types = {name: pa.string() if columns.get(name) == "date" else arrow_type(columns.get(name)) for name in header}
    convert = pa_csv.ConvertOptions(
        column_types=types,
        null_values=[""],
        strings_can_be_null=True,
        quoted_strings_can_be_null=True,
        true_values=_TRUE,
        false_values=_FALSE,
    )
    stream = pa.input_stream(str(path), compression="gzip" if fmt.gzip else None)
    try:
        reader = pa_csv.open_csv(
            stream,
            read_options=pa_csv.ReadOptions(block_size=CSV_BLOCK_BYTES, use_threads=CSV_THREADS),
            parse_options=pa_csv.ParseOptions(newlines_in_values=True),
            convert_options=convert,
        )
        pending: list[pa.RecordBatch] = []
        rows = 0
        while True:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                break
            pending.append(batch)
            rows += batch.num_rows
            tally.in_file += batch.num_rows
            if rows >= YIELD_ROWS:
                table = _with_ids(_convert(pa.Table.from_batches(pending), columns), id_column, tally, stats)
                pending, rows = [], 0
                yield table
        if pending:
            yield _with_ids(_convert(pa.Table.from_batches(pending), columns), id_column, tally, stats)
    except pa.ArrowInvalid as exc:
        raise CargoProtocolError(f"{tally.table}: could not parse the file of {tally.export} ({fmt}): {exc}") from None
    finally:
        stream.close()


def _require_id(names: Sequence[str], id_column: str | None, tally: ExportTally, fmt: FileFormat) -> None:
    if id_column is not None and id_column not in names:
        raise ExportFormatError(
            tally.table,
            tally.export,
            f"{fmt} with columns {shown_keys(list(names))}, without the model's id column {id_column!r}",
            f"the model's columns, {id_column!r} among them",
        )


def _with_ids(table: pa.Table, id_column: str | None, tally: ExportTally, stats: TableStats | None) -> pa.Table:
    """``table`` without its rows whose id is null (a row without an id cannot be merged): counted, logged."""
    if id_column is None or id_column not in table.column_names or not table.column(id_column).null_count:
        return table
    missing = table.column(id_column).null_count
    tally.skipped += missing
    if stats is None:
        raise CargoProtocolError(f"{tally.table}: {missing} row(s) of {tally.export} have no {id_column}")
    stats.skip(missing, f"a row without its {id_column}", tally.export)
    return table.filter(pc.is_valid(table.column(id_column)))


def _convert(table: pa.Table, columns: Mapping[str, str]) -> pa.Table:
    """Text date columns as UTC timestamps (the rest was typed by the CSV reader or the parquet file)."""
    for index, name in enumerate(table.column_names):
        if columns.get(name) == "date" and pa.types.is_string(table.schema.field(index).type):
            table = table.set_column(index, pa.field(name, arrow_type("date")), _timestamps(table.column(index), name))
    return table


_DAY_ONLY = r"^(\d{4}-\d{2}-\d{2})$"
_NO_ZONE = r"^(\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)$"


def _timestamps(text: pa.ChunkedArray, name: str) -> pa.ChunkedArray:
    """``2026-09-25``, ``2026-09-25 07:52:37.237`` and ``2026-09-25T07:52:37.237Z`` alike, as UTC.

    Exports mix them (dates, naive warehouse datetimes meaning UTC, ISO with a zone); arrow parses
    only zoned strings into a zoned type, so the missing time or zone is appended first (two regex
    replacements: measured, ``binary_join_element_wise`` alone added 34 MB of resident memory).
    Values that still do not parse are loaded as null, with a warning, rather than failing the sync.
    """
    target = arrow_type("date")
    dated = pc.replace_substring_regex(text, pattern=_DAY_ONLY, replacement=r"\1T00:00:00Z")
    zoned = pc.replace_substring_regex(dated, pattern=_NO_ZONE, replacement=r"\1Z")
    try:
        return pc.cast(zoned, target)
    except pa.ArrowInvalid:
        pass
    values: list[datetime | None] = []
    bad = 0
    for item in zoned.to_pylist():
        parsed = parse_instant(item)
        bad += item is not None and parsed is None
        values.append(parsed)
    logger.warning("segment export column %s: %d value(s) are not dates and were loaded as null", name, bad)
    return pa.chunked_array([pa.array(values, type=target)])


def parse_instant(text: str | None) -> datetime | None:
    """A date of an export's row or of the state (``instants.to_instant``), or None if it is not one."""
    if text is None:
        return None
    try:
        return to_instant(text)
    except ValueError:
        return None


def empty_table(columns: Mapping[str, str]) -> pa.Table:
    return pa.schema([pa.field(slug, arrow_type(kind)) for slug, kind in columns.items()]).empty_table()
