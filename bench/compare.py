"""cargo-elt against what a user would use instead, on the same emulator data (issue 6).

Run: ``python -m bench.compare --scales small,medium,big --repeat 3``. Per scale, one emulator
serves every approach, each in its own child process (so peak RSS is per approach):

* (a) cargo-elt: full backfill into DuckDB, then a no-op incremental sync on the same pipeline;
* (b) dlt's generic ``rest_api`` source over ``runs/list`` and ``spans/list`` (offset paging at the
  largest page the API takes, 100 rows), into DuckDB;
* (c) a naive loop over ``orchestration/query``: ``SELECT ... ORDER BY ... LIMIT 10000 OFFSET n``
  per table, row dicts into dlt, into DuckDB;
* (d) the ceiling: exactly the data queries (a) issued (read back from the emulator's query log),
  fetched with httpx at (a)'s concurrency and thrown away.

(b) and (c) are slow by nature and are capped (``--cap-rows``, default 40,000 rows, and
``--cap-seconds``; dlt's ``add_limit`` for (b)); their rows/s is measured over the capped prefix of
the data, where offset paging is at its fastest, so the ratios a/b and a/c are upper-bounded for
(b) and (c), i.e. lower bounds for cargo-elt's advantage. The latency of one page at offset 0 and at the
deepest offset is probed to show how offset paging slows down further in. All four write the
DuckDB file the same way (``append`` for b and c, ``merge`` for a), which also favours b and c.

Ratios are computed per repeat (the approaches run back to back) and their median is printed. Also:
``--backfill-large`` (a spans-only cargo-elt backfill of the ``large`` scale: rows, wall, peak RSS,
errors; ``--latency S`` adds S seconds to every API request, as a remote Cargo would) and ``--profile
SCALE`` (py-spy over one cargo-elt backfill; prints the top functions).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench.harness import BENCH_TOKEN, ChildResult, add_latency, emulator_process, median, run_child, scratch_dir

CHILD = "bench.compare_children"
START_DATE = "2026-01-01"
REST_PAGE_SIZE = 100
"""The largest ``limit`` runs/list and spans/list accept without ``traceUuid`` (emulator/api/limits.py)."""

TARGET_VS_REST = 10.0
TARGET_VS_NAIVE = 3.0
TARGET_VS_CEILING = 0.7
TARGET_QUERY_RATIO = 1.10
TARGET_PLANNING_SHARE = 0.02
TARGET_RSS_MB = 500.0
TARGET_RSS_FLAT = 1.1
TARGET_NOOP_QUERIES = 1
TARGET_E2E_VS_EXTRACT = 0.85
"""End to end over extract-only throughput of (a), in the same run (issue 16, "Load as fast as extract")."""
TARGET_TEMP_DISK = 2.0
"""Peak temporary disk (dlt's packages, DuckDB's spill and WAL) over the final DuckDB file."""
TARGET_NOOP_RSS_MB = 300.0
TARGET_LARGE_RSS_MB = 1000.0
"""Peak RSS of the 22 M-span backfill (``--backfill-large``), default settings."""
TARGET_NOOP_SECONDS = 5.0
CARGO_TABLES = ["runs", "batches", "spans", "records"]


@dataclass
class Measured:
    """One approach in one repeat: the child's report plus the emulator's request count."""

    rows: int
    wall: float
    requests: int
    rss: float
    extract: float = float("nan")
    payload: dict[str, Any] = field(default_factory=dict)
    server_cpu: float = float("nan")
    """The emulator's CPU seconds while this approach ran (its extract: the server idles during loads)."""
    client_cpu: float = float("nan")
    """The client's CPU seconds during its extract (the whole fetch for the ceiling)."""

    @property
    def rate(self) -> float:
        return self.rows / self.wall if self.wall > 0 else float("nan")

    @property
    def extract_rate(self) -> float:
        return self.rows / self.extract if self.extract > 0 else float("nan")


@dataclass
class Repeat:
    """All approaches of one repeat."""

    cargo: Measured
    noop: Measured
    rest: Measured
    naive: Measured
    ceiling: Measured


