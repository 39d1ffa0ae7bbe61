"""Node outputs of runs and batches, from Cargo's signed-URL exports (REFERENCE.md 3.3, 3.7, 7).

``run_outputs``: ``runs/download-outputs`` per ``(workflow, output node slug)``, incremental on run
creation time. An export holds at most 10,000 runs (``tooManyRuns`` otherwise), so the creation
range is first cut, with the same histogram planner the fact tables use, into windows of at most
``RUN_OUTPUTS_TARGET`` runs of the workflow; a window still refused is halved. Runs still unfinished
when exported hold the frontier back, so the next sync exports them again once they have an output.

``batch_outputs``: ``batches/{uuid}/download`` for each batch that finished since the last sync,
one row per run of the batch: the record's input fields (JSON) and the chosen node's output.

Files are spooled to a temporary directory and parsed from there, a file at a time: an export is
bounded (10,000 runs), so memory is too. A signed URL refused as expired is asked for again. Which
file layouts are read (JSON array, NDJSON or CSV, gzip or not, key spellings, the output column's
name) is decided in ``exportformats.py``; a layout it does not know fails the sync, and a row it
cannot place is a counted, logged skip. Each file's rows are accounted for (``ExportTally``): loaded,
skipped, or left to the window they belong to.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dlt
import pyarrow as pa
from dlt.common.schema.typing import TTableSchemaColumns
from dlt.extract.resource import DltResource

from .arrow import to_arrow
from .bounds import SyncBounds
from .catalogue import DIMENSIONS, graph_order, list_entities
from .client import CargoClient
from .config import OutputTarget
from .errors import CargoApiError, SignedUrlExpired
from .exportformats import (
    BATCH_OUTPUT_LAYOUTS,
    RUN_OUTPUT_LAYOUTS,
    ExportTally,
    FileFormat,
    Unreadable,
    batch_output_column,
    blank,
    detect_format,
    export_urls,
    json_cell,
    open_records,
    record_id,
    run_output_entry,
    run_output_keys,
)
from .extract import TableStats
from .fetch import plan_windows
from .planner import QueryWindow
from .server_clock import remember_server_now
from .settings import PAGE_LIMIT
from .specs import TABLE_SPECS, TableSpec
from .sqltext import is_uuid, parse_timestamp, sql_timestamp, sql_uuid

logger = logging.getLogger(__name__)

Row = dict[str, Any]

RUN_OUTPUTS_TARGET = 9_500
"""Runs per export window: under the 10,000-run export cap with room for runs arriving meanwhile."""

BOUNDARY_PAD = timedelta(milliseconds=1)
"""[I] Whether ``createdAfter``/``createdBefore`` are inclusive is not documented. Each export asks
for one millisecond more on the left and the rows are then cut to the window client-side, so runs on
a window boundary are exported once whatever the server's choice."""

URL_ATTEMPTS = 3
"""How many times an export is asked for again when its signed URL has expired before download."""

YIELD_ROWS = 2_000

TERMINAL_STATUSES = ("success", "error", "cancelled", "skipped")


def terminal_slug(nodes: Sequence[Mapping[str, Any]]) -> str | None:
    """The node a workflow ends on: a node without children, the deepest, the last listed on ties."""
    order = graph_order(nodes)
    best: tuple[int, int] | None = None
    slug: str | None = None
    for index, node in enumerate(nodes):
        depth, terminal = order.get(str(node.get("uuid")), (-1, False))
        if terminal and isinstance(node.get("slug"), str) and (best is None or (depth, index) >= best):
            best, slug = (depth, index), str(node["slug"])
    return slug


def default_targets(client: CargoClient) -> list[OutputTarget]:
    """Every workflow with a deployed release, paired with that release's terminal node."""
    targets = []
    for workflow in list_entities(client, DIMENSIONS["workflows"]):  # logs an item it cannot use
        release = workflow.get("deployedRelease")
        if not isinstance(release, Mapping):
            continue  # not deployed: no runs of a release to export
        slug = terminal_slug([n for n in release.get("nodes") or [] if isinstance(n, Mapping)])
        if slug is not None and is_uuid(str(workflow.get("uuid"))):
            targets.append(OutputTarget(workflow_uuid=str(workflow["uuid"]), output_node_slug=slug))
        else:
            logger.warning(
                "run_outputs: workflow %r has a deployed release but %s; its run outputs are not exported "
                "(name it in sources.cargo.run_outputs to export them)",
                workflow.get("uuid"),
                "no node without children" if slug is None else "no usable uuid",
            )
    return targets


