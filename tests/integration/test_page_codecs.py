"""Both page codecs read the emulator's tables over real HTTP, page by page, into the same arrow table.

``CsvCell`` (the page packed by ClickHouse's ``formatRow`` into one CSV cell) and ``RowObjects`` (one
JSON object per row) go through the real ``CargoClient`` and the emulator's query endpoint with small
pages, so the keyset continuation runs across many page boundaries with both cursors: ClickHouse's own
``max(tuple(time, key))`` for the packed form, the last row object for the plain one.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pytest

from cargo_elt.source.client import CargoClient
from cargo_elt.source.fetch import fetch_pages
from cargo_elt.source.pages import CsvCell, Page, PageCodec, RowObjects
from cargo_elt.source.planner import QueryWindow, cursor_after
from cargo_elt.source.specs import TABLE_SPECS, TableSpec

PAGE_LIMIT = 97
WHOLE_HISTORY = QueryWindow(datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC))


@pytest.fixture(scope="module")
def client(emulator: Any) -> Iterator[CargoClient]:
    with CargoClient(emulator.state.workspaces[0].token, base_url=emulator.base_url) as cargo:
        yield cargo


def _pages(client: CargoClient, spec: TableSpec, codec: PageCodec) -> list[Page]:
    return list(fetch_pages(client, spec, WHOLE_HISTORY, codec=codec, page_limit=PAGE_LIMIT))


def _table(spec: TableSpec, pages: list[Page]) -> pa.Table:
    tables = [page.table for page in pages if page.table is not None]
    assert len(tables) == len(pages)
    whole = pa.concat_tables([spec.arrow_schema().empty_table(), *tables])
    return whole.sort_by([(name, "ascending") for name in spec.primary_key])


@pytest.mark.parametrize("spec", TABLE_SPECS.values(), ids=lambda spec: spec.name)
def test_packed_and_row_object_pages_read_the_same_table(client: CargoClient, spec: TableSpec) -> None:
    total = client.query(f"SELECT count() AS n FROM {spec.name}")[0]["n"]
    assert total > PAGE_LIMIT  # at least one full page, so the cursor is used

    packed_pages = _pages(client, spec, CsvCell())
    plain_pages = _pages(client, spec, RowObjects())

    # the same page boundaries, and each page continues where the other codec's did
    assert [page.count for page in packed_pages] == [page.count for page in plain_pages]
    assert len(packed_pages) == -(-total // PAGE_LIMIT)
    packed_cursors = [cursor_after(spec, page.last or {}) for page in packed_pages]
    assert packed_cursors == [cursor_after(spec, page.last or {}) for page in plain_pages]

    packed = _table(spec, packed_pages)
    plain = _table(spec, plain_pages)
    assert packed.schema == plain.schema == spec.arrow_schema()
    assert packed.num_rows == plain.num_rows == total
    keys = set(zip(*(packed.column(name).to_pylist() for name in spec.primary_key), strict=True))
    assert len(keys) == total  # no row read twice
    assert packed.to_pylist() == plain.to_pylist()  # a readable diff first
    assert packed.equals(plain)
    for name in spec.json_columns:
        assert not any("webhookSecret" in (text or "") for text in packed.column(name).to_pylist())
