"""Segment exports end to end: the session emulator over real HTTP, synced into a real DuckDB file.

What is compared is the emulator's own answer (``segmentation/segments/fetch``, paged) against the
loaded table, id by id and value by value for a few columns of every type family.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pyarrow.parquet as pq
import pytest

from cargo_elt.source.client import CargoClient
from cargo_elt.source.errors import CargoConfigurationError, SignedUrlExpired
from cargo_elt.source.extract import TableStats
from cargo_elt.source.segments import (
    ExportFailed,
    SegmentExport,
    download_shards,
    parse_segment_exports,
    read_export_files,
    resolve_export,
    segment_resources,
)
from tests.e2e.support import Sandbox

DOWNLOAD_PATH = "/v1/segmentation/segments/download"
FETCH_PAGE = 1000


@pytest.fixture()
def sandbox(tmp_path: Path, emulator: Any) -> Sandbox:
    return Sandbox(tmp_path, emulator, name="segments_test")


def _api(sandbox: Sandbox) -> httpx.Client:
    return httpx.Client(
        base_url=sandbox.emulator.base_url + "/v1", headers={"authorization": f"Bearer {sandbox.token}"}, timeout=60
    )


def _factory(sandbox: Sandbox) -> Callable[[], CargoClient]:
    return lambda: CargoClient(sandbox.token, base_url=sandbox.emulator.base_url)


def _models(sandbox: Sandbox) -> dict[str, str]:
    with _api(sandbox) as api:
        return {m["slug"]: m["uuid"] for m in api.get("storage/models/list").json()["models"]}


def _segment(sandbox: Sandbox, name: str) -> dict[str, Any]:
    with _api(sandbox) as api:
        found = [s for s in api.get("segmentation/segments/list").json()["segments"] if s["name"] == name]
    assert len(found) == 1, name
    return dict(found[0])


def _fetch_all(
    sandbox: Sandbox, model_uuid: str, flt: dict[str, Any], sort: Any = None, limit: int | None = None
) -> list[dict[str, Any]]:
    """The emulator's own answer: every record of ``segments/fetch``, page by page."""
    records: list[dict[str, Any]] = []
    with _api(sandbox) as api:
        while True:
            payload: dict[str, Any] = {"modelUuid": model_uuid, "filter": flt, "fetchingLimit": FETCH_PAGE}
            payload |= {"fetchingOffset": len(records)}
            if sort:
                payload["sort"] = sort
            if limit is not None:
                payload["limit"] = limit
            body = api.post("segmentation/segments/fetch", json=payload)
            body.raise_for_status()
            page = body.json()["records"]
            records.extend(page)
            if len(page) < FETCH_PAGE:
                return records


def _requests(sandbox: Sandbox, path: str) -> int:
    counts = sandbox.admin("GET", "/_emulator/queries")["requests"]
    return int(counts.get(path, 0))


def _sync(
    sandbox: Sandbox, raw: list[dict[str, Any]], factory: Callable[[], CargoClient] | None = None
) -> dict[str, Any]:
    stats: dict[str, Any] = {}
    resources = segment_resources(parse_segment_exports(raw), factory or _factory(sandbox), stats)
    sandbox.pipeline().run(resources).raise_on_failed_jobs()
    return stats


def _loaded(sandbox: Sandbox, table: str) -> dict[str, dict[str, Any]]:
    with sandbox.db() as con:
        cursor = con.execute(f"SELECT * FROM cargo.{table}")
        names = [d[0] for d in cursor.description]
        rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    by_id = {str(r["_id"]): r for r in rows}
    assert len(by_id) == len(rows), f"{table}: an _id was loaded twice"
    return by_id


