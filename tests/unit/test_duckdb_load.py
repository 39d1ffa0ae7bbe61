"""The sync's DuckDB loader (``pipelines/duckdb_load.py``): each file merged in place, exact whatever it holds.

Real dlt pipelines into real DuckDB files; no emulator needed (the rows are built here).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dlt
import duckdb
import pyarrow as pa
import pytest

from cargo_elt.pipelines import duckdb_load
from cargo_elt.pipelines.duckdb_load import MergeSlots, auto_memory_limit, duckdb_destination, merge_threads
from cargo_elt.source.specs import UNIQUE_PER_PACKAGE_HINT


def _rows(*rows: tuple[int, int, int, str, bool]) -> pa.Table:
    """``(key, time, update, value, deleted)`` rows as the source yields them."""
    return pa.table(
        {
            "k": pa.array([r[0] for r in rows], pa.int64()),
            "t": pa.array([datetime.fromtimestamp(r[1], UTC) for r in rows], pa.timestamp("us", "UTC")),
            "u": pa.array([datetime.fromtimestamp(r[2], UTC) for r in rows], pa.timestamp("us", "UTC")),
            "v": pa.array([r[3] for r in rows], pa.string()),
            "deleted": pa.array([r[4] for r in rows], pa.bool_()),
        }
    )


def _load(tmp_path: Path, batches: list[pa.Table]) -> dlt.Pipeline:
    """One ``pipeline.run`` per batch, through the sync's destination, as the source declares its tables."""
    pipeline = dlt.pipeline(
        pipeline_name="keyed",
        destination=duckdb_destination(str(tmp_path / "keyed.duckdb")),
        dataset_name="cargo",
        pipelines_dir=str(tmp_path / "pipelines"),
    )
    for batch in batches:

        @dlt.resource(
            name="facts",
            primary_key="k",
            write_disposition={"disposition": "merge", "strategy": "delete-insert"},
            columns={"u": {"name": "u", "dedup_sort": "desc"}, "deleted": {"name": "deleted", "hard_delete": True}},
        )
        def facts(table: pa.Table = batch) -> Iterator[pa.Table]:
            yield table

        facts.apply_hints(additional_table_hints={UNIQUE_PER_PACKAGE_HINT: True})
        pipeline.run(facts(), loader_file_format="parquet")
    return pipeline


def _table(tmp_path: Path) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(tmp_path / "keyed.duckdb"), read_only=True) as db:
        rows = db.execute("SELECT k, epoch(t)::INT, v FROM cargo.facts ORDER BY k").fetchall()
        staged = db.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'cargo_staging'"
        ).fetchone()
    assert staged == (0,), "a keyed file is merged in place, never through dlt's staging table"
    return rows


def test_a_file_merges_in_place_and_replaces_keys_loaded_before(tmp_path: Path) -> None:
    _load(tmp_path, [_rows((1, 10, 10, "a", False), (2, 20, 20, "b", False)), _rows((2, 20, 30, "b2", False))])
    assert _table(tmp_path) == [(1, 10, "a"), (2, 20, "b2")]


def test_two_versions_of_a_row_in_one_file_load_once_the_newest(tmp_path: Path) -> None:
    """A server read without FINAL can show two versions of a row (REFERENCE.md 4.6): one row per key."""
    older_first = _rows((1, 10, 10, "old", False), (1, 10, 40, "new", False), (2, 20, 20, "b", False))
    newer_first = _rows((3, 30, 50, "new", False), (3, 30, 45, "old", False))
    _load(tmp_path, [older_first, newer_first])
    assert _table(tmp_path) == [(1, 10, "new"), (2, 20, "b"), (3, 30, "new")]


def test_a_row_whose_time_moved_is_replaced_not_duplicated(tmp_path: Path) -> None:
    """The delete matches keys over the whole table: a file that starts later still replaces the row."""
    _load(tmp_path, [_rows((1, 10, 10, "a", False), (2, 20, 20, "b", False)), _rows((1, 500, 600, "moved", False))])
    assert _table(tmp_path) == [(1, 500, "moved"), (2, 20, "b")]


