"""The ``cargo-elt`` command: ``sync`` (the connector), ``backfill`` (a first load over N processes),
``status`` (how fresh each table is), ``tables``
(what it loads), ``models`` (dbt), ``report`` (HTML), ``rerun`` (failed records), ``demo`` (all of it,
locally), ``emulator serve``.

Exit codes: 0 success, 1 the sync (or dbt, or the report) failed while running (``status``: a table
is staler than ``--max-lag``, or freshness cannot be read), 2 bad input (nothing was changed).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Iterator, Sequence
from datetime import datetime


def _iso_datetime(text: str) -> datetime:
    """``--now``: a date or an ISO datetime, naive = UTC (the source's one date parser)."""
    from cargo_elt.source.config import parse_instant
    from cargo_elt.source.errors import CargoConfigurationError

    try:
        value = parse_instant(text, "--now")
    except CargoConfigurationError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if value is None:
        raise argparse.ArgumentTypeError("--now needs a date or an ISO datetime")
    return value


def build_parser() -> argparse.ArgumentParser:  # noqa: PLR0915 (every subcommand's options in one place, as --help shows them)
    """All subcommands and their options."""
    parser = argparse.ArgumentParser(prog="cargo-elt", description="Move a Cargo workspace's data into a warehouse.")
    commands = parser.add_subparsers(dest="command", required=True)

    sync = commands.add_parser("sync", help="load a Cargo workspace's facts, exports and catalogue into a warehouse")
    sync.add_argument("--base-url", default=None, help="Cargo API host (default: sources.cargo.base_url)")
    sync.add_argument("--destination", default="duckdb", help="any dlt destination name (default duckdb)")
    sync.add_argument("--dataset", default="cargo", help="dataset / schema name (default cargo)")
    sync.add_argument(
        "--tables",
        default=None,
        help="comma-separated table names, e.g. runs,spans,workflows,run_outputs (default all)",
    )
    sync.add_argument("--since", default=None, help="backfill chunk start (date or ISO datetime); state untouched")
    sync.add_argument("--until", default=None, help="backfill chunk end (needs --since)")
    sync.add_argument("--full-refresh", action="store_true", help="drop this source's tables and state first")
    sync.add_argument("--progress", default="log", choices=["bar", "log", "none"])
    sync.add_argument("--pipeline-name", default="cargo", help="dlt pipeline name (default cargo)")
    sync.add_argument(
        "--lock-wait",
        default=None,
        metavar="SECONDS",
        help="wait this long for another sync of the pipeline to finish, then exit 1; 0 refuses at once "
        "(default: sources.cargo.lock_wait_seconds, else 300)",
    )
    sync.add_argument("--duckdb-path", default=None, help="DuckDB file (default <pipeline-name>_warehouse.duckdb here)")
    sync.add_argument(
        "--duckdb-memory-limit",
        default=None,
        help="DuckDB's memory while loading, e.g. 2GB; it spills to disk beyond; none: DuckDB's own (80%% of RAM) "
        "(default: auto, sized from the step and the machine: 160MB for steps of a million rows)",
    )
    sync.add_argument("--json", action="store_true", help="the summary as one JSON document (logs: stderr)")

    status = commands.add_parser("status", help="per table: frontier, last load, rows, lag behind Cargo's clock")
    _warehouse_options(status)
    status.add_argument("--json", action="store_true", help="as one JSON document")
    status.add_argument("--max-lag", default=None, help="exit 1 when a table lags more, e.g. 2h, 90m, 1d")
    status.add_argument("--tables", default=None, help="comma-separated table names (default: every table loaded)")
    status.add_argument("--base-url", default=None, help="Cargo API host, for its clock (default: config)")

    sync.add_argument("--models", action="store_true", help="build and test the dbt models after the load")

    models = commands.add_parser("models", help="build and test the dbt models (marts) on the synced warehouse")
    _warehouse_options(models)
    models.add_argument("--select", default=None, help="dbt node selection, e.g. cargo_runs_daily+ (default all)")
    models.add_argument("--vars", default=None, help="dbt variables, e.g. '{cargo_freshness_warn_hours: 2}'")
    models.add_argument("--no-tests", action="store_true", help="skip dbt test")
    models.add_argument("--no-freshness", action="store_true", help="skip dbt source freshness")

    report = commands.add_parser("report", help="write a static HTML report (charts and tables) from the marts")
    _warehouse_options(report)
    report.add_argument("--out", default="cargo_report.html", help="HTML file to write (default cargo_report.html)")
    report.add_argument("--days", type=int, default=30, help="days shown, ending on the newest day in the data")

    tables = commands.add_parser("tables", help="every table: key, how it loads, what each column means")
    shown = tables.add_mutually_exclusive_group()
    shown.add_argument("--json", action="store_const", const="json", dest="format", help="as one JSON document")
    shown.add_argument("--markdown", action="store_const", const="markdown", dest="format", help="as docs/TABLES.md")

    check = commands.add_parser(
        "check", help="read-only: can the connector run against this workspace, and where does Cargo differ"
    )
    check.add_argument("--base-url", default=None, help="Cargo API host (default: sources.cargo.base_url)")
    check.add_argument("--tables", default=None, help="comma-separated table names to check for (default all)")
    check.add_argument("--json", action="store_true", help="the report as one JSON document")

    rerun = commands.add_parser("rerun", help="re-run the failed records of a batch (or workflow) from the warehouse")
    scope = rerun.add_mutually_exclusive_group(required=True)
    scope.add_argument("--batch", default=None, help="the batch whose failed records to re-run (uuid)")
    scope.add_argument("--workflow", default=None, help="the workflow whose failed records to re-run (with --since)")
    rerun.add_argument("--since", default=None, help="with --workflow: failures of runs created since (date or ISO)")
    rerun.add_argument("--yes", action="store_true", help="send the batch to Cargo (default: print it, a dry run)")
    rerun.add_argument("--force", action="store_true", help="include records an earlier rerun already re-ran")
    rerun.add_argument("--base-url", default=None, help="Cargo API host (default: sources.cargo.base_url)")
    _warehouse_options(rerun)

    backfill = commands.add_parser(
        "backfill", help="a first load of the fact tables cut into chunks, N processes at once, then handed over"
    )
    backfill.add_argument("--since", required=True, help="start of the backfill (date or ISO datetime, Cargo's clock)")
    backfill.add_argument("--until", default=None, help="its end (default: Cargo's clock minus settle_seconds)")
    backfill.add_argument("--workers", type=int, default=1, help="processes loading chunks at once (default 1)")
    backfill.add_argument("--chunks", type=int, default=None, help="chunks to cut (default: one per worker)")
    backfill.add_argument(
        "--tables", default=None, help="comma-separated fact tables (default runs,batches,spans,records)"
    )
    backfill.add_argument("--base-url", default=None, help="Cargo API host (default: sources.cargo.base_url)")
    backfill.add_argument("--lock-wait", default=None, metavar="SECONDS", help="as for sync")
    backfill.add_argument("--duckdb-memory-limit", default=None, help="as for sync")
    backfill.add_argument("--json", action="store_true", help="the report as one JSON document (progress: stderr)")
    _warehouse_options(backfill)

    demo = commands.add_parser("demo", help="emulator + backfill + incremental sync into DuckDB, models, report")
    demo.add_argument("--scale", default="small", choices=["tiny", "small", "medium"])
    demo.add_argument("--seed", type=int, default=1)
    demo.add_argument("--database", default="cargo_demo.duckdb", help="DuckDB file to create")
    demo.add_argument("--report", default="cargo_demo_report.html", help="HTML report to write")

    emulator = commands.add_parser("emulator", help="the local Cargo API emulator")
    emulator_commands = emulator.add_subparsers(dest="emulator_command", required=True)
    serve = emulator_commands.add_parser("serve", help="serve Cargo's API on embedded ClickHouse (chDB)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8787, help="0 picks a free port")
    serve.add_argument("--seed", type=int, default=1, help="same seed, same data, byte for byte")
    serve.add_argument("--scale", default="small", choices=["tiny", "small", "medium", "large"])
    serve.add_argument("--workspaces", type=int, default=2, help="number of workspaces (default 2)")
    serve.add_argument(
        "--token", action="append", default=[], help="fix the token of workspace one, two, ... (repeatable)"
    )
    serve.add_argument("--data-dir", default=None, help="keep the data here between starts")
    serve.add_argument("--admin", action="store_true", help="enable /_emulator/* (clock, truth, faults)")
    serve.add_argument(
        "--faults", default="", help="e.g. 429=0.05,500=0.05,503=0.03,reset=0.02,truncate=0.01,slow=0.05"
    )
    serve.add_argument("--fault-seed", type=int, default=None, help="seed of the fault draws (default: --seed)")
    serve.add_argument(
        "--now", type=_iso_datetime, default=None, help="virtual clock start (ISO, default: the wall clock at start)"
    )
    serve.add_argument("--truncate-results", action="store_true", help="truncate over-cap results instead of Code 396")
    serve.add_argument(
        "--export-layout",
        default="",
        help="serve other export layouts, e.g. runOutputsFormat=ndjson,runOutputsKeys=camel,gzipExports=true,"
        "batchOutputColumn=result,malformedExports=batch+segment,defectiveRows=10",
    )
    serve.add_argument(
        "--rename-column",
        action="append",
        default=[],
        help="show a fact column under another name in orchestration/query, e.g. records.id=record_id (repeatable)",
    )
    return parser


def _warehouse_options(parser: argparse.ArgumentParser) -> None:
    """``sync``'s options that say where the synced tables are."""
    parser.add_argument("--destination", default="duckdb", help="the sync's dlt destination (default duckdb)")
    parser.add_argument("--dataset", default="cargo", help="the sync's dataset / schema (default cargo)")
    parser.add_argument("--pipeline-name", default="cargo", help="the sync's dlt pipeline name (default cargo)")
    parser.add_argument("--duckdb-path", default=None, help="DuckDB file (default <pipeline-name>_warehouse.duckdb)")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    args = build_parser().parse_args(argv)
    if args.command == "emulator" and args.emulator_command == "serve":
        return _serve(args)
    if args.command == "sync":
        return _sync(args)
    if args.command == "status":
        return _status(args)
    if args.command == "models":
        return _models(args)
    if args.command == "report":
        return _report(args)
    if args.command == "demo":
        return _demo(args)
    if args.command == "tables":
        from .tables import render

        print(render(args.format or "text"), end="")
        return 0

    if args.command == "rerun":
        return _rerun(args)
    if args.command == "check":
        return _check(args)
    if args.command == "backfill":
        return _backfill(args)
    return 2


def _sync(args: argparse.Namespace) -> int:
    from cargo_elt.source.memory import tune_allocator

    from .lock import PipelineBusy
    from .sync import SyncFailed, SyncRequest, UserInputError, format_summary, run_sync_report

    tune_allocator()  # this process is ours: fewer malloc arenas for the reader threads

    try:
        request = SyncRequest(
            base_url=args.base_url,
            destination=args.destination,
            dataset=args.dataset,
            tables=args.tables.split(",") if args.tables else None,
            since=args.since,  # parsed with every other setting (cargo_elt.source.config)
            until=args.until,
            full_refresh=args.full_refresh,
            progress=args.progress,
            pipeline_name=args.pipeline_name,
            duckdb_path=args.duckdb_path,
            lock_wait_seconds=args.lock_wait,
            **({"duckdb_memory_limit": args.duckdb_memory_limit} if args.duckdb_memory_limit is not None else {}),
        )
        report = run_sync_report(request)
    except UserInputError as exc:
        return _failed(args, f"{exc}", None, 2)
    except (SyncFailed, PipelineBusy) as exc:
        partial = getattr(exc, "report", None)  # what the sync did before it failed (PipelineBusy: none)
        if args.json and partial is not None:
            print(json.dumps(partial.document(), indent=2))
        return _failed(args, f"{exc}", getattr(exc, "table", None), 1)
    except Exception as exc:
        return _failed(args, f"the sync failed: {_root_cause(exc)}", None, 1)
    if args.json:
        print(json.dumps(report.document(), indent=2))
    else:
        print(format_summary(report.summaries, report.seconds))
    if args.models:
        # with --json, stdout is the sync's document alone: the models' report goes to stderr
        with _stdout_to_stderr() if args.json else contextlib.nullcontext():
            print("\nModels:", flush=True)
            status = _models(args, after_sync=True)
        if status != 0:
            return status
    return 0


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """Everything written to stdout goes to stderr meanwhile, Python's writes and the file descriptor's
    (dbt may write to it directly), so ``sync --json`` leaves its document alone on stdout."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def _status(args: argparse.Namespace) -> int:
    from .status import StatusRequest, StatusUnavailable, parse_duration, run_status
    from .sync import UserInputError

    try:
        request = StatusRequest(
            destination=args.destination,
            dataset=args.dataset,
            pipeline_name=args.pipeline_name,
            duckdb_path=args.duckdb_path,
            base_url=args.base_url,
            tables=args.tables.split(",") if args.tables is not None else None,
            max_lag=parse_duration(args.max_lag) if args.max_lag is not None else None,
        )
        report = run_status(request)
    except UserInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except StatusUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(report.document(), indent=2) if args.json else report.text())
    return 1 if report.stale else 0


def _rerun(args: argparse.Namespace) -> int:
    from .rerun import RerunRequest, format_plan, payload_json, run_rerun
    from .sync import SyncFailed, UserInputError

    try:
        request = RerunRequest(
            batch=args.batch,
            workflow=args.workflow,
            since=args.since,
            send=args.yes,
            force=args.force,
            base_url=args.base_url,
            destination=args.destination,
            dataset=args.dataset,
            pipeline_name=args.pipeline_name,
            duckdb_path=args.duckdb_path,
        )
        outcome = run_rerun(request)
    except UserInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except SyncFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        print(f"error: the rerun failed: {_root_cause(exc)}", file=sys.stderr)
        return 1
    for line in format_plan(outcome.plan, outcome.batch_uuid):
        print(line, file=sys.stderr)
    print(outcome.batch_uuid if outcome.batch_uuid is not None else payload_json(outcome.plan))
    return 0


def _failed(args: argparse.Namespace, message: str, table: str | None, code: int) -> int:
    """Say why on stderr, alert ``runtime.slack_incoming_hook`` if configured (pipelines/alerts.py)."""
    from .alerts import send_failure_alert
    from .sync import known_secrets

    print(f"error: {message}", file=sys.stderr)
    send_failure_alert(args.pipeline_name, table, message, known_secrets(args.destination))
    return code


def _models(args: argparse.Namespace, after_sync: bool = False) -> int:
    from .models import ModelsFailed, ModelsRequest, format_models_report, parse_vars, run_models
    from .sync import UserInputError

    loaded = "the sync loaded its tables, but " if after_sync else ""
    try:
        request = ModelsRequest(
            destination=args.destination,
            dataset=args.dataset,
            pipeline_name=args.pipeline_name,
            duckdb_path=args.duckdb_path,
            select=getattr(args, "select", None),
            variables=parse_vars(getattr(args, "vars", None)),
            run_tests=not getattr(args, "no_tests", False),
            check_freshness=not getattr(args, "no_freshness", False),
        )
        report = run_models(request)
    except UserInputError as exc:
        print(f"error: {loaded}{exc}", file=sys.stderr)
        return 2
    except ModelsFailed as exc:
        print(f"error: {loaded}{exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        print(f"error: {loaded}the models failed: {_root_cause(exc)}", file=sys.stderr)
        return 1
    print(format_models_report(report))
    return 0


def _report(args: argparse.Namespace) -> int:
    from .report import ReportFailed, ReportRequest, build_report
    from .sync import UserInputError

    try:
        path, _ = build_report(
            ReportRequest(
                destination=args.destination,
                dataset=args.dataset,
                pipeline_name=args.pipeline_name,
                duckdb_path=args.duckdb_path,
                out=args.out,
                days=args.days,
            )
        )
    except UserInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ReportFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        print(f"error: the report failed: {_root_cause(exc)}", file=sys.stderr)
        return 1
    print(path)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo
    from .sync import UserInputError
    from .warehouse import check_models_supported

    try:  # before a minute of syncing: the demo runs the emulator and builds the dbt models
        import cargo_elt.emulator.server  # noqa: F401  (chdb, starlette, uvicorn)

        check_models_supported("duckdb")
    except (ImportError, UserInputError) as exc:
        print(
            f"error: the demo runs the emulator and the dbt models, which need their extras: "
            f"pip install 'cargo-elt[emulator,models]' ({exc})",
            file=sys.stderr,
        )
        return 2
    try:
        run_demo(scale=args.scale, seed=args.seed, database=args.database, report_path=args.report)
    except Exception as exc:
        print(f"error: the demo failed: {_root_cause(exc)}", file=sys.stderr)
        return 1
    return 0


def _root_cause(exc: BaseException) -> str:
    """The error of dlt's wrapped step failures that says what to fix (``sync.root_cause``)."""
    from .sync import root_cause

    cause = root_cause(exc)
    return f"{cause}" if str(cause) else type(cause).__name__


def _serve(args: argparse.Namespace) -> int:
    try:
        from cargo_elt.emulator.faults import FaultSpecError
        from cargo_elt.emulator.server import DataDirMismatch, EmulatorOptions, serve_forever
    except ImportError as exc:
        print(f"error: the emulator needs its extra: pip install 'cargo-elt[emulator]' ({exc})", file=sys.stderr)
        return 2
    options = EmulatorOptions(
        host=args.host,
        port=args.port,
        seed=args.seed,
        scale=args.scale,
        workspaces=args.workspaces,
        tokens=tuple(args.token),
        data_dir=args.data_dir,
        admin=args.admin,
        faults=args.faults,
        fault_seed=args.fault_seed,
        now=args.now,
        truncate_results=args.truncate_results,
        export_layout=args.export_layout,
        renamed_columns=tuple(args.rename_column),
    )
    try:
        serve_forever(options)
    except (FaultSpecError, DataDirMismatch, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0
    return 0


def _backfill(args: argparse.Namespace) -> int:
    """``cargo-elt backfill`` (``backfill.py``): exit 0, 1 (failed while running), 2 (bad input)."""
    from cargo_elt.source.memory import tune_allocator

    from .backfill import BackfillFailed, BackfillRequest, ChunkResult, run_backfill
    from .lock import PipelineBusy
    from .sync import UserInputError

    tune_allocator()

    finished: list[int] = []

    def progress(result: ChunkResult, of: int) -> None:
        finished.append(result.index)
        done = f"failed: {result.error}" if result.error else f"{sum(result.rows.values()):,} rows loaded"
        print(
            f"chunk {result.index} [{result.since}, {result.until}): {done} ({len(finished)} of {of})", file=sys.stderr
        )

    try:
        request = BackfillRequest(
            since=args.since,  # parsed with every other setting (cargo_elt.source.config)
            until=args.until,
            workers=args.workers,
            chunks=args.chunks,
            tables=args.tables.split(",") if args.tables else None,
            base_url=args.base_url,
            destination=args.destination,
            dataset=args.dataset,
            pipeline_name=args.pipeline_name,
            duckdb_path=args.duckdb_path,
            duckdb_memory_limit=args.duckdb_memory_limit,
            lock_wait_seconds=args.lock_wait,
        )
        report = run_backfill(request, progress)
    except UserInputError as exc:
        return _failed(args, f"{exc}", None, 2)
    except (BackfillFailed, PipelineBusy) as exc:
        return _failed(args, f"{exc}", None, 1)
    except Exception as exc:
        return _failed(args, f"the backfill failed: {_root_cause(exc)}", None, 1)
    print(json.dumps(report.document(), indent=2) if args.json else report.text())
    return 0


def _check(args: argparse.Namespace) -> int:
    """``cargo-elt check`` (``check.py``): the report on stdout, exit 0/1, or 2 for bad input."""
    from .check import CheckRequest, format_report, report_json, run_check
    from .sync import UserInputError

    try:
        report = run_check(CheckRequest(base_url=args.base_url, tables=args.tables.split(",") if args.tables else None))
    except UserInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(report_json(report) if args.json else format_report(report), end="")
    return report.exit_code


if __name__ == "__main__":
    sys.exit(main())