# -- emulator admin --------------------------------------------------------------------------------


def _reset_log(base_url: str) -> float:
    """Clear the emulator's query log; returns its CPU seconds so far."""
    response = httpx.delete(f"{base_url}/_emulator/queries", timeout=60)
    response.raise_for_status()
    return float(response.json()["cpu_seconds"])


def _log(base_url: str) -> dict[str, Any]:
    answer: dict[str, Any] = httpx.get(f"{base_url}/_emulator/queries", timeout=120).json()
    return answer


def _requests(log: dict[str, Any]) -> int:
    return sum(int(n) for path, n in log["requests"].items() if path.startswith("/v1/"))


def _data_queries(log: dict[str, Any]) -> list[str]:
    """(a)'s data queries: every served query but the planning histograms (``is_histogram_query``)."""
    from cargo_elt.source.planner import is_histogram_query

    return [q["sql"] for q in log["queries"] if q["outcome"] == "ok" and not is_histogram_query(q["sql"])]


# -- the approaches --------------------------------------------------------------------------------


def _child(args: dict[str, Any]) -> ChildResult:
    return run_child(CHILD, args)


def _cargo(
    base_url: str,
    work: Path,
    concurrency: int,
    tables: list[str] = CARGO_TABLES,
    duckdb_memory_limit: str | None = None,
) -> tuple[Measured, list[str]]:
    server_cpu = _reset_log(base_url)
    extra = {} if duckdb_memory_limit is None else {"duckdb_memory_limit": duckdb_memory_limit}
    result = _child(
        {
            "program": "cargo",
            "base_url": base_url,
            "token": BENCH_TOKEN,
            "database": str(work / "a_cargo.duckdb"),
            "pipelines_dir": str(work / "pipelines"),
            "start_date": START_DATE,
            "concurrency": concurrency,
            "tables": tables,
            **extra,
        }
    )
    log = _log(base_url)
    p = result.payload
    measured = Measured(
        rows=int(p["rows"]),
        wall=float(p.get("total_seconds", result.seconds)),
        requests=_requests(log),
        rss=result.peak_rss_mb,
        extract=float(p.get("extract_seconds", float("nan"))),
        payload=p,
        server_cpu=float(log["cpu_seconds"]) - server_cpu,
        client_cpu=float(p.get("extract_cpu_seconds", float("nan"))),
    )
    return measured, _data_queries(log)


def _ceiling(base_url: str, queries: list[str], concurrency: int, rows: int) -> Measured:
    server_cpu = _reset_log(base_url)
    result = _child(
        {
            "program": "ceiling",
            "base_url": base_url,
            "token": BENCH_TOKEN,
            "queries": queries,
            "concurrency": concurrency,
        }
    )
    seconds = float(result.payload["seconds"])
    log = _log(base_url)
    return Measured(
        rows,
        seconds,
        _requests(log),
        result.peak_rss_mb,
        seconds,
        result.payload,
        server_cpu=float(log["cpu_seconds"]) - server_cpu,
        client_cpu=float(result.payload["cpu_seconds"]),
    )


def _capped(base_url: str, program: str, work: Path, cap: float, cap_rows: int) -> Measured:
    _reset_log(base_url)
    result = _child(
        {
            "program": program,
            "base_url": base_url,
            "token": BENCH_TOKEN,
            "database": str(work / f"bench_{program}.duckdb"),
            "pipelines_dir": str(work / f"pipelines-{program}"),
            "cap_seconds": cap,
            "cap_rows": cap_rows,
            "page_size": REST_PAGE_SIZE,
            "start_iso": f"{START_DATE}T00:00:00.000Z",
            "tables": CARGO_TABLES,
        }
    )
    p = result.payload
    return Measured(
        int(p["rows"]),
        float(p["total_seconds"]),
        _requests(_log(base_url)),
        result.peak_rss_mb,
        p["extract_seconds"],
        p,
    )