@dataclass(frozen=True)
class WorkflowRuns:
    """Runs of one workflow that an export includes (planner predicate)."""

    workflow_uuid: str

    def render(self, spec: TableSpec) -> str:
        return f"workflow_uuid = {sql_uuid(self.workflow_uuid)} AND deleted_at IS NULL"


def iso(value: datetime) -> str:
    """Cargo's timestamp form: ISO 8601 in UTC with milliseconds and ``Z``."""
    utc = value.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def fetch_export(
    client: CargoClient, path: str, payload: Mapping[str, Any], spool: Path, *, optional: bool = True
) -> list[Path]:
    """Ask for an export and download every file of it into ``spool``; [] when there is nothing.

    Both answer shapes are accepted (``{url}`` and ``{urls: [...]}``). If a URL has expired before
    its file is fetched, the whole export is asked for again, so files of two exports never mix.
    """
    for attempt in range(1, URL_ATTEMPTS + 1):
        try:
            body = client.call("POST", path, payload)
        except CargoApiError as exc:
            if optional and exc.reason in ("noRunsFound", "noRecordsFound"):
                return []
            raise
        urls = export_urls(body, path)
        files: list[Path] = []
        folder = Path(tempfile.mkdtemp(prefix="export-", dir=spool))  # exports may run in parallel
        try:
            for index, url in enumerate(urls):
                target = folder / f"part-{index}"
                client.download_to(url, target)
                files.append(target)
        except SignedUrlExpired as exc:
            for f in files:
                f.unlink(missing_ok=True)
            if attempt == URL_ATTEMPTS:
                raise
            logger.warning("%s: %s; asking for the export again (%d/%d)", path, exc, attempt, URL_ATTEMPTS)
            continue
        return files
    return []


# -- run_outputs ------------------------------------------------------------------------------------

RUN_OUTPUT_COLUMNS: TTableSchemaColumns = {
    "run_uuid": {"name": "run_uuid", "data_type": "text", "nullable": False},
    "output_node_slug": {"name": "output_node_slug", "data_type": "text", "nullable": False},
    "workflow_uuid": {"name": "workflow_uuid", "data_type": "text", "nullable": False},
    "workspace_uuid": {"name": "workspace_uuid", "data_type": "text"},
    "record_id": {"name": "record_id", "data_type": "text"},
    "record_title": {"name": "record_title", "data_type": "text"},
    "status": {"name": "status", "data_type": "text"},
    "error_message": {"name": "error_message", "data_type": "text"},
    "created_at": {"name": "created_at", "data_type": "timestamp", "timezone": True},
    "finished_at": {"name": "finished_at", "data_type": "timestamp", "timezone": True},
    "input": {"name": "input", "data_type": "json"},
    "output": {"name": "output", "data_type": "json"},
}


def arrow_chunks(rows: list[Row], columns: TTableSchemaColumns) -> list[pa.Table]:
    """``rows`` as arrow tables of at most ``YIELD_ROWS`` rows."""
    return [to_arrow(rows[begin : begin + YIELD_ROWS], columns) for begin in range(0, len(rows), YIELD_ROWS)]


def run_output_row(entry: Mapping[str, Any], target: OutputTarget) -> Row:
    """A row of ``run_outputs`` from an entry read by ``exportformats.run_output_entry``."""
    return {
        **entry,
        "output_node_slug": target.output_node_slug,
        "workflow_uuid": entry.get("workflow_uuid") or target.workflow_uuid,
        "error_message": blank(entry.get("error_message")),
    }