def _failure_chain(run: Callable[[], Any]) -> list[BaseException]:
    """The exception ``run`` raised and its causes (dlt wraps extraction errors in PipelineStepFailed)."""
    with pytest.raises(Exception) as caught:
        run()
    chain: list[BaseException] = []
    current: BaseException | None = caught.value
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def _instant(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    text = str(value)
    if len(text) == 10:
        return datetime.fromisoformat(text).replace(tzinfo=UTC)
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _assert_same(truth: list[dict[str, Any]], loaded: dict[str, dict[str, Any]], columns: dict[str, str]) -> None:
    """Same ids, and the same values in ``columns`` (slug -> how to compare)."""
    expected = {str(r["_id"]): r for r in truth}
    assert expected.keys() == loaded.keys(), (
        f"{len(expected.keys() - loaded.keys())} missing, {len(loaded.keys() - expected.keys())} extra"
    )
    for record_id, record in expected.items():
        row = loaded[record_id]
        for column, how in columns.items():
            want, got = record[column], row[column]
            if want is None:
                assert got is None, (record_id, column, got)
            elif how == "date":
                assert _instant(got) == _instant(want), (record_id, column, got, want)
            elif how == "json":
                assert orjson.loads(got) == want, (record_id, column, got, want)
            elif how == "number":
                assert got == pytest.approx(float(want)), (record_id, column, got, want)
            else:
                assert got == want, (record_id, column, got, want)


COMPANY_COLUMNS = {
    "_title": "text",
    "_emitted_at": "date",
    "employees": "number",
    "annual_revenue": "number",
    "founded_on": "date",
    "is_customer": "bool",
    "tags": "json",
    "metadata": "json",
    "country": "text",
}
CONTACT_COLUMNS = {"email": "text", "last_activity_at": "date", "is_subscribed": "bool", "score": "number"}


def test_saved_segment_and_model_filter_equal_the_emulators_answer(sandbox: Sandbox) -> None:
    enterprise = _segment(sandbox, "Enterprise accounts")
    customers = _segment(sandbox, "Current customers")
    contacts = _models(sandbox)["contacts"]
    contact_filter = {
        "conjonction": "or",
        "groups": [
            {
                "conjonction": "and",
                "conditions": [
                    {"kind": "string", "columnSlug": "seniority", "operator": "is", "values": ["vp", "c-level"]},
                    {"kind": "number", "columnSlug": "score", "operator": "greaterThan", "value": 50},
                ],
            },
            {
                "conjonction": "or",
                "conditions": [{"kind": "boolean", "columnSlug": "is_subscribed", "operator": "isFalse"}],
            },
        ],
    }
    stats = _sync(
        sandbox,
        [
            {"segment_uuid": enterprise["uuid"]},
            {"segment_uuid": customers["uuid"], "table_name": "customers"},
            {"model_uuid": contacts, "filter": contact_filter, "table_name": "picked_contacts"},
        ],
    )
    truth = _fetch_all(sandbox, enterprise["modelUuid"], enterprise["filter"], enterprise["sort"])
    assert 0 < len(truth) < 200, "the segment should be a strict subset of the companies"
    _assert_same(truth, _loaded(sandbox, "segment_enterprise_accounts"), COMPANY_COLUMNS)
    assert all(row["employees"] > 1000 for row in _loaded(sandbox, "segment_enterprise_accounts").values())

    customer_truth = _fetch_all(sandbox, customers["modelUuid"], customers["filter"], limit=customers["limit"])
    _assert_same(customer_truth, _loaded(sandbox, "customers"), COMPANY_COLUMNS)

    contact_truth = _fetch_all(sandbox, contacts, contact_filter)
    assert 0 < len(contact_truth) < 500
    _assert_same(contact_truth, _loaded(sandbox, "picked_contacts"), CONTACT_COLUMNS)
    assert isinstance(stats["picked_contacts"], TableStats) and stats["picked_contacts"].rows == len(contact_truth)

    with sandbox.db() as con:
        types = dict(
            con.execute(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_name = 'segment_enterprise_accounts'"
            ).fetchall()
        )
        nullable = dict(
            con.execute(
                "SELECT column_name, is_nullable FROM information_schema.columns "
                "WHERE table_name = 'segment_enterprise_accounts'"
            ).fetchall()
        )
    assert types["metadata"] == "JSON" and types["tags"] == "JSON"
    assert types["employees"] == "DOUBLE" and types["is_customer"] == "BOOLEAN"
    assert types["_emitted_at"].startswith("TIMESTAMP") and types["founded_on"].startswith("TIMESTAMP")
    assert nullable["_id"] == "NO"


def test_replace_reload_leaves_the_current_segment(sandbox: Sandbox) -> None:
    companies = _models(sandbox)["companies"]
    us = {"kind": "string", "columnSlug": "country", "operator": "is", "values": ["US"]}
    flt = {"conjonction": "and", "groups": [{"conjonction": "and", "conditions": [us]}]}
    _sync(sandbox, [{"model_uuid": companies, "table_name": "companies_export"}])
    assert len(_loaded(sandbox, "companies_export")) == len(
        _fetch_all(sandbox, companies, {"conjonction": "and", "groups": []})
    )
    _sync(sandbox, [{"model_uuid": companies, "filter": flt, "table_name": "companies_export"}])
    loaded = _loaded(sandbox, "companies_export")
    _assert_same(_fetch_all(sandbox, companies, flt), loaded, {"country": "text"})
    assert {row["country"] for row in loaded.values()} == {"US"}
    nobody = {"kind": "string", "columnSlug": "country", "operator": "is", "values": ["Atlantis"]}
    empty = {"conjonction": "and", "groups": [{"conjonction": "and", "conditions": [nobody]}]}
    _sync(sandbox, [{"model_uuid": companies, "filter": empty, "table_name": "companies_export"}])
    assert _loaded(sandbox, "companies_export") == {}, "an export that became empty must empty the table"


def test_misspelled_filter_is_refused_before_any_request(sandbox: Sandbox) -> None:
    companies = _models(sandbox)["companies"]
    enterprise = _segment(sandbox, "Enterprise accounts")["uuid"]
    before = sandbox.admin("GET", "/_emulator/queries")["requests"]
    bad = {
        "conjunction": "and",
        "groups": [
            {
                "conjonction": "and",
                "conditions": [{"kind": "string", "columnSlug": "country", "operator": "is", "value": "US"}],
            }
        ],
    }
    with pytest.raises(CargoConfigurationError) as caught:
        _sync(
            sandbox,
            [
                {"segment_uuid": enterprise},
                {"model_uuid": companies, "filter": bad},
            ],
        )
    message = str(caught.value)
    assert (
        'sources.cargo.segments[1].filter: "conjunction" must be spelled "conjonction" (Cargo\'s spelling)' in message
    )
    assert (
        'sources.cargo.segments[1].filter.groups[0].conditions[0]: string conditions take "values" '
        '(a string or list of strings), not "value"' in message
    )
    after = sandbox.admin("GET", "/_emulator/queries")["requests"]
    assert after == before, "a request was sent"


def test_unknown_column_is_refused_after_the_model_but_before_the_download(sandbox: Sandbox) -> None:
    companies = _models(sandbox)["companies"]
    flt = {
        "conjonction": "and",
        "groups": [
            {"conjonction": "and", "conditions": [{"kind": "number", "columnSlug": "employes", "operator": "isNull"}]}
        ],
    }
    downloads = _requests(sandbox, DOWNLOAD_PATH)
    chain = _failure_chain(lambda: _sync(sandbox, [{"model_uuid": companies, "filter": flt, "table_name": "typo"}]))
    expected = (
        'sources.cargo.segments[0].filter.groups[0].conditions[0]: the model has no column "employes" '
        '(did you mean "employees"?)'
    )
    assert any(isinstance(e, CargoConfigurationError) and expected in str(e) for e in chain), chain
    assert _requests(sandbox, DOWNLOAD_PATH) == downloads


class _ExpiresOnce(CargoClient):
    """A real client whose first signed URL is fetched expired: the emulator's URL lifetime is negative
    when the export is requested and is set back to normal right after that first refusal."""

    restore: Callable[[], None]
    refused = 0

    def download_to(self, url: str, target: Path) -> int:
        try:
            return super().download_to(url, target)
        except SignedUrlExpired:
            type(self).refused += 1
            type(self).restore()
            raise


@pytest.fixture()
def url_ttl(sandbox: Sandbox) -> Iterator[Callable[[int], None]]:
    def set_ttl(seconds: int) -> None:
        sandbox.admin("POST", "/_emulator/settings", json={"signedUrlTtl": seconds})

    try:
        yield set_ttl
    finally:
        set_ttl(900)


def test_expired_signed_url_is_requested_again_not_fatal(sandbox: Sandbox, url_ttl: Callable[[int], None]) -> None:
    enterprise = _segment(sandbox, "Enterprise accounts")
    _ExpiresOnce.restore = lambda: url_ttl(900)
    _ExpiresOnce.refused = 0
    downloads = _requests(sandbox, DOWNLOAD_PATH)
    url_ttl(-60)
    factory = lambda: _ExpiresOnce(sandbox.token, base_url=sandbox.emulator.base_url)  # noqa: E731
    _sync(sandbox, [{"segment_uuid": enterprise["uuid"]}], factory)
    assert _ExpiresOnce.refused == 1
    assert _requests(sandbox, DOWNLOAD_PATH) - downloads == 2, "exactly one fresh export after the refusal"
    truth = _fetch_all(sandbox, enterprise["modelUuid"], enterprise["filter"], enterprise["sort"])
    _assert_same(truth, _loaded(sandbox, "segment_enterprise_accounts"), {"employees": "number"})


def test_urls_that_keep_expiring_fail_with_a_clear_error(sandbox: Sandbox, url_ttl: Callable[[int], None]) -> None:
    enterprise = _segment(sandbox, "Enterprise accounts")
    downloads = _requests(sandbox, DOWNLOAD_PATH)
    url_ttl(-60)
    chain = _failure_chain(lambda: _sync(sandbox, [{"segment_uuid": enterprise["uuid"], "table_name": "never"}]))
    assert any(isinstance(e, ExportFailed) and "expired 3 times" in str(e) for e in chain), chain
    assert _requests(sandbox, DOWNLOAD_PATH) - downloads == 3


def test_update_column_merges_and_narrows_the_second_sync(sandbox: Sandbox) -> None:
    companies = _models(sandbox)["companies"]
    # top-level "or" with an "or" group: the narrowing condition has to be distributed
    flt = {
        "conjonction": "or",
        "groups": [
            {
                "conjonction": "and",
                "conditions": [{"kind": "string", "columnSlug": "country", "operator": "is", "values": ["US"]}],
            },
            {
                "conjonction": "or",
                "conditions": [
                    {"kind": "string", "columnSlug": "industry", "operator": "is", "values": ["Software"]},
                    {"kind": "boolean", "columnSlug": "is_customer", "operator": "isTrue"},
                ],
            },
        ],
    }
    raw = [{"model_uuid": companies, "filter": flt, "update_column": "_emitted_at", "table_name": "recent_companies"}]
    everything = _fetch_all(sandbox, companies, {"conjonction": "and", "groups": []})

    def wanted(record: dict[str, Any]) -> bool:
        return record["country"] == "US" or record["industry"] == "Software" or bool(record["is_customer"])

    truth = [r for r in everything if wanted(r)]
    assert 0 < len(truth) < len(everything)

    first = _sync(sandbox, raw)
    assert first["recent_companies"].rows == len(truth)
    _assert_same(truth, _loaded(sandbox, "recent_companies"), COMPANY_COLUMNS)
    state = sandbox.pipeline().state["sources"]["segments_test"]["resources"]["recent_companies"]
    newest = max(_instant(r["_emitted_at"]) for r in truth)
    assert _instant(state["last_value"]) == newest

    second = _sync(sandbox, raw)
    since = datetime.combine(newest.date() - timedelta(days=1), datetime.min.time(), UTC)
    recent = [r for r in truth if _instant(r["_emitted_at"]) > since]
    assert 0 < len(recent) < len(truth), "the fixture data should have some, not all, rows in the last two days"
    assert second["recent_companies"].rows == len(recent), "the second sync must read only the recent rows"
    sent = sandbox.pipeline().state["sources"]["segments_test"]["resources"]["recent_companies"]["filter_sent"]
    narrowing = {
        "kind": "date",
        "columnSlug": "_emitted_at",
        "operator": "greaterThan",
        "value": since.date().isoformat(),
    }
    assert sent["conjonction"] == "or" and len(sent["groups"]) == 3
    assert all(g["conjonction"] == "and" and g["conditions"][-1] == narrowing for g in sent["groups"])
    _assert_same(truth, _loaded(sandbox, "recent_companies"), COMPANY_COLUMNS)
    with sandbox.db() as con:
        keys = con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'recent_companies'"
        ).fetchall()
    assert ("_id",) in keys