def _probe(base_url: str) -> dict[str, float]:
    """Seconds of one page at offset 0 and at the deepest offset: how offset paging degrades."""
    headers = {"authorization": f"Bearer {BENCH_TOKEN}"}
    probes: dict[str, float] = {}
    with httpx.Client(base_url=f"{base_url}/v1/", headers=headers, timeout=300) as client:
        rest = {
            "runs/list": {},
            "spans/list": {"executionStartedAfter": f"{START_DATE}T00:00:00.000Z"},
        }
        for path, body in rest.items():
            total = int(client.post(f"orchestration/{path}", json={**body, "limit": 1}).json()["count"])
            for label, offset in (("first", 0), ("last", max(0, total - REST_PAGE_SIZE))):
                began = time.perf_counter()
                client.post(f"orchestration/{path}", json={**body, "limit": REST_PAGE_SIZE, "offset": offset})
                probes[f"(b) {path} {label} page (offset {offset:,})"] = time.perf_counter() - began
        from cargo_elt.source.specs import TABLE_SPECS

        spec = TABLE_SPECS["spans"]
        total = int(
            client.post("orchestration/query", json={"query": "SELECT count() AS n FROM spans"}).json()["rows"][0]["n"]
        )
        for label, offset in (("first", 0), ("last", max(0, total - 10_000))):
            sql = (
                f"SELECT {', '.join(spec.column_names)} FROM spans ORDER BY {', '.join(spec.sort_key)} "
                f"LIMIT 10000 OFFSET {offset}"
            )
            began = time.perf_counter()
            response = client.post("orchestration/query", json={"query": sql})
            elapsed = time.perf_counter() - began
            key = f"(c) spans {label} page (offset {offset:,})"
            probes[key] = elapsed if response.status_code == 200 else float("nan")
    return probes


def _run_repeat(base_url: str, concurrency: int, cap: float, cap_rows: int) -> Repeat:
    work = scratch_dir("cargo-compare-")
    try:
        cargo, queries = _cargo(base_url, work, concurrency)
        if "error" in cargo.payload:
            raise RuntimeError(f"cargo-elt backfill failed: {cargo.payload['error']}")
        noop, _ = _cargo(base_url, work, concurrency)
        ceiling = _ceiling(base_url, queries, concurrency, cargo.rows)
        rest = _capped(base_url, "restapi", work, cap, cap_rows)
        naive = _capped(base_url, "naive", work, cap, cap_rows)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return Repeat(cargo, noop, rest, naive, ceiling)


# -- report ----------------------------------------------------------------------------------------


def memory_and_load(measured: Measured) -> dict[str, Any]:
    """The figures of docs/PERFORMANCE.md "Memory and load" for one cargo-elt backfill (default settings)."""
    p = measured.payload
    file_bytes = int(p.get("duckdb_file_bytes", 0))
    temp = int(p.get("temp_disk_peak_bytes", 0))
    return {
        "peak_rss_mb": measured.rss,
        "duckdb_memory_limit": p.get("duckdb_memory_limit"),
        "e2e_over_extract": measured.rate / measured.extract_rate if measured.extract_rate > 0 else float("nan"),
        "e2e_overlapped_at_best": overlapped_at_best(measured),
        "steps": int(p.get("steps", 0)),
        "temp_disk_peak_bytes": temp,
        "duckdb_file_bytes": file_bytes,
        "temp_over_file": temp / file_bytes if file_bytes else float("nan"),
    }


def overlapped_at_best(measured: Measured) -> float:
    """End to end over extract if every load ran beside the next extract, bounded by this machine's CPU.

    The extract cannot end sooner than it did, and all the work (the client's CPU seconds over the
    whole sync, loads included, and the emulator's while it answered) cannot take less than its CPU
    seconds over the cores: where that is longer than the extract, no overlap of load and extract on
    this machine reaches an end-to-end time equal to the extract's. A bound, not a measurement of an
    overlapped load: it says how much of the gap a machine with the server elsewhere could close.
    """
    p = measured.payload
    cores = float(p.get("cores", 0) or 0)
    client = float(p.get("cpu_seconds", float("nan")))
    if not cores or measured.extract <= 0 or math.isnan(client) or math.isnan(measured.server_cpu):
        return float("nan")
    return measured.extract / max(measured.extract, (client + measured.server_cpu) / cores)


