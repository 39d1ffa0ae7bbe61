"""``cargo-elt sync``: the Cargo source into a destination with dlt, in steps, with a summary.

Everything that can be wrong in the user's input is checked before the pipeline is created, so a
bad setting never leaves a half-written pipeline state behind.
"""

from __future__ import annotations

import contextlib
import errno
import importlib
import logging
import math
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cargo_elt.source.server_clock import ClockReading

    from .syncruns import SyncReport

logger = logging.getLogger(__name__)

PIPELINE_NAME = "cargo"
DEFAULT_DATASET = "cargo"
DEFAULT_DESTINATION = "duckdb"

DEFAULT_DUCKDB_MEMORY_LIMIT: str | None = "auto"
"""DuckDB's ``memory_limit`` while it loads: ``auto`` sizes it from the step and the machine
(``duckdb_load.auto_memory_limit``: 256 MB for steps of a million rows, at most a quarter of the
machine); ``none`` leaves DuckDB's own (80 % of the machine's memory); or a size such as ``2GB``.

DuckDB runs inside the sync's process, and its default took 11 GB for a 22 M-span backfill with
dlt's merge (docs/PERFORMANCE.md, section C). The sync now loads in steps of at most a million rows
and merges each file without deduplicating staging (``duckdb_load.KeyedMergeJob``), which a bounded
DuckDB does without spilling (section D)."""

_MEMORY_SIZE = re.compile(r"\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)", re.IGNORECASE)

DESTINATION_EXTRAS = {
    "bigquery": ("google.cloud.bigquery", "bigquery"),
    "snowflake": ("snowflake.connector", "snowflake"),
    "postgres": ("psycopg2", "postgres"),
    "motherduck": ("duckdb", "motherduck"),
}
"""Destination -> (module its dlt extra installs, the pip extra that brings it)."""


class UserInputError(Exception):
    """Bad input from the user: the message says what was wrong and which setting to change."""


class SyncFailed(Exception):
    """The sync failed while running (exit 1): the message says which step and table failed, why,
    what became of the extracted data and the state, and what to change or retry. ``report`` is
    what the sync did until then (as recorded in ``_cargo_sync_runs``), when it got that far."""

    def __init__(self, message: str, table: str | None = None, report: SyncReport | None = None) -> None:
        super().__init__(message)
        self.table = table
        """The table being read or loaded when it failed, when one can be named."""
        self.report = report


@dataclass
class SyncRequest:
    """What one ``cargo-elt sync`` was asked to do."""

    base_url: str | None = None
    destination: str = DEFAULT_DESTINATION
    dataset: str = DEFAULT_DATASET
    tables: Sequence[str] | None = None
    since: datetime | None = None
    until: datetime | None = None
    full_refresh: bool = False
    progress: str = "log"
    pipeline_name: str = PIPELINE_NAME
    pipelines_dir: str | None = None
    duckdb_path: str | None = None
    duckdb_memory_limit: str | None = DEFAULT_DUCKDB_MEMORY_LIMIT
    api_token: str | None = None
    lock_wait_seconds: float | None = None
    """How long to wait for another sync of the pipeline; ``None``: ``sources.cargo.lock_wait_seconds``."""
    extra_source_args: dict[str, Any] = field(default_factory=dict)


def parse_when(text: str, setting: str) -> datetime:
    """A date or datetime from the command line, in UTC; the error names the option."""
    cleaned = text.strip().replace("Z", "+00:00")
    try:
        if len(cleaned) == 10:
            day = date.fromisoformat(cleaned)
            return datetime(day.year, day.month, day.day, tzinfo=UTC)
        value = datetime.fromisoformat(cleaned)
    except ValueError:
        raise UserInputError(
            f"{setting} {text!r} is not a date (YYYY-MM-DD) or an ISO datetime (YYYY-MM-DDTHH:MM:SSZ)"
        ) from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def lock_wait_seconds(value: float | str | None, setting: str = "--lock-wait") -> float:
    """Seconds to wait for the pipeline's lock: ``value`` (the option), else the setting, else the default."""
    from .lock import DEFAULT_LOCK_WAIT_SECONDS, LOCK_WAIT_SETTING

    if value is None:
        value, setting = _configured(LOCK_WAIT_SETTING.removeprefix("sources.cargo.")), LOCK_WAIT_SETTING
        if value is None or value == "":
            return DEFAULT_LOCK_WAIT_SECONDS
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = float("nan")
    if not math.isfinite(seconds) or seconds < 0:
        raise UserInputError(
            f"{setting} = {value!r} is not a number of seconds: use 0 (refuse at once while another sync of the "
            "pipeline runs) or more"
        )
    return seconds


