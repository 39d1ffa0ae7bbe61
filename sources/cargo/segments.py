"""Segment exports: the records of a saved segment, or of a model filter, as one warehouse table each.

Configuration (``sources.cargo.segments``, an array of tables)::

    [[sources.cargo.segments]]
    segment_uuid = "991c515b-963c-4c3b-ba19-e46f8fcc3521"   # a saved segment: its model, filter, sort, limit

    [[sources.cargo.segments]]
    model_uuid = "ec99469b-781b-4fc9-b701-f2785cbfea9d"     # or a model plus a filter (default: every record)
    table_name = "us_software_companies"
    update_column = "_emitted_at"                            # merge on _id, read only recent rows next time
    filter = { conjonction = "and", groups = [
        { conjonction = "and", conditions = [
            { kind = "string", columnSlug = "country", operator = "is", values = ["US"] },
        ] },
    ] }
    sort = [{ columnSlug = "employees", kind = "desc" }]

How one export is read, and why:

1. The whole list is validated up front with the other settings (``config.py``), filters included
   (``filters.py``), because Cargo answers a misspelled ``conjonction`` or a ``value``/``values``
   mix-up with an empty 200, not an error.
2. The segment (``GET segmentation/segments/{uuid}``) and the model (``GET storage/models/{uuid}``)
   are read: the model's column types choose the arrow types, and the filter's column slugs are
   checked against it before the download is requested.
3. ``POST segmentation/segments/download`` answers ``{urls: [...]}`` (one per shard) or ``{url}``.
   Every shard is spooled to a temporary file first, all of them before any row is yielded: signed
   URLs are short-lived, and if one expires mid-way the export is requested again and *all* shards
   downloaded again, so rows from two exports are never mixed and none is yielded twice.
4. The spooled files are parsed chunk by chunk (``segmentfiles.py``: ``pyarrow.csv.open_csv``; parquet
   and gzip are recognised by their magic bytes) into arrow tables that dlt writes straight to
   parquet, and each file is deleted once read. Memory stays flat whatever the export size.

Loading: ``replace`` by default (the table is the segment as it is now). With ``update_column`` the
table merges on ``_id`` and later syncs narrow the filter to rows whose ``update_column`` is after
the last value seen (minus one day: Cargo's date operators compare days), kept in the resource state
that dlt commits with the load. Records that leave a segment stay in a merged table.
"""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import dlt
import orjson
import pyarrow as pa
import pyarrow.compute as pc
from dlt.extract.resource import DltResource

from .client import CargoClient
from .config import SEGMENTS_SETTING, SegmentExport, parse_segment_exports
from .errors import CargoApiError, CargoConfigurationError, CargoError, CargoProtocolError, SignedUrlExpired
from .exportformats import (
    export_urls,
)
from .extract import TableStats
from .filters import MATCH_ALL, and_condition, check_filter_columns, check_sort_columns, validate_filter, validate_sort
from .segmentfiles import DOWNLOAD_ENDPOINT, arrow_type, column_hints, empty_table, parse_instant, read_export_files
from .specs import TABLE_SPECS

__all__ = [
    "DOWNLOAD_ENDPOINT",
    "SETTING",
    "ExportFailed",
    "ResolvedExport",
    "SegmentExport",
    "arrow_type",
    "download_shards",
    "parse_segment_exports",
    "read_export_files",
    "resolve_export",
    "segment_resources",
]

logger = logging.getLogger(__name__)

SETTING = SEGMENTS_SETTING
ID_COLUMN = "_id"
SYSTEM_COLUMNS = {"_id": "string", "_title": "string", "_emitted_at": "date"}
"""Columns every Cargo model carries (REFERENCE.md 6.3), whether or not ``columns`` lists them."""

MAX_EXPORT_ATTEMPTS = 3
"""Fresh exports asked for when signed URLs keep expiring before all shards are downloaded."""
DOWNLOAD_CONCURRENCY = 4
"""Shards downloaded at once."""


class _ArrowHintNotice(logging.Filter):
    """Drops dlt's per-table notice that our hints differ from the arrow types, for our resources only.

    Object/array columns travel as arrow strings (JSON text) and carry a ``json`` hint, and ``_id``
    is hinted not null; dlt keeps the hints (which is what we want) but logs a warning for *every*
    arrow table it receives, about fifty per million rows. The notice says nothing actionable here.
    """

    names: ClassVar[set[str]] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "when merging arrow schema with dlt schema" not in message:
            return True
        return not any(message.startswith(f"In resource: {name},") for name in self.names)