def print_memory_and_load(figures: dict[str, Any], rows: int) -> None:
    print(
        f"  peak RSS (whole process, default settings: DuckDB memory_limit {figures['duckdb_memory_limit']}) "
        f"{figures['peak_rss_mb']:,.0f} MB"
    )
    print(f"  end to end / extract throughput   {figures['e2e_over_extract']:.2f}")
    print(
        f"  the same if every load ran beside the next extract, at best (this machine's CPU: client and "
        f"server CPU seconds / cores) {figures.get('e2e_overlapped_at_best', float('nan')):.2f}"
    )
    print(f"  steps committed                   {figures['steps']} ({rows:,} rows)")
    print(
        f"  temporary disk, peak              {figures['temp_disk_peak_bytes'] / 1e6:,.0f} MB = "
        f"{figures['temp_over_file']:.2f} x the final DuckDB file ({figures['duckdb_file_bytes'] / 1e6:,.0f} MB)"
    )


def _cpu_split(repeats: list[Repeat]) -> dict[str, dict[str, float]]:
    """Medians of client and server CPU seconds for (a)'s extract and (d), and the cores both kept busy.

    On this machine the emulator and the client share two cores: whatever CPU the client spends
    decoding and writing is taken from the server, so this split is what bounds a/d here.
    """
    split: dict[str, dict[str, float]] = {}
    for label, measured in (("(a) extract", [r.cargo for r in repeats]), ("(d) ceiling", [r.ceiling for r in repeats])):
        split[label] = {
            "client": median([m.client_cpu for m in measured]),
            "server": median([m.server_cpu for m in measured]),
            "busy": median([(m.client_cpu + m.server_cpu) / m.extract for m in measured]),
        }
    return split


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def _report_scale(
    scale: str, repeats: list[Repeat], start_seconds: float, probes: dict[str, float], cap: float, cap_rows: int
) -> dict[str, Any]:
    def med(values: list[float]) -> float:
        return median(values)

    rows = {
        "(a) cargo-elt": [r.cargo for r in repeats],
        "(b) dlt rest_api": [r.rest for r in repeats],
        "(c) naive LIMIT/OFFSET": [r.naive for r in repeats],
        "(d) ceiling (httpx)": [r.ceiling for r in repeats],
        "(a) no-op incremental": [r.noop for r in repeats],
    }
    vs_rest = med([r.cargo.rate / r.rest.rate for r in repeats])
    vs_naive = med([r.cargo.rate / r.naive.rate for r in repeats])
    vs_rest_extract = med([r.cargo.extract_rate / r.rest.extract_rate for r in repeats])
    vs_naive_extract = med([r.cargo.extract_rate / r.naive.extract_rate for r in repeats])
    vs_ceiling = med([r.ceiling.wall / r.cargo.extract for r in repeats])
    vs_ceiling_e2e = med([r.ceiling.wall / r.cargo.wall for r in repeats])
    print(
        f"\n== scale {scale}: {len(repeats)} repeat(s), medians; emulator start (generation) {start_seconds:.0f} s; "
        f"(b) and (c) capped at {cap_rows:,} rows or {cap:.0f} s of extraction ==\n"
    )
    print(
        f"{'approach':<24}{'rows':>11}{'wall s':>9}{'rows/s':>10}{'extract s':>11}{'rows/s':>10}"
        f"{'requests':>10}{'peak RSS MB':>13}"
    )
    for label, values in rows.items():
        print(
            f"{label:<24}{int(med([m.rows for m in values])):>11,}{med([m.wall for m in values]):>9.2f}"
            f"{med([m.rate for m in values]):>10,.0f}{med([m.extract for m in values]):>11.2f}"
            f"{med([m.extract_rate for m in values]):>10,.0f}{int(med([m.requests for m in values])):>10,}"
            f"{med([m.rss for m in values]):>13,.0f}"
        )
    cargo_extract = med([r.cargo.extract for r in repeats])
    print(
        f"\n(a) wall = extract + normalize + load into DuckDB; its extract alone: {cargo_extract:.2f} s "
        f"({med([r.cargo.rows / r.cargo.extract for r in repeats]):,.0f} rows/s)"
    )
    print(
        f"(b), (c): rows/s over the first {cap_rows:,} rows only (offset paging is fastest there): "
        "a/b, a/c are lower bounds"
    )
    print(
        f"ratios (median of per-repeat ratios), end to end: a/b {vs_rest:.1f}x   a/c {vs_naive:.1f}x   "
        f"a/d {vs_ceiling_e2e:.2f}"
    )
    print(
        f"ratios, extract only:                            a/b {vs_rest_extract:.1f}x   a/c {vs_naive_extract:.1f}x   "
        f"a/d {vs_ceiling:.2f}"
    )
    cpu = _cpu_split(repeats)
    print(
        "\nCPU seconds while fetching (client = the approach's process, server = the emulator's; "
        "busy = both over the wall, of 2 cores):"
    )
    for label in ("(a) extract", "(d) ceiling"):
        c = cpu[label]
        print(f"  {label:<12} client {c['client']:>8.1f}   server {c['server']:>8.1f}   busy {c['busy']:.2f} cores")
    if probes:
        print("\none page's latency, shallow vs deep offset:")
        for key, seconds in probes.items():
            print(f"  {key:<52}{seconds * 1000:>9,.0f} ms")

    tables = repeats[0].cargo.payload["tables"]
    data = sum(int(t["data_queries"]) for t in tables.values())
    planning = sum(int(t["planning_queries"]) for t in tables.values())
    ideal = sum(max(1, math.ceil(int(t["rows"]) / 10_000)) for t in tables.values())
    noop_tables = [r.noop.payload["tables"] for r in repeats]
    noop_max_queries = max(int(t["data_queries"]) + int(t["planning_queries"]) for n in noop_tables for t in n.values())
    noop_wall = med([r.noop.wall for r in repeats])
    rss = med([r.cargo.rss for r in repeats])
    noop_rss = med([r.noop.rss for r in repeats])
    load = [memory_and_load(r.cargo) for r in repeats]
    figures = {k: med([f[k] for f in load]) if k != "duckdb_memory_limit" else load[0][k] for k in load[0]}
    print("\nMemory and load ((a), medians):")
    print_memory_and_load(figures, int(med([r.cargo.rows for r in repeats])))
    print(f"  no-op sync: peak RSS {noop_rss:,.0f} MB, at most {noop_max_queries} queries per table")
    print("\ntargets")
    checks = [
        (f"throughput a/b >= {TARGET_VS_REST:.0f}x", f"{vs_rest:.1f}x", vs_rest >= TARGET_VS_REST),
        (f"throughput a/c >= {TARGET_VS_NAIVE:.0f}x", f"{vs_naive:.1f}x", vs_naive >= TARGET_VS_NAIVE),
        (f"extract a/d >= {TARGET_VS_CEILING}", f"{vs_ceiling:.2f}", vs_ceiling >= TARGET_VS_CEILING),
        (
            f"data queries <= {TARGET_QUERY_RATIO} x ideal",
            f"{data} / {ideal} = {data / ideal:.2f}",
            data <= TARGET_QUERY_RATIO * ideal,
        ),
        (
            f"planning queries <= {TARGET_PLANNING_SHARE:.0%} of data",
            f"{planning} / {data} = {planning / max(data, 1):.1%}",
            planning <= TARGET_PLANNING_SHARE * data,
        ),
        (f"peak RSS < {TARGET_RSS_MB:.0f} MB", f"{rss:.0f} MB", rss < TARGET_RSS_MB),
        (
            f"no-op sync <= {TARGET_NOOP_QUERIES} queries/table",
            f"max {noop_max_queries}",
            noop_max_queries <= TARGET_NOOP_QUERIES,
        ),
        (f"no-op sync < {TARGET_NOOP_SECONDS:.0f} s", f"{noop_wall:.2f} s", noop_wall < TARGET_NOOP_SECONDS),
        (f"no-op sync peak RSS <= {TARGET_NOOP_RSS_MB:.0f} MB", f"{noop_rss:.0f} MB", noop_rss <= TARGET_NOOP_RSS_MB),
        (
            f"end to end >= {TARGET_E2E_VS_EXTRACT} x extract",
            f"{figures['e2e_over_extract']:.2f}",
            figures["e2e_over_extract"] >= TARGET_E2E_VS_EXTRACT,
        ),
        (
            f"temporary disk <= {TARGET_TEMP_DISK:.0f} x DuckDB file",
            f"{figures['temp_over_file']:.2f}",
            figures["temp_over_file"] <= TARGET_TEMP_DISK,
        ),
    ]
    for name, value, ok in checks:
        print(f"  {_verdict(ok)}  {name:<40}{value}")
    print("\nper table (repeat 1): rows, data queries, ideal, planning queries, no-op queries")
    for name, t in tables.items():
        n = noop_tables[0].get(name, {})
        print(
            f"  {name:<9}{int(t['rows']):>11,}{int(t['data_queries']):>7}"
            f"{max(1, math.ceil(int(t['rows']) / 10_000)):>7}"
            f"{int(t['planning_queries']):>5}{int(n.get('data_queries', 0)) + int(n.get('planning_queries', 0)):>5}"
        )
    naive_errors = [e for r in repeats for e in r.naive.payload.get("errors", [])]
    if naive_errors:
        print(f"(c) errors seen: {naive_errors[:3]}")
    return {
        "scale": scale,
        "rows": {label: med([m.rows for m in v]) for label, v in rows.items()},
        "wall": {label: med([m.wall for m in v]) for label, v in rows.items()},
        "rate": {label: med([m.rate for m in v]) for label, v in rows.items()},
        "requests": {label: med([m.requests for m in v]) for label, v in rows.items()},
        "rss": {label: med([m.rss for m in v]) for label, v in rows.items()},
        "extract_rate": {label: med([m.extract_rate for m in v]) for label, v in rows.items()},
        "extract": {label: med([m.extract for m in v]) for label, v in rows.items()},
        "ratios": {
            "a/b": vs_rest,
            "a/c": vs_naive,
            "a/d": vs_ceiling,
            "a/d_e2e": vs_ceiling_e2e,
            "a/b_extract": vs_rest_extract,
            "a/c_extract": vs_naive_extract,
        },
        "cargo_extract_s": cargo_extract,
        "cpu": cpu,
        "queries": {"data": data, "planning": planning, "ideal": ideal, "noop_max_per_table": noop_max_queries},
        "probes": probes,
        "tables": tables,
        "noop_tables": noop_tables[0],
        "memory_and_load": figures,
        "noop_rss": noop_rss,
        "checks": [{"target": n, "value": v, "ok": ok} for n, v, ok in checks],
        "start_seconds": start_seconds,
    }