def test_a_hard_deleted_newest_version_removes_the_row(tmp_path: Path) -> None:
    _load(tmp_path, [_rows((1, 10, 10, "a", False)), _rows((1, 10, 20, "a", False), (1, 10, 30, "a", True))])
    assert _table(tmp_path) == []


def test_two_keys_of_one_hash_take_the_exact_path_and_keep_both_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fewer distinct key hashes than rows is a duplicate or a collision: the file is then numbered by
    its real keys, so two different keys that share a hash both load (a collision is forced here: a
    64-bit hash collision cannot be found on demand)."""
    counted: list[tuple[int, int]] = []
    numbered: list[list[str]] = []

    def colliding(sql: Any, source: str, keys: list[str]) -> tuple[int, int]:
        total, distinct = real_counts(sql, source, keys)
        counted.append((total, distinct))
        return total, distinct - 1

    def numbering(table: Any, keys: list[str], escape: Any) -> str:
        numbered.append(keys)
        return real_numbering(table, keys, escape)

    real_counts, real_numbering = duckdb_load._key_counts, duckdb_load._newest_first
    monkeypatch.setattr(duckdb_load, "_key_counts", colliding)
    monkeypatch.setattr(duckdb_load, "_newest_first", numbering)
    _load(tmp_path, [_rows((1, 10, 10, "a", False), (2, 20, 20, "b", False), (3, 30, 30, "c", False))])
    assert counted == [(3, 3)]
    assert len(numbered) == 1, "the file was numbered by its keys (the exact path)"
    assert _table(tmp_path) == [(1, 10, "a"), (2, 20, "b"), (3, 30, "c")]


def test_the_key_count_counts_distinct_hashes_of_the_whole_key(tmp_path: Path) -> None:
    """Rows and distinct key hashes of a file (real DuckDB): a repeated key counts once, and a key is
    all its columns (the same first column with another second one is another key)."""
    connection = duckdb.connect(str(tmp_path / "count.duckdb"))
    path = tmp_path / "file.parquet"
    connection.execute(
        f"COPY (SELECT * FROM (VALUES ('a', 1), ('a', 2), ('b', 1), ('a', 1)) AS v(k, n)) TO '{path}' (FORMAT parquet)"
    )
    source = f"read_parquet('{path}')"
    assert duckdb_load._key_counts(_Sql(connection), source, ["k", "n"]) == (4, 3)
    assert duckdb_load._key_counts(_Sql(connection), source, ["k"]) == (4, 2)


@pytest.fixture()
def share_checks(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """What each merge's key check answered (the real check, recorded)."""
    answers: list[bool] = []
    real = duckdb_load._may_share_keys

    def recorded(*args: Any) -> bool:
        answers.append(real(*args))
        return answers[-1]

    monkeypatch.setattr(duckdb_load, "_may_share_keys", recorded)
    return answers


@pytest.mark.parametrize(("min_rows", "checks"), [(1, [False, False, True]), (2, [False, True]), (10**5, [])])
def test_a_file_of_new_keys_skips_the_delete_and_one_sharing_a_key_runs_it(
    tmp_path: Path, share_checks: list[bool], monkeypatch: pytest.MonkeyPatch, min_rows: int, checks: list[bool]
) -> None:
    """Files of at least ``KEY_CHECK_MIN_ROWS`` rows are checked (here 2, 1 and 2 rows); smaller ones
    run the delete without the check. Exact either way."""
    monkeypatch.setattr(duckdb_load, "KEY_CHECK_MIN_ROWS", min_rows)
    first, new_keys = _rows((1, 10, 10, "a", False), (2, 20, 20, "b", False)), _rows((3, 30, 30, "c", False))
    moved = _rows((4, 40, 40, "d", False), (1, 500, 600, "moved", False))
    _load(tmp_path, [first, new_keys, moved])
    assert share_checks == checks
    assert _table(tmp_path) == [(1, 500, "moved"), (2, 20, "b"), (3, 30, "c"), (4, 40, "d")]


