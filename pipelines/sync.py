"""``cargo-elt sync``: one dlt pipeline run of the Cargo source into a destination, with a summary.

Everything that can be wrong in the user's input is checked before the pipeline is created, so a
bad setting never leaves a half-written pipeline state behind.
"""

from __future__ import annotations

import importlib
import importlib.util
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

PIPELINE_NAME = "cargo"
DEFAULT_DATASET = "cargo"
DEFAULT_DESTINATION = "duckdb"

DESTINATION_EXTRAS = {
    "bigquery": ("google.cloud.bigquery", "bigquery"),
    "snowflake": ("snowflake.connector", "snowflake"),
    "postgres": ("psycopg2", "postgres"),
    "motherduck": ("duckdb", "motherduck"),
}
"""Destination -> (module its dlt extra installs, the pip extra that brings it)."""


class UserInputError(Exception):
    """Bad input from the user: the message says what was wrong and which setting to change."""


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
    api_token: str | None = None
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


def check_dates(since: datetime | None, until: datetime | None, now: datetime) -> None:
    """``--until`` after ``--since``, and neither in the future."""
    for label, value in (("--since", since), ("--until", until)):
        if value is not None and value > now:
            raise UserInputError(f"{label} {value.isoformat()} is in the future")
    if since is not None and until is not None and until <= since:
        raise UserInputError(f"--until {until.isoformat()} must be after --since {since.isoformat()}")


@dataclass
class TableSummary:
    """One line of the end-of-sync report."""

    table: str
    rows: int
    queries: int
    retries: int
    seconds: float


def format_summary(summaries: Sequence[TableSummary], total_seconds: float) -> str:
    """The per-table report printed at the end of a sync."""
    lines = [f"{'table':<16}{'rows loaded':>14}{'queries':>10}{'retries':>10}{'seconds':>10}"]
    for s in summaries:
        lines.append(f"{s.table:<16}{s.rows:>14,}{s.queries:>10,}{s.retries:>10,}{s.seconds:>10.1f}")
    lines.append(f"total {total_seconds:.1f} s")
    return "\n".join(lines)


def monotonic() -> float:
    """Wall-clock seconds for the report."""
    return time.monotonic()


def preflight(base_url: str, token: str, workspace_uuid: str | None) -> None:
    """One cheap query, so a wrong token or URL fails before the pipeline (and its state) is touched."""
    import httpx

    from sources.cargo.client import CargoClient, RetryPolicy
    from sources.cargo.errors import CargoAuthError, CargoError

    retry = RetryPolicy(max_attempts=2, max_total_s=10.0)
    try:
        with CargoClient(token, base_url=base_url, workspace_uuid=workspace_uuid, retry=retry) as client:
            client.query("SELECT 1 AS ok")
    except CargoAuthError as exc:
        raise UserInputError(str(exc)) from None
    except (httpx.HTTPError, CargoError, OSError) as exc:
        raise UserInputError(f"cannot reach Cargo at {base_url} (sources.cargo.base_url / --base-url): {exc}") from None


def run_sync(request: SyncRequest) -> tuple[list[TableSummary], float]:
    """Validate everything, then run the pipeline once; returns the per-table report."""
    import os

    import dlt
    from dlt.common.configuration.exceptions import ConfigFieldMissingException

    from sources.cargo import SyncStats, cargo_source, resolve_tables
    from sources.cargo.errors import CargoConfigurationError
    from sources.cargo.settings import DEFAULT_BASE_URL

    started = monotonic()
    now = datetime.now(UTC)
    try:
        tables = resolve_tables(request.tables)
    except CargoConfigurationError as exc:
        raise UserInputError(str(exc)) from None
    check_dates(request.since, request.until, now)
    if request.until is not None and request.since is None:
        raise UserInputError("--until needs --since: a backfill chunk is [since, until)")
    check_destination(request.destination)

    token = request.api_token or os.environ.get("SOURCES__CARGO__API_TOKEN") or _configured("api_token")
    if not token:
        raise UserInputError(
            "no Cargo API token: set sources.cargo.api_token in .dlt/secrets.toml or SOURCES__CARGO__API_TOKEN"
        )
    base_url = request.base_url or os.environ.get("SOURCES__CARGO__BASE_URL") or _configured("base_url")
    base_url = str(base_url or DEFAULT_BASE_URL)
    workspace_uuid = os.environ.get("SOURCES__CARGO__WORKSPACE_UUID") or _configured("workspace_uuid")
    preflight(base_url, str(token), workspace_uuid)

    stats = SyncStats()
    try:
        source = cargo_source(
            api_token=str(token),
            base_url=base_url,
            tables=tables,
            since=request.since.isoformat() if request.since else None,
            until=request.until.isoformat() if request.until else None,
            stats=stats,
            **request.extra_source_args,
        )
    except (CargoConfigurationError, ConfigFieldMissingException) as exc:
        raise UserInputError(str(exc)) from None
    destination: Any = request.destination
    if request.destination == "duckdb":
        destination = dlt.destinations.duckdb(request.duckdb_path or f"{request.pipeline_name}.duckdb")
    pipeline_args: dict[str, Any] = {"pipelines_dir": request.pipelines_dir} if request.pipelines_dir else {}
    pipeline = dlt.pipeline(
        pipeline_name=request.pipeline_name,
        destination=destination,
        dataset_name=request.dataset,
        progress=_progress(request.progress),
        **pipeline_args,
    )
    if request.full_refresh:
        pipeline.run(source, refresh="drop_sources")
    else:
        pipeline.run(source)
    summaries = [
        TableSummary(name, s.rows, s.queries, s.retries, s.seconds) for name, s in stats.items() if name in tables
    ]
    return summaries, monotonic() - started


def _configured(key: str) -> Any:
    """A ``[sources.cargo]`` value from dlt's providers (toml files, environment), or None."""
    import dlt

    try:
        return dlt.config.get(f"sources.cargo.{key}") or dlt.secrets.get(f"sources.cargo.{key}")
    except Exception:
        return None


def _progress(kind: str) -> Any:
    if kind == "none":
        return None
    if kind == "bar":
        return "tqdm" if importlib.util.find_spec("tqdm") is not None else "log"
    return "log"
