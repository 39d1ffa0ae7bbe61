"""The measured child of ``bench.run_outputs_bench``: JSON args on stdin, one JSON line of results out."""

from __future__ import annotations

import json
import sys
from typing import Any


def child(args: dict[str, Any]) -> dict[str, Any]:
    """The measured program: the run_outputs backfill into a DuckDB file."""
    import time

    import dlt

    from bench.harness import peak_rss_mb
    from sources.cargo import SyncStats, cargo_source

    stats = SyncStats()
    pipeline = dlt.pipeline(
        pipeline_name="bench_outputs",
        destination=dlt.destinations.duckdb(args["database"]),
        dataset_name="cargo",
        pipelines_dir=args["pipelines_dir"],
    )
    started = time.monotonic()
    source = cargo_source(
        api_token=args["token"], base_url=args["base_url"], start_date="2026-01-01", tables=["run_outputs"], stats=stats
    )
    pipeline.extract(source)
    extract_rss = peak_rss_mb()
    extracted = time.monotonic()
    pipeline.normalize()
    pipeline.load().raise_on_failed_jobs()
    table = stats["run_outputs"]
    return {
        "rows": table.rows,
        "exports": table.data_queries,
        "planning_queries": table.planning_queries,
        "extract_seconds": extracted - started,
        "total_seconds": time.monotonic() - started,
        "extract_peak_rss_mb": extract_rss,
        "peak_rss_mb": peak_rss_mb(),
    }


if __name__ == "__main__":
    print(json.dumps(child(json.loads(sys.stdin.read()))))
