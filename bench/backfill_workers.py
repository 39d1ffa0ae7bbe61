"""``cargo-elt backfill --workers N`` on one machine: wall time, rows/s, CPU of client and server, per N.

Run: ``python -m bench.backfill_workers --scale medium --workers 1,2,4``. One emulator (its own process,
as in ``bench.compare``) serves every run; each run is the command as a user types it, into a fresh
DuckDB file, and is checked against the emulator's row counts before it counts. Per run:

* wall seconds and rows/s of the whole command (plan, prepare, chunks, handover);
* CPU seconds of the client (the command and its worker processes: this process's children) and of the
  server (the emulator's own reading, ``/_emulator/queries`` ``cpu_seconds``), and the cores both kept
  busy, of ``os.cpu_count()``: on this machine they share the cores, so a worker's CPU is the server's loss;
* the load average before and after (other work on a shared machine skews absolute times: compare the
  ratios of one run of this module);
* the speed-up against one worker, and the model of ``docs/PERFORMANCE.md`` ("Fan-out over workers") with this run's
  own per-page costs (``--model`` prints it for other per-query times and concurrency caps).

``--latency S`` makes the emulator wait S seconds before answering each API request (its ``slow``
fault at rate 1, an ``asyncio.sleep``: no CPU), as a remote Cargo's query time would: the emulator's
own CPU then no longer sets the pace alone, and the run shows what workers buy when Cargo's time per
query, not this machine's cores, is what a worker waits for.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import httpx

from bench.harness import BENCH_TOKEN, add_latency, emulator_process, median, scratch_dir

START_DATE = "2026-01-01"
FACTS = ("runs", "batches", "spans", "records")
PAGE_ROWS = 10_000
DEFAULT_CONCURRENCY = 4
"""``sources.cargo.concurrency``: windows each worker reads at once."""
ROUND_TRIP_S = 0.05
"""[I] Network time a request to Cargo adds to its server time (the model only; the emulator is local)."""


@dataclass
class Run:
    """One ``cargo-elt backfill`` run."""

    workers: int
    chunks: int
    rows: int
    wall: float
    client_cpu: float
    server_cpu: float
    requests: int
    data_queries: int
    wait_seconds: float
    load_seconds: float
    """The chunks' loads together (DuckDB: one after another)."""
    extract_cpu: float
    """CPU of the chunk processes while they extract and normalize (no start-up, no load)."""
    load_before: float
    load_after: float
    peak_rss_mb: float
    """The largest process's peak (one worker's need), from ``bench.peak_of``."""

    @property
    def rate(self) -> float:
        return self.rows / self.wall

    @property
    def busy(self) -> float:
        return (self.client_cpu + self.server_cpu) / self.wall


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _truth_counts(base_url: str) -> dict[str, int]:
    tables = httpx.get(f"{base_url}/_emulator/truth", timeout=600).json()["tables"]
    return {t: int(tables[t]["count"]) for t in FACTS}


def _loaded_counts(database: Path) -> dict[str, int]:
    with duckdb.connect(str(database), read_only=True) as con:
        return {t: int(con.execute(f"SELECT count(*) FROM cargo.{t}").fetchone()[0]) for t in FACTS}  # type: ignore[index]


