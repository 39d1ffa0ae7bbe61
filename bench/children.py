"""The measured programs, each run as ``python -m bench.children <name>`` style child processes.

``sync``: cargo-elt's source through dlt into DuckDB (full backfill), reporting its per-table stats.
``raw``: the ceiling: the same data queries fetched with httpx at the same concurrency and thrown away.
"""

from __future__ import annotations

import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench.harness import peak_rss_mb


def run_sync(args: dict[str, Any]) -> dict[str, Any]:
    """A full backfill (or, with ``again``, a second incremental sync) into a DuckDB file."""
    import dlt

    from cargo_elt.source import FACT_TABLES, SyncStats, cargo_source

    stats = SyncStats()
    pipeline = dlt.pipeline(
        pipeline_name="bench",
        destination=dlt.destinations.duckdb(args["database"]),
        dataset_name="cargo",
        pipelines_dir=args["pipelines_dir"],
    )
    started = time.monotonic()
    source = cargo_source(
        api_token=args["token"],
        base_url=args["base_url"],
        start_date="2026-01-01",
        tables=args.get("tables", list(FACT_TABLES)),
        concurrency=args.get("concurrency", 4),
        stats=stats,
    )
    pipeline.extract(source)
    extracted = time.monotonic()
    extract_rss = peak_rss_mb()
    pipeline.normalize()
    normalize_rss = peak_rss_mb()
    pipeline.load().raise_on_failed_jobs()
    finished = time.monotonic()
    return {
        "tables": {
            name: {
                "rows": s.rows,
                "data_queries": s.data_queries,
                "planning_queries": s.planning_queries,
                "retries": s.retries,
                "seconds": s.seconds,
            }
            for name, s in stats.items()
        },
        "extract_seconds": extracted - started,
        "total_seconds": finished - started,
        "extract_peak_rss_mb": extract_rss,
        "normalize_peak_rss_mb": normalize_rss,
        "peak_rss_mb": peak_rss_mb(),
    }


def run_raw(args: dict[str, Any]) -> dict[str, Any]:
    """Replay the given queries with plain httpx (``concurrency`` at a time), parsing nothing."""
    import httpx

    queries: list[str] = args["queries"]
    headers = {"authorization": f"Bearer {args['token']}"}
    url = args["base_url"].rstrip("/") + "/v1/orchestration/query"
    limits = httpx.Limits(max_connections=args.get("concurrency", 4))
    total_bytes = 0
    started, cpu_started = time.monotonic(), time.process_time()
    with httpx.Client(headers=headers, timeout=120, limits=limits) as client:

        def fetch(sql: str) -> int:
            response = client.post(url, json={"query": sql})
            response.raise_for_status()
            return len(response.content)

        with ThreadPoolExecutor(max_workers=args.get("concurrency", 4)) as pool:
            total_bytes = sum(pool.map(fetch, queries))
    return {
        "seconds": time.monotonic() - started,
        "cpu_seconds": time.process_time() - cpu_started,
        "bytes": total_bytes,
        "peak_rss_mb": peak_rss_mb(),
    }


def main() -> None:
    """Read the JSON args from stdin, run the named program, print its JSON result."""
    args = json.loads(sys.stdin.read())
    program = {"sync": run_sync, "raw": run_raw}[args.pop("program")]
    print(json.dumps(program(args)))


if __name__ == "__main__":
    main()
