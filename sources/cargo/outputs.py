"""Node outputs of runs and batches, from Cargo's signed-URL exports (REFERENCE.md 3.3, 3.7, 7).

``run_outputs``: ``runs/download-outputs`` per ``(workflow, output node slug)``, incremental on run
creation time. An export holds at most 10,000 runs (``tooManyRuns`` otherwise), so the creation
range is first cut, with the same histogram planner the fact tables use, into windows of at most
``RUN_OUTPUTS_TARGET`` runs of the workflow; a window still refused is halved. Runs still unfinished
when exported hold the frontier back, so the next sync exports them again once they have an output.

``batch_outputs``: ``batches/{uuid}/download`` for each batch that finished since the last sync,
one row per run of the batch: the record's input fields (JSON) and the chosen node's output.

Files are spooled to a temporary directory and parsed from there, a file at a time: an export is
bounded (10,000 runs), so memory is too. A signed URL refused as expired is asked for again.
"""

from __future__ import annotations

import csv
import logging
import sys
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
import orjson
import pyarrow as pa
from dlt.common.schema.typing import TTableSchemaColumns
from dlt.extract.resource import DltResource

from .arrow import to_arrow
from .bounds import SyncBounds
from .catalogue import graph_order
from .client import CargoClient
from .errors import CargoApiError, CargoConfigurationError, SignedUrlExpired
from .extract import TableStats
from .fetch import plan_windows
from .planner import QueryWindow, is_uuid, parse_timestamp, sql_timestamp, sql_uuid
from .server_clock import remember_server_now
from .settings import PAGE_LIMIT
from .specs import TABLE_SPECS, TableSpec

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


@dataclass(frozen=True)
class OutputTarget:
    """One ``(workflow, output node slug)`` pair whose run outputs are exported."""

    workflow_uuid: str
    output_node_slug: str

    @property
    def state_key(self) -> str:
        return f"{self.workflow_uuid}:{self.output_node_slug}"


def parse_output_targets(raw: Any) -> list[OutputTarget] | None:
    """``sources.cargo.run_outputs``: a list of ``{workflow_uuid, output_node_slug}``; None = default."""
    if raw is None or raw in ("", []):
        return None
    if isinstance(raw, str):
        try:
            raw = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise CargoConfigurationError(
                "sources.cargo.run_outputs must be a list of {workflow_uuid, output_node_slug} tables"
            ) from None
    if not isinstance(raw, Sequence) or isinstance(raw, str | bytes):
        raise CargoConfigurationError(
            "sources.cargo.run_outputs must be a list of {workflow_uuid, output_node_slug} tables"
        )
    targets = []
    for index, item in enumerate(raw):
        where = f"sources.cargo.run_outputs[{index}]"
        if not isinstance(item, Mapping):
            raise CargoConfigurationError(f"{where} must be a table with workflow_uuid and output_node_slug")
        unknown = sorted(set(item) - {"workflow_uuid", "output_node_slug"})
        if unknown:
            raise CargoConfigurationError(
                f"{where} has unknown key(s) {', '.join(unknown)}: use workflow_uuid and output_node_slug"
            )
        workflow = item.get("workflow_uuid")
        slug = item.get("output_node_slug")
        if not isinstance(workflow, str) or not is_uuid(workflow):
            raise CargoConfigurationError(f"{where}.workflow_uuid must be a workflow UUID, got {workflow!r}")
        if not isinstance(slug, str) or not slug.strip():
            raise CargoConfigurationError(
                f"{where}.output_node_slug must be a node slug of the workflow (see release_nodes.slug)"
            )
        targets.append(OutputTarget(workflow.lower(), slug.strip()))
    return targets


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
    for workflow in client.call("GET", "orchestration/workflows/list").get("workflows") or []:
        release = workflow.get("deployedRelease") if isinstance(workflow, Mapping) else None
        if not isinstance(release, Mapping):
            continue
        slug = terminal_slug([n for n in release.get("nodes") or [] if isinstance(n, Mapping)])
        if slug is not None and is_uuid(str(workflow.get("uuid"))):
            targets.append(OutputTarget(str(workflow["uuid"]).lower(), slug))
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
        listed = body.get("urls")
        candidates: list[Any] = listed if isinstance(listed, list) else [body.get("url")]
        urls = [u for u in candidates if isinstance(u, str) and u]
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


