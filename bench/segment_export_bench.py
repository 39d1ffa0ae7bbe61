"""Benchmark of a large segment export: every company of a 1,000,000-company scale into DuckDB.

Run: ``python -m bench.segment_export_bench [--scale big] [--raw]``. The emulator is served from its own
process (generation of a 1M-company scale takes minutes); the sync runs in a child process, which
reports its own peak RSS (``ru_maxrss``), so the figure is the connector's alone: HTTP download to a
spooled file, chunked CSV parsing, dlt's extract/normalize/load into DuckDB. Prints rows, wall
seconds, rows/s and peak RSS against the issue's target (< 300 MB) twice: with DuckDB's defaults
(its load of the parquet file then dominates the peak) and with DuckDB's ``memory_limit`` set and
one thread, which is how a memory-bound deployment would run it. Not a test: it reports.

``--raw`` also times the bare download of the same export (bytes streamed and thrown away), the
ceiling the sync is compared with.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from datetime import UTC, datetime
from typing import Any

import httpx

from bench.harness import BENCH_TOKEN, emulator_process, scratch_dir

TARGET_RSS_MB = 300
MIN_COMPANIES = 1_000_000
MATCH_ALL = {"conjonction": "and", "groups": []}


def _companies_model(base_url: str) -> str:
    headers = {"authorization": f"Bearer {BENCH_TOKEN}"}
    models = httpx.get(f"{base_url}/v1/storage/models/list", headers=headers, timeout=60).json()["models"]
    return next(str(m["uuid"]) for m in models if m["slug"] == "companies")


def _raw_download(base_url: str, model_uuid: str) -> dict[str, float]:
    """Seconds and bytes of fetching the export's files without parsing them (the ceiling)."""
    headers = {"authorization": f"Bearer {BENCH_TOKEN}"}
    started = time.monotonic()
    body = httpx.post(
        f"{base_url}/v1/segmentation/segments/download",
        headers=headers,
        json={"modelUuid": model_uuid, "filter": MATCH_ALL},
        timeout=600,
    ).json()
    urls = body.get("urls") or [body["url"]]
    size = 0
    with httpx.Client(timeout=600) as files:
        for url in urls:
            with files.stream("GET", url) as response:
                response.raise_for_status()
                for chunk in response.iter_bytes(1 << 20):
                    size += len(chunk)
    return {"seconds": time.monotonic() - started, "bytes": size, "shards": len(urls)}


def child(args: dict[str, Any]) -> dict[str, Any]:
    """The measured sync (runs in its own process)."""
    import dlt
    import duckdb

    from cargo_elt.source.client import CargoClient
    from cargo_elt.source.segments import parse_segment_exports, segment_resources

    exports = parse_segment_exports([{"model_uuid": args["model_uuid"], "table_name": "companies_export"}])
    stats: dict[str, Any] = {}

    def factory() -> CargoClient:
        return CargoClient(args["token"], base_url=args["base_url"])

    from dlt.destinations.impl.duckdb.configuration import DuckDbCredentials

    credentials = DuckDbCredentials(args["database"])
    if args.get("duckdb_memory_limit"):
        # DuckDB's own buffers during the load (COPY from parquet) are most of the peak otherwise
        credentials.global_config = {
            "memory_limit": args["duckdb_memory_limit"],
            "threads": 1,
            "preserve_insertion_order": False,
        }
    pipeline = dlt.pipeline(
        pipeline_name="segment_bench",
        destination=dlt.destinations.duckdb(credentials),
        dataset_name="cargo",
        pipelines_dir=args["pipelines_dir"],
    )
    started = time.monotonic()
    pipeline.run(segment_resources(exports, factory, stats)).raise_on_failed_jobs()
    seconds = time.monotonic() - started
    con = duckdb.connect(args["database"], read_only=True)
    try:
        row = con.execute("SELECT count(*), count(DISTINCT _id) FROM cargo.companies_export").fetchone()
    finally:
        con.close()
    assert row is not None
    return {
        "rows": int(row[0]),
        "distinct_ids": int(row[1]),
        "seconds": seconds,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def _run_child(args: dict[str, Any]) -> tuple[dict[str, Any], float]:
    started = time.monotonic()
    process = subprocess.run(
        [sys.executable, "-m", "bench.segment_export_bench", "--child"],
        input=json.dumps(args),
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.monotonic() - started
    if process.returncode != 0:
        raise RuntimeError(f"the sync child failed ({process.returncode}):\n{process.stderr[-3000:]}")
    lines = [line for line in process.stdout.splitlines() if line.startswith("{")]
    return json.loads(lines[-1]), wall


def main() -> None:
    """Serve a 1M-company scale, sync the match-all export in a child process, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", default=None, help="default: big if the generator has it, else large")
    parser.add_argument("--raw", action="store_true", help="also time the bare download (the ceiling)")
    parser.add_argument(
        "--duckdb-memory-limit",
        default="64MB",
        help="second run with DuckDB's memory_limit set to this (and one thread); '' to skip it",
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.child:
        print(json.dumps(child(json.loads(sys.stdin.read()))), flush=True)
        return

    from cargo_elt.emulator.generator import SCALES

    scale = options.scale or ("big" if "big" in SCALES else "large")
    if SCALES[scale].companies < MIN_COMPANIES:
        raise SystemExit(f"scale {scale} has {SCALES[scale].companies:,} companies; pick one with >= 1,000,000")
    generation_started = time.monotonic()
    with emulator_process(scale, via_cli=False) as base_url:
        print(f"emulator ({scale}) ready in {time.monotonic() - generation_started:.0f} s at {base_url}", flush=True)
        model_uuid = _companies_model(base_url)
        raw = _raw_download(base_url, model_uuid) if options.raw else None
        runs: list[tuple[str, dict[str, Any], float]] = []
        for limit in ["", options.duckdb_memory_limit] if options.duckdb_memory_limit else [""]:
            work = scratch_dir("cargo-segment-bench-")
            result, wall = _run_child(
                {
                    "base_url": base_url,
                    "token": BENCH_TOKEN,
                    "model_uuid": model_uuid,
                    "database": str(work / "bench.duckdb"),
                    "pipelines_dir": str(work / "pipelines"),
                    "duckdb_memory_limit": limit,
                }
            )
            label = f"DuckDB memory_limit {limit}, 1 thread" if limit else "DuckDB defaults"
            print(f"{label}: {result['rows']:,} rows in {wall:.1f} s", flush=True)
            runs.append((label, result, wall))
    print(
        f"\ncargo-elt segment export benchmark, scale {scale}, {datetime.now(UTC):%Y-%m-%d}, "
        f"{os.cpu_count()} cores, {platform.machine()}"
    )
    for label, result, wall in runs:
        rows = result["rows"]
        print(f"\n{label}")
        print(f"  rows loaded        {rows:>12,}  (distinct _id {result['distinct_ids']:,})")
        print(f"  wall (child)       {wall:>12.1f} s  (pipeline.run {result['seconds']:.1f} s)")
        print(f"  rows/s             {rows / result['seconds']:>12,.0f}")
        print(f"  peak RSS (child)   {result['peak_rss_mb']:>12.0f} MB  (target < {TARGET_RSS_MB} MB)")
    if raw is not None:
        print(
            f"\nraw download         {raw['seconds']:>12.1f} s  ({raw['bytes'] / 1e6:,.0f} MB in {raw['shards']:.0f} "
            f"shard(s): the emulator's export speed, the ceiling)"
        )


if __name__ == "__main__":
    main()