def check_destination(name: str) -> None:
    """Refuse an unknown destination, or one whose extra is not installed, before anything runs."""
    from dlt.common.destination.reference import DestinationReference

    try:
        DestinationReference.from_reference(name)
    except Exception as exc:
        raise UserInputError(
            f"unknown destination {name!r} (--destination): use a dlt destination name such as "
            f"duckdb, bigquery, snowflake, postgres, filesystem ({type(exc).__name__})"
        ) from None
    needed = DESTINATION_EXTRAS.get(name)
    if needed is not None:
        module, extra = needed
        try:
            importlib.import_module(module)
        except ImportError:
            raise UserInputError(f"destination {name!r} needs its extra: pip install 'cargo-elt[{extra}]'") from None


def check_dates(since: datetime | None, until: datetime | None) -> None:
    """``--until`` after ``--since`` (checked before anything else; the future is Cargo's, see below)."""
    if since is not None and until is not None and until <= since:
        raise UserInputError(f"--until {until.isoformat()} must be after --since {since.isoformat()}")


def check_dates_on_server_clock(
    since: datetime | None, until: datetime | None, start_date: Any, server_now: datetime
) -> None:
    """No date in Cargo's future: a user's dates are UTC instants on Cargo's clock, not this machine's."""
    from cargo_elt.source import parse_instant
    from cargo_elt.source.errors import CargoConfigurationError

    clock = f"Cargo's clock reads {server_now.isoformat()} (dates are UTC, on Cargo's clock)"
    for label, value in (("--since", since), ("--until", until)):
        if value is not None and value > server_now:
            raise UserInputError(f"{label} {value.isoformat()} is in the future: {clock}")
    try:
        start = parse_instant(start_date, "sources.cargo.start_date")
    except CargoConfigurationError as exc:
        raise UserInputError(str(exc)) from None
    if start is not None and start >= server_now:
        raise UserInputError(f"sources.cargo.start_date {start.isoformat()} is not in the past: {clock}")


@dataclass
class TableSummary:
    """One line of the end-of-sync report."""

    table: str
    rows: int
    queries: int
    retries: int
    seconds: float
    skipped: int = 0
    """Rows the source could not read or place, each logged; non-zero only within
    ``sources.cargo.max_skipped_rows`` (past it the sync fails)."""


def format_summary(summaries: Sequence[TableSummary], total_seconds: float) -> str:
    """The per-table report printed at the end of a sync."""
    lines = [f"{'table':<16}{'rows loaded':>14}{'skipped':>10}{'queries':>10}{'retries':>10}{'seconds':>10}"]
    for s in summaries:
        lines.append(f"{s.table:<16}{s.rows:>14,}{s.skipped:>10,}{s.queries:>10,}{s.retries:>10,}{s.seconds:>10.1f}")
    lines.append(f"total {total_seconds:.1f} s")
    return "\n".join(lines)