def read_run_outputs_file(
    path: Path, target: OutputTarget, window: QueryWindow, tally: ExportTally, stats: TableStats
) -> tuple[list[Row], datetime | None]:
    """The rows of one run-outputs file that belong to ``window``, and the earliest creation time of a
    run still unfinished. Rows that cannot be read or placed are counted in ``tally`` and ``stats``.

    Rows outside the window (the padded millisecond, or a bound the server treats as inclusive) belong
    to the neighbouring window, which exports them too.
    """
    export = tally.export
    fmt = detect_format(path, table="run_outputs", export=export, accepted=RUN_OUTPUT_LAYOUTS)
    records = open_records(path, fmt, table="run_outputs", export=export)
    keys = run_output_keys(records.keys, target.output_node_slug, table="run_outputs", export=export, fmt=fmt)
    if records.keys and "output" not in keys.fields:
        stats.note_once(
            "no-output", "run_outputs: the file of %s (%s) has no output key: its outputs load as null", export, fmt
        )
    if keys.unknown:
        stats.note_once(
            f"unknown:{','.join(keys.unknown)}",
            "run_outputs: keys %s of the file of %s are not columns of the table; they are not loaded",
            list(keys.unknown),
            export,
        )
    spelled = keys.fields.get("created_at", "_created_at")
    if spelled != "_created_at":
        stats.note_once(f"keys:{spelled}", "run_outputs: keys spelled like %r, not '_created_at'; mapped", spelled)
    if fmt != FileFormat("json-array"):
        stats.note_once(
            f"format:{fmt}", "run_outputs: the export arrives as %s, not a plain JSON array; reading it", fmt
        )
    rows: list[Row] = []
    held: datetime | None = None
    for item in records.items:
        tally.in_file += 1
        entry = item
        if isinstance(item, dict):
            entry = run_output_entry(item, keys, text_values=records.text_values, position=f"row {tally.in_file}")
        if isinstance(entry, Unreadable):
            stats.skip(1, f"run outputs: {entry.reason}", f"{export}, {entry.position}: {entry.detail}")
            tally.skipped += 1
            continue
        created: datetime = entry["created_at"]
        if not window.start <= created < window.end:
            tally.elsewhere += 1
            continue
        rows.append(run_output_row(entry, target))
        if entry.get("finished_at") is None and (held is None or created < held):
            held = created
    if tally.elsewhere:
        logger.debug("run_outputs: %d row(s) of %s belong to a neighbouring window", tally.elsewhere, export)
    return rows, held


def export_run_outputs(
    client: CargoClient,
    target: OutputTarget,
    window: QueryWindow,
    spool: Path,
    stats: TableStats,
    skipped_from: list[datetime] | None = None,
) -> Iterator[tuple[pa.Table | None, datetime | None]]:
    """Tables of one window's export, with the earliest creation time of a run still unfinished.

    A window the server refuses as too large (runs kept arriving since planning) is halved. Each
    file's rows are accounted for before its last table is handed over (``ExportTally.check``); the
    start of a window with skipped rows goes to ``skipped_from`` (the frontier must not pass it).
    """
    payload = {
        "workflowUuid": target.workflow_uuid,
        "outputNodeSlug": target.output_node_slug,
        "createdAfter": iso(window.start - BOUNDARY_PAD),
        "createdBefore": iso(window.end),
        "format": "json",
    }
    try:
        files = fetch_export(client, "orchestration/runs/download-outputs", payload, spool)
    except CargoApiError as exc:
        if exc.reason != "tooManyRuns" or window.end - window.start <= timedelta(milliseconds=1):
            raise
        middle = window.start + (window.end - window.start) / 2
        logger.info("run_outputs %s: %s over the export cap; halving", target.state_key, window)
        for half in (QueryWindow(window.start, middle), QueryWindow(middle, window.end)):
            yield from export_run_outputs(client, target, half, spool, stats, skipped_from)
        return
    stats.add(data_queries=1)
    for index, file in enumerate(files):
        part = f", file {index + 1} of {len(files)}" if len(files) > 1 else ""
        export = (
            f"runs/download-outputs (workflow {target.workflow_uuid}, node {target.output_node_slug}, "
            f"created in {window}{part})"
        )
        tally = ExportTally("run_outputs", export)
        try:
            rows, unfinished = read_run_outputs_file(file, target, window, tally, stats)
        finally:
            file.unlink(missing_ok=True)
        tables = arrow_chunks(rows, RUN_OUTPUT_COLUMNS)
        del rows
        tally.loaded = sum(table.num_rows for table in tables)
        tally.check()
        if tally.skipped and skipped_from is not None:
            skipped_from.append(window.start)
        for table in tables:
            yield table, None
        stats.add(rows=tally.loaded)
        yield None, unfinished


