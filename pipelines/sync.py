"""``cargo-elt sync``: the Cargo source into a destination with dlt, in steps, with a summary.

Everything that can be wrong in the user's input is checked before the pipeline is created, so a
bad setting never leaves a half-written pipeline state behind.
"""

from __future__ import annotations

import contextlib
import errno
import importlib
import logging
import os
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cargo_elt.source.config import CargoConnection, CargoSettings, PipelineSettings
    from cargo_elt.source.server_clock import ClockReading

    from .syncruns import SyncReport

logger = logging.getLogger(__name__)

PIPELINE_NAME = "cargo"
DEFAULT_DATASET = "cargo"
DEFAULT_DESTINATION = "duckdb"

DEFAULT_DUCKDB_MEMORY_LIMIT: str | None = "auto"
"""DuckDB's ``memory_limit`` while it loads: ``auto`` sizes it from the step and the machine
(``duckdb_load.auto_memory_limit``: 160 MB for steps of a million rows, at most a quarter of the
machine); ``none`` leaves DuckDB's own (80 % of the machine's memory); or a size such as ``2GB``.

DuckDB runs inside the sync's process, and its default took 11 GB for a 22 M-span backfill with
dlt's merge (docs/PERFORMANCE.md). The sync now loads in steps of at most a million rows and merges
each file without a staging copy or numbering (``duckdb_load.KeyedMergeJob``), which a bounded DuckDB
does without spilling (docs/PERFORMANCE.md, "Memory and load")."""

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
    tables: Sequence[str] | str | None = None
    since: datetime | str | None = None
    """``--since``: a date or an ISO datetime (parsed with the settings, ``cargo_elt.source.config``)."""
    until: datetime | str | None = None
    full_refresh: bool = False
    progress: str = "log"
    pipeline_name: str = PIPELINE_NAME
    pipelines_dir: str | None = None
    duckdb_path: str | None = None
    duckdb_memory_limit: str | None = DEFAULT_DUCKDB_MEMORY_LIMIT
    api_token: str | None = None
    lock_wait_seconds: float | str | None = None
    """How long to wait for another sync of the pipeline; ``None``: ``sources.cargo.lock_wait_seconds``."""
    extra_source_args: dict[str, Any] = field(default_factory=dict)


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


def duckdb_credentials(path: str, memory_limit: str | None, step_rows: int | None = None) -> Any:
    """The DuckDB file with the load's memory bound: ``None`` or ``"none"``: DuckDB's own default;
    ``"auto"``: sized for steps of ``step_rows`` (default ``DEFAULT_STEP_ROWS``) and this machine;
    else the size (checked by ``PipelineSettings``)."""
    from dlt.destinations.impl.duckdb.configuration import DuckDbCredentials

    credentials = DuckDbCredentials(path)
    limit = memory_limit.strip() if memory_limit is not None else "none"
    settings: dict[str, Any] = {}
    if limit.lower() == "auto":
        from cargo_elt.source.steps import DEFAULT_STEP_ROWS

        from .duckdb_load import auto_memory_limit, merge_threads

        limit = auto_memory_limit(step_rows if step_rows is not None else DEFAULT_STEP_ROWS)
        settings["threads"] = merge_threads()
    if limit.lower() != "none":
        credentials.global_config = {"memory_limit": limit, "preserve_insertion_order": False, **settings}
    return credentials


def with_step_defaults(settings: CargoSettings) -> CargoSettings:
    """``settings`` with ``cargo-elt sync``'s steps where none are set: ``steps.DEFAULT_STEP_ROWS`` rows
    or ``DEFAULT_STEP_SECONDS`` seconds, whichever comes first (the source alone reads without limit)."""
    from cargo_elt.source.steps import STEP_DEFAULTS

    return settings.model_copy(update={k: v for k, v in STEP_DEFAULTS.items() if getattr(settings, k) is None})


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