def _blank(value: Any) -> Any:
    return None if value == "" else value


def run_output_row(entry: Mapping[str, Any], target: OutputTarget) -> Row:
    return {
        "run_uuid": entry.get("_uuid"),
        "output_node_slug": target.output_node_slug,
        "workflow_uuid": entry.get("_workflow_uuid") or target.workflow_uuid,
        "workspace_uuid": entry.get("_workspace_uuid"),
        "record_id": entry.get("_record_id"),
        "record_title": entry.get("_record_title"),
        "status": entry.get("_status"),
        "error_message": _blank(entry.get("_error_message")),
        "created_at": _blank(entry.get("_created_at")),
        "finished_at": _blank(entry.get("_finished_at")),
        "input": entry.get("input"),
        "output": entry.get("output"),
    }


def _run_output_entries(path: Path) -> list[Mapping[str, Any]]:
    """The JSON export: one array of objects (bounded by the 10,000-run cap, so read whole)."""
    data = orjson.loads(path.read_bytes())
    if not isinstance(data, list):
        from .errors import CargoProtocolError

        raise CargoProtocolError(f"run outputs export is not a JSON array (got {type(data).__name__})")
    return [e for e in data if isinstance(e, Mapping)]


def export_run_outputs(
    client: CargoClient,
    target: OutputTarget,
    window: QueryWindow,
    spool: Path,
    stats: TableStats,
) -> Iterator[tuple[list[Row], datetime | None]]:
    """Rows of one window's export, with the earliest creation time of a run still unfinished.

    A window the server refuses as too large (runs kept arriving since planning) is halved.
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
            yield from export_run_outputs(client, target, half, spool, stats)
        return
    stats.add(data_queries=1)
    for file in files:
        entries = _run_output_entries(file)
        file.unlink(missing_ok=True)
        rows: list[Row] = []
        unfinished: datetime | None = None
        for entry in entries:
            created_text = entry.get("_created_at")
            if not isinstance(created_text, str) or not created_text:
                continue
            created = parse_timestamp(created_text)
            if not window.start <= created < window.end:
                continue  # the padded millisecond, or a bound the server treats as inclusive
            rows.append(run_output_row(entry, target))
            if not entry.get("_finished_at") and (unfinished is None or created < unfinished):
                unfinished = created
        del entries
        for begin in range(0, len(rows), YIELD_ROWS):
            yield rows[begin : begin + YIELD_ROWS], None
        stats.add(rows=len(rows))
        yield [], unfinished


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
                for window in windows:
                    if window.expected_rows == 0:
                        continue
                    for rows, unfinished in export_run_outputs(client, target, window, Path(spool_dir), stats):
                        if unfinished is not None and (held is None or unfinished < held):
                            held = unfinished
                        if rows:
                            yield to_arrow(rows, RUN_OUTPUT_COLUMNS)
                if held is not None and held < until - max_wait:
                    logger.warning(
                        "run_outputs %s: a run created %s is still unfinished after %s; not waiting for it",
                        target.state_key,
                        held.isoformat(),
                        max_wait,
                    )
                    held = until - max_wait
                frontiers[target.state_key] = (held or until).isoformat()
            remember_server_now(state, bounds.server_now, "run_outputs")
            stats.add(
                planning_queries=int(client.stats_snapshot().get("queries", 0)), seconds=time.monotonic() - started
            )

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

RECORD_ID_COLUMNS = ("_id", "id", "record_id")
"""[I] Input columns that hold the record id in a batch file (the model's ``_id`` in practice)."""


def finished_batches_query(since: datetime, until: datetime, after: tuple[datetime, str] | None = None) -> str:
    """Batches that reached a terminal state in ``[since, until)``, keyset-paged on ``(finished_at, uuid)``."""
    statuses = ", ".join(f"'{s}'" for s in ("success", "error", "cancelled"))
    where = f"finished_at >= {sql_timestamp(since)} AND finished_at < {sql_timestamp(until)} AND status IN ({statuses})"
    if after is not None:
        at, uuid = after
        stamp = sql_timestamp(at)
        where += f" AND (finished_at > {stamp} OR (finished_at = {stamp} AND uuid > {sql_uuid(uuid)}))"
    return (
        "SELECT uuid, workflow_uuid, release_uuid, finished_at FROM batches "
        f"WHERE {where} ORDER BY finished_at, uuid LIMIT {PAGE_LIMIT}"
    )


def _json_cell(text: str | None) -> Any:
    if text is None or text == "":
        return None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return text


def batch_file_rows(path: Path, batch: Mapping[str, Any], slug: str) -> Iterator[list[Row]]:
    """Rows of a batch CSV: the input fields as one JSON object, the output cell parsed as JSON."""
    csv.field_size_limit(sys.maxsize)
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None:
            return
        output_index = header.index("output") if "output" in header else None
        rows: list[Row] = []
        for number, cells in enumerate(reader):
            inputs = {
                name: _json_cell(value) if value[:1] in ("{", "[") else _blank(value)
                for index, (name, value) in enumerate(zip(header, cells, strict=False))
                if index != output_index
            }
            record_id = next((inputs[c] for c in RECORD_ID_COLUMNS if inputs.get(c) is not None), None)
            rows.append(
                {
                    "batch_uuid": batch["uuid"],
                    "output_node_slug": slug,
                    "row_number": number,
                    "workflow_uuid": batch.get("workflow_uuid"),
                    "record_id": None if record_id is None else str(record_id),
                    "input": inputs,
                    "output": _json_cell(cells[output_index]) if output_index is not None else None,
                    "batch_finished_at": batch.get("finished_at"),
                }
            )
            if len(rows) >= YIELD_ROWS:
                yield rows
                rows = []
        if rows:
            yield rows


def batch_outputs_resource(
    open_client: Callable[[], CargoClient],
    targets: list[OutputTarget] | None,
    sync_window: Callable[[], SyncBounds],
    stats: TableStats,
    concurrency: int = 4,
) -> DltResource:
    """``batch_outputs``, merged on ``(batch_uuid, output_node_slug, row_number)``.

    One export per batch: they are asked for and downloaded ``concurrency`` at a time (a backfill
    meets thousands of batches), and loaded in batch order.
    """
    configured = {t.workflow_uuid: t.output_node_slug for t in targets or []}

    def batch_outputs() -> Iterator[pa.Table]:
        state = dlt.current.resource_state()
        bounds = sync_window()  # on Cargo's clock: the frontier is compared with the batches' finished_at
        until = bounds.until
        since = parse_timestamp(state["frontier"]) if "frontier" in state else bounds.start
        if since >= until:
            return
        release_slugs: dict[str, str | None] = {}
        started = time.monotonic()
        with (
            open_client() as client,
            tempfile.TemporaryDirectory(prefix="cargo-batches-") as spool_dir,
            ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="cargo-batch-export") as pool,
        ):

            def export(batch: Mapping[str, Any], slug: str | None) -> list[Row]:
                payload = {"outputNodeSlug": slug} if slug else {}
                try:
                    files = fetch_export(
                        client, f"orchestration/batches/{batch['uuid']}/download", payload, Path(spool_dir)
                    )
                except CargoApiError as exc:
                    if exc.reason in ("batchNotSupported", "nodeNotFound", "batchNotFound"):
                        logger.warning("batch_outputs: batch %s skipped (%s)", batch["uuid"], exc.reason)
                        return []
                    raise
                stats.add(data_queries=1)
                rows: list[Row] = []
                for file in files:
                    for chunk in batch_file_rows(file, batch, slug or ""):
                        rows.extend(chunk)
                    file.unlink(missing_ok=True)
                return rows

            after: tuple[datetime, str] | None = None
            while True:
                batches = client.query(finished_batches_query(since, until, after))
                stats.add(planning_queries=1)
                pending: deque[Future[list[Row]]] = deque()
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
        state["frontier"] = until.isoformat()
        remember_server_now(state, bounds.server_now, "batch_outputs")

    return dlt.resource(
        batch_outputs,
        name="batch_outputs",
        primary_key=["batch_uuid", "output_node_slug", "row_number"],
        write_disposition={"disposition": "merge", "strategy": "delete-insert"},
        columns=BATCH_OUTPUT_COLUMNS,
    )


def _loaded(rows: list[Row], stats: TableStats) -> Iterator[pa.Table]:
    stats.add(rows=len(rows))
    if rows:
        yield to_arrow(rows, BATCH_OUTPUT_COLUMNS)


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