def run_outputs_resource(
    open_client: Callable[[], CargoClient],
    targets: list[OutputTarget] | None,
    sync_window: Callable[[], SyncBounds],
    stats: TableStats,
    max_wait: timedelta = timedelta(days=7),
) -> DltResource:
    """``run_outputs``, merged on ``(run_uuid, output_node_slug)``.

    A run still unfinished holds its pair's frontier back, but by at most ``max_wait`` (the
    source's ``max_lookback_days``): a run stuck longer is not re-exported on every sync; its output
    arrives only if a later sync's range covers it again (a ``since``/``until`` backfill).
    """
    runs_spec = TABLE_SPECS["runs"]

    def run_outputs() -> Iterator[pa.Table]:
        state = dlt.current.resource_state()
        bounds = sync_window()  # on Cargo's clock: the frontiers are compared with the runs' created_at
        start, until = bounds.start, bounds.until
        frontiers: dict[str, str] = state.setdefault("frontiers", {})
        started = time.monotonic()
        with open_client() as client, tempfile.TemporaryDirectory(prefix="cargo-outputs-") as spool_dir:
            chosen = targets if targets is not None else default_targets(client)
            for target in chosen:
                begin = parse_timestamp(frontiers[target.state_key]) if target.state_key in frontiers else start
                if begin >= until:
                    continue
                windows = plan_windows(
                    client,
                    runs_spec,
                    QueryWindow(begin, until),
                    WorkflowRuns(target.workflow_uuid),
                    target_rows=RUN_OUTPUTS_TARGET,
                )
                held: datetime | None = None
                skipped_from: list[datetime] = []
                for window in windows:
                    if window.expected_rows == 0:
                        continue
                    exported = export_run_outputs(client, target, window, Path(spool_dir), stats, skipped_from)
                    for table, unfinished in exported:
                        if unfinished is not None and (held is None or unfinished < held):
                            held = unfinished
                        if table is not None:
                            yield table
                if held is not None and held < until - max_wait:
                    logger.warning(
                        "run_outputs %s: a run created %s is still unfinished after %s; not waiting for it",
                        target.state_key,
                        held.isoformat(),
                        max_wait,
                    )
                    held = until - max_wait
                if skipped_from:  # allowed skips (sources.cargo.max_skipped_rows): exported again next sync
                    held = min(held or until, *skipped_from)
                frontiers[target.state_key] = (held or until).isoformat()
            remember_server_now(state, bounds.server_now, "run_outputs")
            stats.add(
                planning_queries=int(client.stats_snapshot().get("queries", 0)), seconds=time.monotonic() - started
            )
        stats.enforce_skip_limit()

    return dlt.resource(
        run_outputs,
        name="run_outputs",
        primary_key=["run_uuid", "output_node_slug"],
        write_disposition={"disposition": "merge", "strategy": "delete-insert"},
        columns=RUN_OUTPUT_COLUMNS,
    )


# -- batch_outputs ----------------------------------------------------------------------------------

BATCH_OUTPUT_COLUMNS: TTableSchemaColumns = {
    "batch_uuid": {"name": "batch_uuid", "data_type": "text", "nullable": False},
    "output_node_slug": {"name": "output_node_slug", "data_type": "text", "nullable": False},
    "row_number": {"name": "row_number", "data_type": "bigint", "nullable": False},
    "workflow_uuid": {"name": "workflow_uuid", "data_type": "text"},
    "record_id": {"name": "record_id", "data_type": "text"},
    "input": {"name": "input", "data_type": "json"},
    "output": {"name": "output", "data_type": "json"},
    "batch_finished_at": {"name": "batch_finished_at", "data_type": "timestamp", "timezone": True},
}