def _header(**figures: Any) -> dict[str, Any]:
    """When, where and how a benchmark ran: written with its figures, so what renders them (the
    README's performance section, ``bench.readme``) never retypes them."""
    return {
        "date": f"{datetime.now(UTC):%Y-%m-%d}",
        "cores": os.cpu_count(),
        "machine": platform.machine(),
        "command": "python -m bench.compare " + " ".join(sys.argv[1:]),
        **figures,
    }


def _compare(scales: list[str], repeat: int, concurrency: int, cap: float, cap_rows: int, out: Path | None) -> None:
    header = _header(concurrency=concurrency, repeats=repeat, cap_seconds=cap, cap_rows=cap_rows)
    print(
        f"cargo-elt vs alternatives, {header['date']}, {header['cores']} cores, {header['machine']}, "
        f"concurrency {concurrency}, repeats {repeat}",
        flush=True,
    )
    reports = []
    for scale in scales:
        began = time.monotonic()
        with emulator_process(scale, via_cli=False) as base_url:
            start_seconds = time.monotonic() - began
            repeats = []
            for attempt in range(repeat):
                one = _run_repeat(base_url, concurrency, cap, cap_rows)
                repeats.append(one)
                print(
                    f"{scale} run {attempt + 1}: a {one.cargo.wall:.1f} s ({one.cargo.rows:,} rows), "
                    f"no-op {one.noop.wall:.2f} s, d {one.ceiling.wall:.1f} s, "
                    f"b {one.rest.rows:,} rows in {one.rest.wall:.1f} s, "
                    f"c {one.naive.rows:,} rows in {one.naive.wall:.1f} s",
                    flush=True,
                )
            probes = _probe(base_url)
        reports.append(_report_scale(scale, repeats, start_seconds, probes, cap, cap_rows))
    rss = {r["scale"]: r["rss"]["(a) cargo-elt"] for r in reports}
    flat_pairs = [
        (small, big) for small, big in (("medium", "big"), ("medium", "large")) if small in rss and big in rss
    ]
    for small, big in flat_pairs:
        ratio = rss[big] / rss[small]
        print(
            f"\n{_verdict(ratio <= TARGET_RSS_FLAT)}  peak RSS flat: {big} / {small} = "
            f"{rss[big]:.0f} / {rss[small]:.0f} MB "
            f"= {ratio:.2f} (target <= {TARGET_RSS_FLAT})"
        )
    if out is not None:
        out.write_text(json.dumps({"run": header, "scales": reports}, indent=2, default=str))


