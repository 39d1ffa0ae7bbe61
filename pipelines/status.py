"""``cargo-elt status``: how fresh each table of a synced warehouse is, for people and for monitors.

Per table: its frontier (how far it is read, from the pipeline state stored in the destination,
read by ``cargo_elt.source.freshness``), its last successful load, its rows in the destination, and
its lag behind Cargo's clock. With ``max_lag``, a table whose lag is larger (or that was never
loaded) is stale, and the command exits 1, so cron, Airflow or a monitor can alert on it.

Everything is read from the destination, not from the local pipeline folder, so status works from
any machine that reaches the warehouse and Cargo (a monitor, an Airflow worker other than the one that
synced). It writes nothing: DuckDB is opened read-only, and dlt's working folder is a temporary one.

Lag is ``Cargo's clock now - as_of``. ``as_of`` is the instant on Cargo's clock up to which the
table is complete (its frontier); a table read whole each sync (the catalogue, ``run_metrics``,
segment exports) has none, and its last successful load stands in for it: that time is the clock of
the machine that ran the sync, so any difference between the two clocks shows in its lag.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from .sync import (
    DEFAULT_DATASET,
    DEFAULT_DESTINATION,
    PIPELINE_NAME,
    UserInputError,
    _destination_secrets,
    _redact,
    _short,
    check_destination,
    connection_settings,
    duckdb_credentials,
    pipeline_settings,
    preflight,
)
from .syncruns import SYNC_RUNS_TABLE, resource_states


class StatusUnavailable(Exception):
    """The warehouse or Cargo's clock could not be read (exit 1: freshness cannot be told)."""


@dataclass
class StatusRequest:
    """What one ``cargo-elt status`` was asked: which warehouse, which tables, how much lag is fine."""

    destination: str = DEFAULT_DESTINATION
    dataset: str = DEFAULT_DATASET
    pipeline_name: str = PIPELINE_NAME
    duckdb_path: str | None = None
    base_url: str | None = None
    api_token: str | None = None
    tables: Sequence[str] | None = None
    max_lag: timedelta | None = None


@dataclass(frozen=True)
class TableStatus:
    """One table's line of the status."""

    table: str
    frontier: str | None
    as_of: datetime | None
    last_load_at: datetime | None
    last_load_id: str | None
    rows: int | None
    lag_seconds: float | None
    stale: bool | None
    note: str | None = None

    def document(self) -> dict[str, Any]:
        return {
            "frontier": self.frontier,
            "as_of": _iso(self.as_of),
            "lag_seconds": self.lag_seconds,
            "last_load_at": _iso(self.last_load_at),
            "last_load_id": self.last_load_id,
            "rows": self.rows,
            "stale": self.stale,
            "note": self.note,
        }


@dataclass
class StatusReport:
    """Every selected table, measured against Cargo's clock at one instant."""

    pipeline_name: str
    dataset: str
    destination: str
    server_now: datetime
    max_lag: timedelta | None
    tables: list[TableStatus] = field(default_factory=list)

    @property
    def stale(self) -> list[str]:
        return [t.table for t in self.tables if t.stale]

    def document(self) -> dict[str, Any]:
        """What ``cargo-elt status --json`` prints."""
        return {
            "pipeline_name": self.pipeline_name,
            "dataset": self.dataset,
            "destination": self.destination,
            "server_now": _iso(self.server_now),
            "max_lag_seconds": self.max_lag.total_seconds() if self.max_lag is not None else None,
            "stale": self.stale,
            "tables": {t.table: t.document() for t in self.tables},
        }

    def text(self) -> str:
        """The human table."""
        head = (
            f"pipeline {self.pipeline_name}, dataset {self.dataset} ({self.destination}); "
            f"Cargo's clock {_short_time(self.server_now)}"
        )
        lines = [head, f"{'table':<20}{'frontier':<22}{'last load':<22}{'rows':>12}{'lag':>11}"]
        for t in self.tables:
            rows = f"{t.rows:,}" if t.rows is not None else "-"
            mark = "  STALE" if t.stale else ""
            lines.append(
                f"{t.table:<20}{_short_time(t.frontier):<22}{_short_time(t.last_load_at):<22}{rows:>12}"
                f"{format_lag(t.lag_seconds):>11}{mark}"
            )
        lines.extend(f"  {t.table}: {t.note}" for t in self.tables if t.note)
        if self.max_lag is not None:
            limit = format_lag(self.max_lag.total_seconds())
            lines.append(f"stale (lag over {limit}): {', '.join(self.stale) or 'none'}")
        return "\n".join(lines)


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(d|h|m|s)", re.IGNORECASE)
_UNIT_SECONDS = {"d": 86400, "h": 3600, "m": 60, "s": 1}


