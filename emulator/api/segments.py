"""Segmentation endpoints (REFERENCE.md section 6.1): segments fetch and download.

Both take a model UUID plus a filter (never a segment UUID), compiled by ``filters.py`` into one
``Selection``: the predicate over the model's table, the total order (sort items, then ``_id``) and
the membership ``limit``. Fetch pages through it; download splits it into shards of at most
``SEGMENT_DOWNLOAD_SHARD_ROWS`` rows and answers ``{urls: [...]}``, one signed URL per shard.

Shards are key ranges of the order, fixed when the download is requested: the key of each shard's
last row is looked up then and written into the next shard's URL, so the files are disjoint and
together hold exactly the rows a fetch would list, and each file streams by keyset paging (no
``OFFSET`` scans, flat memory) however large the export. Segment list/get are generic catalogue
endpoints (``definitions.py``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from starlette.responses import Response

from ..downloads import FileSpec, sign_file_url
from ..store import ClickHouseStore
from .common import ApiError, Call, not_found, ok
from .filters import (
    FilterCompiler,
    ModelInfo,
    OrderKey,
    invalid,
    is_filter_error,
    key_select_sql,
    order_keys,
    order_sql,
)
from .limits import SEGMENT_DOWNLOAD_SHARD_ROWS, SEGMENT_FETCH_DEFAULT_LIMIT
from .payloads import SegmentDownloadPayload, SegmentFetchPayload, SegmentFilter, SortItem
from .resolver import model_columns, model_record

T = TypeVar("T")
ShardBound = tuple[list[str] | None, list[str] | None]
"""``(after, through)``: a shard holds the rows strictly after key ``after`` up to key ``through``."""


@dataclass(frozen=True)
class Selection:
    """The records a filter selects on a model, in the segment's order, ``limit`` applied."""

    model: ModelInfo
    predicate: str
    keys: list[OrderKey]
    limit: int | None

    @property
    def order(self) -> str:
        return order_sql(self.keys)

    def matching(self) -> str:
        """Every matching row (``limit`` not applied)."""
        return f"SELECT * FROM {self.model.table} WHERE {self.predicate}"

    def members(self) -> str:
        """The selected rows (``limit`` applied), unordered."""
        if self.limit is None:
            return self.matching()
        return f"SELECT * FROM ({self.matching()} ORDER BY {self.order} LIMIT {self.limit})"

    def count(self, store: ClickHouseStore) -> int:
        total = int(store.scalar(f"SELECT count() FROM {self.model.table} WHERE {self.predicate}") or 0)
        return total if self.limit is None else min(total, self.limit)

    def key_at(self, store: ClickHouseStore, offset: int) -> list[str] | None:
        """The order key (as text) of the row at ``offset`` of the selection, or None past the end."""
        rows = store.rows(
            f"SELECT {key_select_sql(self.keys)} FROM {self.model.table} WHERE {self.predicate} "
            f"ORDER BY {self.order} LIMIT 1 OFFSET {offset}"
        )
        if not rows:
            return None
        return [str(rows[0][f"__k{i}"]) for i in range(len(self.keys))]


def select(
    store: ClickHouseStore,
    workspace_uuid: str,
    model_uuid: str,
    flt: SegmentFilter,
    sort: list[SortItem] | None,
    limit: int | None,
) -> Selection:
    """Compile a fetch/download payload (404 ``modelNotFound``, 400 ``invalidFilter``)."""
    compiler = FilterCompiler(store, workspace_uuid)
    model = compiler.model(model_uuid)
    if model is None:
        raise not_found("modelNotFound")
    keys = order_keys(sort, model) if model.columns else []
    return Selection(model, compiler.predicate(flt, model), keys, limit)


def evaluated(run: Callable[[], T]) -> T:
    """Run filter-dependent queries; ClickHouse refusing the filter (types, ``sql`` clause) -> ``invalidFilter``."""
    try:
        return run()
    except ApiError:
        raise
    except Exception as exc:
        if is_filter_error(exc):
            raise invalid() from None
        raise


def seg_columns(model: ModelInfo) -> list[dict[str, Any]]:
    """``SegColumn``s of a model: ``slug``, ``type``, ``label``, ``modelUuid``."""
    return [
        {"slug": c["slug"], "type": c.get("type"), "label": c.get("label", c["slug"]), "modelUuid": model.uuid}
        for c in model_columns(model.entity.body)
    ]


def segments_fetch(call: Call) -> Response:
    """``POST segmentation/segments/fetch`` -> ``{records, count, columns, isRefreshing}``."""
    p = call.payload(SegmentFetchPayload)
    selection = select(call.store, call.ws, p.modelUuid, p.filter, p.sort, p.limit)
    columns = seg_columns(selection.model)
    if not selection.model.columns:
        return ok({"records": [], "count": 0, "columns": columns, "isRefreshing": False})
    limit = p.fetchingLimit if p.fetchingLimit is not None else SEGMENT_FETCH_DEFAULT_LIMIT
    page = f"{selection.members()} ORDER BY {selection.order} LIMIT {limit} OFFSET {p.fetchingOffset or 0}"
    rows = evaluated(lambda: call.store.rows(page))
    total = evaluated(lambda: selection.count(call.store))
    types = {c["slug"]: str(c.get("type")) for c in columns}
    return ok(
        {"records": [model_record(r, types) for r in rows], "count": total, "columns": columns, "isRefreshing": False}
    )


def shard_bounds(store: ClickHouseStore, selection: Selection, total: int) -> list[ShardBound]:
    """``(after, through)`` order keys of every shard: rows strictly after ``after``, up to ``through``.

    The first shard has no ``after``; the last has a ``through`` only when ``limit`` cuts the result
    (otherwise it runs to the end of the matching rows).
    """
    if not selection.keys:
        return [(None, None)]
    shards = max(1, math.ceil(total / SEGMENT_DOWNLOAD_SHARD_ROWS))
    bounds: list[ShardBound] = []
    after: list[str] | None = None
    for index in range(shards):
        last_row = min((index + 1) * SEGMENT_DOWNLOAD_SHARD_ROWS, total) - 1
        cut = index < shards - 1 or (selection.limit is not None and total > 0)
        through = selection.key_at(store, last_row) if cut else None
        bounds.append((after, through))
        if through is None:
            break
        after = through
    return bounds


def segments_download(call: Call) -> Response:
    """``POST segmentation/segments/download`` -> ``{urls: [...]}``: CSV shards of the selected rows."""
    p = call.payload(SegmentDownloadPayload)
    selection = select(call.store, call.ws, p.modelUuid, p.filter, p.sort, p.limit)
    total = evaluated(lambda: selection.count(call.store)) if selection.model.columns else 0
    bounds = evaluated(lambda: shard_bounds(call.store, selection, total))
    payload = p.model_dump(mode="json", exclude_none=True)
    urls = []
    for index, (after, through) in enumerate(bounds):
        spec = FileSpec(
            workspace_uuid=call.ws,
            kind="segment",
            params={"payload": payload, "shard": index, "after": after, "through": through},
            filename=f"segment-{selection.model.uuid}-{index:03d}.csv",
        )
        urls.append(sign_file_url(call.state, spec))
    return ok({"urls": urls})