# -- the 20 M-span backfill and the profile -------------------------------------------------------


def _backfill_large(
    concurrency: int, scale: str, out: Path | None, duckdb_memory_limit: str, latency: float = 0.0
) -> None:
    began = time.monotonic()
    with emulator_process(scale, via_cli=False) as base_url:
        start_seconds = time.monotonic() - began
        count = httpx.post(
            f"{base_url}/v1/orchestration/spans/count",
            json={"executionStartedAfter": f"{START_DATE}T00:00:00.000Z"},
            headers={"authorization": f"Bearer {BENCH_TOKEN}"},
            timeout=300,
        ).json()["count"]
        print(f"scale {scale}: emulator up in {start_seconds:.0f} s, {count:,} spans; spans-only backfill", flush=True)
        if latency > 0:  # a remote Cargo's time per request (bench.backfill_workers's --latency)
            add_latency(base_url, latency)
            print(f"every API request answered after {latency:g} s more (the emulator's slow fault)", flush=True)
        work = scratch_dir("cargo-backfill-")
        try:
            # as `cargo-elt sync` with no flag (--duckdb-memory-limit auto) unless asked
            measured, _ = _cargo(base_url, work, concurrency, tables=["spans"], duckdb_memory_limit=duckdb_memory_limit)
            db_bytes = (work / "a_cargo.duckdb").stat().st_size if (work / "a_cargo.duckdb").exists() else 0
        finally:
            shutil.rmtree(work, ignore_errors=True)
    p = measured.payload
    t = p["tables"].get("spans", {})
    print(f"\nspans backfill, scale {scale}, concurrency {concurrency}, added latency {latency:g} s")
    print(f"  rows             {measured.rows:,} (server count {count:,})")
    print(f"  wall             {measured.wall:.1f} s (extract {measured.extract:.1f} s), {measured.rate:,.0f} rows/s")
    print(
        f"  queries          {t.get('data_queries')} data (ideal {math.ceil(measured.rows / 10_000)}), "
        f"{t.get('planning_queries')} planning, {t.get('splits')} splits, {t.get('retries')} retries"
    )
    print(
        f"  peak RSS         {measured.rss:.0f} MB "
        f"(target <= {TARGET_LARGE_RSS_MB:,.0f} MB: {_verdict(measured.rss <= TARGET_LARGE_RSS_MB)})"
    )
    print(f"  DuckDB file      {db_bytes / 1e9:.2f} GB (memory_limit {p.get('duckdb_memory_limit')})")
    print(f"  error            {p.get('error', 'none')}")
    figures = memory_and_load(measured)
    print("\nMemory and load:")
    print_memory_and_load(figures, measured.rows)
    for name, ok in (
        (f"end to end >= {TARGET_E2E_VS_EXTRACT} x extract", figures["e2e_over_extract"] >= TARGET_E2E_VS_EXTRACT),
        (f"temporary disk <= {TARGET_TEMP_DISK:.0f} x DuckDB file", figures["temp_over_file"] <= TARGET_TEMP_DISK),
    ):
        print(f"  {_verdict(ok)}  {name}")
    if out is not None:
        out.write_text(
            json.dumps(
                {
                    "run": _header(
                        concurrency=concurrency, duckdb_memory_limit_option=duckdb_memory_limit, latency=latency
                    ),
                    "scale": scale,
                    "server_count": count,
                    "start_seconds": start_seconds,
                    "rss": measured.rss,
                    "wall": measured.wall,
                    "requests": measured.requests,
                    "memory_and_load": figures,
                    **p,
                },
                indent=2,
                default=str,
            )
        )


