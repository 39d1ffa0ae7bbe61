"""Benchmark of the run-outputs export: every run of a scale through ``runs/download-outputs``.

Run: ``python -m bench.run_outputs_bench [--scale medium]`` (medium: about 150,000 runs over a dozen
workflows, so at least 100,000 runs are exported in windows of at most 9,500). The emulator is served
from its own process; the sync (``tables=["run_outputs"]`` into DuckDB) runs in a child process that
reports its own peak RSS. Prints rows, exports (one signed-URL file each), wall seconds, rows/s and
peak RSS against the target (< 300 MB). Not a test: it reports.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from datetime import UTC, datetime

from bench.harness import BENCH_TOKEN, emulator_process, run_child, scratch_dir

TARGET_RSS_MB = 300
MIN_RUNS = 100_000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--scale", default="medium")
    options = parser.parse_args(argv)
    print(f"run outputs export bench: {platform.machine()}, {os.cpu_count()} cores, {datetime.now(UTC):%Y-%m-%d}")
    with emulator_process(options.scale) as base_url:
        work = scratch_dir("cargo-outputs-bench-")
        result = run_child(
            "bench.children",
            {
                "program": "sync",
                "tables": ["run_outputs"],
                "token": BENCH_TOKEN,
                "base_url": base_url,
                "database": str(work / "outputs.duckdb"),
                "pipelines_dir": str(work / "pipelines"),
            },
        )
    p = result.payload
    table = p["tables"]["run_outputs"]
    rows = int(table["rows"])
    print(f"rows exported      {rows:,} (target scale: at least {MIN_RUNS:,})")
    print(f"exports (files)    {table['data_queries']:,}, planning queries {table['planning_queries']}")
    print(f"extract            {p['extract_seconds']:.1f} s, {rows / p['extract_seconds']:,.0f} rows/s")
    print(f"total (with load)  {p['total_seconds']:.1f} s, {rows / p['total_seconds']:,.0f} rows/s")
    print(f"peak RSS           extract {p['extract_peak_rss_mb']:.0f} MB, whole run {result.peak_rss_mb:.0f} MB")
    verdict = "PASS" if result.peak_rss_mb < TARGET_RSS_MB and rows >= MIN_RUNS else "MISS"
    print(f"target: >= {MIN_RUNS:,} runs with peak RSS < {TARGET_RSS_MB} MB: {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