def test_update_column_must_be_a_date_column_of_the_model(sandbox: Sandbox) -> None:
    companies = _models(sandbox)["companies"]
    exports: list[SegmentExport] = parse_segment_exports(
        [{"model_uuid": companies, "update_column": "employees", "table_name": "bad_update"}]
    )
    chain = _failure_chain(lambda: sandbox.pipeline().run(segment_resources(exports, _factory(sandbox))))
    assert any(
        "sources.cargo.segments[0].update_column: 'employees' is a number column; it must be a date column "
        "(the model's date columns: _emitted_at, founded_on)" in str(e)
        for e in chain
    )


def test_several_shards_are_spooled_then_parsed_and_deleted(sandbox: Sandbox, tmp_path: Path) -> None:
    """N signed URLs (here two real exports of disjoint filters) are one export's shards: all are
    downloaded before parsing, parsed in order, and each file is removed once read."""
    companies = _models(sandbox)["companies"]
    us = {"kind": "string", "columnSlug": "country", "operator": "is", "values": ["US"]}
    others = us | {"operator": "isNot"}
    urls: list[str] = []
    with _api(sandbox) as api:
        for condition in (us, others):
            flt = {"conjonction": "and", "groups": [{"conjonction": "and", "conditions": [condition]}]}
            urls.extend(
                api.post("segmentation/segments/download", json={"modelUuid": companies, "filter": flt}).json()["urls"]
            )
    spool = tmp_path / "spool"
    spool.mkdir()
    with CargoClient(sandbox.token, base_url=sandbox.emulator.base_url) as client:
        files = download_shards(client, urls, spool)
        columns = resolve_export(
            client, parse_segment_exports([{"model_uuid": companies, "table_name": "x"}])[0]
        ).columns
    assert [f.name for f in files] == ["shard-00000", "shard-00001"] and all(f.stat().st_size > 0 for f in files)
    tables = list(read_export_files(files, columns))
    ids = [i for t in tables for i in t.column("_id").to_pylist()]
    everything = _fetch_all(sandbox, companies, {"conjonction": "and", "groups": []})
    assert sorted(ids) == sorted(r["_id"] for r in everything)
    assert set(tables[0].column("country").to_pylist()) == {"US"}, "shards are read in the export's order"
    assert not any(f.exists() for f in files), "spooled shards must be deleted once parsed"


