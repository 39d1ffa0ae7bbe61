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


def preflight(base_url: str, token: str, workspace_uuid: str | None) -> None:
    """One cheap query, so a wrong token or URL fails before the pipeline (and its state) is touched."""
    import httpx

    from sources.cargo.client import CargoClient, RetryPolicy, query_url
    from sources.cargo.errors import (
        CargoAuthError,
        CargoConfigurationError,
        CargoError,
        CargoProtocolError,
        CargoQueryError,
        CargoRetryBudgetExceeded,
    )

    fix = f"check sources.cargo.base_url / --base-url (Cargo's API is {_default_base_url()})"
    retry = RetryPolicy(max_attempts=2, max_total_s=10.0)
    problem: str | None = None
    try:
        with CargoClient(token, base_url=base_url, workspace_uuid=workspace_uuid, retry=retry) as client:
            client.query("SELECT 1 AS ok")
    except CargoAuthError as exc:
        problem = str(exc)
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


def _short(text: str, limit: int = 160) -> str:
    """A server's message on one line, cut short (an HTML error page is not worth printing whole)."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _default_base_url() -> str:
    from sources.cargo.settings import DEFAULT_BASE_URL

    return DEFAULT_BASE_URL


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


def check_base_url(base_url: str) -> None:
    """An http(s) URL, named after the setting, before any request is made."""
    from urllib.parse import urlsplit

    parts = urlsplit(base_url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise UserInputError(
            f"base URL {base_url!r} is not an http:// or https:// URL: check sources.cargo.base_url / --base-url"
        )


def check_workspace_uuid(workspace_uuid: str | None) -> None:
    from sources.cargo.planner import is_uuid

    if workspace_uuid is not None and not is_uuid(workspace_uuid):
        raise UserInputError(
            f"sources.cargo.workspace_uuid {workspace_uuid!r} is not a UUID: fix it in .dlt/config.toml "
            "or SOURCES__CARGO__WORKSPACE_UUID, or remove it"
        )


def run_sync(request: SyncRequest) -> tuple[list[TableSummary], float]:
    """Validate everything, then run the pipeline once; returns the per-table report."""
    started = time.monotonic()
    now = datetime.now(UTC)
    # Checks of the command line alone first: they answer before dlt and pyarrow are even imported.
    check_dates(request.since, request.until, now)
    if request.until is not None and request.since is None:
        raise UserInputError("--until needs --since: a backfill chunk is [since, until)")
    if request.base_url is not None:
        check_base_url(request.base_url)
    duckdb_path = request.duckdb_path or default_duckdb_path(request.pipeline_name)
    if request.destination == "duckdb":
        check_duckdb_path(duckdb_path, request.dataset)

    import dlt
    from dlt.common.configuration.exceptions import ConfigFieldMissingException, ConfigValueCannotBeCoercedException

    from sources.cargo import SyncStats, cargo_source, resolve_tables
    from sources.cargo.errors import CargoConfigurationError

    try:
        tables = resolve_tables(request.tables if request.tables is not None else _table_list(_configured("tables")))
    except CargoConfigurationError as exc:
        raise UserInputError(str(exc)) from None
    check_destination(request.destination)

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
    except ConfigValueCannotBeCoercedException as exc:
        raise UserInputError(_coercion_message(exc)) from None
    except (CargoConfigurationError, ConfigFieldMissingException) as exc:
        raise UserInputError(str(exc)) from None
    # BigQuery partitions/clusters, Snowflake cluster keys (sources/cargo/warehouse.py); others untouched
    from sources.cargo.warehouse import apply_warehouse_layout

    apply_warehouse_layout(source, request.destination)
    destination: Any = request.destination
    if request.destination == "duckdb":
        destination = dlt.destinations.duckdb(duckdb_path)
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
    return summaries, time.monotonic() - started


def _coercion_message(exc: Any) -> str:
    """A dlt config value of the wrong type, named by its setting (the value is shown unless secret)."""
    field_name = str(exc.field_name)
    shown = "" if "token" in field_name or "secret" in field_name else f" = {exc.field_value!r}"
    hint = getattr(exc.hint, "__name__", str(exc.hint))
    return (
        f"sources.cargo.{field_name}{shown} is not a valid {hint}: fix it in .dlt/config.toml "
        f"or SOURCES__CARGO__{field_name.upper()}"
    )


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


def _progress(kind: str) -> Any:
    """dlt's progress collector; on stderr, so stdout carries only the summary."""
    import sys

    from dlt.common.runtime.collector import LogCollector, TqdmCollector

    if kind == "none":
        return None
    if kind == "bar" and importlib.util.find_spec("tqdm") is not None:
        return TqdmCollector(file=sys.stderr)
    return LogCollector(logger=sys.stderr, dump_system_stats=False)