def parse_duration(text: str, setting: str = "--max-lag") -> timedelta:
    """``2h``, ``90m``, ``1h30m``, ``1d``, ``45s`` or plain seconds; the error names the option."""
    cleaned = text.strip().lower().replace(" ", "")
    seconds: float | None = None
    if re.fullmatch(r"\d+(\.\d+)?", cleaned):
        seconds = float(cleaned)
    elif cleaned and re.fullmatch(rf"(?:{_DURATION_PART.pattern})+", cleaned, re.IGNORECASE):
        seconds = sum(float(n) * _UNIT_SECONDS[u.lower()] for n, u in _DURATION_PART.findall(cleaned))
    if seconds is None or seconds <= 0:
        raise UserInputError(f"{setting} {text!r} is not a positive duration: use e.g. 2h, 90m, 1h30m, 1d or 600s")
    return timedelta(seconds=seconds)


def format_lag(seconds: float | None) -> str:
    """``4m 12s``, ``2h 05m``, ``3d 4h``; ``-`` when it cannot be told (never loaded, no load recorded)."""
    if seconds is None:
        return "-"
    sign, value = ("-", -seconds) if seconds < 0 else ("", seconds)
    whole = int(value)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{sign}{days}d {hours}h"
    if hours:
        return f"{sign}{hours}h {minutes:02d}m"
    if minutes:
        return f"{sign}{minutes}m {secs:02d}s"
    return f"{sign}{secs}s"


def run_status(request: StatusRequest) -> StatusReport:
    """Read the warehouse, then Cargo's clock, and measure each selected table against it."""
    pipeline = pipeline_settings(request.pipeline_name, request.dataset, request.duckdb_path)
    if request.destination == "duckdb":
        path = pipeline.duckdb_file
        if not os.path.isfile(path):
            raise UserInputError(
                f"no sync has run for pipeline {request.pipeline_name!r}: no warehouse at {path} "
                "(--duckdb-path names the DuckDB file cargo-elt sync writes)"
            )
    check_destination(request.destination)
    try:
        connection = connection_settings(request.api_token, request.base_url)
    except UserInputError as exc:
        raise UserInputError(f"status reads Cargo's clock: {exc}") from None
    token, base_url, workspace_uuid = connection.token, connection.base_url, connection.workspace_uuid

    stored = read_warehouse(request)
    tables = select_tables(request.tables, stored)
    preflight(base_url, token, workspace_uuid)
    now = cargo_clock(base_url, token, workspace_uuid)
    return StatusReport(
        request.pipeline_name,
        request.dataset,
        request.destination,
        now,
        request.max_lag,
        [table_status(name, stored, now, request.max_lag) for name in tables],
    )


def cargo_clock(base_url: str, token: str, workspace_uuid: str | None) -> datetime:
    """Cargo's clock now: the one place ``status`` reads it (``sources/cargo/server_clock.py``)."""
    from cargo_elt.source.client import CargoClient, RetryPolicy
    from cargo_elt.source.errors import CargoError
    from cargo_elt.source.server_clock import read_server_clock

    try:
        with CargoClient(
            token, base_url=base_url, workspace_uuid=workspace_uuid, retry=RetryPolicy(max_attempts=3, max_total_s=30.0)
        ) as client:
            return read_server_clock(client).server_now
    except CargoError as exc:
        reason = _redact(str(exc), [token])
    raise StatusUnavailable(f"cannot read Cargo's clock at {base_url} ({_short(reason)}): lag cannot be measured")


