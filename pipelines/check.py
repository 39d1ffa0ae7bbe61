"""``cargo-elt check``: can this connector run against this workspace, and where does it differ from
what was assumed? A read-only probe for a new user's first step, and for us on a real Cargo.

It reads the same settings as ``cargo-elt sync`` (``--base-url``, ``--tables``, ``[sources.cargo]``),
asks Cargo the questions a sync relies on (``probes.py``: token and workspace, the server's clock,
each fact table's columns, the result and column caps, every REST endpoint the selected tables read
with its paging, one small export of each kind parsed by the sync's own parsers, the segment
filters) and prints one row per check: ``ok``, ``warn`` (it works, but differs from an assumption, or
could not be verified) or ``fail`` (a selected table cannot be loaded: the row says which and why).

Nothing is written: not the pipeline's state or working folder, not the destination, nothing in
Cargo (it creates no batch, cancels nothing; exports are asked for and read into a temporary folder
that is removed). Exit codes: 0 every selected table can be loaded, 1 one cannot, 2 bad input (no
token, a malformed or unreachable base URL, a token Cargo refuses, an unknown table).
"""

from __future__ import annotations

import json
import shutil
import tempfile
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .probes import Check, ProbeContext, ProbeSettings
from .sync import (
    UserInputError,
    _redact,
    connection_settings,
    preflight,
)

EXPORT_SQL_FACTS: dict[str, tuple[str, ...]] = {
    "run_outputs": ("runs",),
    "batch_outputs": ("batches",),
    "batch_failures": ("batches", "runs", "spans"),
    "run_metrics_daily": ("runs",),
}
"""Export tables read partly through SQL, and the fact tables their queries read."""


@dataclass
class CheckRequest:
    """What one ``cargo-elt check`` was asked to do."""

    base_url: str | None = None
    tables: Sequence[str] | None = None
    api_token: str | None = None


@dataclass
class CheckReport:
    """Every check's row, and what they mean for the selected tables."""

    base_url: str
    tables: list[str]
    checks: list[Check]
    workspace: dict[str, Any] = field(default_factory=dict)

    @property
    def blocked(self) -> dict[str, list[str]]:
        """Selected table -> the checks that fail for it (a table absent here can be loaded)."""
        found: dict[str, list[str]] = {}
        for check in self.checks:
            if check.result == "fail":
                for table in check.blocks:
                    found.setdefault(table, []).append(check.name)
        return {t: found[t] for t in self.tables if t in found}

    @property
    def exit_code(self) -> int:
        """0 when every selected table can be loaded, 1 when one cannot."""
        return 1 if self.blocked else 0

    def to_json(self) -> dict[str, Any]:
        blocked = self.blocked
        return {
            "base_url": self.base_url,
            "workspace": self.workspace,
            "exit_code": self.exit_code,
            "tables": {t: {"loadable": t not in blocked, "failed_checks": blocked.get(t, [])} for t in self.tables},
            "checks": [asdict(c) for c in self.checks],
        }


def run_check(request: CheckRequest) -> CheckReport:
    """Resolve the settings as ``sync`` does, refuse bad input (``UserInputError``), then probe."""
    from cargo_elt.source.config import configured_value, parse_setting
    from cargo_elt.source.errors import CargoConfigurationError

    connection = connection_settings(request.api_token, request.base_url)
    token, base_url, workspace_uuid = connection.token, connection.base_url, connection.workspace_uuid
    given = request.tables is not None
    try:
        raw_tables = request.tables if given else configured_value("tables")
        tables = parse_setting("tables", raw_tables, "--tables" if given else None)
    except CargoConfigurationError as exc:
        raise UserInputError(str(exc)) from None
    preflight(base_url, token, workspace_uuid)  # a refused token or a server that is not Cargo: exit 2

    checks = [Check("base URL", "ok", f"{base_url} answers like Cargo's API (SELECT 1 on /v1/orchestration/query)")]
    settings, setting_checks = _settings(tables)
    checks.extend(setting_checks)
    workspace: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="cargo-elt-check-") as spool:
        checks.extend(_probe(base_url, token, workspace_uuid, tables, settings, Path(spool), workspace))
    for check in checks:
        check.detail = _redact(check.detail, [token])
    return CheckReport(base_url, tables, checks, workspace)