def test_csv_gzip_and_parquet_shards_read_alike(tmp_path: Path) -> None:
    columns = {"_id": "string", "note": "string", "n": "number", "ok": "boolean", "at": "date", "meta": "object"}
    text = (
        "_id,note,n,ok,at,meta\n"
        'a,"two\nlines",1.5,true,2026-09-25 07:52:37.237,"{""k"":1}"\n'
        "b,,,false,2026-10-04T17:03:48.708Z,\n"
        "c,null,3,,1950-01-01,[1]\n"
    )
    plain = tmp_path / "shard-0"
    plain.write_text(text)
    zipped = tmp_path / "shard-1"
    zipped.write_bytes(gzip.compress(text.encode()))
    empty = tmp_path / "shard-2"
    empty.write_bytes(b"")
    [from_csv] = list(read_export_files([plain], columns, delete=False))
    parquet = tmp_path / "shard-3"
    pq.write_table(from_csv, parquet)
    tables = list(read_export_files([plain, zipped, empty, parquet], columns))
    assert len(tables) == 3 and all(t.equals(from_csv) for t in tables)
    assert from_csv.to_pylist() == [
        {
            "_id": "a",
            "note": "two\nlines",
            "n": 1.5,
            "ok": True,
            "at": datetime(2026, 9, 25, 7, 52, 37, 237000, tzinfo=UTC),
            "meta": '{"k":1}',
        },
        {
            "_id": "b",
            "note": None,
            "n": None,
            "ok": False,
            "at": datetime(2026, 10, 4, 17, 3, 48, 708000, tzinfo=UTC),
            "meta": None,
        },
        {"_id": "c", "note": "null", "n": 3.0, "ok": None, "at": datetime(1950, 1, 1, tzinfo=UTC), "meta": "[1]"},
    ]
    assert not any(p.exists() for p in (plain, zipped, empty, parquet))


