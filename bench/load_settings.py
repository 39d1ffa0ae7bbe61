"""How DuckDB's load settings trade memory for time: one cargo-elt backfill per setting, same data.

Run: ``python -m bench.load_settings [--scale big] [--variants default,serial-2t-190,...]``. One
emulator serves every variant; each variant is (a) of ``bench.compare`` (``cargo-elt sync`` with no
flag: steps into DuckDB, each file merged in place) in its own process, with three of the load's
settings replaced: ``merge_slots`` (``duckdb_load.MERGE_SLOTS``: merges at once, each of another
table), ``threads`` (DuckDB's threads, fixed, where the sync shares the cores over the merges running)
and ``memory_limit``. Prints, per variant: the process's peak
RSS, the peak during extract phases and during load phases (sampled every 0.1 s), the seconds spent
extracting and loading, and end to end over extract. The variants are those docs/PERFORMANCE.md
compares ("Memory and load"); ``default`` is what the sync does on this machine.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.harness import BENCH_TOKEN, emulator_process, run_child, scratch_dir

CHILD = "bench.load_settings"
START_DATE = "2026-01-01"
SAMPLE_SECONDS = 0.1


@dataclass(frozen=True)
class Variant:
    """Load settings to try; ``None`` keeps what the sync chooses (``auto``)."""

    merge_slots: int | None = None
    threads: int | None = None
    memory_limit: str | None = None


VARIANTS = {
    "default": Variant(),
    "parallel-2t-190": Variant(merge_slots=3, threads=2, memory_limit="190MB"),
    "serial-2t-190": Variant(merge_slots=1, threads=2, memory_limit="190MB"),
    "slots2-1t-190": Variant(merge_slots=2, threads=1, memory_limit="190MB"),
    "slots2-1t-160": Variant(merge_slots=2, threads=1, memory_limit="160MB"),
    "serial-2t-160": Variant(merge_slots=1, threads=2, memory_limit="160MB"),
}


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


class _PhaseSampler:
    """Peak RSS per dlt phase (extract, or normalize and load), sampled on a thread."""

    def __init__(self) -> None:
        self.phase = "start"
        self.peaks: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            rss = _rss_mb()
            self.peaks[self.phase] = max(self.peaks.get(self.phase, 0.0), rss)

    def __enter__(self) -> _PhaseSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


MERGE_STATEMENTS = {"SELECT count(*), count(DISTINCT": "check", "DELETE FROM": "delete", "INSERT INTO": "insert"}
"""How ``KeyedMergeJob``'s three statements begin (the key check, the delete, the insert)."""


def _time_merge_statements() -> dict[str, float]:
    """Seconds spent in each of the merge's statements, summed over the run (wall, across threads)."""
    from dlt.destinations.impl.duckdb.sql_client import DuckDbSqlClient

    totals = dict.fromkeys(MERGE_STATEMENTS.values(), 0.0)
    execute = DuckDbSqlClient.execute_sql

    def timed(self: Any, sql: Any, *args: Any, **kwargs: Any) -> Any:
        kind = next((k for prefix, k in MERGE_STATEMENTS.items() if str(sql).startswith(prefix)), None)
        if kind is None or "read_parquet" not in str(sql):
            return execute(self, sql, *args, **kwargs)
        started = time.monotonic()
        try:
            return execute(self, sql, *args, **kwargs)
        finally:
            totals[kind] += time.monotonic() - started

    DuckDbSqlClient.execute_sql = timed  # type: ignore[method-assign]
    return totals


def child(args: dict[str, Any]) -> dict[str, Any]:
    """One backfill with the variant's settings (applied to this process only)."""
    from bench import compare_children
    from cargo_elt.pipelines import duckdb_load

    variant = Variant(**args.pop("variant"))
    if variant.merge_slots is not None:
        duckdb_load.MERGE_SLOTS = variant.merge_slots
    if variant.threads is not None:
        threads = variant.threads
        duckdb_load.merge_threads = lambda cores=None, merges=1: threads
    if variant.memory_limit is not None:
        limit = variant.memory_limit
        duckdb_load.auto_memory_limit = lambda step_rows, memory=None: limit

    statements = _time_merge_statements()
    sampler = _PhaseSampler()
    seconds = {"extract": 0.0, "load": 0.0}
    timed = compare_children._PhasesTimed

    def run(self: Any, data: Any, refresh: Any = None) -> Any:
        started = time.monotonic()
        sampler.phase = "extract"
        self.pipeline.extract(data, **({"refresh": refresh} if refresh else {}))
        self.extract_seconds += time.monotonic() - started
        seconds["extract"] += time.monotonic() - started
        sampler.phase = "load"
        loading = time.monotonic()
        self.pipeline.normalize()
        info = self.pipeline.load()
        info.raise_on_failed_jobs()
        seconds["load"] += time.monotonic() - loading
        sampler.phase = "between"
        return info

    timed.run = run  # type: ignore[method-assign]
    with sampler:
        result = compare_children.run_cargo(args)
    result.pop("tables", None)
    result.update(
        {
            "extract_peak_rss_mb": sampler.peaks.get("extract", float("nan")),
            "load_peak_rss_mb": sampler.peaks.get("load", float("nan")),
            "load_seconds": seconds["load"],
            "merge_statement_seconds": statements,
        }
    )
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", default="big")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"of: {', '.join(VARIANTS)}")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.child:
        print(json.dumps(child(json.loads(sys.stdin.read()))))
        return
    names = [n.strip() for n in options.variants.split(",") if n.strip()]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant(s) {', '.join(unknown)}; known: {', '.join(VARIANTS)}")
    print(f"DuckDB load settings at {options.scale}, one backfill each (peak RSS: whole process, MB)", flush=True)
    print(
        f"{'variant':<18}{'slots':>6}{'threads':>8}{'limit':>8}{'peak':>7}{'extract':>9}{'load':>7}"
        f"{'extract s':>11}{'load s':>8}{'e2e/extract':>13}   merge statements s (check, delete, insert)"
    )
    with emulator_process(options.scale, via_cli=False) as base_url:
        for name in names:
            work = scratch_dir("cargo-load-settings-")
            try:
                result = run_child(CHILD, _args(base_url, work, VARIANTS[name]), options=["--child"])
            finally:
                shutil.rmtree(work, ignore_errors=True)
            p = result.payload
            if "error" in p:
                print(f"{name:<18} error: {p['error'][:300]}")
                continue
            variant = VARIANTS[name]
            print(
                f"{name:<18}{variant.merge_slots or 'auto'!s:>6}{variant.threads or 'auto'!s:>8}"
                f"{p['duckdb_memory_limit']:>8}{result.peak_rss_mb:>7.0f}{p['extract_peak_rss_mb']:>9.0f}"
                f"{p['load_peak_rss_mb']:>7.0f}{p['extract_seconds']:>11.1f}{p['load_seconds']:>8.1f}"
                f"{p['extract_seconds'] / p['total_seconds']:>13.2f}   "
                + ", ".join(f"{v:.1f}" for v in p["merge_statement_seconds"].values()),
                flush=True,
            )


def _args(base_url: str, work: Path, variant: Variant) -> dict[str, Any]:
    return {
        "base_url": base_url,
        "token": BENCH_TOKEN,
        "database": str(work / "a_cargo.duckdb"),
        "pipelines_dir": str(work / "pipelines"),
        "start_date": START_DATE,
        "concurrency": 4,
        "variant": dict(vars(variant)),
    }


if __name__ == "__main__":
    main()