_HINT_NOTICE = _ArrowHintNotice()
logging.getLogger("dlt").addFilter(_HINT_NOTICE)


def quiet_hint_notices(names: Iterable[str]) -> None:
    """Drop dlt's arrow-vs-hints notice for these resources too (the source's own tables: their JSON
    columns are arrow strings with a ``json`` hint by design)."""
    _HINT_NOTICE.names.update(names)


class ExportFailed(CargoError):
    """Signed URLs kept expiring before every shard of an export was downloaded."""


# -- resolution (segment + model) ------------------------------------------------------------------


@dataclass(frozen=True)
class ResolvedExport:
    """An export with everything Cargo told about it: the filter to send and the model's columns."""

    export: SegmentExport
    model_uuid: str
    filter: dict[str, Any]
    sort: list[dict[str, str]] | None
    limit: int | None
    columns: dict[str, str]
    """Column slug -> Cargo column type, in the model's order."""
    id_column: str
    default_table_name: str
    label: str = field(default="")

    @property
    def table_name(self) -> str:
        return self.export.table_name or self.default_table_name


def resolve_export(client: CargoClient, export: SegmentExport) -> ResolvedExport:
    """Read the segment (if any) and the model; check filter, sort and ``update_column`` against the model."""
    where = export.where
    segment: dict[str, Any] | None = None
    if export.segment_uuid is not None:
        segment = _get(client, f"segmentation/segments/{export.segment_uuid}", "segment", f"{where}.segment_uuid")
        model_uuid = str(segment.get("modelUuid"))
        saved = f"{where}: the saved segment {export.segment_uuid}'s filter"
        flt = validate_filter(segment.get("filter") or MATCH_ALL, saved)
        raw_sort = segment.get("sort")
        sort = validate_sort(raw_sort, f"{saved} sort") if raw_sort else None
        raw_limit = segment.get("limit")
        limit = int(raw_limit) if isinstance(raw_limit, int) and not isinstance(raw_limit, bool) else None
        filter_where = saved
        if export.update_column is not None and limit is not None:
            raise CargoConfigurationError(
                f"{where}.update_column: the saved segment has a limit ({limit}); later syncs read only recent "
                "rows and the limit would apply to those. Export it without update_column, or by model_uuid + filter"
            )
    else:
        assert export.model_uuid is not None
        model_uuid = export.model_uuid
        flt, sort, limit = dict(export.filter or MATCH_ALL), export.sort, export.limit
        filter_where = f"{where}.filter"
    model = _get(client, f"storage/models/{model_uuid}", "model", f"{where}.model_uuid")
    columns = model_column_types(model)
    check_filter_columns(flt, columns, filter_where)
    if sort:
        check_sort_columns(sort, columns, f"{where}.sort" if segment is None else f"{filter_where} sort")
    if export.update_column is not None:
        kind = columns.get(export.update_column)
        if kind != "date":
            found = f"is a {kind} column" if kind else "is not a column of the model"
            dates = ", ".join(s for s, t in columns.items() if t == "date") or "none"
            raise CargoConfigurationError(
                f"{where}.update_column: {export.update_column!r} {found}; it must be a date column "
                f"(the model's date columns: {dates})"
            )
    if segment is not None:
        default = table_name_for(str(segment.get("name") or segment.get("slug") or export.segment_uuid))
        label = f"segment {segment.get('name') or export.segment_uuid}"
    else:
        default = table_name_for(str(model.get("slug") or model.get("name") or model_uuid))
        label = f"model {model.get('slug') or model_uuid}"
    id_column = str(model.get("idColumnSlug") or ID_COLUMN)
    return ResolvedExport(export, model_uuid, flt, sort, limit, columns, id_column, default, label)


def _get(client: CargoClient, path: str, wrapper: str, setting: str) -> dict[str, Any]:
    try:
        body = client.call("GET", path)
    except CargoApiError as exc:
        if exc.status == 404 or (exc.reason or "").endswith("NotFound"):
            raise CargoConfigurationError(
                f"{setting}: Cargo has no such {wrapper} in this workspace ({exc.reason or exc.status})"
            ) from None
        raise
    found = body.get(wrapper)
    if not isinstance(found, dict):
        raise CargoProtocolError(f"GET {path} answered without a {wrapper!r} object")
    return found


