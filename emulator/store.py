"""The emulator's embedded ClickHouse (chDB): physical tables, workspace views, caller connections.

chDB runs one embedded server per process. Every ``chdb.connect`` to it is a separate ClickHouse
session with its own current database and settings, which is what scoping rests on: a caller's
query runs on a connection whose current database is the caller's workspace database and whose
settings are Cargo's caps plus ``readonly=1`` (set once, so they can never be changed afterwards).
Connections are not shared between threads: each workspace has a small pool and a query borrows
one for its duration; writes go through one admin connection under a lock.
"""

from __future__ import annotations

import contextlib
import itertools
import queue
import re
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import chdb
import orjson

from . import caps, schema
from .sqlclock import aliases, pin_clock, remaining_clock
from .sqlguard import Denial, check_ast, parse_ast_dump

_namespace_counter = itertools.count(1)
_namespace_lock = threading.Lock()

READERS_PER_WORKSPACE = 8
"""Connections per workspace; more concurrent queries than this wait for one to be returned."""


def _connect(path: str) -> Any:
    """A new session on the process's embedded ClickHouse (chDB ships no type hints)."""
    return chdb.connect(path)  # type: ignore[no-untyped-call]


class QueryRefused(Exception):
    """A caller's query failed; ``message`` is the ClickHouse text Cargo forwards as ``errorMessage``."""

    def __init__(self, message: str, *, spoiled: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.spoiled = spoiled
        """The query failed while running: its connection is not reused (``ClickHouseStore.reader``)."""


def _literal(text: str) -> str:
    """Quote ``text`` as a ClickHouse string literal."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


_NESTED = re.compile(
    r"^Code: (\d+)\. DB::Exception: Code: \1\. DB::Exception: "
    r"(?P<inner>.*?)(?: \(version [^)]*\))?\. \((?P<name>\w+)\)$",
    re.S,
)
_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]*")
_TYPE = re.compile(r"[A-Za-z0-9_(), ']+")
_VERSION = re.compile(r" \(version [0-9.]+[^)]*\)")


def _clean_error(exc: BaseException, *, outer_query: str | None = None) -> str:
    """ClickHouse's message for ``exc``, minus the wrapper query the emulator added around it."""
    message = str(exc).strip()
    if outer_query is not None:
        message = message.replace(f". : In scope {outer_query}.", ".").replace(f": In scope {outer_query}", "")
    nested = _NESTED.match(message)
    if nested:
        code = message.split(".", 1)[0]
        inner = re.sub(r"\.? \(\w+\)$", "", nested.group("inner"))
        message = f"{code}. DB::Exception: {inner}. ({nested.group('name')})"
    return _VERSION.sub("", message)


class ClickHouseStore:
    """All emulator data of one instance, in its own namespace of the process's embedded ClickHouse."""

    def __init__(self, path: str | None = None, *, namespace: int | None = None) -> None:
        with _namespace_lock:
            self.namespace = namespace if namespace is not None else next(_namespace_counter)
        self.path = path or ":memory:"
        self._admin = _connect(self.path)
        self._admin_lock = threading.Lock()
        self._pools: dict[str, queue.LifoQueue[Any]] = {}
        self._pools_lock = threading.Lock()
        self.truncate_results = False
        self.cap_overrides: dict[str, int | str] = {}
        self.renames: dict[str, dict[str, str]] = {}
        """Table -> {stored column: name shown to callers} (``rename_column``)."""
        self._virtual_now_ms: int | None = None
        self.database = schema.store_database(self.namespace)
        self.execute(f"CREATE DATABASE IF NOT EXISTS {self.database}")
        for layout in schema.ORCHESTRATION_TABLES:
            self.execute(layout.create_statement(self.database))

    # -- admin side (generator, clock, REST endpoints) ---------------------------------------------

    def execute(self, sql: str) -> None:
        """Run a statement on the admin connection (writes, DDL)."""
        with self._admin_lock:
            self._admin.query(sql)

    def rows(self, sql: str) -> list[dict[str, Any]]:
        """Run a read on the admin connection and return its rows as dicts."""
        with self._admin_lock:
            result = self._admin.query(sql, "JSONEachRow")
        data = result.bytes()
        return [orjson.loads(line) for line in data.splitlines() if line]

    def scalar(self, sql: str) -> Any:
        """First column of the first row, or None."""
        found = self.rows(sql)
        return next(iter(found[0].values())) if found else None

    def table(self, name: str) -> str:
        """Qualified name of a physical table of this instance."""
        return f"{self.database}.{name}"

    # -- the virtual clock -----------------------------------------------------------------------

    def virtual_now_ms(self) -> int | None:
        """The virtual clock (meta ``now``) in epoch milliseconds; None before any data is generated.

        Cached: the generator and the clock write ``now`` through ``note_virtual_now``; a store reopened
        from a data directory reads it once from ``meta``.
        """
        if self._virtual_now_ms is None:
            if not int(self.scalar(f"EXISTS TABLE {self.database}.meta") or 0):
                return None
            value = self.scalar(f"SELECT value FROM {self.database}.meta FINAL WHERE key = 'now'")
            if value is None:
                return None
            parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
            self._virtual_now_ms = (parsed - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)
        return self._virtual_now_ms

    def note_virtual_now(self, now_ms: int) -> None:
        """The virtual clock moved (generation, advance): callers' SQL reads it from now on."""
        self._virtual_now_ms = int(now_ms)

    def ensure_workspace(self, workspace_uuid: str) -> None:
        """Create the workspace's view database (idempotent)."""
        db = schema.workspace_database(self.namespace, workspace_uuid)
        self.execute(f"CREATE DATABASE IF NOT EXISTS {db}")
        for layout in schema.ORCHESTRATION_TABLES:
            self.execute(schema.view_statement(layout, self.namespace, workspace_uuid, self.renames.get(layout.name)))

    def set_truncate_results(self, truncate: bool) -> None:
        """Switch the result cap between Cargo's error (396) and silent truncation; resets pools."""
        with self._pools_lock:
            self.truncate_results = truncate
            self._pools.clear()

    def override_caps(self, **settings: int | str) -> None:
        """Lower a cap (tests use this to hit the scan and time caps on small data); resets pools."""
        unknown = set(settings) - set(caps.cap_settings())
        if unknown:
            raise ValueError(f"not a cap setting: {', '.join(sorted(unknown))}")
        with self._pools_lock:
            self.cap_overrides = dict(settings)
            self._pools.clear()

    # -- drift and lag (admin endpoints ``/_emulator/schema`` and ``/_emulator/late``) ---------------

    def alter_column(
        self,
        workspace_uuids: list[str],
        table: str,
        action: str,
        column: str,
        column_type: str | None = None,
        fill: str | None = None,
    ) -> None:
        """Add, drop or retype a column of a physical table, then re-create its workspace views.

        The views are re-created because ClickHouse fixes a view's columns when it is created. After a
        drop the emulator's clock may fail to advance (it writes every generated column): drift tests
        advance the clock first.
        """
        if table not in schema.TABLES_BY_NAME:
            raise ValueError(f"unknown table {table!r}")
        if not _IDENTIFIER.fullmatch(column):
            raise ValueError(f"bad column name {column!r}")
        if action in ("add", "modify") and (not column_type or not _TYPE.fullmatch(column_type)):
            raise ValueError(f"'{action}' needs a ClickHouse 'type'")
        if action not in ("add", "drop", "modify"):
            raise ValueError("'action' must be add, drop or modify")
        physical = self.table(table)
        statement = {
            "add": f"ADD COLUMN IF NOT EXISTS `{column}` {column_type}",
            "drop": f"DROP COLUMN IF EXISTS `{column}`",
            "modify": f"MODIFY COLUMN `{column}` {column_type}",
        }[action]
        self.execute(f"ALTER TABLE {physical} {statement}")
        if fill and action != "drop":
            self.execute(f"ALTER TABLE {physical} UPDATE `{column}` = {fill} WHERE 1 SETTINGS mutations_sync = 2")
        layout = schema.TABLES_BY_NAME[table]
        for workspace_uuid in workspace_uuids:
            self.execute(f"DROP VIEW IF EXISTS {schema.workspace_database(self.namespace, workspace_uuid)}.{table}")
            self.execute(schema.view_statement(layout, self.namespace, workspace_uuid, self.renames.get(layout.name)))
        with self._pools_lock:
            self._pools.clear()

    def rename_column(self, workspace_uuids: list[str], table: str, column: str, to: str) -> None:
        """Show a stored column under another name to ``orchestration/query`` callers (the views only: the
        generator, the clock and the REST endpoints keep reading the stored name). ``to == column`` undoes it.
        """
        if table not in schema.TABLES_BY_NAME:
            raise ValueError(f"unknown table {table!r}")
        layout = schema.TABLES_BY_NAME[table]
        stored = {name for name, _ in layout.columns}
        if column not in stored:
            raise ValueError(f"{table} has no stored column {column!r}")
        if not _IDENTIFIER.fullmatch(to):
            raise ValueError(f"bad column name {to!r}")
        renames = dict(self.renames.get(table, {}))
        if to == column:
            renames.pop(column, None)
        elif to in stored or to in renames.values():
            raise ValueError(f"{table} already shows a column named {to!r}")
        else:
            renames[column] = to
        self.renames[table] = renames
        for workspace_uuid in workspace_uuids:
            self.execute(f"DROP VIEW IF EXISTS {schema.workspace_database(self.namespace, workspace_uuid)}.{table}")
            self.execute(schema.view_statement(layout, self.namespace, workspace_uuid, renames))
        with self._pools_lock:
            self._pools.clear()

    def insert_late(self, workspace_uuid: str, table: str, rows: int, age_s: int, seed: int = 0) -> int:
        """Copy ``rows`` rows of ``table`` as new keys, timed ``age_s`` before the virtual now.

        Models ClickHouse insert lag: the rows become visible now, with time and update values that a
        sync run a moment ago would already have passed. Keys derive from ``seed`` (deterministic).
        """
        if table not in ("runs", "spans"):
            raise ValueError("late rows can be inserted into 'runs' or 'spans'")
        now = self.scalar(f"SELECT value FROM {self.database}.meta FINAL WHERE key = 'now'")
        if now is None:
            raise ValueError("the store has no generated data yet")
        at = (
            f"toDateTime64({_literal(str(now).replace('T', ' ').rstrip('Z'))}, 3, 'UTC') "
            f"- toIntervalSecond({int(age_s)}) - toIntervalMillisecond(rowNumberInAllBlocks() + 1)"
        )
        if table == "runs":
            key = "uuid"
            replace = (
                f"reinterpretAsUUID(MD5(concat(toString(uuid), 'late{int(seed)}'))) AS uuid, {at} AS created_at, "
                f"{at} AS updated_at, {at} AS finished_at, 'success' AS status, "
                "NULL AS deleted_at, toUInt64(1) AS _version"
            )
        else:
            key = "run_uuid, node_uuid, execution_index"
            replace = (
                f"reinterpretAsUUID(MD5(concat(toString(run_uuid), 'late{int(seed)}'))) AS run_uuid, "
                f"{at} AS execution_started_at, {at} AS execution_updated_at, {at} AS execution_finished_at, "
                "'success' AS execution_status, toUInt64(1) AS _version"
            )
        before = int(self.scalar(f"SELECT count() FROM {self.table(table)} FINAL") or 0)
        self.execute(
            f"INSERT INTO {self.table(table)} SELECT * REPLACE ({replace}) FROM ("
            f"SELECT * FROM {self.table(table)} FINAL WHERE workspace_uuid = toUUID({_literal(workspace_uuid)}) "
            f"ORDER BY {key} LIMIT {int(rows)})"
        )
        return int(self.scalar(f"SELECT count() FROM {self.table(table)} FINAL") or 0) - before

    # -- caller side (orchestration/query) ---------------------------------------------------------

    def _new_reader(self, workspace_uuid: str) -> Any:
        conn = _connect(self.path)
        conn.query(f"USE {schema.workspace_database(self.namespace, workspace_uuid)}")
        settings = {**caps.cap_settings(self.truncate_results), **self.cap_overrides}
        assignments = ", ".join(
            f"{key} = {_literal(value) if isinstance(value, str) else value}" for key, value in settings.items()
        )
        conn.query(f"SET {assignments}")
        conn.query("SET readonly = 1")
        return conn

    @contextlib.contextmanager
    def reader(self, workspace_uuid: str) -> Iterator[Any]:
        """Borrow a scoped, capped, read-only connection of the workspace."""
        with self._pools_lock:
            pool = self._pools.get(workspace_uuid)
            if pool is None:
                pool = queue.LifoQueue()
                for _ in range(READERS_PER_WORKSPACE):
                    pool.put(None)
                self._pools[workspace_uuid] = pool
        conn = pool.get()
        try:
            if conn is None:
                conn = self._new_reader(workspace_uuid)
            yield conn
        except QueryRefused as refused:
            if refused.spoiled:
                # chDB keeps the output a query had produced when it failed (a UNION ALL over the result
                # cap, say) and hands it to the next query on that connection: start afresh instead
                spoiled, conn = conn, None
                spoiled.close()
            raise
        finally:
            pool.put(conn)

    def caller_query(self, workspace_uuid: str, sql: str) -> bytes:
        """Run a caller's SQL as Cargo would and return the ``{"rows": [...]}`` body.

        Raises QueryRefused with ClickHouse's own message for syntax errors, denied statements and
        every cap. Clock functions (``now()``, ``today()`` ...) read the virtual clock (``sqlclock.py``).
        """
        now_ms = self.virtual_now_ms()
        with self.reader(workspace_uuid) as conn:
            outer = f"SELECT formatQuerySingleLine({_literal(sql)})"
            try:
                canonical = conn.query(outer, "TSVRaw").bytes().decode().rstrip("\n")
            except Exception as exc:
                raise QueryRefused(_clean_error(exc, outer_query=outer)) from None
            if now_ms is not None:
                canonical = pin_clock(canonical, now_ms)
            try:
                dump = conn.query(f"EXPLAIN AST {canonical}", "TSVRaw").bytes().decode()
            except Exception as exc:
                raise QueryRefused(_clean_error(exc)) from None
            denial: Denial | None = check_ast(dump)
            if denial is None and now_ms is not None:
                left = remaining_clock(parse_ast_dump(dump), aliases(canonical))
                if left is not None:
                    denial = Denial(
                        48,
                        "NOT_IMPLEMENTED",
                        f"The emulator cannot evaluate {left} on its virtual clock in this form of statement",
                    )
            if denial is not None:
                raise QueryRefused(denial.message())
            try:
                result = conn.query(canonical, "JSONEachRow")
            except Exception as exc:
                raise QueryRefused(_clean_error(exc), spoiled=True) from None
        body = result.bytes()
        if not body:
            return b'{"rows":[]}'
        return b'{"rows":[' + b",".join(body.rstrip(b"\n").split(b"\n")) + b"]}"