def finished_batches_query(since: datetime, until: datetime, after: tuple[datetime, str] | None = None) -> str:
    """Batches that reached a terminal state in ``[since, until)``, keyset-paged on ``(finished_at, uuid)``."""
    statuses = ", ".join(f"'{s}'" for s in ("success", "error", "cancelled"))
    where = f"finished_at >= {sql_timestamp(since)} AND finished_at < {sql_timestamp(until)} AND status IN ({statuses})"
    if after is not None:
        at, uuid = after
        stamp = sql_timestamp(at)
        where += f" AND (finished_at > {stamp} OR (finished_at = {stamp} AND uuid > {sql_uuid(uuid)}))"
    return (
        "SELECT uuid, workflow_uuid, release_uuid, finished_at, runs_count FROM batches "
        f"WHERE {where} ORDER BY finished_at, uuid LIMIT {PAGE_LIMIT}"
    )


def read_batch_file(
    path: Path, batch: Mapping[str, Any], slug: str | None, first_number: int, tally: ExportTally, stats: TableStats
) -> list[Row]:
    """Rows of one batch file: the input fields as one JSON object, the output parsed as JSON.

    ``row_number`` is the row's position in the export (counting from ``first_number``, so the files
    of one export never share a number); a row that cannot be read keeps its number unused.
    """
    export = tally.export
    fmt = detect_format(path, table="batch_outputs", export=export, accepted=BATCH_OUTPUT_LAYOUTS)
    records = open_records(path, fmt, table="batch_outputs", export=export)
    output = ""
    if records.keys:
        output = batch_output_column(records.keys, slug, table="batch_outputs", export=export, fmt=fmt)
    if output not in ("", "output") or fmt.layout not in ("csv", "empty") or fmt.gzip:
        stats.note_once(
            f"layout:{fmt}:{output}",
            "batch_outputs: the files arrive as %s, the output in column %r; reading them",
            fmt,
            output,
        )
    rows: list[Row] = []
    for item in records.items:
        number = first_number + tally.in_file
        tally.in_file += 1
        if isinstance(item, Unreadable):
            stats.skip(1, f"batch outputs: {item.reason}", f"{export}, {item.position}: {item.detail}")
            tally.skipped += 1
            continue
        if records.text_values:
            inputs = {
                name: json_cell(value) if value[:1] in ("{", "[") else blank(value)
                for name, value in item.items()
                if name != output
            }
            produced = json_cell(item.get(output))
        else:
            inputs = {name: value for name, value in item.items() if name != output}
            produced = item.get(output)
        rows.append(
            {
                "batch_uuid": batch["uuid"],
                "output_node_slug": slug or "",
                "row_number": number,
                "workflow_uuid": batch.get("workflow_uuid"),
                "record_id": record_id(inputs),
                "input": inputs,
                "output": produced,
                "batch_finished_at": batch.get("finished_at"),
            }
        )
    return rows


REFUSED_BATCH_EXPORTS = ("batchNotSupported", "nodeNotFound")
"""Reasons Cargo gives for not exporting a batch that exists [D: REFERENCE.md 3.7; ``nodeNotFound`` I]:
its rows are counted as skipped. ``batchNotFound`` (the batch is gone) leaves nothing to load."""


