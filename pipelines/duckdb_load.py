"""DuckDB for ``cargo-elt sync``: dlt's DuckDB destination, with each file of a keyed table merged in place.

dlt merges a ``delete-insert`` table in three statements over a staging copy: copy every file into
the staging table, delete the destination rows whose keys it holds, insert the staged rows numbered
with ``ROW_NUMBER() OVER (PARTITION BY key)`` to keep one per key. That numbering over the whole
staging table is what took the load to 9.2 GB for 5.1 M spans (2.3 GB peak with dlt's defaults),
and the copy doubles the writing. dlt keeps it because a load resumed after a crash can run a copy
job again after its copy committed, staging that file twice (``tests/reliability/test_crashes.py``).

The source's fact tables are read so that each key comes back once per load package
(``UNIQUE_PER_PACKAGE``: a sync reads a table's range once, in windows split by its time column, and
pages it by ``(time, key)``). For them, ``KeyedMergeJob`` merges each file directly into the
destination table, in one DuckDB transaction::

    DELETE FROM t USING (SELECT key FROM read_parquet(file)) AS s WHERE t.key = s.key;
    INSERT INTO t BY NAME SELECT * FROM read_parquet(file) [WHERE not hard-deleted];

No staging table, no numbering of the package, no second copy. Running the job again is harmless
(its delete takes out what its first run inserted), so a resumed load is exact by construction:
idempotent per file, the case the crash tests caught.

The promise is checked, not trusted: both ways it could fail are inferred facts about Cargo
(REFERENCE.md 4.6: a ClickHouse table read without ``FINAL`` can show two versions of a row; a row's
time value is taken to be fixed for life). A file whose keys are not unique is inserted one row per
key, the newest by the ``dedup_sort`` column (dlt's rule); and the delete matches keys over the whole
table, never pruned by time, so a row whose time value moved is replaced, not duplicated. That
costs a hash of the file's keys and a scan of the table's key columns per file, against dlt's
numbering of whole rows; and the delete runs only when a hash of a file's key is in the table
(``_may_share_keys``): a backfill's files hold new keys, and the delete's join of a million keys
spilled both its sides to disk (300 MB per step at ``big``, growing with the table).

Tables without the hint (exports, segments, the catalogue, ``_dlt_*``), and every other destination,
keep dlt's merge unchanged. ``duckdb_destination`` reports dlt's own destination type, so the
pipeline's state, ``dlt pipeline ... info``, dbt and the other commands see plain DuckDB.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from dlt.common.destination.client import HasFollowupJobs, LoadJob, RunnableLoadJob
from dlt.common.destination.typing import PreparedTableSchema
from dlt.common.schema.utils import get_columns_names_with_prop, get_dedup_sort_tuple
from dlt.common.storages.load_package import ParsedLoadJobFileName
from dlt.destinations import duckdb
from dlt.destinations.impl.duckdb.duck import DuckDbClient
from dlt.destinations.sql_jobs import SqlMergeFollowupJob

from cargo_elt.source.specs import UNIQUE_PER_PACKAGE_HINT

UNIQUE_PER_PACKAGE = UNIQUE_PER_PACKAGE_HINT
"""Table hint (set by the source on its fact tables): each primary key is read once per load package,
so each file can be merged on its own (``KeyedMergeJob``, which still checks the file's keys)."""

MERGE_SLOTS = 2
"""Merges that may run at once in one DuckDB file, each of a different table, sharing the machine's
cores (``MergeSlots``).

Measured at ``big`` on 2 cores, DuckDB at 190 MB (steps of runs, records and spans files, then steps
of spans only): three merges at once with two threads each peaked at 560-574 MB in the sync's
process and loaded in 33 s; one at a time with two threads, 496-500 MB in 41 s (a merge's two
threads do not scale: much of its work is on one); two slots of one thread, 503-506 MB in 32 s."""

_table_locks: dict[tuple[str, str], threading.Lock] = {}
_slots: dict[str, MergeSlots] = {}
_locks_guard = threading.Lock()


def machine_cores() -> int:
    """The cores this process may run on (its affinity: a container's or a worker's share)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def merge_threads(cores: int | None = None, merges: int = MERGE_SLOTS) -> int:
    """DuckDB's threads while ``merges`` merges run at once: the machine's cores shared between them."""
    return max(1, (machine_cores() if cores is None else cores) // max(1, merges))


class MergeSlots:
    """At most ``MERGE_SLOTS`` merges at once in one DuckDB file, whatever their tables, sharing its cores.

    DuckDB's ``threads`` is one setting for the whole database, not per query, so each merge sets it
    as it starts and as it ends, to the cores over the merges then running: two merges on 2 cores run
    with a thread each (two threads each added their working sets past 500 MB at ``big``), and a
    merge that runs alone, as every merge of a spans-only backfill does, gets both cores.
    """

    def __init__(self, cores: int) -> None:
        self.cores = cores
        self.running = 0
        self._free = threading.BoundedSemaphore(MERGE_SLOTS)
        self._guard = threading.Lock()

    @contextmanager
    def hold(self, sql: Any) -> Iterator[None]:
        """One slot for the merge run inside, with DuckDB's threads shared over the merges running."""
        with self._free:
            with self._guard:
                self.running += 1
                sql.execute_sql(f"SET threads = {merge_threads(self.cores, self.running)}")
            try:
                yield
            finally:
                with self._guard:
                    self.running -= 1
                    if self.running:
                        sql.execute_sql(f"SET threads = {merge_threads(self.cores, self.running)}")


def _table_lock(database: str, table: str) -> threading.Lock:
    """One merge at a time per table: a package's files of one table may be loaded by parallel jobs,
    and a second file's delete must see the first file's insert (a key the two files share)."""
    with _locks_guard:
        return _table_locks.setdefault((database, table), threading.Lock())


def _merge_slots(database: str) -> MergeSlots:
    """The merge slots of one DuckDB file, shared by every load job of this process."""
    with _locks_guard:
        return _slots.setdefault(database, MergeSlots(machine_cores()))


def merges_in_place(table: PreparedTableSchema, schema: Any) -> bool:
    """Whether ``table``'s files are merged by ``KeyedMergeJob`` rather than through staging."""
    if table.get("write_disposition") != "merge" or not table.get(UNIQUE_PER_PACKAGE):
        return False
    if table.get("x-merge-strategy", "delete-insert") != "delete-insert":
        return False
    if not get_columns_names_with_prop(table, "primary_key"):  # type: ignore[arg-type]
        return False
    name = table["name"]
    return not any(t.get("parent") == name for t in schema.tables.values())  # no nested tables to keep in step


class KeyedMergeJob(RunnableLoadJob, HasFollowupJobs):
    """Merges one parquet file into its keyed table: delete its keys, insert its rows, one transaction.

    Exact whatever the file holds: a file whose keys are not unique (two versions of a row from a
    server that does not deduplicate, a row whose time value moved during the read) is inserted one
    row per key, the newest by the ``dedup_sort`` column, as dlt's merge does; the delete matches
    keys over the whole table, so a row whose time value changed is replaced, not duplicated.
    """

    def run(self) -> None:
        client: Any = self._job_client
        sql = client.sql_client
        table = self._load_table
        name = sql.make_qualified_table_name(table["name"])
        escape = sql.escape_column_name
        key_names = get_columns_names_with_prop(table, "primary_key")  # type: ignore[arg-type]
        keys = [escape(c) for c in key_names]
        path = self._file_path.replace("'", "''")
        source = f"read_parquet('{path}', union_by_name=true)"
        matches = " AND ".join(f"d.{k} = s.{k}" for k in keys)
        _, not_deleted = SqlMergeFollowupJob._get_hard_delete_col_and_cond(
            table, escape, sql.capabilities.escape_literal, invert=True
        )
        rows = source
        total, distinct = _key_counts(sql, source, keys)
        if total != distinct:
            rows = f"(SELECT * FROM {source} QUALIFY {_newest_first(table, keys, escape)} = 1)"
        insert_filter = f" WHERE {not_deleted}" if not_deleted else ""
        database = str(client.config.credentials.database)
        with _table_lock(database, name), _merge_slots(database).hold(sql), sql.begin_transaction():
            if total < KEY_CHECK_MIN_ROWS or _may_share_keys(sql, name, source, key_names, escape):
                file_keys = f"SELECT {', '.join(keys)} FROM {source}"
                sql.execute_sql(f"DELETE FROM {name} AS d USING ({file_keys}) AS s WHERE {matches}")
            sql.execute_sql(f"INSERT INTO {name} BY NAME SELECT * FROM {rows}{insert_filter}")


KEY_CHECK_MIN_ROWS = 100_000
"""Files of fewer rows run the delete without ``_may_share_keys``: their keys' hash table fits in
DuckDB's memory (about 13 MB for 100,000 spans keys), so the check's scan of the table would only be
a second scan (an incremental sync's files are small and usually share keys with the table)."""


def _may_share_keys(sql: Any, table: str, source: str, key_names: list[str], escape: Any) -> bool:
    """Whether a row of ``table`` may have a key of the file: one of them has the same hash of its key.

    The delete joins the file's keys (two UUID strings and a number for spans) against every row of
    the table; with a million keys that hash table is past DuckDB's memory limit, and the join then
    partitions both sides to disk, the table's keys included: 300 MB of spill per step at ``big``,
    growing with the table. In a backfill no row of the table has a key of the file, which this
    proves with a hash of each key instead (eight bytes a key: it fits, nothing spills) so the delete
    is skipped; any match, a real one or a collision, runs the exact delete. The file's keys are cast
    to the table's column types first, so equal keys hash alike whatever type parquet gave them.
    """
    types = dict(sql.execute_sql(f"SELECT column_name, column_type FROM (DESCRIBE {table})"))
    table_keys = ", ".join(f"d.{escape(k)}" for k in key_names)
    file_keys = ", ".join(f"CAST(s.{escape(k)} AS {types[k]})" for k in key_names)
    found = sql.execute_sql(
        f"SELECT EXISTS (SELECT 1 FROM {table} AS d WHERE hash({table_keys}) IN "
        f"(SELECT hash({file_keys}) FROM {source} AS s))"
    )[0][0]
    return bool(found)


def _key_counts(sql: Any, source: str, keys: list[str]) -> tuple[int, int]:
    """Rows of the file and distinct hashes of their keys: equal when each key is in one row (the
    source's promise, checked). Distinct hashes prove distinct keys; fewer hashes than rows (a real
    duplicate, or two keys of the same hash) take the exact path, which numbers rows by their keys.
    Hashes, not the keys: eight bytes a key in the count's hash table, where two UUID strings and a
    number took 3.2 x the time on one thread (0.23 s against 0.07 s for 925,788 spans keys)."""
    columns = ", ".join(keys)
    total, distinct = sql.execute_sql(f"SELECT count(*), count(DISTINCT hash({columns})) FROM {source}")[0]
    return int(total), int(distinct)


def _newest_first(table: PreparedTableSchema, keys: list[str], escape: Any) -> str:
    """``ROW_NUMBER()`` over each key's rows, the newest by the table's ``dedup_sort`` column first."""
    order = ""
    dedup_sort = get_dedup_sort_tuple(table)  # type: ignore[arg-type]
    if dedup_sort is not None:
        order = f" ORDER BY {escape(dedup_sort[0])} {dedup_sort[1].upper()}"
    return f"ROW_NUMBER() OVER (PARTITION BY {', '.join(keys)}{order})"


class KeyedMergeDuckDbClient(DuckDbClient):
    """dlt's DuckDB client, merging the tables ``merges_in_place`` selects with ``KeyedMergeJob``."""

    def should_load_data_to_staging_dataset(self, table_name: str) -> bool:
        if merges_in_place(self.prepare_load_table(table_name), self.schema):
            return False
        return super().should_load_data_to_staging_dataset(table_name)

    def create_load_job(
        self, table: PreparedTableSchema, file_path: str, load_id: str, restore: bool = False
    ) -> LoadJob:
        if merges_in_place(table, self.schema) and ParsedLoadJobFileName.parse(file_path).file_format == "parquet":
            return KeyedMergeJob(file_path)
        return super().create_load_job(table, file_path, load_id, restore)

    def _create_merge_followup_jobs(self, table_chain: Any) -> Any:
        if len(table_chain) == 1 and merges_in_place(table_chain[0], self.schema):
            return []  # every file was merged by its own job
        return super()._create_merge_followup_jobs(table_chain)


class duckdb_destination(duckdb):
    """dlt's ``duckdb`` destination with ``KeyedMergeDuckDbClient``; to dlt it is DuckDB."""

    @property
    def client_class(self) -> type[DuckDbClient]:
        return KeyedMergeDuckDbClient

    @property
    def destination_type(self) -> str:
        return duckdb().destination_type


MIN_MEMORY_LIMIT = 160 * 1024**2
"""DuckDB's smallest limit here: reading a parquet file of 10,000-row row groups fits it (128 MB ran
out of memory reading parquet); a small step's merge needs no more."""

BYTES_PER_STEP_ROW = 168
"""What a merge needs per row of a step (160 MB for a million): its keys in the delete's hash table
(two UUIDs and a number for spans, with the table's overhead) and the insert's buffers. Measured in
the sync's process at ``big`` (``MERGE_SLOTS`` merges of one thread each, as ``MergeSlots`` runs
them there): peak RSS 486 MB at 190 MB, 462-475 MB at 160 MB, where the delete's hash table of a
million-row file starts to spill; DuckDB alone, every 32 MB of limit was about 30 MB more resident
at the peak (docs/PERFORMANCE.md, "The load's settings")."""

MACHINE_SHARE = 4
"""DuckDB takes at most a quarter of the machine's memory (or of the container's limit)."""


def machine_memory() -> int | None:
    """Bytes of memory this process may use: the cgroup's limit (a container, a Kubernetes or Airflow
    worker) if there is one, else the machine's physical memory; None when neither can be read."""
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path) as handle:
                text = handle.read().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 1 << 60:  # "max", or v1's "no limit" (a huge number)
            return int(text)
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (OSError, ValueError, AttributeError):
        return None


def auto_memory_limit(step_rows: int | None, memory: int | None = None) -> str:
    """DuckDB's ``memory_limit`` for a sync of steps of ``step_rows`` rows, from the data and the machine.

    DuckDB's own default is 80 % of the machine, and it keeps what it reads in its buffer pool up to
    its limit: in the sync's process, that was 11 GB for a 22 M-span backfill. A step merges at most
    ``step_rows`` rows per table (``KeyedMergeJob``), so ``BYTES_PER_STEP_ROW`` per row (160 MB for
    a million) is what it needs, at least ``MIN_MEMORY_LIMIT``, and never more than a quarter of the
    machine (or container)."""
    need = max(MIN_MEMORY_LIMIT, (step_rows or 0) * BYTES_PER_STEP_ROW)
    memory = machine_memory() if memory is None else memory
    if memory:
        need = max(min(need, memory // MACHINE_SHARE), min(MIN_MEMORY_LIMIT, memory // MACHINE_SHARE))
    return f"{need // 1024**2}MB"