def _settings(tables: list[str]) -> tuple[ProbeSettings, list[Check]]:
    """The ``[sources.cargo]`` settings the probes use, each parsed alone by the source's model; one
    failing row per malformed one. The sync parses these before anything else, whatever tables are
    selected, so a malformed one stops all."""
    from cargo_elt.source.config import SegmentExport, configured_value, parse_setting
    from cargo_elt.source.errors import CargoConfigurationError

    settings = ProbeSettings()
    checks: list[Check] = []
    for name in ("run_outputs", "segments", "run_metrics_per_release", "max_skipped_rows"):
        try:
            value = parse_setting(name, configured_value(name))
            if name == "segments":  # the entries as the export reads them, each knowing its place
                value = [SegmentExport.of(index, entry) for index, entry in enumerate(value or [])]
            setattr(settings, name, value)
        except CargoConfigurationError as exc:
            checks.append(
                Check(
                    f"setting sources.cargo.{name}",
                    "fail",
                    f"{exc} (a sync refuses to start until it is fixed)",
                    tuple(tables),
                )
            )
            settings.invalid.add(name)
    if "segments" in settings.invalid:
        settings.segments = []
    return settings, checks


def _probe(  # noqa: PLR0912 (one probe after another, each skipped when an earlier one failed)
    base_url: str,
    token: str,
    workspace_uuid: str | None,
    tables: list[str],
    settings: ProbeSettings,
    spool: Path,
    workspace: dict[str, Any],
) -> list[Check]:
    """Every probe the selected tables call for, in the report's order."""
    from cargo_elt.source import FACT_TABLES
    from cargo_elt.source.client import CargoClient, RetryPolicy

    from . import probes

    checks: list[Check] = []
    retry = RetryPolicy(max_attempts=3, max_total_s=60.0)
    with CargoClient(token, base_url=base_url, workspace_uuid=workspace_uuid, retry=retry) as client:
        ctx = ProbeContext(client, tables, settings, spool)

        def run(name: str, blocks: Sequence[str], probe: Callable[..., Check | list[Check]], *args: Any) -> None:
            try:
                found = probe(*args)
            except Exception as exc:  # a probe that cannot finish is a finding, not a crash
                reason = " ".join(str(exc).split()) or type(exc).__name__
                found = Check(name, "fail", f"{type(exc).__name__}: {reason}", ctx.selected(*blocks))
            for check in found if isinstance(found, list) else [found]:
                if check.result == "fail" and not check.blocks:
                    # ``fail`` means a selected table cannot be loaded; this concerns none of them
                    check.result = "warn"
                    check.detail += " (concerns no selected table)"
                checks.append(check)

        run("token and workspace", (), probes.probe_workspace, client)
        if checks and checks[-1].data:
            workspace.update(checks[-1].data)

        def clock() -> Check:
            check, ctx.server_time = probes.probe_clock(client)
            return check

        run("server clock", tables, clock)
        facts = _facts_needed(tables)
        sql_tables = [t for t in tables if t in FACT_TABLES or t in EXPORT_SQL_FACTS]
        for table in facts:
            run(f"columns of {table}", (table,), probes.probe_columns, ctx, table)
        if facts:
            run("column cap", facts, probes.probe_column_cap, ctx, facts)
        if sql_tables:
            run("result cap", sql_tables, probes.probe_result_cap, ctx, sql_tables)
        for table in facts:
            if table in tables and table in ctx.specs:
                run(f"pages of {table}", (table,), probes.probe_pages, ctx, table)
        for table in tables:
            if table in EXPORT_SQL_FACTS:
                run(f"queries of {table}", (table,), probes.probe_export_sql, ctx, table)
        for path in probes.unpaged_list_paths(ctx):
            run(f"GET {path}", probes.list_users(ctx, path), probes.probe_list, ctx, path)
        releases = probes.list_users(ctx, "orchestration/releases/list")
        if releases:
            run("GET orchestration/releases/list", releases, probes.probe_releases_paging, ctx)
        if ctx.selected("run_metrics", "run_metrics_daily"):
            blocks = ("run_metrics", "run_metrics_daily")
            run("POST orchestration/runs/metrics", blocks, probes.probe_run_metrics, ctx)
        if "run_outputs" in tables and "run_outputs" not in settings.invalid:
            run("export run_outputs", ("run_outputs",), probes.probe_run_outputs_export, ctx)
        if "batch_outputs" in tables and "run_outputs" not in settings.invalid:
            run("export batch_outputs", ("batch_outputs",), probes.probe_batch_outputs_export, ctx)
        if "segment_records" in tables and "segments" not in settings.invalid:
            run("segment exports", ("segment_records",), probes.probe_segments, ctx)
    return checks


