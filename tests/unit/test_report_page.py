"""The report's SVG charts and page, from numbers made here (the browser test opens a real one)."""

from __future__ import annotations

import itertools
import re
from datetime import UTC, date, datetime, timedelta

from cargo_elt.pipelines.report import svg
from cargo_elt.pipelines.report.data import (
    BatchHealth,
    FailedRecord,
    IntegrationFailures,
    NodeFailures,
    ReportData,
    WorkflowDay,
    integration_name,
)
from cargo_elt.pipelines.report.page import render_page

DAYS = [date(2026, 11, 1) + timedelta(days=i) for i in range(5)]
BATCH = "0f8fad5b-d9cb-469f-a165-70867728950e"


def test_nice_ticks_cover_the_maximum_with_round_steps() -> None:
    assert svg.nice_ticks(0.0) == [0.0, 1.0]
    assert svg.nice_ticks(37.0) == [0.0, 10.0, 20.0, 30.0, 40.0]
    assert svg.nice_ticks(11.0) == [0.0, 2.5, 5.0, 7.5, 10.0, 12.5]
    assert svg.nice_ticks(11.0, whole=True) == [0.0, 5.0, 10.0, 15.0]
    assert svg.nice_ticks(2.0, whole=True) == [0.0, 1.0, 2.0]
    ticks = svg.nice_ticks(0.33)
    assert ticks[-1] >= 0.33 and len(ticks) <= 6
    assert all(abs((b - a) - (ticks[1] - ticks[0])) < 1e-12 for a, b in itertools.pairwise(ticks))


def test_heatmap_draws_a_titled_mark_per_value_and_nothing_for_missing_days() -> None:
    rows = [("Route leads", {DAYS[0]: 0.1, DAYS[2]: 0.5}), ("Enrich", {DAYS[4]: 0.0})]
    chart = svg.heatmap(DAYS, rows, label="rates", fmt=str, tooltip=lambda n, d, v: f"{n} {d} {v}")
    assert chart.count('class="mark"') == 3
    assert "<title>Route leads 2026-11-03 0.5</title>" in chart
    assert svg.heatmap(DAYS, [], label="rates", fmt=str, tooltip=lambda n, d, v: "").count("mark") == 0


def test_stacked_bars_skip_zero_values_and_escape_names() -> None:
    layers = [svg.Series("A & B", "#000", {DAYS[0]: 2.0, DAYS[1]: 0.0}), svg.Series("<C>", "#111", {DAYS[1]: 1.0})]
    chart = svg.stacked_bar_chart(DAYS, layers, label="x", fmt=str, tooltip=lambda s, d, v: f"{s.name}: {v}")
    assert chart.count('class="mark"') == 2
    assert "A &amp; B" in chart and "&lt;C&gt;" in chart and "<C>" not in chart


def _data() -> ReportData:
    data = ReportData(
        destination="duckdb",
        dataset="cargo",
        first_day=DAYS[0],
        last_day=DAYS[-1],
        synced_at=datetime(2026, 11, 5, 12, tzinfo=UTC),
        newest_change=datetime(2026, 11, 5, 9, 30, tzinfo=UTC),
    )
    data.workflow_days = [
        WorkflowDay(d, "w1", "Route <leads>", "play", 10, 8, 2, 0, 10, 0.2, 3.5, 20.0, 40.0) for d in DAYS
    ]
    data.nodes = [NodeFailures("Route <leads>", "write_crm", "connector", "hubspot", "HubSpot", 50, 50, 4, "429", 3)]
    data.integrations = [IntegrationFailures("hubspot", 50, 50, 4, "429", 3)]
    batch = BatchHealth(
        BATCH, "Route <leads>", "success", data.synced_at, DAYS[1], 10, 10, 2, 1.0, 0.8, False, True, 2, "write_crm (2)"
    )
    data.batches = [batch]
    data.worst_batches = [batch]
    data.failed_records = {BATCH: [FailedRecord(BATCH, "ctc_1", "Ada", "write_crm", "connector", "429")]}
    return data


def test_page_is_self_contained_and_states_period_sync_and_freshness() -> None:
    page = render_page(_data(), datetime(2026, 11, 5, 13, tzinfo=UTC))
    assert page.count('<svg class="chart"') == 6
    assert not re.search(r"""\b(?:src|href)\s*=""", page), "the page loads nothing"
    assert "default-src 'none'" in page
    assert page.count("2026-11-01 to 2026-11-05, 5 days") >= 7
    assert "synced 2026-11-05 12:00 UTC" in page and "(2 h 30 min before the sync)" in page
    assert f"cargo-elt rerun --batch {BATCH}" in page
    assert "Route &lt;leads&gt;" in page and "Route <leads>" not in page


def test_empty_marts_say_what_to_run() -> None:
    empty = ReportData("duckdb", "cargo", None, None, None, None)
    page = render_page(empty, datetime(2026, 11, 5, tzinfo=UTC))
    assert "No runs yet" in page and "cargo-elt models" in page and "<svg" not in page


def test_nodes_without_integration_are_grouped_by_kind() -> None:
    assert integration_name("hubspot", "connector") == "hubspot"
    assert integration_name(None, "agent") == "(agent node)"
    assert integration_name(None, None) == "(unknown node)"