def _profile(scale: str, concurrency: int, out: Path | None, top: int) -> None:
    """py-spy over one cargo-elt backfill; the collapsed stacks are summarised by self and total time."""
    py_spy = shutil.which("py-spy")
    if py_spy is None:
        raise SystemExit("py-spy is not installed: pip install py-spy")
    with emulator_process(scale, via_cli=False) as base_url:
        work = scratch_dir("cargo-profile-")
        args_file = work / "args.json"
        args_file.write_text(
            json.dumps(
                {
                    "program": "cargo",
                    "base_url": base_url,
                    "token": BENCH_TOKEN,
                    "database": str(work / "a_cargo.duckdb"),
                    "pipelines_dir": str(work / "pipelines"),
                    "start_date": START_DATE,
                    "concurrency": concurrency,
                }
            )
        )
        collapsed = out or Path(tempfile.mkstemp(suffix=".txt", prefix="cargo-profile-")[1])
        command = [
            py_spy,
            "record",
            "--format",
            "raw",
            "--rate",
            "50",
            "--output",
            str(collapsed),
            "--",
            sys.executable,
            "-m",
            CHILD,
            str(args_file),
        ]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        shutil.rmtree(work, ignore_errors=True)
    self_time: Counter[str] = Counter()
    total_time: Counter[str] = Counter()
    samples = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = stack.split(";")
        samples += count
        self_time[frames[-1]] += count
        for frame in set(frames):
            total_time[frame] += count
    print(f"py-spy, scale {scale}: {samples} samples of non-idle threads (collapsed stacks in {collapsed})")
    print(f"\ntop {top} by self time")
    for frame, count in self_time.most_common(top):
        print(f"  {count / samples:6.1%}  {frame}")
    print(f"\ntop {top} by total time (inclusive)")
    for frame, count in total_time.most_common(top):
        print(f"  {count / samples:6.1%}  {frame}")