def _facts_needed(tables: Sequence[str]) -> list[str]:
    """The fact tables whose columns matter: those selected, and those the selected exports query."""
    from cargo_elt.source import FACT_TABLES

    needed = {t for t in tables if t in FACT_TABLES}
    for table in tables:
        needed.update(EXPORT_SQL_FACTS.get(table, ()))
    return [t for t in FACT_TABLES if t in needed]


# -- output ------------------------------------------------------------------------------------------

NAME_WIDTH_MAX = 46
RESULT_WIDTH = 7


def format_report(report: CheckReport, width: int | None = None) -> str:
    """The report as a table (check, result, detail; details wrapped to ``width``) and a verdict."""
    width = width or shutil.get_terminal_size((120, 24)).columns
    name_width = min(NAME_WIDTH_MAX, max(len("check"), *(len(c.name) for c in report.checks)))
    detail_width = max(40, width - name_width - RESULT_WIDTH - 2)
    lines = []
    workspace = report.workspace
    where = f" (workspace {workspace.get('name')}, {workspace.get('uuid')})" if workspace.get("uuid") else ""
    lines.append(f"cargo-elt check of {report.base_url}{where}")
    lines.append("")
    lines.append(f"{'check':<{name_width}}  {'result':<{RESULT_WIDTH}}{'detail'}")
    for check in report.checks:
        detail = textwrap.wrap(check.detail, detail_width, break_on_hyphens=False) or [""]
        names = textwrap.wrap(check.name, name_width) or [""]
        for index in range(max(len(detail), len(names))):
            name = names[index] if index < len(names) else ""
            result = check.result if index == 0 else ""
            text = detail[index] if index < len(detail) else ""
            lines.append(f"{name:<{name_width}}  {result:<{RESULT_WIDTH}}{text}".rstrip())
    lines.append("")
    lines.append(verdict(report))
    return "\n".join(lines) + "\n"


def verdict(report: CheckReport) -> str:
    """The last line: every selected table can be loaded, or which cannot and which checks say why."""
    warnings = sum(1 for c in report.checks if c.result == "warn")
    blocked = report.blocked
    if not blocked:
        return (
            f"every selected table can be loaded ({len(report.tables)} tables, "
            f"{warnings} warning{'s' if warnings != 1 else ''})"
        )
    parts = [f"{table} ({', '.join(names)})" for table, names in blocked.items()]
    return f"{len(blocked)} of {len(report.tables)} selected tables cannot be loaded: " + "; ".join(parts)


def report_json(report: CheckReport) -> str:
    """``--json``: the report for machines."""
    return json.dumps(report.to_json(), indent=2, default=str) + "\n"