def batch_outputs_resource(  # noqa: PLR0915 (the resource and its reader share the frontier's state)
    open_client: Callable[[], CargoClient],
    targets: list[OutputTarget] | None,
    sync_window: Callable[[], SyncBounds],
    stats: TableStats,
    concurrency: int = 4,
) -> DltResource:
    """``batch_outputs``, merged on ``(batch_uuid, output_node_slug, row_number)``.

    One export per batch: they are asked for and downloaded ``concurrency`` at a time (a backfill
    meets thousands of batches), and loaded in batch order. A batch with skipped rows holds the
    frontier at its finish time, so it is exported again next sync.
    """
    configured = {t.workflow_uuid: t.output_node_slug for t in targets or []}

    def batch_outputs() -> Iterator[pa.Table]:  # noqa: PLR0915 (one sync of batch_outputs, read top to bottom)
        state = dlt.current.resource_state()
        bounds = sync_window()  # on Cargo's clock: the frontier is compared with the batches' finished_at
        until = bounds.until
        since = parse_timestamp(state["frontier"]) if "frontier" in state else bounds.start
        if since >= until:
            return
        release_slugs: dict[str, str | None] = {}
        held: list[datetime] = []
        started = time.monotonic()
        with (
            open_client() as client,
            tempfile.TemporaryDirectory(prefix="cargo-batches-") as spool_dir,
            ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="cargo-batch-export") as pool,
        ):

            def export(batch: Mapping[str, Any], slug: str | None) -> list[pa.Table]:
                endpoint = f"orchestration/batches/{batch['uuid']}/download"
                payload = {"outputNodeSlug": slug} if slug else {}
                try:
                    files = fetch_export(client, endpoint, payload, Path(spool_dir))
                except CargoApiError as exc:
                    if exc.reason == "batchNotFound":
                        logger.info("batch_outputs: batch %s no longer exists; nothing to export", batch["uuid"])
                        return []
                    if exc.reason in REFUSED_BATCH_EXPORTS:
                        count = batch.get("runs_count")
                        refused = int(count) if isinstance(count, int | str) and str(count).isdigit() else 1
                        stats.skip(max(refused, 1), f"Cargo refused the batch export ({exc.reason})", endpoint)
                        held.append(parse_timestamp(batch["finished_at"]))
                        return []
                    raise
                stats.add(data_queries=1)
                tables: list[pa.Table] = []
                numbered = 0
                for index, file in enumerate(files):
                    part = f", file {index + 1} of {len(files)}" if len(files) > 1 else ""
                    tally = ExportTally("batch_outputs", f"{endpoint} (node {slug or 'default'}{part})")
                    try:
                        rows = read_batch_file(file, batch, slug, numbered, tally, stats)
                    finally:
                        file.unlink(missing_ok=True)
                    made = arrow_chunks(rows, BATCH_OUTPUT_COLUMNS)
                    tally.loaded = sum(table.num_rows for table in made)
                    tally.check()
                    if tally.skipped:
                        held.append(parse_timestamp(batch["finished_at"]))
                    tables.extend(made)
                    numbered += tally.in_file
                return tables

            after: tuple[datetime, str] | None = None
            while True:
                batches = client.query(finished_batches_query(since, until, after))
                stats.add(planning_queries=1)
                pending: deque[Future[list[pa.Table]]] = deque()
                for batch in batches:
                    slug = configured.get(str(batch.get("workflow_uuid"))) or _release_terminal(
                        client, batch.get("release_uuid"), release_slugs
                    )
                    pending.append(pool.submit(export, batch, slug))
                    while len(pending) > 2 * concurrency or (pending and pending[0].done()):
                        yield from _loaded(pending.popleft().result(), stats)
                while pending:
                    yield from _loaded(pending.popleft().result(), stats)
                if len(batches) < PAGE_LIMIT:
                    break
                after = (parse_timestamp(batches[-1]["finished_at"]), str(batches[-1]["uuid"]))
        stats.add(seconds=time.monotonic() - started)
        stats.enforce_skip_limit()
        state["frontier"] = min([*held, until]).isoformat()
        remember_server_now(state, bounds.server_now, "batch_outputs")

    return dlt.resource(
        batch_outputs,
        name="batch_outputs",
        primary_key=["batch_uuid", "output_node_slug", "row_number"],
        write_disposition={"disposition": "merge", "strategy": "delete-insert"},
        columns=BATCH_OUTPUT_COLUMNS,
    )


def _loaded(tables: list[pa.Table], stats: TableStats) -> Iterator[pa.Table]:
    stats.add(rows=sum(table.num_rows for table in tables))
    yield from tables


def _release_terminal(client: CargoClient, release_uuid: Any, cache: dict[str, str | None]) -> str | None:
    if not isinstance(release_uuid, str) or not is_uuid(release_uuid):
        return None
    if release_uuid not in cache:
        try:
            release = client.call("GET", f"orchestration/releases/{release_uuid}").get("release") or {}
        except CargoApiError as exc:
            if exc.status != 404:
                raise
            release = {}
        nodes = [n for n in release.get("nodes") or [] if isinstance(n, Mapping)]
        cache[release_uuid] = terminal_slug(nodes)
    return cache[release_uuid]
