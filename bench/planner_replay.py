"""Replay the window planner on the emulator's data: planning queries against the pages they save.

Run: ``python -m bench.planner_replay [--scale big] [--tables runs,spans,records] [--budgets 0,1,3,5,12]``.

For each table and refinement budget, plans the whole backfill range exactly as a sync does
(``fetch.plan_windows``: one histogram, then at most ``budget`` refinement histograms), with every
histogram a real query to the emulator over HTTP. No page is read: a histogram counts rows exactly,
so a planned window of ``n`` rows costs ``n // 10,000 + 1`` page queries, which is what the fetcher
issues for it. Prints pages against the ideal ``ceil(rows / 10,000)`` and the planning share, with the
budget ``fetch.refinement_budget`` gives by default marked. Not a test: it reports.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from datetime import UTC, datetime

from bench.harness import BENCH_TOKEN, emulator_process
from cargo_elt.source.client import CargoClient
from cargo_elt.source.extract import CountingExecutor, TableStats
from cargo_elt.source.fetch import plan_windows, refinement_budget
from cargo_elt.source.planner import QueryWindow
from cargo_elt.source.settings import PAGE_LIMIT
from cargo_elt.source.specs import TABLE_SPECS

START = datetime(2026, 1, 1, tzinfo=UTC)
TARGET_PAGES = 1.10
TARGET_PLANNING = 0.02


@dataclass
class Replay:
    table: str
    budget: int
    rows: int
    histograms: int
    windows: int
    pages: int

    @property
    def ideal(self) -> int:
        return max(1, math.ceil(self.rows / PAGE_LIMIT))


def replay(client: CargoClient, table: str, budget: int, end: datetime) -> Replay:
    """Plan ``table``'s backfill with ``budget`` refinements and count what it costs."""
    stats = TableStats(table)
    planner = CountingExecutor(client, stats, "planning_queries")
    windows = plan_windows(planner, TABLE_SPECS[table], QueryWindow(START, end), refine_budget=budget)
    rows = sum(w.expected_rows or 0 for w in windows)
    pages = sum((w.expected_rows or 0) // PAGE_LIMIT + 1 for w in windows)
    return Replay(table, budget, rows, stats.planning_queries, len(windows), pages)


def main() -> None:
    """Parse the options, start the emulator, replay each table at each budget and print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", default="big")
    parser.add_argument("--tables", default="runs,spans,records")
    parser.add_argument("--budgets", default="0,1,2,3,5,8,12")
    options = parser.parse_args()
    tables = [t for t in options.tables.split(",") if t]
    budgets = sorted({int(b) for b in options.budgets.split(",") if b})
    end = datetime.now(UTC)
    with (
        emulator_process(options.scale, via_cli=False) as base_url,
        CargoClient(BENCH_TOKEN, base_url=base_url) as client,
    ):
        results = [replay(client, table, budget, end) for table in tables for budget in budgets]
    defaults = {table: refinement_budget(next(r.rows for r in results if r.table == table)) for table in tables}
    print(f"\nplanner replay, scale {options.scale}, {', '.join(tables)}; '*' marks the default budget")
    print("| table | refinement budget | rows | histogram queries | windows | pages | ideal | pages / ideal |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        mark = " *" if defaults[r.table] == r.budget else ""
        print(
            f"| {r.table} | {r.budget}{mark} | {r.rows:,} | {r.histograms} | {r.windows} | {r.pages} | {r.ideal} "
            f"| {r.pages / r.ideal:.3f} |"
        )
    print("\nwhole sync (default budgets; a schema check per table, batches included; no histogram under one page):")
    chosen = [r for r in results if defaults[r.table] == r.budget]
    if len(chosen) == len(tables):
        pages = sum(r.pages for r in chosen)
        ideal = sum(r.ideal for r in chosen)
        # a sync asks for a histogram only once the table's first page comes back full
        planning = sum(r.histograms for r in chosen if r.rows >= PAGE_LIMIT) + len(TABLE_SPECS)
        print(
            f"  pages {pages} / ideal {ideal} = {pages / ideal:.3f} (target <= {TARGET_PAGES}); "
            f"planning {planning} = {planning / pages:.1%} of pages (target <= {TARGET_PLANNING:.0%})"
        )
    else:
        print("  (the default budgets were not among --budgets)")


if __name__ == "__main__":
    main()