@pytest.mark.parametrize(("file_key", "found"), [("2", True), ("20", False)])
def test_the_key_check_hashes_the_files_keys_as_the_tables_type(tmp_path: Path, file_key: str, found: bool) -> None:
    """A key parquet typed otherwise (a number here, text in the table) hashes as the table's type:
    without the cast, hash(2) and hash('2') differ and the delete would be skipped wrongly."""
    connection = duckdb.connect(str(tmp_path / "check.duckdb"))
    connection.execute("CREATE TABLE facts (k VARCHAR, n BIGINT)")
    connection.execute("INSERT INTO facts VALUES ('1', 1), ('2', 2)")
    path = tmp_path / "file.parquet"
    connection.execute(f"COPY (SELECT {int(file_key)}::INTEGER AS k, 7::INTEGER AS n) TO '{path}' (FORMAT parquet)")
    source = f"read_parquet('{path}')"
    check = duckdb_load._may_share_keys(_Sql(connection), "facts", source, ["k", "n"], lambda name: f'"{name}"')
    assert check is False  # (k, n) = (2, 7) is in no row: the whole key is checked, not a part of it
    check = duckdb_load._may_share_keys(_Sql(connection), "facts", source, ["k"], lambda name: f'"{name}"')
    assert check is found


@pytest.mark.parametrize(
    ("step_rows", "memory", "expected"),
    [
        (1_000_000, 24 * 1024**3, "160MB"),
        (4_000_000, 24 * 1024**3, "640MB"),
        (4_000_000, 2 * 1024**3, "512MB"),
        (1_000, 24 * 1024**3, "160MB"),
        (None, 512 * 1024**2, "128MB"),
    ],
)
def test_duckdb_memory_is_sized_from_the_step_and_the_machine(
    step_rows: int | None, memory: int, expected: str
) -> None:
    assert auto_memory_limit(step_rows, memory) == expected


@pytest.mark.parametrize(
    ("cores", "merges", "threads"), [(1, 2, 1), (2, 2, 1), (3, 2, 1), (8, 2, 4), (2, 1, 2), (8, 1, 8), (2, 0, 2)]
)
def test_merges_share_the_cores(cores: int, merges: int, threads: int) -> None:
    assert merge_threads(cores, merges) == threads


class _Sql:
    """The one method of dlt's SQL client that ``MergeSlots`` uses, over a DuckDB cursor."""

    def __init__(self, connection: duckdb.DuckDBPyConnection) -> None:
        self.cursor = connection.cursor()

    def execute_sql(self, sql: str) -> Any:
        return self.cursor.execute(sql).fetchall()

    def threads(self) -> int:
        return int(self.cursor.execute("SELECT current_setting('threads')").fetchone()[0])  # type: ignore[index]


def test_a_merge_alone_gets_every_core_and_two_share_them(tmp_path: Path) -> None:
    """DuckDB's threads are one setting per database: set as merges start and end (real DuckDB, two
    threads ordered by events, no sleeps)."""
    import threading

    connection = duckdb.connect(str(tmp_path / "slots.duckdb"), config={"threads": 1})
    slots = MergeSlots(cores=2)
    first, second = _Sql(connection), _Sql(connection)
    seen: dict[str, int] = {}
    second_in, first_out = threading.Event(), threading.Event()

    def other_merge() -> None:
        with slots.hold(second):
            seen["second, both running"] = second.threads()
            second_in.set()
            assert first_out.wait(30)
            seen["second, alone again"] = second.threads()

    with slots.hold(first):
        seen["first, alone"] = first.threads()
        worker = threading.Thread(target=other_merge)
        worker.start()
        assert second_in.wait(30)
        seen["first, both running"] = first.threads()
    first_out.set()
    worker.join(30)
    assert seen == {
        "first, alone": 2,
        "second, both running": 1,
        "first, both running": 1,
        "second, alone again": 2,
    }
    assert slots.running == 0