def run_sync(request: SyncRequest) -> tuple[list[TableSummary], float]:
    """Validate everything, then run the pipeline once; returns the per-table report."""
    report = run_sync_report(request)
    return report.summaries, report.seconds


def run_sync_report(request: SyncRequest) -> SyncReport:
    """``run_sync``, returning all it did (``sync --json``); recorded in ``_cargo_sync_runs`` whether it
    succeeded or failed while running (``SyncFailed.report``)."""
    started = time.monotonic()
    started_at = datetime.now(UTC)  # when this machine ran the sync: a record in _cargo_sync_runs, never a bound
    # Every setting first, parsed and checked by the source's model (cargo_elt.source.config): a problem
    # is named by its option (--since) or its setting's path (sources.cargo.concurrency).
    pipeline = pipeline_settings(
        request.pipeline_name, request.dataset, request.duckdb_path, request.duckdb_memory_limit
    )  # refuses a malformed --duckdb-memory-limit now
    duckdb_path = pipeline.duckdb_file
    if request.destination == "duckdb":
        check_duckdb_writable(duckdb_path)
    settings, labels = sync_settings(request)

    from dlt.common.pipeline import get_dlt_pipelines_dir

    from cargo_elt.source.bounds import resolve_bounds
    from cargo_elt.source.errors import CargoConfigurationError

    from .progress import ProgressUnavailable, check_progress

    try:
        check_progress(request.progress)
    except ProgressUnavailable as exc:
        raise UserInputError(str(exc)) from None
    check_destination(request.destination)
    pipelines_dir = request.pipelines_dir or get_dlt_pipelines_dir()
    check_pipelines_dir(pipelines_dir, request.pipeline_name)

    reading = preflight(settings.base_url, settings.token, settings.workspace_uuid)
    try:  # the dates against Cargo's clock (bounds.py), as the source will compare them
        dates = {"start_date": settings.start_date, "since": settings.since, "until": settings.until}
        resolve_bounds(reading.server_now, **dates, settle=settings.settle, names=labels, strict=True)
    except CargoConfigurationError as exc:
        raise UserInputError(str(exc)) from None

    # One writer per pipeline (pipelines/lock.py): taken only now, so bad input never creates the
    # lock file, and before the source is built, so a sync that waited reads from the state its
    # predecessor left.
    from cargo_elt.source.log import route_to_dlt_logger

    from .lock import pipeline_lock

    route_to_dlt_logger(__name__.rpartition(".")[0])  # this package's warnings too (lock, recovery)
    with pipeline_lock(pipelines_dir, request.pipeline_name, settings.lock_wait_seconds):
        return _run_pipeline(request, settings, duckdb_path, started, started_at)


OPTIONS = {
    "base_url": "--base-url",
    "tables": "--tables",
    "since": "--since",
    "until": "--until",
    "lock_wait_seconds": "--lock-wait",
}
"""The settings ``cargo-elt sync`` takes as options, by option: messages name what the user wrote."""


def sync_settings(request: SyncRequest) -> tuple[CargoSettings, dict[str, str]]:
    """The request's settings: its options over ``[sources.cargo]`` as dlt finds it; ``UserInputError``
    naming every problem. Also the labels of the options that were given (for later messages)."""
    return options_over_config(request, OPTIONS, request.extra_source_args)


OPTION_FIELDS = ("api_token", "base_url", "tables", "since", "until", "lock_wait_seconds")
"""Fields of a command's request that are source settings given as options (``sync``, ``backfill``)."""


def options_over_config(
    request: Any, options: Mapping[str, str], base: Mapping[str, Any]
) -> tuple[CargoSettings, dict[str, str]]:
    """The request's options (``OPTION_FIELDS`` not None) over ``base`` over ``[sources.cargo]`` as dlt
    finds it, parsed by the source's model; ``UserInputError`` naming every problem. Also the labels
    of the options given (``options``: field -> option), for later messages."""
    from cargo_elt.source.config import configured_settings
    from cargo_elt.source.errors import CargoConfigurationError

    given = {name: getattr(request, name) for name in OPTION_FIELDS if getattr(request, name) is not None}
    # the options given are named by their option; --since and --until always (a chunk is a command-line thing)
    labels = {name: label for name, label in options.items() if name in given or name in ("since", "until")}
    try:
        return configured_settings({**base, **given}, labels), labels
    except CargoConfigurationError as exc:
        raise UserInputError(str(exc)) from None