def main() -> None:
    """Parse the options and run the comparison, the large backfill or the profile."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scales", default="small,medium,big")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--cap-seconds", type=float, default=60.0, help="extraction time cap of (b) and (c)")
    parser.add_argument("--cap-rows", type=int, default=40_000, help="row cap of (b) and (c) (about: whole pages)")
    parser.add_argument("--backfill-large", action="store_true", help="spans-only backfill of the large scale")
    parser.add_argument("--backfill-scale", default="large")
    parser.add_argument(
        "--duckdb-memory-limit",
        default="auto",
        help="DuckDB memory_limit of --backfill-large: auto (the sync's default), none or a size",
    )
    parser.add_argument(
        "--latency",
        type=float,
        default=0.0,
        help="--backfill-large: seconds the emulator waits before each answer (a remote Cargo's time per request)",
    )
    parser.add_argument("--profile", metavar="SCALE", help="py-spy one cargo-elt backfill at SCALE")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures (or the profile) here")
    options = parser.parse_args()
    if options.profile:
        _profile(options.profile, options.concurrency, options.json, options.top)
    elif options.backfill_large:
        _backfill_large(
            options.concurrency, options.backfill_scale, options.json, options.duckdb_memory_limit, options.latency
        )
    else:
        scales = [s.strip() for s in options.scales.split(",") if s.strip()]
        _compare(scales, options.repeat, options.concurrency, options.cap_seconds, options.cap_rows, options.json)


if __name__ == "__main__":
    main()