@dataclass
class StoredPipeline:
    """What the destination holds for one pipeline: its state, tables, rows and loads."""

    state: dict[str, Any]
    schema_tables: list[str]
    rows: dict[str, int | None]
    runs: dict[str, tuple[datetime, str | None]]
    """Table -> (finished_at, load_id) of its newest successful sync in ``_cargo_sync_runs``."""
    state_load: tuple[datetime, str | None] | None
    """The load that stored the newest state: every table's last load when ``_cargo_sync_runs`` has no
    row of the pipeline (loaded by the Airflow DAG or a script, which do not record their syncs)."""

    @property
    def resources(self) -> dict[str, Any]:
        return resource_states(self.state)

    @property
    def known_tables(self) -> list[str]:
        """Every table the pipeline has state or rows for, in the source's order, then the segment exports."""
        from cargo_elt.source import TABLE_NAMES

        known = {*self.resources, *self.schema_tables}
        ordered = [t for t in TABLE_NAMES if t in known]
        return ordered + sorted(known - set(ordered))


def read_warehouse(request: StatusRequest) -> StoredPipeline:
    """The pipeline's stored state, its tables' row counts and last loads; exit 2 when there is none."""
    from dlt.common.destination.exceptions import DestinationUndefinedEntity
    from dlt.pipeline.state_sync import load_pipeline_state_from_destination

    no_sync = (
        f"no sync has run for pipeline {request.pipeline_name!r} in dataset {request.dataset!r} "
        f"({request.destination}): run cargo-elt sync first, or check --pipeline-name and --dataset"
    )
    try:
        with _reader(request) as pipeline, pipeline.destination_client() as client:
            try:
                state = load_pipeline_state_from_destination(request.pipeline_name, client)
            except DestinationUndefinedEntity:
                state = None
            if not state:
                raise UserInputError(no_sync)
            stored_state = client.get_stored_state(request.pipeline_name)
            tables = _schema_tables(client, str(state.get("default_schema_name") or "cargo"))
            with pipeline.sql_client() as sql:
                names = sorted({*resource_states(state), *tables})
                return StoredPipeline(
                    state=dict(state),
                    schema_tables=tables,
                    rows={name: _count(sql, name) for name in names},
                    runs=_last_syncs(sql, request.pipeline_name),
                    state_load=_load_time(sql, stored_state),
                )
    except UserInputError:
        raise
    except Exception as exc:
        secrets = _destination_secrets(request.destination)
        target = f"the {request.destination} warehouse"
        if request.destination == "duckdb":
            path = pipeline_settings(request.pipeline_name, request.dataset, request.duckdb_path).duckdb_file
            target = f"the DuckDB file {path}"
        raise StatusUnavailable(
            f"cannot read {target} (dataset {request.dataset}): {_redact(_short(str(exc), 300), secrets)}"
            + (" (a sync writing it holds DuckDB's lock: try again when it ends)" if "lock" in str(exc).lower() else "")
        ) from None


@contextlib.contextmanager
def _reader(request: StatusRequest) -> Iterator[Any]:
    """A dlt pipeline that only reads the destination: its working folder is temporary, DuckDB read-only."""
    import dlt

    destination: Any = request.destination
    if request.destination == "duckdb":
        path = pipeline_settings(request.pipeline_name, request.dataset, request.duckdb_path).duckdb_file
        credentials = duckdb_credentials(os.path.abspath(path), None)
        credentials.read_only = True
        destination = dlt.destinations.duckdb(credentials)
    with tempfile.TemporaryDirectory(prefix="cargo-status-") as folder:
        yield dlt.pipeline(
            pipeline_name=request.pipeline_name + "_status",
            destination=destination,
            dataset_name=request.dataset,
            pipelines_dir=folder,
        )


def _schema_tables(client: Any, schema_name: str) -> list[str]:
    """Data tables of the source's schema as stored in the destination (``_dlt_version``)."""
    import json

    from dlt.common.schema import Schema

    info = client.get_stored_schema(schema_name)
    if info is None:
        return []
    return list(Schema.from_dict(json.loads(info.schema)).data_table_names())


def _count(sql: Any, table: str) -> int | None:
    """Rows of ``table``; None when it does not exist in the destination."""
    from dlt.destinations.exceptions import DatabaseUndefinedRelation

    try:
        rows = sql.execute_sql(f"SELECT count(*) FROM {sql.make_qualified_table_name(table)}")
    except DatabaseUndefinedRelation:
        return None
    return int(rows[0][0]) if rows else 0