def model_column_types(model: Mapping[str, Any]) -> dict[str, str]:
    """Column slug -> Cargo type of a model (``columns`` then ``additionalColumns``, system columns first)."""
    types: dict[str, str] = dict(SYSTEM_COLUMNS)
    for key in ("columns", "additionalColumns"):
        for column in model.get(key) or []:
            if isinstance(column, Mapping) and isinstance(column.get("slug"), str):
                types[column["slug"]] = str(column.get("type") or "any")
    return types


def table_name_for(label: str) -> str:
    """``segment_<label>`` in snake case (``Enterprise accounts`` -> ``segment_enterprise_accounts``)."""
    snake = re.sub(r"[^a-z0-9]+", "_", label.lower()).strip("_") or "export"
    return f"segment_{snake}"[:63].rstrip("_")


# -- downloads -------------------------------------------------------------------------------------


def download_shards(client: CargoClient, urls: Sequence[str], spool: Path) -> list[Path]:
    """Every shard into ``spool``, in the export's order; ``SignedUrlExpired`` if any URL was refused."""
    targets = [spool / f"shard-{index:05d}" for index in range(len(urls))]
    if not urls:
        return targets
    pool = ThreadPoolExecutor(max_workers=min(DOWNLOAD_CONCURRENCY, len(urls)), thread_name_prefix="cargo-shard")
    try:
        futures = [pool.submit(client.download_to, url, target) for url, target in zip(urls, targets, strict=True)]
        for future in futures:
            future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return targets


def export_tables(
    client: CargoClient, resolved: ResolvedExport, flt: Mapping[str, Any], stats: TableStats | None = None
) -> Iterator[pa.Table]:
    """The rows of one export as arrow tables: request it, spool every shard, then parse the files.

    An expired signed URL means a fresh export (new URLs, every shard again), at most
    ``MAX_EXPORT_ATTEMPTS`` times; nothing is yielded before all shards of one export are on disk.
    """
    payload: dict[str, Any] = {"modelUuid": resolved.model_uuid, "filter": dict(flt)}
    if resolved.sort:
        payload["sort"] = resolved.sort
    if resolved.limit is not None:
        payload["limit"] = resolved.limit
    where = resolved.export.where
    for attempt in range(1, MAX_EXPORT_ATTEMPTS + 1):
        try:
            body = client.call("POST", DOWNLOAD_ENDPOINT, payload)
        except CargoApiError as exc:
            if exc.reason == "invalidFilter":
                sent = orjson.dumps(payload["filter"]).decode()
                raise CargoConfigurationError(
                    f"{where}: Cargo refused the filter (invalidFilter); sent {sent}"
                ) from None
            raise
        urls = export_urls(body, DOWNLOAD_ENDPOINT)
        spool = Path(tempfile.mkdtemp(prefix="cargo-segment-"))
        try:
            try:
                files = download_shards(client, urls, spool)
            except SignedUrlExpired as exc:
                logger.warning(
                    "%s (%s): a signed URL was refused before every shard was downloaded (%s); "
                    "asking for a fresh export (attempt %d of %d)",
                    where,
                    resolved.label,
                    exc,
                    attempt,
                    MAX_EXPORT_ATTEMPTS,
                )
                continue
            yielded = False
            for table in read_export_files(
                files,
                resolved.columns,
                table=resolved.table_name,
                export=f"{DOWNLOAD_ENDPOINT} ({where}, {resolved.label})",
                id_column=resolved.id_column,
                stats=stats,
            ):
                yielded = True
                yield table
            if not yielded:
                yield empty_table(resolved.columns)
            return
        finally:
            shutil.rmtree(spool, ignore_errors=True)
    raise ExportFailed(
        f"{where} ({resolved.label}): the signed download URLs expired {MAX_EXPORT_ATTEMPTS} times before all "
        "shards were downloaded; check the clock and the network speed to the file storage"
    )


# -- resources -------------------------------------------------------------------------------------


def _fingerprint(resolved: ResolvedExport) -> str:
    """What the incremental state is valid for: a different filter/model/column starts over."""
    basis = orjson.dumps(
        [resolved.model_uuid, resolved.filter, resolved.sort, resolved.export.update_column],
        option=orjson.OPT_SORT_KEYS,
    )
    return hashlib.sha256(basis).hexdigest()[:16]


