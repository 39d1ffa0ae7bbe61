"""The report opened in a real browser: Debian's headless Chromium, driven by Playwright (never
``playwright install``: the browser is the system's ``/usr/bin/chromium``, which ``.ci/run`` installs).

Every request the page makes is intercepted: only the file itself may load. The screenshots and a PDF
print go to ``test-output/`` at the repository's root, where CI keeps test output.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from cargo_elt.pipelines.report import ReportRequest, build_report
from tests.e2e.conftest import ModelledWarehouse

CHROMIUM = os.environ.get("CARGO_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
OUTPUT = Path(__file__).resolve().parents[2] / "test-output"
CHARTS = 6
"""Error rate, failures by node, by integration, credits, p95 durations, batch completeness."""

if not Path(CHROMIUM).exists():
    if os.environ.get("CI"):
        raise RuntimeError(f"{CHROMIUM} is missing: .ci/run installs Debian's chromium package")
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium; .ci/run installs it)", allow_module_level=True)
pytest.importorskip("playwright", reason="playwright comes with the `dev` extra")


def test_report_opens_offline_with_every_chart_drawn(modelled_warehouse: ModelledWarehouse) -> None:
    from playwright.sync_api import Request, Route, expect, sync_playwright

    box = modelled_warehouse
    path, data = build_report(
        ReportRequest(
            pipeline_name=box.pipeline_name,
            pipelines_dir=str(box.pipelines_dir),
            duckdb_path=str(box.database),
            out=str(box.root / "report.html"),
        )
    )
    assert data.worst_batches, "the data has failed batch records: the re-run section is tested"
    OUTPUT.mkdir(exist_ok=True)
    shutil.copy(path, OUTPUT / "report.html")

    problems: list[str] = []
    requested: list[str] = []

    def intercept(route: Route, request: Request) -> None:
        requested.append(request.url)
        if request.url == path.as_uri():
            route.continue_()
        else:
            route.abort()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1366, "height": 768})  # a laptop screen
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.route("**/*", intercept)
            page.goto(path.as_uri(), wait_until="load")

            marks = page.eval_on_selector_all(
                "svg.chart", "charts => charts.map(c => c.querySelectorAll('.mark').length)"
            )
            assert len(marks) == CHARTS and all(n > 0 for n in marks), marks
            titled = page.eval_on_selector_all(
                "svg.chart .mark", "ms => ms.filter(m => m.querySelector('title')).length"
            )
            assert titled == sum(marks), "every mark carries its numbers as a tooltip"
            assert page.locator("section").count() == CHARTS + 1  # and the failed records to run again
            assert page.locator("section p.meta").count() == CHARTS + 1, "each chart states period, sync and freshness"
            assert page.locator("section table").count() >= CHARTS, "each chart has the numbers behind it"

            page.screenshot(path=str(OUTPUT / "report_first_screen.png"))
            commands = page.locator("code.command").all_inner_texts()
            assert commands and all(re.fullmatch(r"cargo-elt rerun --batch [0-9a-f-]{36}", c) for c in commands)
            page.locator("button.copy").first.click()
            # the clipboard answers asynchronously: wait for the label (Playwright's expect retries, up to 5 s)
            expect(page.locator("button.copy").first).to_have_text(re.compile(r"^(Copied|Selected: press Ctrl\+C)$"))

            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= 1366, "no horizontal scrolling on a laptop screen"
            page.screenshot(path=str(OUTPUT / "report.png"), full_page=True)
            page.emulate_media(media="print")
            page.pdf(path=str(OUTPUT / "report.pdf"), format="A4", print_background=True)
        finally:
            browser.close()

    assert problems == []
    assert requested == [path.as_uri()], "the page requested something besides itself"
    assert (OUTPUT / "report.png").stat().st_size > 50_000
    assert (OUTPUT / "report.pdf").stat().st_size > 20_000
