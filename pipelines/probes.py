"""The probes of ``cargo-elt check``: each asks Cargo one question the sync relies on, read-only.

Every probe uses the source's own code for what it checks (the schema comparison of
``extract.schema_diff``, the sync's SQL builders, the export detectors of ``exportformats``, the
filter validation of ``segments``), so what ``check`` reports is what a sync would meet. Nothing is
written anywhere: no pipeline state, no destination, no batch or other object in Cargo. Queries over
the fact tables read no rows (``WHERE 0``, or a time range in 2000 that the primary index prunes),
except the page probes, which read five rows per table.

A probe returns ``Check`` rows: a name, ``ok``/``warn``/``fail``, a detail, and for a ``fail`` the
selected tables a sync could not load because of it (``blocks``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from cargo_elt.source.catalogue import DIMENSIONS, RELEASES_PAGE, current_rows
from cargo_elt.source.client import CargoClient
from cargo_elt.source.config import OutputTarget, SegmentExport
from cargo_elt.source.errors import (
    CargoApiError,
    CargoAuthError,
    CargoConfigurationError,
    CargoError,
    CargoQueryError,
    WindowTooLarge,
)
from cargo_elt.source.exportformats import ExportInspection, export_urls, inspect_export
from cargo_elt.source.extract import (
    SchemaDiff,
    loadable_added,
    schema_diff,
    schema_query,
    server_column_types,
)
from cargo_elt.source.failures import (
    FailedBatch,
    failed_batches_query,
    failed_runs_query,
    failed_spans_query,
)
from cargo_elt.source.metrics import metric_rows
from cargo_elt.source.metrics_daily import probe_sql
from cargo_elt.source.outputs import (
    WorkflowRuns,
    _release_terminal,
    default_targets,
    fetch_export,
    finished_batches_query,
    iso,
)
from cargo_elt.source.pages import CsvCell, Page, RowObjects
from cargo_elt.source.planner import QueryWindow, histogram_query
from cargo_elt.source.segments import (
    DOWNLOAD_ENDPOINT,
    download_shards,
    resolve_export,
)
from cargo_elt.source.server_clock import ClockReading, read_server_clock
from cargo_elt.source.settings import MAX_COLUMNS_TO_READ, MAX_RESULT_ROWS, MIN_PAGE_LIMIT, PAGE_LIMIT
from cargo_elt.source.specs import TABLE_SPECS, TableSpec, ValueKind

Result = Literal["ok", "warn", "fail"]

# -- what the probes ask for (each a choice of this module, not a fact about Cargo) ------------------

SKEW_WARNING = timedelta(minutes=1)
"""Clock skew (server minus client) past which ``check`` warns, as a sync logs it at WARNING."""

LOOKBACK = timedelta(days=90)
"""How far back (on the server's clock) samples are looked for: the default backfill's start."""

EMPTY_RANGE = QueryWindow(datetime(2000, 1, 1, tzinfo=UTC), datetime(2000, 1, 1, 0, 0, 0, 1000, tzinfo=UTC))
"""A millisecond in 2000: the sync's SQL run over it names every column it reads and reads no rows
(the time columns lead the tables' primary index)."""

FAR_FUTURE = datetime(2200, 1, 1, tzinfo=UTC)
"""A lower bound no row reaches, for statements that take only one (still within ``DateTime64``)."""

NIL_UUID = "00000000-0000-0000-0000-000000000000"

SAMPLE_PAGE_ROWS = 5
"""Rows of each fact table read by the page probe (both page forms)."""

SAMPLE_WINDOWS = (timedelta(hours=1), timedelta(days=1), timedelta(days=7), LOOKBACK)
"""Stretches before the server's now the page probe reads, the shortest holding rows first."""

SAMPLE_EXPORT_ROWS = 20
"""Runs (``limit``) of the run-outputs sample export, and records of the segment sample export."""

EXPORT_TARGETS_TRIED = 3
"""Workflows asked for a run-outputs sample before concluding there is nothing to export."""

RESULT_CAP_BRANCHES = 11
"""The result-cap probe is a ``UNION ALL`` of this many branches of 1,000 rows (11,000 in all): a server
that truncates stops at a branch boundary, where one block of 11,000 rows would come back whole."""

RESULT_CAP_TABLES = ("spans", "runs", "records", "batches")
"""Tables the result-cap probe may draw its rows from, in order (each branch reads 100 rows)."""

COMMON_PAGE_SIZES = frozenset({10, 20, 25, 50, 100, 200, 250, 500, 1000})
"""Item counts that look like a first page when a list endpoint's paging could not be told."""


@dataclass
class Check:
    """One row of the report."""

    name: str
    result: Result
    detail: str
    blocks: tuple[str, ...] = ()
    """Selected tables a sync cannot load because of this check (only when it fails)."""
    data: dict[str, Any] = field(default_factory=dict)
    """What was measured, for ``--json``."""


@dataclass
class ProbeSettings:
    """The ``[sources.cargo]`` settings the probes need, parsed (``cargo_elt.source.config``)."""

    run_outputs: list[OutputTarget] | None = None
    segments: list[SegmentExport] = field(default_factory=list)
    run_metrics_per_release: bool = False
    max_skipped_rows: int = 0
    invalid: set[str] = field(default_factory=set)
    """Settings that did not parse: the probes that need them are left out (their rows say why)."""


@dataclass
class ProbeContext:
    """What the probes share: the client, the selected tables, the server's time and a spool folder."""

    client: CargoClient
    tables: Sequence[str]
    settings: ProbeSettings
    spool: Path
    server_time: datetime = field(default_factory=lambda: datetime.now(UTC))
    """The server's clock as ``probe_clock`` read it (this machine's only if that failed, and then only
    to pick the samples' windows)."""
    specs: dict[str, TableSpec] = field(default_factory=dict)
    """The fact tables' specs as a sync would read them (after the column check)."""

    def selected(self, *names: str) -> tuple[str, ...]:
        """Those of ``names`` that are selected, in the order given."""
        return tuple(n for n in names if n in self.tables)


# -- identity, clock ---------------------------------------------------------------------------------


def probe_workspace(client: CargoClient) -> Check:
    """``GET workspaceManagement/workspaces/current``: which workspace the token opens."""
    name = "token and workspace"
    try:
        body = client.call("GET", "workspaceManagement/workspaces/current")
    except (CargoAuthError, CargoApiError) as exc:
        return Check(
            name, "warn", f"the token opens the query endpoint, but not this one ({exc}); the sync does not need it"
        )
    workspace = body.get("workspace")
    if not isinstance(workspace, Mapping) or not isinstance(workspace.get("uuid"), str):
        return Check(name, "warn", f"answered without a workspace object (keys {sorted(body)[:8]})")
    label = f"workspace {workspace.get('name') or '(unnamed)'} ({workspace['uuid']})"
    return Check(name, "ok", label, data={"uuid": workspace["uuid"], "name": workspace.get("name")})


def probe_clock(client: CargoClient) -> tuple[Check, datetime]:
    """The server's clock against this machine's (server minus client), read once, the way a sync reads it."""
    reading: ClockReading = read_server_clock(client)
    server = reading.server_now
    skew = reading.skew.total_seconds()
    shown = f"{round(skew):+d} s" + (f" ({_duration(abs(skew))})" if abs(skew) >= 120 else "")
    data = {
        "server_time": server.isoformat(),
        "skew_seconds": round(skew, 1),
        "round_trip_seconds": reading.round_trip.total_seconds(),
    }
    if abs(skew) <= SKEW_WARNING.total_seconds():
        return Check(
            "server clock", "ok", f"server minus client: {shown}; server time {server.isoformat()}", data=data
        ), server
    way = "behind" if skew > 0 else "ahead of"
    return (
        Check(
            "server clock",
            "warn",
            f"server minus client: {shown}: this machine's clock is {way} the server's. Read bounds come from "
            "the server's clock; this machine's is for timeouts and backoff: fix its time sync (NTP) anyway",
            data=data,
        ),
        server,
    )


def _duration(seconds: float) -> str:
    minutes = int(seconds // 60)
    if minutes < 120:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours // 24} d {hours % 24} h" if hours >= 48 else f"{hours} h {minutes} min"


# -- the fact tables' columns ------------------------------------------------------------------------


def probe_columns(ctx: ProbeContext, table: str) -> Check:
    """The server's columns of ``table`` against its ``TableSpec``, with the sync's own query (no rows read)."""
    spec = TABLE_SPECS[table].for_read()
    name = f"columns of {table}"
    blocks = ctx.selected(table)
    try:
        rows = ctx.client.query(schema_query(spec))
    except CargoQueryError as exc:
        return _columns_without_schema_query(ctx, spec, exc)
    types = server_column_types(rows[0] if rows else {})
    if not types:
        return Check(name, "warn", "the schema query answered without column types; the sync reads the spec as is")
    diff = schema_diff(spec, types)
    data = _diff_data(diff)
    if diff.missing_required:
        missing = ", ".join(f"{table}.{c} ({_role(spec, c)})" for c in diff.missing_required)
        near = _near_names(diff)
        return Check(
            name,
            "fail",
            f"the server has no column {missing}: {table} cannot be read{near}",
            blocks,
            data,
        )
    added, left_out = loadable_added(spec, diff)
    adapted = spec.without(diff.dropped).with_columns(added).read_as(diff.renamed)
    ctx.specs[table] = adapted
    notes: list[str] = []
    for column, other in diff.renamed.items():
        notes.append(f"{table}.{column} is served as {other}: read from there")
    if diff.dropped:
        notes.append(f"not on the server, loaded as NULL: {', '.join(diff.dropped)}")
    if added:
        notes.append("extra, loaded from now on: " + ", ".join(f"{c.name} ({c.clickhouse_type})" for c in added))
    if left_out:
        notes.append("extra, not loaded: " + ", ".join(f"{n} ({t})" for n, t in left_out.items()))
    for column, server_type in diff.retyped.items():
        notes.append(
            f"{column} is {server_type}, the spec says {spec.column(column).clickhouse_type} "
            f"(values that do not read go to {column}__v_text)"
        )
    count = len(adapted.columns)
    if not notes:
        return Check(name, "ok", f"as the spec lists them ({count} columns read)", data=data)
    return Check(name, "warn", "; ".join(notes) + f" ({count} columns read)", data=data)


def _columns_without_schema_query(ctx: ProbeContext, spec: TableSpec, refusal: CargoQueryError) -> Check:
    """The server refused ``SELECT * APPLY(...)``: the sync then reads the spec unchanged, so every
    spec column must answer (one query naming them all, ``WHERE 0``)."""
    name = f"columns of {spec.name}"
    why = _first_line(refusal.server_message)
    try:
        ctx.client.query(f"SELECT {spec.select_list} FROM {spec.name} WHERE 0")
    except CargoQueryError as exc:
        return Check(
            name,
            "fail",
            f"the server refused the schema query ({why}) and the spec's own columns "
            f"({_first_line(exc.server_message)}): a sync of {spec.name} would fail the same way",
            ctx.selected(spec.name),
        )
    ctx.specs[spec.name] = spec
    return Check(
        name,
        "warn",
        f"the server refused the schema query the sync adapts with ({why}); every column of the spec answers, "
        "extra columns cannot be listed",
    )


def _role(spec: TableSpec, column: str) -> str:
    roles = []
    if column in spec.primary_key:
        roles.append("key")
    if column == spec.time_column:
        roles.append("time")
    if column == spec.update_column:
        roles.append("update")
    if column == spec.status_column:
        roles.append("status")
    return "/".join(roles) + " column"


def _near_names(diff: SchemaDiff) -> str:
    extra = list(diff.added)
    return f" (columns the spec does not know: {', '.join(extra)})" if extra else ""


def _diff_data(diff: SchemaDiff) -> dict[str, Any]:
    return {
        "server_columns": len(diff.server_types),
        "renamed": diff.renamed,
        "missing_required": list(diff.missing_required),
        "dropped": list(diff.dropped),
        "added": diff.added,
        "retyped": diff.retyped,
    }


# -- caps --------------------------------------------------------------------------------------------

_CAP_NUMBER = re.compile(r"max rows: (?P<n>[\d.]+)\s*(?P<unit>thousand|million|billion)?", re.I)
_COLUMN_CAP = re.compile(r"Requested: (?P<requested>\d+), maximum: (?P<maximum>\d+)")


def result_cap_sql(table: str) -> str:
    """11,000 rows as eleven ``UNION ALL`` branches of 1,000 (100 rows of ``table`` times ten), reading
    at most 1,100 rows of the table."""
    branch = f"SELECT arrayJoin(range(10)) AS x FROM (SELECT 1 FROM {table} LIMIT 100)"
    return "SELECT x FROM (" + " UNION ALL ".join([branch] * RESULT_CAP_BRANCHES) + ")"


def probe_result_cap(ctx: ProbeContext, sql_tables: Sequence[str]) -> Check:
    """How the server answers a result over 10,000 rows: Code 396 (throw) or fewer rows (truncation)."""
    name = "result cap"
    blocks = tuple(sql_tables)
    refusals: list[str] = []
    for table in RESULT_CAP_TABLES:
        sql = result_cap_sql(table)
        try:
            counted = ctx.client.query(f"SELECT count() AS n FROM ({sql})")
            expected = int(str(counted[0].get("n"))) if counted else 0
            if expected <= MAX_RESULT_ROWS:
                refusals.append(f"{table} holds too few rows ({expected} of 11,000)")
                continue
            rows = ctx.client.query(sql)
        except CargoQueryError as exc:
            if exc.code == 396:
                return _result_cap_throws(name, exc.server_message)
            refusals.append(f"{table}: {_first_line(exc.server_message)}")
            continue
        return _result_cap_answered(name, len(rows), expected, blocks)
    return Check(name, "warn", "not probed: " + "; ".join(refusals), data={"mode": "unknown"})


def _result_cap_throws(name: str, message: str) -> Check:
    found = _CAP_NUMBER.search(message)
    cap = None
    if found:
        scale = {"thousand": 1_000, "million": 1_000_000, "billion": 1_000_000_000}.get(
            (found["unit"] or "").lower(), 1
        )
        cap = round(float(found["n"]) * scale)
    data = {"mode": "throw", "code": 396, "max_rows": cap}
    shown = f"{cap:,}" if cap is not None else "an unstated number of"
    if cap is not None and cap < PAGE_LIMIT:
        return Check(
            name,
            "warn",
            f"11,000 rows asked: Code 396 above {shown} rows (throw), below the source's page of {PAGE_LIMIT:,}: "
            "each read halves its "
            f"page after a 396 (down to {MIN_PAGE_LIMIT}), so it takes more queries",
            data=data,
        )
    return Check(
        name,
        "ok",
        f"11,000 rows asked: Code 396 above {shown} rows (throw, as assumed); the source asks for at most "
        f"{PAGE_LIMIT:,} per query and halves a page a 396 refuses",
        data=data,
    )


def _result_cap_answered(name: str, returned: int, expected: int, blocks: tuple[str, ...]) -> Check:
    data = {"mode": "truncate" if returned < expected else "none", "returned": returned, "asked": expected}
    if returned >= expected:
        return Check(name, "ok", f"all {returned:,} rows asked came back: no result cap up to there", data=data)
    if returned < PAGE_LIMIT:
        return Check(
            name,
            "fail",
            f"truncated to {returned:,} of {expected:,} rows without an error: a page of {PAGE_LIMIT:,} would come "
            "back short and be taken for the end of its window, losing rows",
            blocks,
            data,
        )
    return Check(
        name,
        "warn",
        f"truncated to {returned:,} of {expected:,} rows without an error (not Code 396 as assumed); no query of "
        f"the source asks for more than {PAGE_LIMIT:,} rows (LIMIT), so none is cut",
        data=data,
    )


def probe_column_cap(ctx: ProbeContext, tables: Sequence[str]) -> Check:
    """``SELECT *`` of each fact table (``WHERE 0``): the first over the cap tells the cap as the server
    states it; the widest read of the source must stay under it."""
    name = "column cap"
    widest = {t: len(ctx.specs[t].columns) for t in tables if t in ctx.specs}
    counts: dict[str, int] = {}
    for table in tables:
        try:
            rows = ctx.client.query(f"SELECT * APPLY(any) APPLY(toTypeName) FROM {table} WHERE 0")
        except CargoQueryError as exc:
            found = _COLUMN_CAP.search(exc.server_message)
            if exc.code != 161 or not found:
                continue
            cap, requested = int(found["maximum"]), int(found["requested"])
            over = [t for t, n in widest.items() if n > cap]
            data = {"max_columns": cap, "probe": f"SELECT * FROM {table}", "requested": requested, "widest": widest}
            detail = (
                f"Code 161 at {requested} columns (SELECT * FROM {table}), maximum {cap}; the source reads at most "
                f"{max(widest.values(), default=0)} per query"
            )
            if over:
                return Check(
                    name,
                    "fail",
                    detail + f": {', '.join(over)} read more than that",
                    tuple(t for t in over if t in ctx.tables),
                    data,
                )
            return Check(name, "ok" if cap >= MAX_COLUMNS_TO_READ else "warn", detail, data=data)
        counts[table] = len(server_column_types(rows[0] if rows else {}))
    if counts and max(counts.values()) > MAX_COLUMNS_TO_READ:
        table = max(counts, key=lambda t: counts[t])
        return Check(
            name,
            "ok",
            f"no cap at {counts[table]} columns (SELECT * FROM {table} answered)",
            data={"max_columns": None, "columns": counts},
        )
    return Check(
        name,
        "warn",
        f"not probed: no table has more than {MAX_COLUMNS_TO_READ} columns to ask for "
        f"({', '.join(f'{t} {n}' for t, n in counts.items()) or 'none answered'}); the source reads at most "
        f"{max(widest.values(), default=0)} per query",
        data={"max_columns": None, "columns": counts},
    )


# -- pages of the fact tables ------------------------------------------------------------------------


def probe_pages(ctx: ProbeContext, table: str) -> Check:
    """A histogram over an empty range and a five-row page, as row objects and packed: the sync's own
    statements, decoded into the spec's types by the sync's own codecs."""
    name = f"pages of {table}"
    spec = ctx.specs[table]
    blocks = ctx.selected(table)
    client = ctx.client
    rows: list[dict[str, Any]] = []
    plain = Page(0, None)
    searched = SAMPLE_WINDOWS[0]
    refused = ""
    try:
        client.query(histogram_query(spec, EMPTY_RANGE, 1000))
        for span in SAMPLE_WINDOWS:  # the newest stretch holding rows, so a large table is not scanned far
            window = QueryWindow(ctx.server_time - span, ctx.server_time)
            try:
                rows = client.query(RowObjects().sql(spec, window, None, SAMPLE_PAGE_ROWS))
            except WindowTooLarge as exc:  # longer stretches would be refused too; the sync plans smaller ones
                refused = f", and a page of the last {_span(span)} was refused (code {exc.code})"
                break
            searched = span
            plain = RowObjects().decode(spec, rows)
            if plain.count:
                break
    except CargoError as exc:
        return Check(name, "fail", f"the sync's page query was refused: {_first_line(str(exc))}", blocks)
    if not plain.count or plain.table is None:
        return Check(
            name,
            "warn",
            f"no rows in the last {_span(searched)}{refused}: the values' encoding is not verified",
        )
    encoding = _encoding(spec, rows[0])
    notes = []
    variants = [c for c in plain.table.column_names if c.endswith("__v_text")]
    if variants:
        notes.append(f"values that do not read as the spec's types, loaded as text: {', '.join(variants)}")
    try:
        packed = CsvCell().decode(spec, client.query(CsvCell().sql(spec, window, None, SAMPLE_PAGE_ROWS)))
    except CargoError as exc:
        notes.append(f"packed pages refused ({_first_line(str(exc))}): the sync reads row objects, more slowly")
    else:
        if packed.table is None or not packed.table.equals(plain.table):
            differing = _differing_columns(plain.table, packed.table)
            return Check(
                name,
                "fail",
                f"a packed page and the same page as row objects differ in {', '.join(differing) or 'shape'}: "
                "the sync reads packed pages; please report it",
                blocks,
                {"encoding": encoding},
            )
    detail = f"{_count(plain.count, 'row')} read alike as row objects and packed CSV; {encoding['summary']}"
    if notes:
        return Check(name, "warn", "; ".join(notes) + f" ({encoding['summary']})", data={"encoding": encoding})
    return Check(name, "ok", detail, data={"encoding": encoding})


def _span(span: timedelta) -> str:
    """``hour``, ``day``, ``7 days``: a sample window as the report says it."""
    if span < timedelta(days=1):
        hours = round(span.total_seconds() / 3600)
        return "hour" if hours == 1 else f"{hours} hours"
    return "day" if span.days == 1 else f"{span.days} days"


def _encoding(spec: TableSpec, row: Mapping[str, Any]) -> dict[str, Any]:
    """How the server wrote one row's time value, numbers and booleans (REFERENCE.md 4.5 leaves it open)."""

    def json_kinds(kinds: tuple[ValueKind, ...]) -> list[str]:
        values = [row.get(c.name) for c in spec.columns if c.kind in kinds and row.get(c.name) is not None]
        return sorted({_json_type(v) for v in values})

    time_value = row.get(spec.time_column)
    numbers = json_kinds((ValueKind.INT, ValueKind.FLOAT))
    booleans = json_kinds((ValueKind.BOOL,))
    summary = f"timestamps like {time_value!r}"
    if numbers:
        summary += f", numbers as JSON {'/'.join(numbers)}s"
    if booleans:
        summary += f", booleans as JSON {'/'.join(booleans)}s"
    return {"time_value": time_value, "numbers": numbers, "booleans": booleans, "summary": summary}


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return "string" if isinstance(value, str) else type(value).__name__


def _differing_columns(left: Any, right: Any) -> list[str]:
    if right is None or left.column_names != right.column_names or left.num_rows != right.num_rows:
        return []
    return [name for name in left.column_names if not left.column(name).equals(right.column(name))]


# -- the exports' SQL --------------------------------------------------------------------------------


def export_statements(table: str, per_release: bool) -> list[tuple[str, str]]:
    """The SQL an export table's read sends, over a range that holds no rows: ``(what, sql)``."""
    runs = TABLE_SPECS["runs"]
    at = EMPTY_RANGE.start
    if table == "run_outputs":
        return [("export windows", histogram_query(runs, EMPTY_RANGE, 1000, WorkflowRuns(NIL_UUID)))]
    if table == "batch_outputs":
        return [("finished batches", finished_batches_query(EMPTY_RANGE.start, EMPTY_RANGE.end))]
    if table == "batch_failures":
        group = [FailedBatch(NIL_UUID, at, at)]
        return [
            ("batches with failed runs", failed_batches_query(None, FAR_FUTURE, None)),
            ("their failed runs", failed_runs_query(group, at, None)),
            ("the failing spans", failed_spans_query([NIL_UUID], EMPTY_RANGE.start, EMPTY_RANGE.end)),
        ]
    if table == "run_metrics_daily":
        return [("days with runs", probe_sql(EMPTY_RANGE.start, EMPTY_RANGE.end, per_release, None, None))]
    return []


def probe_export_sql(ctx: ProbeContext, table: str) -> Check:
    """The export table's SQL, as the sync sends it, over an empty range: every column it names answers."""
    name = f"queries of {table}"
    statements = export_statements(table, ctx.settings.run_metrics_per_release)
    for what, sql in statements:
        try:
            ctx.client.query(sql)
        except CargoQueryError as exc:
            return Check(
                name,
                "fail",
                f"the server refused the query for {what}: {_first_line(exc.server_message)}",
                ctx.selected(table),
                {"sql": sql},
            )
    listed = ", ".join(what for what, _ in statements)
    return Check(name, "ok", f"{_count(len(statements), 'statement')} accepted ({listed})")


# -- REST endpoints ----------------------------------------------------------------------------------


def list_users(ctx: ProbeContext, path: str) -> tuple[str, ...]:
    """Selected tables that read the list endpoint ``path``."""
    users = [name for name, spec in DIMENSIONS.items() if spec.path == path]
    if path in (DIMENSIONS["plays"].path, DIMENSIONS["tools"].path):
        users.append("workflows")  # workflows take their names from their play or tool
    if path == DIMENSIONS["workflows"].path:
        users.extend(["run_metrics"])
        if ctx.settings.run_outputs is None:
            users.append("run_outputs")  # default targets: every deployed workflow
    if path == DIMENSIONS["releases"].path and ctx.settings.run_metrics_per_release:
        users.append("run_metrics")
    return ctx.selected(*dict.fromkeys(users))


def unpaged_list_paths(ctx: ProbeContext) -> list[str]:
    """The list endpoints the selected tables read whole (no paging), in catalogue order."""
    paths = [spec.path for spec in DIMENSIONS.values() if not spec.paged]
    return [p for p in dict.fromkeys(paths) if list_users(ctx, p)]


def probe_list(ctx: ProbeContext, path: str) -> Check:
    """An unpaged list: its items (as the sync reads them), and whether it is really unpaged: a list
    that honours ``limit`` may also have answered a first page only, which the sync would take for all."""
    name = f"GET {path}"
    spec = next(s for s in DIMENSIONS.values() if s.path == path)
    blocks = list_users(ctx, path)
    skipped: list[str] = []

    def skip(rows: int, reason: str, where: str) -> None:
        skipped.append(f"{where}: {reason}")

    try:
        items = len(current_rows(ctx.client, spec, skip))
    except CargoError as exc:
        return Check(name, "fail", _first_line(str(exc)), blocks)
    count = items + len(skipped)
    detail = f"{spec.wrapper}: {count} in one answer"
    data: dict[str, Any] = {"items": count, "skipped": len(skipped)}
    paging = _paging(ctx.client, path, spec.wrapper, count)
    data["paging"] = paging
    if paging == "paged":
        return Check(
            name,
            "fail",
            f"{detail}, but the list pages (limit and offset are honoured and more items follow): the sync reads "
            "only the first answer",
            blocks,
            data,
        )
    detail += {
        "refused": "; unpaged (limit refused)",
        "ignored": "; unpaged (limit ignored)",
        "complete": "; it takes limit, and this answer held every item",
        "unknown": "",
    }[paging]
    if skipped:
        result: Result = "fail" if len(skipped) > ctx.settings.max_skipped_rows else "warn"
        return Check(
            name,
            result,
            f"{detail}; {len(skipped)} item(s) the sync skips ({skipped[0]}), "
            f"sources.cargo.max_skipped_rows = {ctx.settings.max_skipped_rows}",
            blocks if result == "fail" else (),
            data,
        )
    if paging == "complete":
        return Check(
            name, "warn", detail + ": a list that grows past the server's default page would be cut", data=data
        )
    if paging == "unknown" and count in COMMON_PAGE_SIZES:
        return Check(name, "warn", detail + f" ({count} is a common page size: it may be a first page)", data=data)
    return Check(name, "ok", detail, data=data)


def _paging(client: CargoClient, path: str, wrapper: str, count: int) -> str:
    """``refused``/``ignored``/``complete``/``paged``/``unknown``: how the list answers ``limit``."""
    if count <= 1:
        return "unknown"
    try:
        first = client.call("GET", path, params={"limit": 1})
    except CargoApiError:
        return "refused"
    items = first.get(wrapper)
    if not isinstance(items, list) or len(items) != 1:
        return "ignored"
    after = client.call("GET", path, params={"limit": 1, "offset": count}).get(wrapper)
    return "paged" if isinstance(after, list) and after else "complete"


def probe_releases_paging(ctx: ProbeContext) -> Check:
    """``releases/list`` is read in pages of ``RELEASES_PAGE`` until a short one: the server must answer
    a page of that size in full, or the sync stops early."""
    path = DIMENSIONS["releases"].path
    name = f"GET {path}"
    blocks = list_users(ctx, path)
    client = ctx.client
    try:
        page = client.call("GET", path, params={"limit": RELEASES_PAGE, "offset": 0}).get("releases")
        if not isinstance(page, list):
            return Check(name, "fail", "answered without a 'releases' list", blocks)
        short = len(page) < RELEASES_PAGE
        more = short and bool(client.call("GET", path, params={"limit": 1, "offset": len(page)}).get("releases"))
    except CargoError as exc:
        return Check(name, "fail", _first_line(str(exc)), blocks)
    data: dict[str, Any] = {"first_page": len(page), "asked": RELEASES_PAGE}
    if more:
        return Check(
            name,
            "fail",
            f"a page of {RELEASES_PAGE} came back with {len(page)} releases and more follow: the server's page is "
            f"smaller than the sync's, which would stop after the first page",
            blocks,
            data,
        )
    largest = _largest_page(client, path, "releases")
    data["largest_page"] = largest
    first = f"pages of {RELEASES_PAGE}: {_count(len(page), 'release')} on the first"
    first += ", all of them" if short else ""
    return Check(name, "ok", f"{first}; {largest}", data=data)


def _largest_page(client: CargoClient, path: str, wrapper: str) -> str:
    """What the server says about a page one larger than the sync's."""
    try:
        client.call("GET", path, params={"limit": RELEASES_PAGE + 1, "offset": 0})
    except CargoApiError as exc:
        maximum = re.search(r'"maximum":\s*(\d+)', exc.server_message)
        return f"limit {RELEASES_PAGE + 1} refused" + (
            f" (maximum {maximum.group(1)})" if maximum else f" ({exc.reason or exc.status})"
        )
    return f"limit {RELEASES_PAGE + 1} accepted"


def probe_run_metrics(ctx: ProbeContext) -> Check:
    """``runs/metrics`` for one workflow, whole and for the last day (the two payloads the sync sends)."""
    path = "orchestration/runs/metrics"
    name = f"POST {path}"
    blocks = ctx.selected("run_metrics", "run_metrics_daily")
    try:
        workflows = [w for w in ctx.client.call("GET", DIMENSIONS["workflows"].path).get("workflows") or []]
    except CargoError as exc:
        return Check(name, "fail", f"listing workflows: {_first_line(str(exc))}", blocks)
    workflow = next((w for w in workflows if isinstance(w, Mapping) and w.get("deployedRelease")), None)
    workflow = workflow or next((w for w in workflows if isinstance(w, Mapping)), None)
    if workflow is None or not isinstance(workflow.get("uuid"), str):
        return Check(name, "warn", "no workflow to ask for: not verified")
    uuid = str(workflow["uuid"])
    day_end = ctx.server_time.replace(hour=0, minute=0, second=0, microsecond=0)
    payloads = [
        {"workflowUuid": uuid},
        {"workflowUuid": uuid, "createdAfter": iso(day_end - timedelta(days=1)), "createdBefore": iso(day_end)},
    ]
    counts = []
    try:
        for payload in payloads:
            counts.append(len(metric_rows(ctx.client.call("POST", path, payload), uuid, None, ctx.server_time)))
    except CargoError as exc:
        return Check(name, "fail", _first_line(str(exc)), blocks)
    return Check(
        name,
        "ok",
        f"workflow {uuid}: {_count(counts[0], 'node metric')} in all, {counts[1]} for yesterday "
        "(createdAfter/createdBefore)",
        data={"workflow_uuid": uuid, "metrics": counts},
    )


# -- exports -----------------------------------------------------------------------------------------


def probe_run_outputs_export(ctx: ProbeContext) -> Check:
    """A sample ``runs/download-outputs`` (``limit`` runs of the last 90 days), read by the sync's parser."""
    name = "export run_outputs"
    blocks = ctx.selected("run_outputs")
    targets = ctx.settings.run_outputs
    chosen = targets if targets is not None else default_targets(ctx.client)
    if not chosen:
        return Check(name, "warn", "no deployed workflow to export: the run-outputs layout is not verified")
    path = "orchestration/runs/download-outputs"
    tried = []
    for target in chosen[:EXPORT_TARGETS_TRIED]:
        payload = {
            "workflowUuid": target.workflow_uuid,
            "outputNodeSlug": target.output_node_slug,
            "createdAfter": iso(ctx.server_time - LOOKBACK),
            "createdBefore": iso(ctx.server_time),
            "format": "json",
            "limit": SAMPLE_EXPORT_ROWS,
        }
        files = fetch_export(ctx.client, path, payload, ctx.spool)
        tried.append(target.workflow_uuid)
        if files:
            what = (
                f"{path} (workflow {target.workflow_uuid}, node {target.output_node_slug}, limit {SAMPLE_EXPORT_ROWS})"
            )
            return _export_check(
                name,
                what,
                [inspect_export(f, "run_outputs", output_node_slug=target.output_node_slug) for f in files],
                _run_output_differences,
                blocks,
                ctx.settings.max_skipped_rows,
            )
    return Check(
        name,
        "warn",
        f"no runs in the last {LOOKBACK.days} days of {len(tried)} workflow(s) tried: "
        "the run-outputs layout is not verified",
    )


def _layout_differences(seen: ExportInspection, expected: str) -> list[str]:
    """How a file's format differs from the layout assumed: another layout, or gzip."""
    layout = seen.format.removesuffix(" (gzip)")
    differences = []
    if layout not in (expected, "an empty file"):
        differences.append(f"arrives as {layout}, not {expected}")
    if seen.format.endswith(" (gzip)"):
        differences.append("gzip-compressed")
    return differences


def _run_output_differences(seen: ExportInspection) -> list[str]:
    differences = _layout_differences(seen, "a JSON array")
    spelled = seen.fields.get("created_at")
    if spelled is not None and spelled != "_created_at":
        differences.append(f"keys spelled like {spelled!r}, not '_created_at' (mapped)")
    if seen.keys and "output" not in seen.fields:
        differences.append("no output key (outputs load as null)")
    unknown = [k for k in seen.keys if k not in seen.fields.values()]
    if unknown:
        differences.append(f"keys not loaded: {', '.join(unknown)}")
    return differences


def probe_batch_outputs_export(ctx: ProbeContext) -> Check:
    """A sample ``batches/{uuid}/download`` of the smallest batch finished in the last 90 days."""
    name = "export batch_outputs"
    blocks = ctx.selected("batch_outputs")
    batches = ctx.client.query(finished_batches_query(ctx.server_time - LOOKBACK, ctx.server_time))
    sized = [b for b in batches if _int(b.get("runs_count")) > 0]
    if not sized:
        return Check(
            name, "warn", f"no batch finished in the last {LOOKBACK.days} days: the batch-file layout is not verified"
        )
    batch = min(sized, key=lambda b: (_int(b.get("runs_count")), str(b.get("uuid"))))
    targets = {t.workflow_uuid: t.output_node_slug for t in ctx.settings.run_outputs or []}
    slug = targets.get(str(batch.get("workflow_uuid"))) or _release_terminal(ctx.client, batch.get("release_uuid"), {})
    endpoint = f"orchestration/batches/{batch['uuid']}/download"
    files = fetch_export(ctx.client, endpoint, {"outputNodeSlug": slug} if slug else {}, ctx.spool)
    what = f"{endpoint} (node {slug or 'default'}, {_count(_int(batch.get('runs_count')), 'run')})"
    if not files:
        return Check(name, "warn", f"{what}: nothing to export: the batch-file layout is not verified")
    return _export_check(
        name,
        what,
        [inspect_export(f, "batch_outputs", output_node_slug=slug) for f in files],
        _batch_differences,
        blocks,
        ctx.settings.max_skipped_rows,
    )


def _batch_differences(seen: ExportInspection) -> list[str]:
    differences = _layout_differences(seen, "CSV")
    column = seen.fields.get("output")
    if column is not None and column != "output":
        differences.append(f"the output is in column {column!r}, not 'output'")
    return differences


def probe_segments(ctx: ProbeContext) -> list[Check]:
    """Every configured segment export: filter, sort and update column checked against the model
    (what the sync does before downloading); then a small download of the first one, parsed."""
    blocks = ctx.selected("segment_records")
    exports = ctx.settings.segments  # a malformed list: the caller's config check left this probe out
    if not exports:
        return [Check("segment exports", "ok", "none configured (sources.cargo.segments)")]
    checks: list[Check] = []
    resolved = []
    for export in exports:
        name = f"segment filter {export.where}"
        try:
            found = resolve_export(ctx.client, export)
        except CargoConfigurationError as exc:
            checks.append(Check(name, "fail", str(exc), blocks))
            continue
        except CargoError as exc:
            checks.append(Check(name, "fail", _first_line(str(exc)), blocks))
            continue
        resolved.append(found)
        checks.append(Check(name, "ok", f"{found.label}: filter, sort and columns valid for model {found.model_uuid}"))
    if not resolved:
        return checks
    first = resolved[0]
    limit = min(first.limit or SAMPLE_EXPORT_ROWS, SAMPLE_EXPORT_ROWS)
    payload: dict[str, Any] = {"modelUuid": first.model_uuid, "filter": first.filter, "limit": limit}
    if first.sort:
        payload["sort"] = first.sort
    what = f"{DOWNLOAD_ENDPOINT} ({first.export.where}, {first.label}, limit {limit})"
    try:
        urls = export_urls(ctx.client.call("POST", DOWNLOAD_ENDPOINT, payload), DOWNLOAD_ENDPOINT)
        files = download_shards(ctx.client, urls, ctx.spool)
    except CargoError as exc:
        checks.append(Check("export segment", "fail", f"{what}: {_first_line(str(exc))}", blocks))
        return checks
    inspections = [inspect_export(f, "segment", id_column=first.id_column) for f in files]
    checks.append(
        _export_check("export segment", what, inspections, _segment_differences, blocks, ctx.settings.max_skipped_rows)
    )
    return checks


def _segment_differences(seen: ExportInspection) -> list[str]:
    return _layout_differences(seen, "CSV")


def _export_check(
    name: str,
    what: str,
    inspections: Sequence[ExportInspection],
    differences: Callable[[ExportInspection], list[str]],
    blocks: tuple[str, ...],
    max_skipped: int,
) -> Check:
    """One row for a sample export's files: refused, rows skipped, differing from the assumed layout, or as assumed."""
    rows = sum(i.rows for i in inspections)
    parsed = sum(i.parsed for i in inspections)
    skipped = [s for i in inspections for s in i.skipped]
    first = inspections[0]
    data = {
        "files": len(inspections),
        "format": first.format,
        "keys": list(first.keys),
        "fields": first.fields,
        "rows": rows,
        "parsed": parsed,
        "skipped": skipped[:10],
    }
    problem = next((i.problem for i in inspections if i.problem), None)
    if problem is not None:
        return Check(name, "fail", f"{what}: {problem}", blocks, data)
    files = f"{len(inspections)} files, " if len(inspections) > 1 else ""
    keys = _shown(first.keys)
    summary = f"{what}: {files}{first.format}, keys {keys}; {_count(rows, 'row')}, {parsed} parsed"
    if skipped:
        result: Result = "fail" if len(skipped) > max_skipped else "warn"
        return Check(
            name,
            result,
            f"{summary}; {len(skipped)} the sync would skip ({skipped[0]}); "
            f"sources.cargo.max_skipped_rows = {max_skipped}",
            blocks if result == "fail" else (),
            data,
        )
    differs = sorted({d for i in inspections for d in differences(i)})
    if differs:
        return Check(name, "warn", f"{summary}; read, but {'; '.join(differs)}", data=data)
    return Check(name, "ok", summary, data=data)


# -- helpers -----------------------------------------------------------------------------------------


def _count(number: int, noun: str) -> str:
    return f"{number:,} {noun}{'' if number == 1 else 's'}"


def _shown(keys: Iterable[str], limit: int = 6) -> str:
    listed = list(keys)
    shown = ", ".join(listed[:limit]) + (f", ... ({len(listed)} in all)" if len(listed) > limit else "")
    return f"[{shown}]"


def _int(value: Any) -> int:
    try:
        return int(str(value))
    except ValueError:
        return 0


SHOWN_MESSAGE_CHARS = 240


def _first_line(text: str) -> str:
    """A server's message on one line, without the statement ClickHouse repeats after ``In scope``."""
    line = " ".join(text.strip().split("\n", 1)[0].split())
    line = line.split(" In scope ", 1)[0]
    return line if len(line) <= SHOWN_MESSAGE_CHARS else line[: SHOWN_MESSAGE_CHARS - 3] + "..."
