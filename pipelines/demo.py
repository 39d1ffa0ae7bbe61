"""``cargo-elt demo``: the whole product in one command, against the embedded emulator.

It starts a seeded emulator on a free port, backfills it into a local DuckDB file, advances the
emulator's clock by an hour (new runs arrive, pending ones finish), syncs again incrementally, builds
and tests the dbt models (``cargo-elt models``), answers questions from the marts and writes the HTML
report (``cargo-elt report``), whose path is the last line it prints.

The demo loads every table but ``batch_outputs`` (one export per batch: the emulator builds each
file on request, which makes that table the slow one at demo scale; ``cargo-elt sync`` loads it).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb
import httpx

from cargo_elt.source import TABLE_NAMES

from .models import ModelsReport, ModelsRequest, format_models_report, run_models
from .report import ReportRequest, build_report
from .sync import PIPELINE_NAME, SyncRequest, TableSummary, format_summary, run_sync

DEMO_PIPELINE = f"{PIPELINE_NAME}_demo"
DEMO_DATABASE = f"{DEMO_PIPELINE}.duckdb"
DEMO_REPORT = f"{DEMO_PIPELINE}_report.html"

DEMO_TABLES: tuple[str, ...] = tuple(t for t in TABLE_NAMES if t not in ("batch_outputs", "segment_records"))

QUESTIONS: tuple[tuple[str, str], ...] = (
    (
        "Top failing plays, by name (top 5)",
        """
        SELECT workflow_name AS play, sum(runs) AS runs, sum(error_runs) AS failed,
               round(100.0 * sum(error_runs) / sum(finished_runs), 1) AS error_rate_pct
        FROM cargo_runs_daily
        WHERE workflow_kind = 'play'
        GROUP BY workflow_name ORDER BY failed DESC, runs DESC LIMIT 5
        """,
    ),
    (
        "Where failed batch runs break: failing node and error (top 5)",
        """
        SELECT workflow_name AS workflow, failed_node_slug AS node, substr(node_error_message, 1, 60) AS error,
               count(*) AS failed_records
        FROM cargo_failed_records
        GROUP BY workflow_name, failed_node_slug, substr(node_error_message, 1, 60)
        ORDER BY failed_records DESC, workflow, node LIMIT 5
        """,
    ),
    (
        "Credits by workflow, by name (top 5)",
        """
        SELECT workflow_name AS workflow, workflow_kind AS kind, round(sum(credits), 2) AS credits, sum(runs) AS runs
        FROM cargo_runs_daily
        GROUP BY workflow_name, workflow_kind ORDER BY credits DESC LIMIT 5
        """,
    ),
    (
        "Batches Cargo calls successful that left records unprocessed (top 5)",
        """
        SELECT workflow_name AS workflow, batch_uuid AS batch, runs_count AS runs, failed_runs_count AS failed,
               failing_nodes
        FROM cargo_batch_health
        WHERE is_success_with_failures
        ORDER BY failed_runs_count DESC, created_at DESC LIMIT 5
        """,
    ),
)
"""Answers from the marts, in SQL every warehouse runs (no DuckDB-only syntax)."""


@dataclass
class DemoReport:
    """What the demo did, for the printout and for its test."""

    backfill: list[TableSummary]
    incremental: list[TableSummary]
    counts: dict[str, int]
    models: ModelsReport
    answers: dict[str, list[tuple[object, ...]]]
    report: Path


def run_demo(
    scale: str = "small",
    seed: int = 1,
    database: str = DEMO_DATABASE,
    echo: bool = True,
    report_path: str = DEMO_REPORT,
) -> DemoReport:
    """Run the demo end to end; prints as it goes when ``echo``, the report's path last."""
    import dlt

    from cargo_elt.emulator.server import EmulatorOptions, running_emulator

    def say(text: str) -> None:
        if echo:
            print(text, flush=True)

    say(f"Starting the Cargo emulator (seed {seed}, scale {scale}) ...")
    with running_emulator(EmulatorOptions(port=0, seed=seed, scale=scale, workspaces=1, admin=True)) as emulator:
        token = emulator.state.workspaces[0].token
        say(f"Emulator on {emulator.base_url}; syncing into {database} (pipeline {DEMO_PIPELINE})")
        dlt.pipeline(DEMO_PIPELINE).drop()  # a demo always starts from an empty pipeline
        request = SyncRequest(
            base_url=emulator.base_url,
            api_token=token,
            pipeline_name=DEMO_PIPELINE,
            duckdb_path=database,
            full_refresh=True,
            progress="none",
            tables=list(DEMO_TABLES),
        )
        backfill, seconds = run_sync(request)
        say("\nBackfill:\n" + format_summary(backfill, seconds))
        advanced = httpx.post(f"{emulator.base_url}/_emulator/advance", json={"seconds": 3600}, timeout=120)
        advanced.raise_for_status()
        say(
            "\nAdvanced the emulator's clock by one hour: new runs arrived, pending ones finished. The sync"
            "\nwarns that Cargo's clock is now an hour ahead of this machine's: it takes its bounds from Cargo's."
        )
        request.full_refresh = False
        incremental, seconds = run_sync(request)
        say("\nIncremental sync:\n" + format_summary(incremental, seconds))
    say("\nBuilding the dbt models on the warehouse (dbt run, dbt test) ...")
    # no `dbt source freshness` here: the report states the data's freshness, and each dbt command
    # costs the demo a few seconds of start-up (`cargo-elt models` runs it)
    models = run_models(
        ModelsRequest(pipeline_name=DEMO_PIPELINE, duckdb_path=database, quiet=True, check_freshness=False)
    )
    say(format_models_report(models))
    with duckdb.connect(database, read_only=True) as con:
        con.execute("SET schema = 'cargo'")
        counts = {
            table: int(con.execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # type: ignore[index]
            for table in ("runs", "batches", "spans", "records", "workflows", "release_nodes", "run_outputs")
        }
        say("\nRows in the warehouse: " + ", ".join(f"{t} {n:,}" for t, n in counts.items()))
        answers: dict[str, list[tuple[object, ...]]] = {}
        for title, sql in QUESTIONS:
            result = con.execute(sql)
            header = [d[0] for d in result.description]
            rows = result.fetchall()
            answers[title] = rows
            say(f"\n{title}\n  " + " | ".join(header))
            for row in rows:
                say("  " + " | ".join(str(v) for v in row))
    path, _ = build_report(ReportRequest(pipeline_name=DEMO_PIPELINE, duckdb_path=database, out=report_path))
    say(f"\nExplore it: duckdb {database}  (schema cargo: raw tables, stg_cargo__* views, cargo_* marts)")
    say("The report (open it in a browser; it needs no network):")
    say(str(path))
    return DemoReport(backfill, incremental, counts, models, answers, path)