def _last_syncs(sql: Any, pipeline_name: str) -> dict[str, tuple[datetime, str | None]]:
    """Per table, the newest successful sync recorded in ``_cargo_sync_runs`` (empty when it does not exist)."""
    from dlt.destinations.exceptions import DatabaseUndefinedRelation

    runs = sql.make_qualified_table_name(SYNC_RUNS_TABLE)
    query = (
        f"SELECT r.table_name, r.finished_at, r.load_id FROM {runs} r JOIN ("
        f"SELECT table_name, max(finished_at) AS last FROM {runs} WHERE pipeline_name = %s AND status = 'ok' "
        f"GROUP BY table_name) m ON r.table_name = m.table_name AND r.finished_at = m.last "
        f"WHERE r.pipeline_name = %s AND r.status = 'ok'"
    )
    try:
        rows = sql.execute_sql(query, pipeline_name, pipeline_name) or []
    except DatabaseUndefinedRelation:
        return {}
    return {str(table): (_utc(finished), str(load) if load else None) for table, finished, load in rows}


def _load_time(sql: Any, stored_state: Any) -> tuple[datetime, str | None] | None:
    """When the load that stored the newest state was committed (``_dlt_loads.inserted_at``)."""
    if stored_state is None:
        return None
    load_id = getattr(stored_state, "_dlt_load_id", None)
    if load_id:
        loads = sql.make_qualified_table_name("_dlt_loads")
        rows = sql.execute_sql(f"SELECT inserted_at FROM {loads} WHERE load_id = %s AND status = 0", load_id)
        if rows:
            return _utc(rows[0][0]), str(load_id)
    return _utc(stored_state.created_at), str(load_id) if load_id else None


def select_tables(requested: Sequence[str] | None, stored: StoredPipeline) -> list[str]:
    """The tables to report: those named (``segment_records``: every segment export), or all known."""
    from cargo_elt.source import SEGMENT_TABLES, TABLE_NAMES

    known = stored.known_tables
    if requested is None:
        return known
    names: list[str] = []
    for name in (n.strip() for n in requested if n.strip()):
        if name == SEGMENT_TABLES:
            names += [t for t in known if t not in TABLE_NAMES]
        elif name in TABLE_NAMES or name in known:
            names.append(name)
        else:
            choices = ", ".join(dict.fromkeys([*TABLE_NAMES, *known]))
            raise UserInputError(f"unknown table {name!r} in --tables: choose from {choices}")
    if not names:
        raise UserInputError("--tables names no table: give e.g. --tables runs,spans")
    return list(dict.fromkeys(names))


def table_status(table: str, stored: StoredPipeline, now: datetime, max_lag: timedelta | None) -> TableStatus:
    """One table measured against Cargo's clock ``now``."""
    from cargo_elt.source.freshness import table_freshness

    fresh = table_freshness(table, stored.resources.get(table))
    if stored.runs:
        loaded = stored.runs.get(table)
    elif table in stored.resources or stored.rows.get(table) is not None:
        # a pipeline not run by cargo-elt sync (the DAG, a script): its newest load stands for each table's
        loaded = stored.state_load
    else:
        loaded = None
    as_of = fresh.as_of or (loaded[0] if loaded else None)
    lag = round((now - as_of).total_seconds(), 3) if as_of is not None else None
    stale = None if max_lag is None else lag is None or lag > max_lag.total_seconds()
    return TableStatus(
        table=table,
        frontier=fresh.frontier,
        as_of=as_of,
        last_load_at=loaded[0] if loaded else None,
        last_load_id=loaded[1] if loaded else None,
        rows=stored.rows.get(table),
        lag_seconds=lag,
        stale=stale,
        note=fresh.note,
    )


def _utc(value: Any) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if not isinstance(value, datetime):
        raise TypeError(f"not a time: {value!r}")
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value is not None else None


def _short_time(value: datetime | str | None) -> str:
    """A time to the second, ``2026-12-03 10:18:17Z``; a day as it is; ``-`` for none."""
    if value is None:
        return "-"
    if isinstance(value, str):
        if len(value) == 10:
            return value
        value = _utc(value)
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