def preflight(base_url: str, token: str, workspace_uuid: str | None) -> ClockReading:
    """One cheap query, so a wrong token or URL fails before the pipeline (and its state) is touched.

    The query reads Cargo's clock, which the dates of the request are then checked against.
    """
    import httpx

    from cargo_elt.source.client import CargoClient, RetryPolicy, query_url
    from cargo_elt.source.errors import (
        CargoAuthError,
        CargoConfigurationError,
        CargoError,
        CargoProtocolError,
        CargoQueryError,
        CargoRetryBudgetExceeded,
    )
    from cargo_elt.source.server_clock import ServerClockUnavailable, read_server_clock

    fix = f"check sources.cargo.base_url / --base-url (Cargo's API is {_default_base_url()})"
    retry = RetryPolicy(max_attempts=2, max_total_s=10.0)
    problem: str | None = None
    reading: ClockReading | None = None
    try:
        with CargoClient(token, base_url=base_url, workspace_uuid=workspace_uuid, retry=retry) as client:
            reading = read_server_clock(client)
    except CargoAuthError as exc:
        problem = str(exc)
    except ServerClockUnavailable as exc:
        problem = f"Cargo at {base_url}: {exc}"
    except CargoConfigurationError as exc:
        problem = f"{exc}: {fix}"
    except CargoRetryBudgetExceeded as exc:
        if "unparsable JSON" in exc.last_failure:  # the client's wording for a body that is not JSON
            problem = f"{base_url} does not answer like Cargo's API ({_short(exc.last_failure)}): {fix}"
        else:
            problem = f"cannot reach Cargo at {base_url} ({_short(exc.last_failure)}): {fix}"
    except CargoQueryError as exc:
        if exc.code is not None:  # a ClickHouse error: this is Cargo, refusing even SELECT 1
            problem = f"Cargo at {base_url} refused a test query: {_short(exc.server_message)}"
        else:
            problem = (
                f"{base_url} does not answer like Cargo's API (POST {query_url(base_url)} got HTTP {exc.status}: "
                f"{_short(exc.server_message) or 'no message'}): {fix}"
            )
    except CargoProtocolError as exc:
        problem = f"{base_url} does not answer like Cargo's API ({_short(str(exc))}): {fix}"
    except (httpx.HTTPError, CargoError, OSError) as exc:
        problem = f"cannot reach Cargo at {base_url} ({_short(str(exc))}): {fix}"
    if problem is not None:
        # Raised outside the handlers: no __context__ chain keeps the failed response (whose body
        # could repeat what was sent) alive in the exception the user, or an error reporter, gets;
        # and the text is redacted once more, whatever the server echoed.
        raise UserInputError(problem.replace(token, "***") if token.strip() else problem)
    assert reading is not None
    return reading


_HTML_PAGE = re.compile(r"<(?:!doctype html|html)\b.*?(?:</html>|$)", re.I | re.S)
_HTML_TITLE = re.compile(r"<title[^>]*>(?P<title>.*?)</title>", re.I | re.S)
_HTML_TAG = re.compile(r"<[^>]+>")


def _html_summary(page: re.Match[str]) -> str:
    title = _HTML_TITLE.search(page.group(0))
    text = title.group("title") if title else _HTML_TAG.sub(" ", page.group(0))
    return f"an HTML page: {' '.join(text.split()) or 'untitled'}"