def test_an_export_in_many_shards_loads_every_row_once(
    sandbox: Sandbox, url_ttl: Callable[[int], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The emulator cuts exports into shards of SEGMENT_DOWNLOAD_SHARD_ROWS rows; at 40 rows the
    contacts model comes in several files. The first export's URLs are all refused (expired), so
    every shard is downloaded again from a fresh export; the table holds each record exactly once."""
    import cargo_elt.emulator.api.segments as emulated_segments

    monkeypatch.setattr(emulated_segments, "SEGMENT_DOWNLOAD_SHARD_ROWS", 40)
    contacts = _models(sandbox)["contacts"]
    everything = _fetch_all(sandbox, contacts, {"conjonction": "and", "groups": []})
    with _api(sandbox) as api:
        urls = api.post(
            "segmentation/segments/download",
            json={"modelUuid": contacts, "filter": {"conjonction": "and", "groups": []}},
        ).json()["urls"]
    assert len(urls) == -(-len(everything) // 40) > 4, "the emulator should answer one URL per 40 rows"
    _ExpiresOnce.restore = lambda: url_ttl(900)
    _ExpiresOnce.refused = 0
    downloads = _requests(sandbox, DOWNLOAD_PATH)
    url_ttl(-60)
    factory = lambda: _ExpiresOnce(sandbox.token, base_url=sandbox.emulator.base_url)  # noqa: E731
    stats = _sync(sandbox, [{"model_uuid": contacts, "table_name": "sharded_contacts"}], factory)
    assert _ExpiresOnce.refused >= 1
    assert _requests(sandbox, DOWNLOAD_PATH) - downloads == 2
    assert stats["sharded_contacts"].rows == len(everything)
    _assert_same(everything, _loaded(sandbox, "sharded_contacts"), CONTACT_COLUMNS)
