"""Benchmark of the source against the emulator: query counts, throughput, memory, and the ceiling.

Run: ``python -m bench.source_bench [--scale medium] [--repeat 3]``. Prints, per table, rows, data
queries against the ideal ``ceil(rows / 10,000)``, planning queries and rows/s, then the whole
sync's throughput against the raw-fetch ceiling measured in the same run (the same data queries
fetched with httpx and thrown away), and the sync's peak RSS. Not a test: it asserts nothing, it
reports (with the targets of issue 3 beside the figures).
"""

from __future__ import annotations

import argparse
import math
import os
import platform
from datetime import UTC, datetime

import httpx

from bench.harness import BENCH_TOKEN, emulator_process, median, run_child, scratch_dir

TARGET_QUERY_RATIO = 1.10
TARGET_CEILING_RATIO = 0.6
TARGET_RSS_MB = 500


def _data_queries(base_url: str) -> list[str]:
    from cargo_elt.source.planner import is_histogram_query

    served = httpx.get(f"{base_url}/_emulator/queries", timeout=60).json()["queries"]
    return [q["sql"] for q in served if q["outcome"] == "ok" and not is_histogram_query(q["sql"])]


def main() -> None:  # noqa: PLR0915 (one benchmark run, read top to bottom)
    """Run the benchmark and print its report."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", default="medium", choices=["tiny", "small", "medium", "large"])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=4)
    options = parser.parse_args()

    syncs = []
    raws = []
    with emulator_process(options.scale) as base_url:
        for attempt in range(options.repeat):
            httpx.delete(f"{base_url}/_emulator/queries", timeout=60).raise_for_status()
            work = scratch_dir("cargo-bench-")
            sync = run_child(
                "bench.children",
                {
                    "program": "sync",
                    "base_url": base_url,
                    "token": BENCH_TOKEN,
                    "database": str(work / "bench.duckdb"),
                    "pipelines_dir": str(work / "pipelines"),
                    "concurrency": options.concurrency,
                },
            )
            queries = _data_queries(base_url)
            raw = run_child(
                "bench.children",
                {
                    "program": "raw",
                    "base_url": base_url,
                    "token": BENCH_TOKEN,
                    "queries": queries,
                    "concurrency": options.concurrency,
                },
            )
            syncs.append(sync)
            raws.append(raw)
            print(f"run {attempt + 1}: sync {sync.seconds:.1f} s, raw fetch {raw.payload['seconds']:.1f} s", flush=True)

    tables = syncs[0].payload["tables"]
    print(
        f"\ncargo-elt source benchmark, scale {options.scale}, {options.repeat} runs (medians), "
        f"{datetime.now(UTC):%Y-%m-%d}, {os.cpu_count()} cores, {platform.machine()}, "
        f"concurrency {options.concurrency}\n"
    )
    header = f"{'table':<10}{'rows':>10}{'data q':>8}{'ideal':>7}{'ratio':>7}{'plan q':>8}{'rows/s':>10}"
    print(header)
    total_rows = 0
    total_data = 0
    total_ideal = 0
    total_plan = 0
    for name in tables:
        rows = tables[name]["rows"]
        data = tables[name]["data_queries"]
        plan = tables[name]["planning_queries"]
        ideal = max(1, math.ceil(rows / 10_000))
        rate = median(
            [s.payload["tables"][name]["rows"] / max(s.payload["tables"][name]["seconds"], 1e-9) for s in syncs]
        )
        total_rows += rows
        total_data += data
        total_ideal += ideal
        total_plan += plan
        print(f"{name:<10}{rows:>10,}{data:>8}{ideal:>7}{data / ideal:>7.2f}{plan:>8}{rate:>10,.0f}")
    extract_s = median([s.payload["extract_seconds"] for s in syncs])
    total_s = median([s.payload["total_seconds"] for s in syncs])
    raw_s = median([r.payload["seconds"] for r in raws])
    rss = median([s.peak_rss_mb for s in syncs])
    print(f"{'all':<10}{total_rows:>10,}{total_data:>8}{total_ideal:>7}{total_data / total_ideal:>7.2f}{total_plan:>8}")
    print()
    print(f"extract (plan + fetch + arrow)    {extract_s:8.2f} s  {total_rows / extract_s:>10,.0f} rows/s")
    print(f"end to end (+ normalize, load)    {total_s:8.2f} s  {total_rows / total_s:>10,.0f} rows/s")
    print(f"raw-fetch ceiling (httpx, same q) {raw_s:8.2f} s  {total_rows / raw_s:>10,.0f} rows/s")
    # the ratio of each run (both measured back to back), then the median: robust to a noisy run
    ratio = median([r.payload["seconds"] / s.payload["extract_seconds"] for s, r in zip(syncs, raws, strict=True)])
    print(f"extract / ceiling (median of runs) {ratio:7.2f}   (target >= {TARGET_CEILING_RATIO})")
    print(f"data queries / ideal              {total_data / total_ideal:8.2f}   (target <= {TARGET_QUERY_RATIO})")
    extract_rss = median([s.payload["extract_peak_rss_mb"] for s in syncs])
    normalize_rss = median([s.payload["normalize_peak_rss_mb"] for s in syncs])
    print(f"peak RSS of the sync              {rss:8.0f} MB (target < {TARGET_RSS_MB} MB)")
    print(f"  of which by the end of extract  {extract_rss:8.0f} MB, of normalize {normalize_rss:.0f} MB")


if __name__ == "__main__":
    main()
