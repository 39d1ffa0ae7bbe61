"""``cargo-elt models``: build and test the dbt project (``pipelines/dbt/cargo``) on the synced warehouse.

dbt runs through dlt's dbt runner (``dlt.dbt.package``) on the pipeline the sync used, so dbt gets the
destination's credentials from the same ``.dlt`` configuration (dlt hands them to dbt as
``DLT__CREDENTIALS__*`` variables) and the dataset the sync loaded as ``source_dataset_name``. dbt and its
adapters come from this environment (the ``models`` extra): nothing is installed at run time.

Three steps, each a dbt command in a process of its own: ``dbt run`` (staging views, marts), ``dbt test``
and ``dbt source freshness`` on the fact tables. dlt's runner has no freshness command (its argument order
puts the profile options before ``freshness``), so that one step starts dbt itself, with the environment
the runner would give it, and reads dbt's ``sources.json``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .sync import UserInputError, _destination_secrets, _redact, _short
from .warehouse import WarehouseRequest, check_models_supported, open_pipeline

PROJECT_DIR = Path(__file__).resolve().parent / "dbt" / "cargo"
"""The dbt project, shipped inside the package (``cargo_elt/pipelines/dbt/cargo``)."""
PROFILES_DIR = PROJECT_DIR / "profiles"
"""dlt's profiles with DuckDB's network extensions left out (see ``profiles/profiles.yml``)."""

MARTS: tuple[str, ...] = (
    "cargo_runs_daily",
    "cargo_node_failures_daily",
    "cargo_credits_daily",
    "cargo_batch_health",
    "cargo_failed_records",
    "cargo_node_error_messages_daily",
    "cargo_run_metrics_daily",
)
"""The marts users build on; their names and columns are kept stable."""


class ModelsFailed(Exception):
    """A dbt step failed (exit 1): which one, which models or tests, and dbt's message."""


@dataclass
class ModelsRequest(WarehouseRequest):
    """What one ``cargo-elt models`` was asked to do."""

    select: str | None = None
    run_tests: bool = True
    check_freshness: bool = True
    variables: dict[str, Any] = field(default_factory=dict)
    quiet: bool = False
    """Keep dbt's own log lines off stdout whatever ``runtime.log_level`` says (the demo)."""


@dataclass(frozen=True)
class NodeOutcome:
    """One model or test as dbt reported it."""

    name: str
    status: str
    seconds: float
    message: str


@dataclass(frozen=True)
class FreshnessOutcome:
    """One source table's freshness: its newest change and how long before the check it was."""

    table: str
    status: str
    max_loaded_at: str | None
    age_hours: float | None


@dataclass
class ModelsReport:
    """What ``cargo-elt models`` did, for the printout and the tests."""

    destination: str
    dataset: str
    models: list[NodeOutcome]
    tests: list[NodeOutcome]
    freshness: list[FreshnessOutcome]
    seconds: float


def run_models(request: ModelsRequest) -> ModelsReport:
    """Run, test and check the freshness of the dbt project on the synced warehouse."""
    check_models_supported(request.destination)
    _check_vars(request.variables)
    return build_models(open_pipeline(request), request)


def this_environment() -> Any:
    """dlt's runner environment for the interpreter running this code, nothing installed.

    dlt's ``get_venv(pipeline, venv_path="")`` trusts ``VIRTUAL_ENV``, which an activated shell, CI or
    a scheduler can point at another environment than the one running the sync (dbt then runs without
    this one's packages); this interpreter's own prefix is the environment whose dbt was checked.
    """
    from dlt.common.runners.venv import Venv

    if sys.prefix != sys.base_prefix:  # a virtual environment: dbt runs with its python
        return Venv.restore(sys.prefix, current=True)
    saved = os.environ.pop("VIRTUAL_ENV", None)
    try:
        return Venv.restore_current()  # not a virtual environment: sys.executable
    finally:
        if saved is not None:
            os.environ["VIRTUAL_ENV"] = saved


def build_models(pipeline: Any, request: ModelsRequest) -> ModelsReport:
    """The dbt steps on an open pipeline (the Airflow DAG brings its own); ``request`` says which steps."""
    started = time.monotonic()
    import dlt
    from dlt.helpers.dbt.exceptions import DBTProcessingError

    runner = dlt.dbt.package(pipeline, str(PROJECT_DIR), venv=this_environment())
    runner.config.package_profiles_dir = str(PROFILES_DIR)
    if request.quiet:
        runner.config.runtime.log_level = "WARNING"  # dlt's runner then passes --quiet --no-print to dbt
    work = Path(pipeline.working_dir) / "dbt"
    # dbt's target/ and logs/ in the pipeline's working folder: the project may sit in a read-only site-packages
    common = ["--target-path", str(work / "target"), "--log-path", str(work / "logs")]
    select = ["--select", request.select] if request.select else []
    secrets = _destination_secrets(pipeline.destination.destination_type.rsplit(".", 1)[-1])

    try:
        models = _outcomes(runner.run([*common, *select], additional_vars=request.variables))
    except DBTProcessingError as exc:
        raise ModelsFailed(_redact(_describe("dbt run", exc), secrets)) from None
    tests: list[NodeOutcome] = []
    if request.run_tests:
        try:
            tests = _outcomes(runner.test([*common, *select], additional_vars=request.variables))
        except DBTProcessingError as exc:
            raise ModelsFailed(_redact(_describe("dbt test", exc), secrets)) from None
    freshness: list[FreshnessOutcome] = []
    if request.check_freshness:
        freshness = _source_freshness(runner, common, request.variables, quiet=request.quiet, secrets=secrets)
    destination = str(pipeline.destination.destination_name)
    return ModelsReport(destination, str(pipeline.dataset_name), models, tests, freshness, time.monotonic() - started)