def backfill(base_url: str, workers: int, chunks: int | None) -> Run:
    """One ``cargo-elt backfill --since START_DATE --workers N`` into a fresh DuckDB file, checked."""
    from cargo_elt.source.planner import is_histogram_query

    work = scratch_dir("cargo-backfill-bench-")
    database = work / "warehouse.duckdb"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SOURCES__", "DESTINATION__", "DLT_"))}
    env.update(
        DLT_DATA_DIR=str(work / "dlt"),
        SOURCES__CARGO__API_TOKEN=BENCH_TOKEN,
        SOURCES__CARGO__START_DATE=START_DATE,
        SOURCES__CARGO__SETTLE_SECONDS="0",  # up to the emulator's now: the counts must equal its truth
        RUNTIME__LOG_LEVEL="ERROR",
        RUNTIME__DLTHUB_TELEMETRY="false",
    )
    peak_file = work / "peak.json"  # bench.peak_of: this command's processes alone (its docstring)
    command = [sys.executable, str(Path(__file__).with_name("peak_of.py")), str(peak_file), "--"]
    command += [sys.executable, "-m", "cargo_elt.pipelines.cli", "backfill", "--since", START_DATE]
    command += ["--workers", str(workers), "--base-url", base_url, "--duckdb-path", str(database), "--json"]
    command += ["--chunks", str(chunks)] if chunks is not None else []
    try:
        server_before = float(httpx.delete(f"{base_url}/_emulator/queries", timeout=60).json()["cpu_seconds"])
        load_before = os.getloadavg()[0]
        cpu_before = _children_cpu()
        started = time.monotonic()
        done = subprocess.run(command, env=env, cwd=work, capture_output=True, text=True, check=False)
        wall = time.monotonic() - started
        cpu_after = _children_cpu()
        load_after = os.getloadavg()[0]
        log = httpx.get(f"{base_url}/_emulator/queries", timeout=120).json()
        if done.returncode != 0:
            raise RuntimeError(f"cargo-elt backfill --workers {workers} failed:\n{done.stderr[-3000:]}")
        report = json.loads(done.stdout)
        peak = float(json.loads(peak_file.read_text())["peak_rss_mb"])
        loaded, truth = _loaded_counts(database), _truth_counts(base_url)
        if loaded != truth:
            raise RuntimeError(f"--workers {workers}: loaded {loaded}, the emulator holds {truth}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    served = [q for q in log["queries"] if q["outcome"] == "ok"]
    return Run(
        workers=workers,
        chunks=len(report["plan"]["chunks"]),
        rows=sum(report["rows"].values()),
        wall=wall,
        client_cpu=cpu_after - cpu_before,
        server_cpu=float(log["cpu_seconds"]) - server_before,
        requests=sum(int(n) for path, n in log["requests"].items() if path.startswith("/v1/")),
        data_queries=sum(1 for q in served if not is_histogram_query(q["sql"]) and "LIMIT" in q["sql"]),
        wait_seconds=sum(float(c["wait_seconds"]) for c in report["chunks"]),
        extract_cpu=sum(float(c["extract_cpu_seconds"]) for c in report["chunks"]),
        load_seconds=sum(float(c["load_seconds"]) for c in report["chunks"]),
        load_before=load_before,
        load_after=load_after,
        peak_rss_mb=peak,
    )


def model_speedup(
    workers: int, server_s: float, client_s: float, cap: int, concurrency: int = DEFAULT_CONCURRENCY
) -> float:
    """Extraction speed-up of ``workers`` over one (docs/PERFORMANCE.md, "Fan-out over workers").

    Pages per second with ``w`` workers: ``min(w * k / (s + r), K / s, w / c)``, where ``s`` is Cargo's
    time per page query, ``r`` the network's, ``k`` the windows each worker reads at once, ``K`` the
    queries Cargo runs at once for a workspace and ``c`` a worker's CPU per page (one Python process
    decodes on one core).
    """

    def pages_per_second(w: int) -> float:
        return min(w * concurrency / (server_s + ROUND_TRIP_S), cap / server_s, w / client_s)

    return pages_per_second(workers) / pages_per_second(1)


def knee(server_s: float, client_s: float, cap: int, concurrency: int = DEFAULT_CONCURRENCY) -> float:
    """Workers past which the model gains nothing: ``K / (s * a)``, where a worker reads ``a`` pages per
    second on its own (``min(k / (s + r), 1 / c)``) and Cargo serves at most ``K / s``."""
    per_worker = min(concurrency / (server_s + ROUND_TRIP_S), 1 / client_s)
    return max(1.0, cap / (server_s * per_worker))


def print_model(client_s: float, server_times: list[float], caps: list[int], workers: list[int]) -> None:
    """The model's speed-ups against Cargo for a grid of per-query times and concurrency caps."""
    print(
        f"\nmodel (docs/PERFORMANCE.md, Fan-out over workers): client CPU per page c = {client_s:.3f} s, "
        f"network r = {ROUND_TRIP_S} s, k = {DEFAULT_CONCURRENCY} windows per worker"
    )
    header = "".join(f"{f'W={w}':>8}" for w in workers)
    print(f"  {'Cargo s/page':>12}{'cap K':>7}{header}{'knee W':>9}")
    for server_s in server_times:
        for cap in caps:
            row = "".join(f"{model_speedup(w, server_s, client_s, cap):>7.2f}x" for w in workers)
            print(f"  {server_s:>12.2f}{cap:>7}{row}{knee(server_s, client_s, cap):>9.1f}")


def main() -> None:
    """Run the backfill with each worker count and print the table, the ratios and the model."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", default="medium")
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--chunks", type=int, default=None, help="chunks per run (default: the command's own)")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds the emulator waits before each answer")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--model", action="store_true", help="print only the model, with --client-s")
    parser.add_argument("--client-s", type=float, default=0.13, help="client CPU seconds per page for --model")
    options = parser.parse_args()
    counts = [int(w) for w in options.workers.split(",") if w.strip()]
    if options.model:
        print_model(options.client_s, [0.1, 0.25, 0.5, 1.0], [4, 8, 16, 32], [1, 2, 4, 8, 16])
        return
    print(
        f"cargo-elt backfill --workers N, {datetime.now(UTC):%Y-%m-%d}, {os.cpu_count()} cores, "
        f"{platform.machine()}, scale {options.scale}, concurrency {DEFAULT_CONCURRENCY} per worker, "
        f"repeats {options.repeat}, added latency {options.latency:g} s",
        flush=True,
    )
    runs: dict[int, list[Run]] = {w: [] for w in counts}
    began = time.monotonic()
    with emulator_process(options.scale, via_cli=False) as base_url:
        print(f"emulator up in {time.monotonic() - began:.0f} s", flush=True)
        if options.latency > 0:  # every API request waits first, as for a remote Cargo (module docstring)
            add_latency(base_url, options.latency)
            print(f"every API request answered after {options.latency:g} s more (the emulator's slow fault)")
        for attempt in range(options.repeat):
            for workers in counts:  # one repeat runs every count back to back: ratios within a repeat
                run = backfill(base_url, workers, options.chunks)
                runs[workers].append(run)
                print(
                    f"repeat {attempt + 1}, {workers} workers: {run.wall:.1f} s, {run.rows:,} rows, "
                    f"load average {run.load_before:.2f} -> {run.load_after:.2f}",
                    flush=True,
                )
    one = runs[counts[0]]
    print(
        f"\n{'workers':>7}{'chunks':>7}{'rows':>11}{'wall s':>8}{'rows/s':>9}{'speed-up':>9}{'client CPU':>11}"
        f"{'server CPU':>11}{'busy':>6}{'queries':>8}{'loads s':>8}{'turn wait s':>12}{'peak MB':>8}{'load avg':>13}"
    )
    figures = []
    for workers, measured in runs.items():
        speedups = [a.wall / b.wall for a, b in zip(one, measured, strict=True)]
        m: dict[str, Any] = {
            "workers": workers,
            "chunks": measured[0].chunks,
            "rows": measured[0].rows,
            "wall": median([r.wall for r in measured]),
            "rate": median([r.rate for r in measured]),
            "speedup": median(speedups),
            "client_cpu": median([r.client_cpu for r in measured]),
            "server_cpu": median([r.server_cpu for r in measured]),
            "busy": median([r.busy for r in measured]),
            "data_queries": median([r.data_queries for r in measured]),
            "wait": median([r.wait_seconds for r in measured]),
            "loads": median([r.load_seconds for r in measured]),
            "peak": median([r.peak_rss_mb for r in measured]),
            "load": f"{min(r.load_before for r in measured):.1f}-{max(r.load_after for r in measured):.1f}",
        }
        figures.append({**m, "runs": [asdict(r) for r in measured]})
        print(
            f"{workers:>7}{m['chunks']:>7}{m['rows']:>11,}{m['wall']:>8.1f}{m['rate']:>9,.0f}{m['speedup']:>8.2f}x"
            f"{m['client_cpu']:>11.1f}{m['server_cpu']:>11.1f}{m['busy']:>6.2f}{int(m['data_queries']):>8}"
            f"{m['loads']:>8.1f}{m['wait']:>12.1f}{m['peak']:>8.0f}{m['load']:>13}"
        )
    base = one[0]
    client_s = base.extract_cpu / max(base.data_queries, 1)
    server_s = base.server_cpu / max(base.data_queries, 1)
    print(
        f"\nper page query at 1 worker: client {client_s:.3f} CPU-s (extract and normalize of the chunk process), "
        f"server {server_s:.3f} CPU-s; "
        f"here both share {os.cpu_count()} cores, so {os.cpu_count()} / {client_s + server_s:.3f} = "
        f"{(os.cpu_count() or 1) / (client_s + server_s):.1f} pages/s is the most any number of workers reaches "
        f"(1 worker: {base.data_queries / base.wall:.1f} pages/s)"
    )
    if options.latency > 0:
        here: float = server_s + float(options.latency)
        cores = os.cpu_count() or 1

        def local(w: int) -> float:  # pages/s here: the model, and both processes' CPU on this machine's cores
            return min(w * DEFAULT_CONCURRENCY / here, w / client_s, cores / (client_s + server_s))

        predicted = "  ".join(f"{w} workers {local(w) / local(1):.2f}x" for w in counts)
        print(f"the model for this machine, idle (s = {here:.2f} s, {cores} cores shared): {predicted}")
    print_model(client_s, [0.1, 0.25, 0.5], [4, 8, 16], [1, 2, 4, 8])
    if options.json is not None:
        header = {
            "date": f"{datetime.now(UTC):%Y-%m-%d}",
            "cores": os.cpu_count(),
            "machine": platform.machine(),
            "command": "python -m bench.backfill_workers " + " ".join(sys.argv[1:]),
            "scale": options.scale,
            "latency": options.latency,
            "repeats": options.repeat,
            "concurrency": DEFAULT_CONCURRENCY,
        }
        per_page = {"client_cpu_seconds": client_s, "server_cpu_seconds": server_s}
        document = {"run": header, "scale": options.scale, "per_page": per_page, "figures": figures}
        options.json.write_text(json.dumps(document, indent=2, default=str))


if __name__ == "__main__":
    main()