def narrowed_filter(resolved: ResolvedExport, last_value: str | None) -> dict[str, Any]:
    """The export's filter, AND ``update_column > (day of last_value - 1 day)`` when a last value is known.

    Cargo's date operators take ``YYYY-MM-DD``; going back a whole day re-reads at most a day of
    rows (the merge on ``_id`` absorbs them) and never misses one, whatever time zone the warehouse
    compares days in.
    """
    column = resolved.export.update_column
    if column is None or not last_value:
        return resolved.filter
    last = parse_instant(last_value)
    if last is None:
        return resolved.filter
    since = (last.date() - timedelta(days=1)).isoformat()
    condition = {"kind": "date", "columnSlug": column, "operator": "greaterThan", "value": since}
    return and_condition(resolved.filter, condition)


def _max_instant(table: pa.Table, column: str) -> datetime | None:
    if column not in table.column_names or table.num_rows == 0:
        return None
    value = pc.max(table.column(column)).as_py()
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return None


def _reader(
    export: SegmentExport,
    open_client: Callable[[], CargoClient],
    resolved_early: ResolvedExport | None,
    table_stats: TableStats | None,
) -> Callable[[], Iterator[Any]]:
    def read() -> Iterator[Any]:
        with open_client() as client:
            try:
                resolved = resolved_early or resolve_export(client, export)
                column = export.update_column
                state = dlt.current.resource_state() if column else {}
                fingerprint = _fingerprint(resolved)
                last_value = state.get("last_value") if state.get("fingerprint") == fingerprint else None
                flt = narrowed_filter(resolved, last_value)
                newest = parse_instant(last_value) if isinstance(last_value, str) else None
                hints = dlt.mark.make_hints(columns=column_hints(resolved.columns, resolved.id_column))
                first = True
                for table in export_tables(client, resolved, flt, table_stats):
                    if column is not None:
                        seen = _max_instant(table, column)
                        if seen is not None and (newest is None or seen > newest):
                            newest = seen
                    if table_stats is not None:
                        table_stats.add(rows=table.num_rows)
                    yield dlt.mark.with_hints(table, hints) if first else table
                    first = False
                if table_stats is not None:
                    table_stats.enforce_skip_limit()
                if column is not None:
                    state["fingerprint"] = fingerprint
                    state["last_value"] = newest.isoformat().replace("+00:00", "Z") if newest else None
                    state["filter_sent"] = flt
            finally:
                if table_stats is not None:
                    table_stats.add(retries=int(client.stats_snapshot().get("retries", 0)))

    read.__name__ = f"segment_export_{export.index}"
    return read


def segment_resources(
    exports: list[SegmentExport], open_client: Callable[[], CargoClient], stats: Any | None = None
) -> list[DltResource]:
    """One dlt resource per export, named after its table.

    Exports without a ``table_name`` are resolved now (one GET of the segment and of the model) to
    name them ``segment_<segment name>`` / ``segment_<model slug>``; two exports landing on the same
    table are refused. ``stats``, when it is a dict (the source's ``SyncStats``), gets a
    ``TableStats`` per table with rows and retries.
    """
    early: dict[int, ResolvedExport] = {}
    unnamed = [e for e in exports if e.table_name is None]
    if unnamed:
        with open_client() as client:
            for export in unnamed:
                early[export.index] = resolve_export(client, export)
    names: dict[str, SegmentExport] = {}
    for export in exports:
        name = export.table_name or early[export.index].table_name
        clash = names.get(name.lower())
        if clash is not None:
            raise CargoConfigurationError(
                f"{export.where} and {clash.where} would both load table {name!r}: set table_name on one of them"
            )
        if name.lower() in TABLE_SPECS:
            raise CargoConfigurationError(
                f"{export.where}: table {name!r} is one of the source's own tables; set table_name"
            )
        names[name.lower()] = export
    resources: list[DltResource] = []
    for export in exports:
        name = export.table_name or early[export.index].table_name
        table_stats: TableStats | None = None
        if isinstance(stats, dict):
            found = stats.setdefault(name, TableStats(name))
            table_stats = found if isinstance(found, TableStats) else None
        reader: Any = _reader(export, open_client, early.get(export.index), table_stats)
        hints: dict[str, Any] = {"columns": {ID_COLUMN: {"name": ID_COLUMN, "nullable": False}}}
        if export.update_column is not None:
            hints["write_disposition"] = {"disposition": "merge", "strategy": "delete-insert"}
            hints["primary_key"] = ID_COLUMN
        else:
            hints["write_disposition"] = "replace"
        resources.append(dlt.resource(reader, name=name, table_name=name, **hints))
        _ArrowHintNotice.names.add(name)
    return resources