def format_models_report(report: ModelsReport) -> str:
    """The lines ``cargo-elt models`` prints."""
    built = sum(1 for m in report.models if m.status == "success")
    lines = [f"dbt on {report.destination}, dataset {report.dataset}: {built} of {len(report.models)} models built"]
    if report.tests:
        counts = {s: sum(1 for t in report.tests if t.status == s) for s in ("pass", "warn")}
        lines.append(f"tests: {counts['pass']} passed, {counts['warn']} warned, of {len(report.tests)}")
        lines.extend(f"  warn: {t.name}: {t.message}" for t in report.tests if t.status == "warn")
    for fresh in report.freshness:
        age = f", newest change {fresh.age_hours:.1f} h before the check" if fresh.age_hours is not None else ""
        lines.append(f"freshness of {fresh.table}: {fresh.status}{age}")
    marts = [m.name for m in report.models if m.name in MARTS and m.status == "success"]
    if marts:
        lines.append("marts: " + ", ".join(marts))
    lines.append(f"total {report.seconds:.1f} s")
    return "\n".join(lines)


def parse_vars(text: str | None) -> dict[str, Any]:
    """``--vars`` as dbt takes it: a YAML (or JSON) mapping, e.g. ``{cargo_freshness_warn_hours: 2}``."""
    if not text:
        return {}
    import yaml

    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise UserInputError(f"--vars {text!r} is not a YAML mapping: {_short(str(exc))}") from None
    if not isinstance(value, dict):
        raise UserInputError(f"--vars {text!r} is not a mapping: use e.g. '{{cargo_freshness_warn_hours: 2}}'")
    return {str(k): v for k, v in value.items()}


def _check_vars(variables: dict[str, Any]) -> None:
    for name in ("cargo_freshness_warn_hours", "cargo_freshness_error_hours"):
        if name in variables and (not isinstance(variables[name], int) or variables[name] <= 0):
            raise UserInputError(f"--vars {name} must be a positive whole number of hours, not {variables[name]!r}")
    if "source_dataset_name" in variables:
        raise UserInputError("--vars source_dataset_name is set from --dataset: use --dataset instead")


def _outcomes(results: Any) -> list[NodeOutcome]:
    return [
        NodeOutcome(str(r.model_name), str(r.status), float(r.time or 0.0), _short(str(r.message or ""), 300))
        for r in results or []
    ]


def _describe(step: str, exc: Any) -> str:
    """Which models or tests failed and why, from dlt's ``DBTProcessingError``."""
    failed = [r for r in (exc.run_results or []) if str(r.status) in ("error", "fail", "runtime error")]
    if not failed:
        return f"{step} failed: {_short(str(exc.dbt_results or exc), 600)}"
    shown = "; ".join(f"{r.model_name}: {_short(str(r.message), 240)}" for r in failed[:5])
    more = f" (and {len(failed) - 5} more)" if len(failed) > 5 else ""
    return f"{step} failed for {len(failed)} node(s): {shown}{more}"


def _source_freshness(
    runner: Any, common: Sequence[str], variables: dict[str, Any], *, quiet: bool, secrets: Sequence[str]
) -> list[FreshnessOutcome]:
    """``dbt source freshness`` with the profile, variables and credentials dlt's runner gives dbt."""
    from dlt.common.configuration.utils import add_config_to_env

    output = Path(common[1]) / "sources.json"
    output.unlink(missing_ok=True)
    package_vars = {**(runner.config.package_additional_vars or {}), "source_dataset_name": runner.source_dataset_name}
    package_vars.update(variables)
    args = [
        *(["--quiet", "--no-print"] if quiet else []),
        "source",
        "freshness",
        "--profiles-dir",
        str(runner.config.package_profiles_dir),
        "--profile",
        str(runner.config.package_profile_name),
        "--vars",
        json.dumps(package_vars),
        "--output",
        str(output),
        *common,
    ]
    saved = dict(os.environ)
    try:
        add_config_to_env(runner.credentials, ("dlt",))  # DLT__CREDENTIALS__*, as the runner does for its steps
        environment = dict(os.environ)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    completed = subprocess.run(
        [sys.executable, "-c", "from dbt.cli.main import cli; cli()", *args],
        cwd=runner.package_path,
        env=environment,
        capture_output=True,
        text=True,
        check=False,
    )
    if not quiet and completed.stdout:
        sys.stdout.write(completed.stdout)
    results = json.loads(output.read_text()).get("results", []) if output.is_file() else []
    outcomes = [
        FreshnessOutcome(
            table=str(r.get("unique_id", "")).rsplit(".", 1)[-1],
            status=str(r.get("status")),
            max_loaded_at=r.get("max_loaded_at"),
            age_hours=(r["max_loaded_at_time_ago_in_s"] / 3600)
            if r.get("max_loaded_at_time_ago_in_s") is not None
            else None,
        )
        for r in results
    ]
    failing = [o for o in outcomes if o.status not in ("pass", "warn")]
    if completed.returncode != 0 or failing:
        if failing:
            detail = "; ".join(
                f"{o.table} {o.status}"
                + (f" (newest change {o.age_hours:.1f} h old)" if o.age_hours is not None else "")
                for o in failing
            )
            hint = " (cargo_freshness_error_hours sets the limit: --vars '{cargo_freshness_error_hours: 48}')"
        else:
            detail = _short(completed.stdout + completed.stderr, 600) or f"dbt exited with {completed.returncode}"
            hint = ""
        raise ModelsFailed(_redact(f"dbt source freshness failed: {detail}{hint}", secrets))
    return outcomes
