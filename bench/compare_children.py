"""The four measured approaches of ``bench.compare``, each run as its own child process.

``python -m bench.compare_children`` reads JSON args (from stdin, or from the file named by its
first argument, which is how a profiler wraps it) and prints one JSON object on its last line,
with its own peak RSS. Programs:

* ``cargo``: cargo-elt's source through dlt into DuckDB (a backfill, or a no-op incremental sync when
  run again on the same pipeline directory);
* ``restapi``: dlt's generic ``rest_api`` source over ``runs/list`` and ``spans/list``, offset paging
  at the largest page the API accepts, into DuckDB (time-capped with dlt's own ``add_limit``);
* ``naive``: a query-execute loop, ``SELECT ... ORDER BY <time, key> LIMIT 10000 OFFSET n`` per
  table, row dicts yielded to dlt into DuckDB (time-capped);
* ``ceiling``: given data queries fetched with httpx at the same concurrency, bodies thrown away
  (``bench.children.run_raw``).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from typing import Any

from bench.harness import peak_rss_mb

BENCH_DUCKDB_MEMORY_LIMIT = "auto"
"""(a) loads as ``cargo-elt sync`` does with no flag: ``--duckdb-memory-limit auto`` (sized from the
step and the machine), in steps of ``DEFAULT_STEP_ROWS`` rows or ``DEFAULT_STEP_SECONDS`` seconds."""

DISK_SAMPLE_SECONDS = 1.0
"""How often the temporary disk of (a) is measured (dlt's load packages and DuckDB's spill and WAL)."""

PAGE_ROWS = 10_000
"""The query endpoint's result cap: the naive loop's page."""


def _pipeline(args: dict[str, Any], name: str, credentials: Any = None, destination: Any = None) -> Any:
    import dlt

    make = destination if destination is not None else dlt.destinations.duckdb
    return dlt.pipeline(
        pipeline_name=name,
        destination=make(credentials if credentials is not None else args["database"]),
        dataset_name="cargo",
        pipelines_dir=args["pipelines_dir"],
    )


def _run_phases(pipeline: Any, data: Any) -> dict[str, float]:
    """extract, normalize, load separately, with the times and the peak RSS after extract."""
    started, cpu_started = time.monotonic(), time.process_time()
    pipeline.extract(data)
    extracted, extract_cpu = time.monotonic(), time.process_time() - cpu_started
    extract_rss = peak_rss_mb()
    pipeline.normalize()
    pipeline.load().raise_on_failed_jobs()
    finished = time.monotonic()
    return {
        "extract_seconds": extracted - started,
        "extract_cpu_seconds": extract_cpu,
        "total_seconds": finished - started,
        "extract_peak_rss_mb": extract_rss,
    }


def _row_counts(pipeline: Any, tables: list[str]) -> dict[str, int]:
    """Rows normalized into each top-level table by the last run (nested tables not counted)."""
    info = pipeline.last_trace.last_normalize_info
    counts: dict[str, int] = info.row_counts if info is not None else {}
    return {t: int(counts.get(t, 0)) for t in tables}


class _PhasesTimed:
    """The pipeline as ``run_in_steps`` sees it, each ``run`` made of dlt's own three steps, timed.

    ``pipeline.run`` is extract, normalize and load; called one by one, the extract's wall and CPU
    seconds (the client's share of fetching: the server idles during loads) are summed over the steps.
    """

    def __init__(self, pipeline: Any) -> None:
        self.pipeline = pipeline
        self.extract_seconds = 0.0
        self.extract_cpu_seconds = 0.0

    @property
    def last_trace(self) -> Any:
        return self.pipeline.last_trace

    def run(self, data: Any, refresh: Any = None) -> Any:
        started, cpu_started = time.monotonic(), time.process_time()
        self.pipeline.extract(data, **({"refresh": refresh} if refresh else {}))
        self.extract_seconds += time.monotonic() - started
        self.extract_cpu_seconds += time.process_time() - cpu_started
        self.pipeline.normalize()
        info = self.pipeline.load()
        info.raise_on_failed_jobs()
        return info


class _DiskSampler:
    """Peak bytes of what a sync writes besides its DuckDB file: dlt's load packages (the pipeline's
    folder) and DuckDB's spill folder and WAL, sampled every ``DISK_SAMPLE_SECONDS``."""

    def __init__(self, database: str, pipeline_dir: str) -> None:
        self.paths = [pipeline_dir, f"{database}.tmp", f"{database}.wal"]
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def measure(self) -> int:
        total = 0
        for path in self.paths:
            if os.path.isfile(path):
                total += os.path.getsize(path)
            for root, _, files in os.walk(path):
                for name in files:
                    with contextlib.suppress(OSError):  # a file removed between the listing and the size
                        total += os.path.getsize(os.path.join(root, name))
        self.peak = max(self.peak, total)
        return total

    def _sample(self) -> None:
        while not self._stop.wait(DISK_SAMPLE_SECONDS):
            self.measure()

    def __enter__(self) -> _DiskSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.measure()


