"""``cargo-elt demo``: the whole product in one command, against the embedded emulator.

It starts a seeded emulator on a free port, backfills it into a local DuckDB file, advances the
emulator's clock by an hour (new runs arrive, pending ones finish), syncs again incrementally, and
answers questions from the warehouse that join the facts to the catalogue's names.

The demo loads every table but ``batch_outputs`` (one export per batch: the emulator builds each
file on request, which makes that table the slow one at demo scale; ``cargo-elt sync`` loads it).
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import httpx

from cargo_elt.source import TABLE_NAMES

from .sync import PIPELINE_NAME, SyncRequest, TableSummary, format_summary, run_sync

DEMO_PIPELINE = f"{PIPELINE_NAME}_demo"
DEMO_DATABASE = f"{DEMO_PIPELINE}.duckdb"

DEMO_TABLES: tuple[str, ...] = tuple(t for t in TABLE_NAMES if t not in ("batch_outputs", "segment_records"))

QUESTIONS: tuple[tuple[str, str], ...] = (
    (
        "Top failing plays, by name (top 5)",
        """
        SELECT w.name AS play, count(*) AS runs, count(*) FILTER (WHERE r.status = 'error') AS failed,
               round(100.0 * count(*) FILTER (WHERE r.status = 'error') / count(*), 1) AS error_rate_pct
        FROM runs r JOIN workflows w ON w.uuid = r.workflow_uuid
        WHERE r.deleted_at IS NULL AND w.owner_kind = 'play'
        GROUP BY w.name ORDER BY failed DESC, runs DESC LIMIT 5
        """,
    ),
    (
        "Where failed batch runs break: failing node and error (top 5)",
        """
        SELECT w.name AS workflow, f.failed_node_slug AS node, left(f.node_error_message, 60) AS error,
               count(*) AS failed_records
        FROM batch_failures f JOIN workflows w ON w.uuid = f.workflow_uuid
        GROUP BY ALL ORDER BY failed_records DESC LIMIT 5
        """,
    ),
    (
        "Credits by workflow, by name (top 5)",
        """
        SELECT coalesce(w.name, r.workflow_uuid) AS workflow, w.owner_kind AS kind,
               round(sum(r.credits_used_count), 2) AS credits, count(*) AS runs
        FROM runs r LEFT JOIN workflows w ON w.uuid = r.workflow_uuid
        GROUP BY ALL ORDER BY credits DESC LIMIT 5
        """,
    ),
    (
        "Slowest nodes (median seconds, top 5)",
        """
        SELECT node_slug, node_kind, count(*) AS executions,
               round(median(epoch(execution_finished_at) - epoch(execution_started_at)), 2) AS median_s
        FROM spans WHERE execution_finished_at IS NOT NULL
        GROUP BY node_slug, node_kind ORDER BY median_s DESC LIMIT 5
        """,
    ),
)


@dataclass
class DemoReport:
    """What the demo did, for the printout and for its test."""

    backfill: list[TableSummary]
    incremental: list[TableSummary]
    counts: dict[str, int]
    answers: dict[str, list[tuple[object, ...]]]


def run_demo(scale: str = "small", seed: int = 1, database: str = DEMO_DATABASE, echo: bool = True) -> DemoReport:
    """Run the demo end to end; prints as it goes when ``echo``."""
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
        say("\nAdvanced the emulator's clock by one hour: new runs arrived, pending ones finished.")
        request.full_refresh = False
        incremental, seconds = run_sync(request)
        say("\nIncremental sync:\n" + format_summary(incremental, seconds))
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
    say(f"\nExplore it: duckdb {database}  (schema cargo), or: dlt pipeline {DEMO_PIPELINE} info")
    return DemoReport(backfill, incremental, counts, answers)