def _short(text: str, limit: int = 160) -> str:
    """A server's message on one line, cut short; an HTML page in it (a proxy's error page) is
    reduced to its title."""
    flat = " ".join(_HTML_PAGE.sub(_html_summary, text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _default_base_url() -> str:
    from cargo_elt.source.settings import DEFAULT_BASE_URL

    return DEFAULT_BASE_URL


def duckdb_credentials(path: str, memory_limit: str | None) -> Any:
    """The DuckDB file with the load's memory bound (``None`` or ``"none"``: DuckDB's own default;
    ``"auto"``: ``DEFAULT_DUCKDB_MEMORY_LIMIT``)."""
    from dlt.destinations.impl.duckdb.configuration import DuckDbCredentials

    credentials = DuckDbCredentials(path)
    if memory_limit is not None and memory_limit.strip().lower() == "auto":
        from .duckdb_load import auto_memory_limit

        memory_limit = auto_memory_limit(_step_rows())
    if memory_limit is not None and memory_limit.strip().lower() != "none":
        if not _MEMORY_SIZE.fullmatch(memory_limit.strip()):
            raise UserInputError(
                f"--duckdb-memory-limit {memory_limit!r} is not a size: "
                "use e.g. 256MB or 2GB, auto (the default: sized from the step and the machine), "
                "or none for DuckDB's own default"
            )
        credentials.global_config = {"memory_limit": memory_limit.strip(), "preserve_insertion_order": False}
    return credentials


def default_duckdb_path(pipeline_name: str) -> str:
    """The DuckDB file a sync writes when none is given: ``<pipeline-name>_warehouse.duckdb`` here.

    Not ``<pipeline-name>.duckdb``: DuckDB names the catalog after the file, and a catalog named
    like the dataset (``cargo.duckdb`` holding schema ``cargo``) makes DuckDB's binder fail on merges.
    """
    return f"{pipeline_name}_warehouse.duckdb"


def check_duckdb_path(path: str, dataset: str) -> None:
    """Refuse a DuckDB file named like the dataset (DuckDB cannot tell the catalog from the schema)."""
    from pathlib import Path

    if Path(path).stem.lower() == dataset.lower():
        raise UserInputError(
            f"the DuckDB file {path!r} is named like the dataset {dataset!r}, which DuckDB cannot tell apart "
            "(catalog and schema): choose another --duckdb-path or --dataset"
        )


def _unwritable(path: str) -> str | None:
    """Why nothing could be written at ``path`` (a file or directory that may not exist yet), or None.

    The nearest existing ancestor decides: it must be a directory we may create entries in.
    ``os.access`` answers for the effective user, and also for read-only mounts and immutable
    directories (which even root cannot write).
    """
    from pathlib import Path

    target = Path(os.path.abspath(path))
    if target.exists():
        if not os.access(target, os.W_OK):
            return f"{target} is not writable"
        if not target.is_dir():
            target = target.parent
        elif not os.access(target, os.X_OK):
            return f"{target} is not writable"
    existing = target
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is not a directory"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{existing} is not writable"
    return None


def check_duckdb_writable(path: str) -> None:
    """The DuckDB file (and the ``.wal`` DuckDB writes beside it) can be created or written."""
    from pathlib import Path

    folder = Path(os.path.abspath(path)).parent
    if not folder.is_dir():
        raise UserInputError(
            f"the DuckDB file {path!r} is in a directory that does not exist ({folder}): "
            "create it or choose another --duckdb-path"
        )
    problem = _unwritable(path) or _unwritable(str(folder))
    if problem is not None:
        raise UserInputError(
            f"cannot write the DuckDB file {path!r}: {problem}; make it writable or choose another --duckdb-path"
        )


def check_pipelines_dir(pipelines_dir: str, pipeline_name: str) -> None:
    """dlt keeps the pipeline's state and load packages in ``<pipelines_dir>/<name>``: it must be writable."""
    from pathlib import Path

    folder = Path(pipelines_dir) / pipeline_name
    problem = _unwritable(str(folder))
    if problem is None and (folder / "state.json").exists():
        problem = _unwritable(str(folder / "state.json"))
    if problem is not None:
        raise UserInputError(
            f"cannot write the pipeline's working folder {folder} ({problem}): dlt keeps the sync state and "
            "load packages there; make it writable, or set DLT_DATA_DIR to a writable directory "
            "(pipelines go to $DLT_DATA_DIR/pipelines)"
        )


_PIPELINE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")


def check_pipeline_name(name: str) -> None:
    """A plain directory name: the pipeline name names the pipeline's folder and the default DuckDB file."""
    if not _PIPELINE_NAME.fullmatch(name) or name.strip(".") == "":
        raise UserInputError(
            f"--pipeline-name {name!r} is not usable as a folder name: use letters, digits, '_', '-' and '.' "
            "(not starting with '.' or '-')"
        )


def check_base_url(base_url: str) -> None:
    """An http(s) URL, named after the setting, before any request is made."""
    from urllib.parse import urlsplit

    parts = urlsplit(base_url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise UserInputError(
            f"base URL {base_url!r} is not an http:// or https:// URL: check sources.cargo.base_url / --base-url"
        )


def check_workspace_uuid(workspace_uuid: str | None) -> None:
    from cargo_elt.source.planner import is_uuid

    if workspace_uuid is not None and not is_uuid(workspace_uuid):
        raise UserInputError(
            f"sources.cargo.workspace_uuid {workspace_uuid!r} is not a UUID: fix it in .dlt/config.toml "
            "or SOURCES__CARGO__WORKSPACE_UUID, or remove it"
        )


def run_sync(request: SyncRequest) -> tuple[list[TableSummary], float]:
    """Validate everything, then run the pipeline once; returns the per-table report."""
    report = run_sync_report(request)
    return report.summaries, report.seconds


def run_sync_report(request: SyncRequest) -> SyncReport:
    """``run_sync``, returning all it did (``sync --json``); recorded in ``_cargo_sync_runs`` whether it
    succeeded or failed while running (``SyncFailed.report``)."""
    started = time.monotonic()
    started_at = datetime.now(UTC)  # when this machine ran the sync: a record in _cargo_sync_runs, never a bound
    # Checks of the command line alone first: they answer before dlt and pyarrow are even imported.
    check_dates(request.since, request.until)
    check_pipeline_name(request.pipeline_name)
    if request.until is not None and request.since is None:
        raise UserInputError("--until needs --since: a backfill chunk is [since, until)")
    if request.base_url is not None:
        check_base_url(request.base_url)
    duckdb_path = request.duckdb_path or default_duckdb_path(request.pipeline_name)
    if request.destination == "duckdb":
        check_duckdb_path(duckdb_path, request.dataset)
        check_duckdb_writable(duckdb_path)
        duckdb_credentials(duckdb_path, request.duckdb_memory_limit)  # refuses a malformed size now

    from dlt.common.pipeline import get_dlt_pipelines_dir

    from cargo_elt.source import resolve_tables
    from cargo_elt.source.errors import CargoConfigurationError

    from .progress import ProgressUnavailable, check_progress

    try:
        check_progress(request.progress)
    except ProgressUnavailable as exc:
        raise UserInputError(str(exc)) from None
    try:
        tables = resolve_tables(request.tables if request.tables is not None else _table_list(_configured("tables")))
    except CargoConfigurationError as exc:
        raise UserInputError(str(exc)) from None
    check_destination(request.destination)
    pipelines_dir = request.pipelines_dir or get_dlt_pipelines_dir()
    check_pipelines_dir(pipelines_dir, request.pipeline_name)
    lock_wait = lock_wait_seconds(request.lock_wait_seconds)

    # dlt.secrets, never dlt.config: a value read through dlt.config is recorded in the pipeline's
    # trace (trace.pickle, `dlt pipeline <name> trace`) in clear; secrets are recorded as <secret>.
    token = request.api_token or _configured_secret("api_token")
    if not token or not str(token).strip():
        raise UserInputError(
            "no Cargo API token: set sources.cargo.api_token in .dlt/secrets.toml or SOURCES__CARGO__API_TOKEN"
        )
    base_url = str(request.base_url or _configured("base_url") or _default_base_url())
    check_base_url(base_url)
    workspace_uuid = _configured("workspace_uuid")
    workspace_uuid = str(workspace_uuid) if workspace_uuid else None
    check_workspace_uuid(workspace_uuid)
    reading = preflight(base_url, str(token), workspace_uuid)
    start_date = request.extra_source_args.get("start_date") or _configured("start_date")
    check_dates_on_server_clock(request.since, request.until, start_date, reading.server_now)

    # One writer per pipeline (pipelines/lock.py): taken only now, so bad input never creates the
    # lock file, and before the source is built, so a sync that waited reads from the state its
    # predecessor left.
    from cargo_elt.source.log import route_to_dlt_logger

    from .lock import pipeline_lock

    route_to_dlt_logger(__name__.rpartition(".")[0])  # this package's warnings too (lock, recovery)
    with pipeline_lock(pipelines_dir, request.pipeline_name, lock_wait):
        return _run_pipeline(request, tables, str(token), base_url, duckdb_path, started, started_at)


def _run_pipeline(
    request: SyncRequest,
    tables: list[str],
    token: str,
    base_url: str,
    duckdb_path: str,
    started: float,
    started_at: datetime,
) -> SyncReport:
    """The pipeline run of ``run_sync``, its input checked and the pipeline's lock held."""
    import dlt
    from dlt.common.configuration.exceptions import ConfigFieldMissingException, ConfigValueCannotBeCoercedException

    from cargo_elt.source import TABLE_NAMES, SyncStats, cargo_source
    from cargo_elt.source.errors import CargoConfigurationError

    from .duckdb_load import duckdb_destination
    from .progress import collector as progress_collector
    from .progress import step_reporter
    from .steps import StepsRun, run_in_steps

    stats = SyncStats()
    try:
        source = cargo_source(
            api_token=token,
            base_url=base_url,
            tables=tables,
            since=request.since.isoformat() if request.since else None,
            until=request.until.isoformat() if request.until else None,
            stats=stats,
            **{**_step_defaults(), **request.extra_source_args},
        )
    except ConfigValueCannotBeCoercedException as exc:
        raise UserInputError(_coercion_message(exc)) from None
    except (CargoConfigurationError, ConfigFieldMissingException) as exc:
        raise UserInputError(str(exc)) from None
    # BigQuery partitions/clusters, Snowflake cluster keys (sources/cargo/warehouse.py); others untouched
    from cargo_elt.source.warehouse import apply_warehouse_layout

    apply_warehouse_layout(source, request.destination)
    destination: Any = request.destination
    if request.destination == "duckdb":
        # Absolute: dlt resolves a relative path against the cwd of the pipeline's *first* run (kept in
        # its state), so a later sync from another directory would write that directory's file.
        credentials = duckdb_credentials(os.path.abspath(duckdb_path), request.duckdb_memory_limit)
        destination = duckdb_destination(credentials)  # dlt's DuckDB, each fact file merged in place
    pipeline_args: dict[str, Any] = {"pipelines_dir": request.pipelines_dir} if request.pipelines_dir else {}
    pipeline = dlt.pipeline(
        pipeline_name=request.pipeline_name,
        destination=destination,
        dataset_name=request.dataset,
        progress=progress_collector(request.progress, stats),
        **pipeline_args,
    )
    failure: str | None = None
    failed: str | None = None
    load_ids: list[str] = []
    # A first sync or a chunk reads in steps (sources.cargo.step_rows / step_seconds): each is one
    # pipeline.run, loaded and committed with its state (pipelines/steps.py)
    steps = StepsRun(load_ids=load_ids)
    on_step = step_reporter(request.progress, stats)
    try:
        if request.full_refresh:
            if pipeline.has_pending_data:  # a refresh re-reads everything: an interrupted load is moot
                pipeline.drop_pending_packages()
            run_in_steps(pipeline, source, stats, refresh="drop_sources", on_step=on_step, run=steps)
        else:
            if pipeline.has_pending_data:
                # A sync killed during normalize or load left a package: finish it first (its state goes
                # with it), or dlt's run() would load only that package and skip this sync's extract.
                logger.warning("finishing the load an interrupted sync left in %s", pipeline.working_dir)
                pipeline.normalize()
                load_ids += pipeline.load().loads_ids
            run_in_steps(pipeline, source, stats, on_step=on_step, run=steps)
    except Exception as exc:
        where = FailedRun(base_url, request.destination, duckdb_path, str(pipeline.working_dir))
        failure = _redact(describe_failure(exc, where), [token, *_destination_secrets(request.destination)])
        failed = failed_table(exc)
        failed_load = getattr(exc, "load_id", None)  # dlt's PipelineStepFailed names its package
        load_ids += [str(failed_load)] if failed_load else []
    summaries = [
        TableSummary(name, s.rows, s.queries, s.retries, s.seconds, s.skipped)
        for name, s in stats.items()
        if name in tables or name not in TABLE_NAMES  # a segment export loads a table of its own name
    ]
    seconds = time.monotonic() - started
    report = _record(request, pipeline, destination, token, summaries, load_ids, started_at, seconds, failure)
    if failure is not None:
        # Raised outside the handler, the text redacted: no chained exception (a destination driver's,
        # holding its connection parameters, or a response echoing the token) rides along with it.
        raise SyncFailed(failure, failed, report)
    return report


def _record(
    request: SyncRequest,
    pipeline: Any,
    destination: Any,
    token: str,
    summaries: list[TableSummary],
    load_ids: list[str],
    started_at: datetime,
    seconds: float,
    failure: str | None,
) -> SyncReport:
    """The sync's report, appended to ``_cargo_sync_runs`` (``pipelines/syncruns.py``)."""
    from .syncruns import SyncReport, client_now, frontiers_of, new_sync_id, record_sync_run

    report = SyncReport(
        sync_id=new_sync_id(),
        pipeline_name=request.pipeline_name,
        destination=request.destination,
        dataset=request.dataset,
        mode="full_refresh" if request.full_refresh else "backfill" if request.since else "incremental",
        status="failed" if failure is not None else "ok",
        started_at=started_at,
        finished_at=client_now(),
        seconds=seconds,
        load_ids=load_ids,
        summaries=summaries,
        frontiers=frontiers_of(pipeline.state, [s.table for s in summaries]),
        error=failure,
    )
    secrets = [token, *_destination_secrets(request.destination)]
    record_sync_run(report, destination, request.pipelines_dir, lambda text: _redact(text, secrets))
    return report


@dataclass(frozen=True)
class FailedRun:
    """Where a failed run was reading from and writing to, for its error message."""

    base_url: str
    destination: str
    duckdb_path: str
    pipeline_dir: str


_DISK_FULL = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)
_READ_ONLY = (errno.EROFS, errno.EACCES, errno.EPERM)
_DISK_FULL_TEXT = ("No space left on device", "File too large", "Disk quota exceeded")
_READ_ONLY_TEXT = ("Read-only file system", "Permission denied", "Operation not permitted")


def failure_chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and what it wraps (dlt's ``.exception``, ``__cause__``), outermost first."""
    chain = [exc]
    while True:
        current = chain[-1]
        inner = getattr(current, "exception", None) or current.__cause__
        if not isinstance(inner, BaseException) or any(inner is seen for seen in chain):
            return chain
        chain.append(inner)


def root_cause(exc: BaseException) -> BaseException:
    """The error that says what to fix: the first of the source's own errors in the chain (their
    messages name the table and column; what they wrap, e.g. an arrow error, does not), else the
    innermost one."""
    from cargo_elt.source.errors import CargoError

    chain = failure_chain(exc)
    return next((e for e in chain if isinstance(e, CargoError)), chain[-1])


def failed_table(exc: BaseException) -> str | None:
    """The table whose resource was running when ``exc`` was raised (dlt's ``pipe_name``), if any."""
    names = (getattr(e, "pipe_name", None) for e in failure_chain(exc))
    return next((str(name) for name in names if name), None)


def known_secrets(destination: str, api_token: str | None = None) -> list[str]:
    """The configured Cargo token and destination secrets: what no message leaving the process may hold."""
    token = api_token or _configured_secret("api_token")
    return [*([str(token)] if token else []), *_destination_secrets(destination)]


def describe_failure(exc: BaseException, where: FailedRun) -> str:
    """One message for a run that failed: which step and table, why, what was kept, what to do."""
    from cargo_elt.source.errors import (
        CargoAuthError,
        CargoError,
        CargoProtocolError,
        CargoRetryBudgetExceeded,
        UnsafeLiteralError,
    )
    from cargo_elt.source.exportformats import ExportFormatError

    from .lock import duckdb_lock_conflict

    chain = failure_chain(exc)
    cause = root_cause(exc)
    if isinstance(cause, ExportFormatError):  # the file's first bytes as they are, an HTML page's too
        reason = " ".join(str(cause).split())
    else:
        reason = _short(str(cause) or type(cause).__name__, 600)
    step = str(getattr(exc, "step", "") or "")
    table = failed_table(exc)
    pending = bool(getattr(exc, "has_pending_data", False))
    kept = (
        f"the extracted data is kept in {where.pipeline_dir} and the next sync loads it first"
        if pending
        else "nothing was loaded and the sync state is unchanged: the next sync reads the same rows again"
    )
    text = " ".join(str(e) for e in chain)
    errnos = {getattr(e, "errno", None) for e in chain}
    busy = duckdb_lock_conflict(text)
    if busy is not None:
        return f"the sync failed at the {step or 'sync'} step: {busy}; {kept}"
    storage = f"--duckdb-path ({where.duckdb_path})" if where.destination == "duckdb" else "the destination"
    if errnos & set(_DISK_FULL) or any(t in text for t in _DISK_FULL_TEXT):
        return (
            f"the sync failed at the {step or 'sync'} step: out of disk space ({reason}). Free space, or move "
            f"the pipelines directory (DLT_DATA_DIR, now {where.pipeline_dir}) or {storage} to a disk with room; {kept}"
        )
    if errnos & set(_READ_ONLY) or any(t in text for t in _READ_ONLY_TEXT):
        return (
            f"the sync failed at the {step or 'sync'} step: cannot write ({reason}). Make it writable, or set "
            f"DLT_DATA_DIR (pipelines directory, now {where.pipeline_dir}) or {storage}; {kept}"
        )
    if step == "extract" or isinstance(cause, CargoError):
        what = f"reading {table} from Cargo at {where.base_url}" if table else f"reading from Cargo at {where.base_url}"
        if isinstance(cause, CargoAuthError):
            advice = ""
        elif isinstance(cause, CargoProtocolError | UnsafeLiteralError) and not isinstance(cause, ExportFormatError):
            advice = (
                " The answer is not what Cargo sends: if sources.cargo.base_url / --base-url goes through a proxy "
                "or gateway, check that it passes Cargo's answers through unchanged."
            )
        elif isinstance(cause, CargoRetryBudgetExceeded):
            advice = (
                " Cargo, or a proxy in front of it, kept failing: try again later; if it persists, check "
                "sources.cargo.base_url / --base-url, or lower sources.cargo.concurrency."
            )
        else:
            advice = ""
        return f"the sync failed {what}: {reason}.{advice} Nothing was lost: {kept}"
    destination = where.destination
    settings = (
        "--duckdb-path"
        if destination == "duckdb"
        else f"destination.{destination}.credentials in .dlt/secrets.toml or "
        f"DESTINATION__{destination.upper()}__CREDENTIALS"
    )
    if step in ("sync", "load") or not step:
        action = "connecting to" if step == "sync" else "loading into"
        return (
            f"the sync failed {action} the {destination} destination: {reason}. Check {settings} "
            f"(and that the warehouse is reachable); {kept}"
        )
    return f"the sync failed at the {step} step: {reason}; {kept}"


def _destination_secrets(destination: str) -> list[str]:
    """Secret values configured for the destination (passwords, keys, whole connection strings), to
    redact from error messages whatever a driver put in its exception."""
    from urllib.parse import urlsplit

    import dlt

    found: list[str] = []
    secret_words = ("password", "secret", "private_key", "passphrase", "token")

    def collect(value: Any, secret: bool) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                collect(inner, any(word in str(key).lower() for word in secret_words))
        elif isinstance(value, str) and value and (secret or "://" in value):
            found.append(value)
            if "://" in value:
                found.append(urlsplit(value).password or "")

    with contextlib.suppress(Exception):
        collect(dlt.secrets.get(f"destination.{destination}.credentials"), True)
    for key, value in os.environ.items():
        if key.startswith("DESTINATION__"):
            collect(value, key.endswith("__CREDENTIALS") or any(word in key.lower() for word in secret_words))
    return [v for v in found if len(v) >= 4]


def _redact(text: str, secrets: Sequence[str]) -> str:
    """``text`` with every secret value (longest first) replaced by ``***``."""
    for secret in sorted({s for s in secrets if s and s.strip()}, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def _coercion_message(exc: Any) -> str:
    """A dlt config value of the wrong type, named by its setting (the value is shown unless secret)."""
    field_name = str(exc.field_name)
    shown = "" if "token" in field_name or "secret" in field_name else f" = {exc.field_value!r}"
    hint = getattr(exc.hint, "__name__", str(exc.hint))
    return (
        f"sources.cargo.{field_name}{shown} is not a valid {hint}: fix it in .dlt/config.toml "
        f"or SOURCES__CARGO__{field_name.upper()}"
    )


def _step_rows() -> int | None:
    """Rows per step of this sync: ``sources.cargo.step_rows`` if set (and a number), else the default."""
    from cargo_elt.source.steps import DEFAULT_STEP_ROWS

    configured = _configured("step_rows")
    try:
        return int(configured) if configured is not None else DEFAULT_STEP_ROWS
    except (TypeError, ValueError):
        return DEFAULT_STEP_ROWS  # the source refuses it with a message naming the setting


def _step_defaults() -> dict[str, Any]:
    """``cargo-elt sync`` reads in steps by default (``steps.DEFAULT_STEP_ROWS`` rows or
    ``DEFAULT_STEP_SECONDS`` seconds, whichever comes first); ``sources.cargo.step_rows`` /
    ``step_seconds``, when set, are left for dlt to pass to the source."""
    from cargo_elt.source.steps import DEFAULT_STEP_ROWS, DEFAULT_STEP_SECONDS

    defaults: dict[str, Any] = {}
    if _configured("step_rows") is None:
        defaults["step_rows"] = DEFAULT_STEP_ROWS
    if _configured("step_seconds") is None:
        defaults["step_seconds"] = DEFAULT_STEP_SECONDS
    return defaults


def _table_list(value: Any) -> Any:
    """``sources.cargo.tables`` as configured: a toml list, or text (``runs,spans`` or ``["runs"]``)."""
    if isinstance(value, str) and value.strip().startswith("["):
        import json

        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _configured(key: str) -> Any:
    """A non-secret ``[sources.cargo]`` value from dlt's providers (environment, toml files), or None."""
    import dlt

    try:
        return dlt.config.get(f"sources.cargo.{key}")
    except Exception:
        return None


def _configured_secret(key: str) -> Any:
    """A secret ``[sources.cargo]`` value; dlt records it in traces as ``<secret>``, not in clear."""
    import dlt

    try:
        return dlt.secrets.get(f"sources.cargo.{key}")
    except Exception:
        return None