def connection_settings(api_token: str | None, base_url: str | None) -> CargoConnection:
    """Token, base URL and workspace (``--base-url`` over ``[sources.cargo]`` as dlt finds it), for the
    commands that only talk to Cargo; ``UserInputError`` naming every problem."""
    from cargo_elt.source.config import CargoConnection, configured_settings
    from cargo_elt.source.errors import CargoConfigurationError

    labels = {"base_url": "--base-url"} if base_url is not None else {}
    try:
        return configured_settings({"api_token": api_token, "base_url": base_url}, labels, model=CargoConnection)
    except CargoConfigurationError as exc:
        raise UserInputError(str(exc)) from None


PIPELINE_OPTIONS = {
    "pipeline_name": "--pipeline-name",
    "dataset_name": "--dataset",
    "duckdb_path": "--duckdb-path",
    "duckdb_memory_limit": "--duckdb-memory-limit",
}


def pipeline_settings(
    pipeline_name: str, dataset: str, duckdb_path: str | None, duckdb_memory_limit: str | None = None
) -> PipelineSettings:
    """Where the command's pipeline writes (``cargo_elt.source.config.PipelineSettings``); ``UserInputError``
    naming the option to change."""
    from cargo_elt.source.config import PipelineSettings, parse_settings
    from cargo_elt.source.errors import CargoConfigurationError

    raw = {"pipeline_name": pipeline_name, "dataset_name": dataset, "duckdb_path": duckdb_path}
    if duckdb_memory_limit is not None:
        raw["duckdb_memory_limit"] = duckdb_memory_limit
    try:
        return parse_settings(raw, PIPELINE_OPTIONS, model=PipelineSettings)
    except CargoConfigurationError as exc:
        raise UserInputError(str(exc)) from None


def _run_pipeline(
    request: SyncRequest, settings: CargoSettings, duckdb_path: str, started: float, started_at: datetime
) -> SyncReport:
    """The pipeline run of ``run_sync``, its input checked and the pipeline's lock held."""
    import dlt

    from cargo_elt.source import TABLE_NAMES, SyncStats, cargo_source

    from .duckdb_load import duckdb_destination
    from .progress import collector as progress_collector
    from .progress import step_reporter
    from .steps import StepsRun, run_in_steps

    token, base_url, tables = settings.token, settings.base_url, settings.tables
    stats = SyncStats()
    # cargo-elt sync reads in steps by default (sources.cargo.step_rows / step_seconds): each step is
    # one pipeline.run, loaded and committed with its state (pipelines/steps.py)
    settings = with_step_defaults(settings)
    source = cargo_source(**settings.source_arguments(), stats=stats)  # checked above: no surprise here
    # BigQuery partitions/clusters, Snowflake cluster keys (sources/cargo/warehouse.py); others untouched
    from cargo_elt.source.warehouse import apply_warehouse_layout

    apply_warehouse_layout(source, request.destination)
    destination: Any = request.destination
    if request.destination == "duckdb":
        # Absolute: dlt resolves a relative path against the cwd of the pipeline's *first* run (kept in
        # its state), so a later sync from another directory would write that directory's file.
        credentials = duckdb_credentials(os.path.abspath(duckdb_path), request.duckdb_memory_limit, settings.step_rows)
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
        mode="full_refresh" if request.full_refresh else "backfill" if request.since is not None else "incremental",
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
    from cargo_elt.source.config import configured_value

    token = api_token or configured_value("api_token")
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
