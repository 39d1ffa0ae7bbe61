"""Benchmark of the emulator itself: generation time and rows per scale, query latency of a full page.

Run: ``python -m bench.emulator_bench [--scales tiny,small,medium] [--pages 30]``. Each scale is
generated in a fresh child process (one embedded ClickHouse per process), timed, and its row counts
printed. Then, on the largest scale asked for, an emulator serves ``--pages`` 10,000-row page queries
over real HTTP (spans and runs, as row objects and packed as one CSV cell); the median and 90th
percentile latencies are printed. ``large`` takes minutes and several GB: ask for it explicitly.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime

import httpx

from bench.harness import BENCH_TOKEN, emulator_process

GENERATE = """
import json, time, resource
from datetime import datetime, UTC
from cargo_elt.emulator.store import ClickHouseStore
from cargo_elt.emulator.workspaces import make_workspaces
from cargo_elt.emulator.generator import generate
store = ClickHouseStore()
workspaces = make_workspaces(1, 2)
for ws in workspaces:
    store.ensure_workspace(ws.uuid)
started = time.monotonic()
report = generate(store, workspaces, seed=1, scale="{scale}", now=datetime(2026, 11, 1, tzinfo=UTC))
print(json.dumps({{"seconds": time.monotonic() - started, "rows": report.rows,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""

PAGE_SPANS = (
    "SELECT {columns} FROM spans WHERE execution_started_at >= toDateTime64('{start}', 3, 'UTC') "
    "ORDER BY execution_started_at, run_uuid, node_uuid, execution_index LIMIT 10000"
)
PAGE_RUNS = (
    "SELECT {columns} FROM runs WHERE created_at >= toDateTime64('{start}', 3, 'UTC') "
    "ORDER BY created_at, uuid LIMIT 10000"
)


def _generate(scale: str) -> dict[str, object]:
    result = subprocess.run(
        [sys.executable, "-c", GENERATE.format(scale=scale)], capture_output=True, text=True, check=True
    )
    payload: dict[str, object] = json.loads(result.stdout.strip().splitlines()[-1])
    return payload


def _latencies(base_url: str, pages: int) -> dict[str, list[float]]:
    from cargo_elt.source.pages import CsvCell
    from cargo_elt.source.planner import QueryWindow
    from cargo_elt.source.specs import RUNS, SPANS

    headers = {"authorization": f"Bearer {BENCH_TOKEN}"}
    url = f"{base_url}/v1/orchestration/query"
    results: dict[str, list[float]] = {}
    with httpx.Client(headers=headers, timeout=120) as client:
        first = client.post(
            url, json={"query": "SELECT min(created_at) AS s FROM runs"}
        ).json()  # spans may be over the scan cap
        start = datetime.fromisoformat(first["rows"][0]["s"]).replace(tzinfo=UTC)
        for spec in (SPANS, RUNS):
            window = QueryWindow(start, datetime.now(UTC))
            template = PAGE_SPANS if spec is SPANS else PAGE_RUNS
            plain = template.format(columns=", ".join(spec.column_names), start=start.strftime("%Y-%m-%d %H:%M:%S"))
            packed = CsvCell().sql(spec, window, None, 10_000)
            for label, sql in ((f"{spec.name} rows", plain), (f"{spec.name} packed", packed)):
                timings = []
                for _ in range(pages):
                    began = time.perf_counter()
                    response = client.post(url, json={"query": sql})
                    response.raise_for_status()
                    timings.append(time.perf_counter() - began)
                results[label] = timings
    return results


def main() -> None:
    """Run the benchmark and print its report."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scales", default="tiny,small,medium")
    parser.add_argument("--pages", type=int, default=30)
    options = parser.parse_args()
    scales = [s.strip() for s in options.scales.split(",") if s.strip()]
    print(f"emulator benchmark, {datetime.now(UTC):%Y-%m-%d}, {os.cpu_count()} cores, {platform.machine()}\n")
    print(f"{'scale':<8}{'seconds':>9}{'runs':>12}{'spans':>13}{'records':>12}{'batches':>9}{'peak RSS MB':>13}")
    for scale in scales:
        generated = _generate(scale)
        rows = generated["rows"]
        assert isinstance(rows, dict)
        print(
            f"{scale:<8}{generated['seconds']:>9.1f}{rows['runs']:>12,}{rows['spans']:>13,}"
            f"{rows['records']:>12,}{rows['batches']:>9,}{generated['peak_rss_mb']:>13,.0f}",
            flush=True,
        )
    with emulator_process(scales[-1]) as base_url:
        latencies = _latencies(base_url, options.pages)
    print(f"\n10,000-row page latency over HTTP, scale {scales[-1]}, {options.pages} queries each")
    print(f"{'query':<16}{'median ms':>11}{'p90 ms':>9}")
    for label, timings in latencies.items():
        ordered = sorted(timings)
        p90 = ordered[int(0.9 * (len(ordered) - 1))]
        print(f"{label:<16}{statistics.median(timings) * 1000:>11.0f}{p90 * 1000:>9.0f}")


if __name__ == "__main__":
    main()