def run_cargo(args: dict[str, Any]) -> dict[str, Any]:
    """cargo-elt as ``cargo-elt sync`` runs it with no flag: a backfill from ``start_date`` in steps, or
    (same pipeline dir again) an incremental sync; into DuckDB with each fact file merged in place."""
    from cargo_elt.pipelines.duckdb_load import duckdb_destination, machine_cores
    from cargo_elt.pipelines.steps import run_in_steps
    from cargo_elt.pipelines.sync import duckdb_credentials
    from cargo_elt.source import FACT_TABLES, SyncStats, cargo_source
    from cargo_elt.source.memory import tune_allocator
    from cargo_elt.source.steps import DEFAULT_STEP_ROWS, DEFAULT_STEP_SECONDS

    tune_allocator()  # as `cargo-elt sync` does for its own process
    stats = SyncStats()
    step_rows = int(args.get("step_rows", DEFAULT_STEP_ROWS))
    memory_limit = args.get("duckdb_memory_limit", BENCH_DUCKDB_MEMORY_LIMIT)
    credentials = duckdb_credentials(args["database"], memory_limit, step_rows)
    pipeline = _PhasesTimed(_pipeline(args, "bench_cargo", credentials, duckdb_destination))
    source = cargo_source(
        api_token=args["token"],
        base_url=args["base_url"],
        start_date=args.get("start_date", "2026-01-01"),
        tables=args.get("tables") or list(FACT_TABLES),  # the facts: what (b), (c) and (d) read too
        concurrency=args.get("concurrency", 4),
        step_rows=step_rows,
        step_seconds=float(args.get("step_seconds", DEFAULT_STEP_SECONDS)),
        stats=stats,
    )
    result: dict[str, Any] = {"duckdb_memory_limit": (credentials.global_config or {}).get("memory_limit", "none")}
    started, cpu_started = time.monotonic(), time.process_time()
    steps: Any = None
    with _DiskSampler(args["database"], os.path.join(args["pipelines_dir"], "bench_cargo")) as disk:
        try:
            steps = run_in_steps(pipeline, source, stats)
        except Exception as exc:  # reported, not raised: the backfill check counts errors reaching the user
            result["error"] = f"{type(exc).__name__}: {exc}"[-2000:]
            result["traceback"] = traceback.format_exc()[-4000:]
    result.update(
        {
            "extract_seconds": pipeline.extract_seconds,
            "extract_cpu_seconds": pipeline.extract_cpu_seconds,
            "total_seconds": time.monotonic() - started,
            "cpu_seconds": time.process_time() - cpu_started,
            "cores": machine_cores(),
            "steps": steps.steps if steps is not None else stats.steps_committed,
            "temp_disk_peak_bytes": disk.peak,
            "duckdb_file_bytes": os.path.getsize(args["database"]) if os.path.exists(args["database"]) else 0,
        }
    )
    result["tables"] = {
        name: {
            "rows": s.rows,
            "data_queries": s.data_queries,
            "planning_queries": s.planning_queries,
            "retries": s.retries,
            "splits": s.splits,
            "seconds": s.seconds,
        }
        for name, s in stats.items()
    }
    result["rows"] = sum(s.rows for s in stats.values())
    result["peak_rss_mb"] = peak_rss_mb()
    return result


def run_restapi(args: dict[str, Any]) -> dict[str, Any]:
    """dlt's ``rest_api`` source as a first-time user would configure it, capped at ``cap_seconds``."""
    from dlt.sources.rest_api import rest_api_source

    config: Any = {
        "client": {
            "base_url": args["base_url"].rstrip("/") + "/v1/",
            "auth": {"type": "bearer", "token": args["token"]},
            "paginator": {
                "type": "offset",
                "limit": args["page_size"],
                "offset_body_path": "offset",
                "limit_body_path": "limit",
                "total_path": "count",
            },
        },
        "resource_defaults": {"endpoint": {"method": "POST"}},
        "resources": [
            {
                "name": "runs",
                "endpoint": {"path": "orchestration/runs/list", "json": {}, "data_selector": "runs"},
            },
            {
                "name": "spans",
                "endpoint": {
                    "path": "orchestration/spans/list",
                    "json": {"executionStartedAfter": args["start_iso"]},
                    "data_selector": "spans",
                },
            },
        ],
    }
    source = rest_api_source(config)
    cap_rows = args.get("cap_rows")
    if args.get("cap_seconds") or cap_rows:
        # pages per resource: the row cap is shared by the two resources
        pages = math.ceil(int(cap_rows) / args["page_size"] / 2) if cap_rows else None
        source.add_limit(max_items=pages, max_time=float(args["cap_seconds"]) if args.get("cap_seconds") else None)
    pipeline = _pipeline(args, "bench_restapi")
    result: dict[str, Any] = dict(_run_phases(pipeline, source))
    result["table_rows"] = _row_counts(pipeline, ["runs", "spans"])
    result["rows"] = sum(result["table_rows"].values())
    result["peak_rss_mb"] = peak_rss_mb()
    return result


def run_naive(args: dict[str, Any]) -> dict[str, Any]:
    """A naive LIMIT/OFFSET loop over the query endpoint, dicts into dlt, capped at ``cap_seconds``."""
    import dlt
    import httpx

    from cargo_elt.source.specs import TABLE_SPECS

    url = args["base_url"].rstrip("/") + "/v1/orchestration/query"
    cap = args.get("cap_seconds")
    cap_rows = args.get("cap_rows")
    read = [0]
    client = httpx.Client(headers={"authorization": f"Bearer {args['token']}"}, timeout=120)
    errors: list[str] = []
    opened: list[float] = []

    def table_pages(name: str) -> Any:
        spec = TABLE_SPECS[name]
        columns = ", ".join(spec.column_names)
        order = ", ".join(spec.sort_key)

        def pages() -> Iterator[list[dict[str, Any]]]:
            if not opened:
                opened.append(time.monotonic())
            offset = 0
            while (cap is None or time.monotonic() - opened[0] < cap) and (cap_rows is None or read[0] < cap_rows):
                sql = f"SELECT {columns} FROM {name} ORDER BY {order} LIMIT {PAGE_ROWS} OFFSET {offset}"
                response = client.post(url, json={"query": sql})
                if response.status_code != 200:
                    errors.append(f"{name} at offset {offset}: HTTP {response.status_code} {response.text[:300]}")
                    return
                rows: list[dict[str, Any]] = response.json()["rows"]
                read[0] += len(rows)
                if rows:
                    yield rows
                if len(rows) < PAGE_ROWS:
                    return
                offset += PAGE_ROWS

        return dlt.resource(pages, name=name)

    tables: list[str] = args["tables"]
    pipeline = _pipeline(args, "bench_naive")
    with client:
        result: dict[str, Any] = dict(_run_phases(pipeline, [table_pages(t) for t in tables]))
    result["table_rows"] = _row_counts(pipeline, tables)
    result["rows"] = sum(result["table_rows"].values())
    result["errors"] = errors
    result["peak_rss_mb"] = peak_rss_mb()
    return result


def run_ceiling(args: dict[str, Any]) -> dict[str, Any]:
    """The same data queries as cargo-elt's run, fetched with httpx and thrown away."""
    from bench.children import run_raw

    return run_raw(args)


PROGRAMS = {"cargo": run_cargo, "restapi": run_restapi, "naive": run_naive, "ceiling": run_ceiling}


def main() -> None:
    """Read the JSON args, run the named program, print its JSON result."""
    if len(sys.argv) > 1:
        with open(sys.argv[1]) as handle:
            args = json.load(handle)
    else:
        args = json.loads(sys.stdin.read())
    program = PROGRAMS[args.pop("program")]
    print(json.dumps(program(args)))


if __name__ == "__main__":
    main()
