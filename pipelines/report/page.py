"""The report page: one self-contained HTML file (inline CSS, inline SVG, a few lines of inline script).

Nothing on it is fetched: no font, stylesheet, script or image from anywhere. Every chart has the
period, the sync time and the data's freshness next to it, and the numbers behind it in a table
(the daily rows fold away on screen and unfold when printed).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, date, datetime, timedelta
from html import escape

from . import svg
from .data import RECORDS_PER_BATCH, BatchHealth, ReportData, WorkflowDay

TOP_WORKFLOWS = 8
"""Workflows drawn one by one in the charts over time; the others are summed as one series."""
TOP_NODES = 12
"""Bars of the failures-by-node chart."""
OTHER = "Other workflows"

STYLE = """
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       color: #1f2328; background: #f5f6f8; margin: 0; }
main { max-width: 1080px; margin: 0 auto; padding: 24px 20px 48px; }
h1 { font-size: 24px; margin: 0 0 4px; }
h2 { font-size: 18px; margin: 0 0 2px; }
h3 { font-size: 15px; margin: 18px 0 6px; }
p { margin: 4px 0 10px; }
.meta { color: #57606a; font-size: 12.5px; }
.lead { color: #444; }
.tiles { display: grid; grid-template-columns: repeat(4, 1fr); gap: 12px; margin: 16px 0 18px; }
.tile { background: #fff; border: 1px solid #dde1e6; border-radius: 8px; padding: 10px 14px; }
.tile b { display: block; font-size: 22px; }
.tile span { color: #57606a; font-size: 12.5px; }
section { background: #fff; border: 1px solid #dde1e6; border-radius: 8px; padding: 16px 18px; margin: 0 0 18px; }
svg.chart { width: 100%; height: auto; display: block; margin: 8px 0; }
table { border-collapse: collapse; width: 100%; font-size: 12.5px; margin: 6px 0; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid #eceef1; vertical-align: top; }
th { background: #f6f8fa; font-weight: 600; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
details { margin: 6px 0; }
summary { cursor: pointer; color: #0b5cad; }
.scroll { max-height: 360px; overflow: auto; }
code.command { display: inline-block; background: #f3f4f6; border: 1px solid #d0d7de; border-radius: 6px;
               padding: 3px 8px; font-size: 12.5px; user-select: all; }
button.copy { font: inherit; font-size: 12px; margin-left: 6px; padding: 2px 8px; border: 1px solid #d0d7de;
              border-radius: 6px; background: #fff; cursor: pointer; }
.bad { color: #b42318; font-weight: 600; }
.ok { color: #1a7f37; }
footer { color: #57606a; font-size: 12px; margin-top: 24px; }
@media (max-width: 760px) { .tiles { grid-template-columns: repeat(2, 1fr); } }
@media print {
  body { background: #fff; font-size: 11px; }
  main { max-width: none; padding: 0; }
  section { border: none; padding: 0; margin: 0 0 14px; break-inside: avoid-page; }
  .scroll { max-height: none; overflow: visible; }
  button.copy { display: none; }
  summary { color: #1f2328; }
}
"""

SCRIPT = """
window.addEventListener('beforeprint', function () {
  document.querySelectorAll('details').forEach(function (d) { d.open = true; });
});
document.querySelectorAll('button.copy').forEach(function (button) {
  button.addEventListener('click', function () {
    var code = document.getElementById(button.dataset.target);
    var range = document.createRange();
    range.selectNodeContents(code);
    var selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(code.textContent).then(
        function () { button.textContent = 'Copied'; },
        function () { button.textContent = 'Selected: press Ctrl+C'; });
    } else {
      button.textContent = 'Selected: press Ctrl+C';
    }
  });
});
"""


def render_page(data: ReportData, generated_at: datetime) -> str:
    """The whole page."""
    days = data.days
    context = _context_line(data)
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        # Belt and braces for "nothing leaves the file": the page may load nothing from anywhere.
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">",
        f"<title>Cargo report {_period(data)}</title>",
        f"<style>{STYLE}</style></head><body><main>",
        "<h1>Cargo workspace report</h1>",
        f'<p class="meta">{escape(context)} · {escape(data.destination)}, dataset {escape(data.dataset)}</p>',
    ]
    if not days:
        parts.append(
            "<section><h2>No runs yet</h2><p>The marts hold no runs: run <code>cargo-elt sync</code> "
            "and <code>cargo-elt models</code>, then this report again.</p></section>"
        )
    else:
        order = _workflow_order(data.workflow_days)
        parts.append(_tiles(data))
        parts.append(_error_rate_section(data, days, order, context))
        parts.append(_node_section(data, context))
        parts.append(_integration_section(data, context))
        parts.append(_credits_section(data, days, order, context))
        parts.append(_duration_section(data, days, order, context))
        parts.append(_batch_section(data, days, context))
        parts.append(_records_section(data, context))
    parts.append(
        f"<footer>Generated {generated_at.astimezone(UTC):%Y-%m-%d %H:%M} UTC by <code>cargo-elt report</code> "
        f"from the dbt marts in {escape(data.destination)} (dataset {escape(data.dataset)}). Days are UTC days "
        "of run creation; soft-deleted runs are left out. Hover a mark for its numbers.</footer>"
    )
    parts.append(f"</main><script>{SCRIPT}</script></body></html>")
    return "\n".join(parts)


# -- page parts ---------------------------------------------------------------------------------------


def _context_line(data: ReportData) -> str:
    synced = f"{data.synced_at.astimezone(UTC):%Y-%m-%d %H:%M} UTC" if data.synced_at else "never"
    if data.newest_change is not None:
        newest = f"{data.newest_change.astimezone(UTC):%Y-%m-%d %H:%M} UTC"
        age = (
            f" ({_duration(data.synced_at - data.newest_change)} before the sync)"
            if data.synced_at is not None and data.synced_at >= data.newest_change
            else ""
        )
        freshness = f"newest change in Cargo {newest}{age}"
    else:
        freshness = "no change loaded yet"
    return f"{_period(data)} (UTC days) · synced {synced} · {freshness}"


def _period(data: ReportData) -> str:
    if data.first_day is None or data.last_day is None:
        return "(no data)"
    count = (data.last_day - data.first_day).days + 1
    return f"{data.first_day:%Y-%m-%d} to {data.last_day:%Y-%m-%d}, {count} day{'s' if count != 1 else ''}"


def _tiles(data: ReportData) -> str:
    runs = sum(d.runs for d in data.workflow_days)
    finished = sum(d.finished_runs for d in data.workflow_days)
    errors = sum(d.error_runs for d in data.workflow_days)
    credits = sum(d.credits for d in data.workflow_days)
    failing = sum(1 for b in data.batches if b.failed_runs_count > 0)
    tiles = [
        (f"{runs:,}", "runs"),
        (_pct(errors / finished if finished else None), f"error rate ({errors:,} of {finished:,} finished runs)"),
        (f"{credits:,.2f}", "credits"),
        (f"{failing:,} of {len(data.batches):,}", "batches with failed runs"),
    ]
    cells = "".join(f'<div class="tile"><b>{escape(v)}</b><span>{escape(k)}</span></div>' for v, k in tiles)
    return f'<div class="tiles">{cells}</div>'


def _section(title: str, lead: str, context: str, chart: str, tables: str) -> str:
    return (
        f'<section><h2>{escape(title)}</h2><p class="lead">{escape(lead)}</p>'
        f'<p class="meta">{escape(context)}</p>{chart}{tables}</section>'
    )


def _error_rate_section(data: ReportData, days: list[date], order: list[str], context: str) -> str:
    by_key = {(d.workflow_name, d.day): d for d in data.workflow_days}
    rows = [
        (name, {day: rate for day in days if (rate := _day_rate(by_key.get((name, day)))) is not None})
        for name in order
    ]

    def tip(name: str, day: date, value: float) -> str:
        row = by_key[(name, day)]
        return (
            f"{name}, {day:%Y-%m-%d}: {_pct(value)} ({row.error_runs} failed of {row.finished_runs} finished, "
            f"{row.runs} runs)"
        )

    chart = svg.heatmap(days, rows, label="Error rate per workflow and day", fmt=_pct_tick, tooltip=tip)
    summary = _table(
        ["Workflow", "Kind", "Runs", "Finished", "Failed", "Error rate", "Worst day"],
        [
            [name, kind, _int(runs), _int(finished), _int(errors), _pct(_ratio(errors, finished)), worst]
            for name, kind, runs, finished, errors, worst in _workflow_totals(data.workflow_days)
        ],
        numeric={2, 3, 4, 5},
    )
    daily = _details(
        "Daily numbers",
        _table(
            ["Day", "Workflow", "Runs", "Succeeded", "Failed", "Cancelled", "Finished", "Error rate"],
            [
                [
                    f"{d.day:%Y-%m-%d}",
                    d.workflow_name,
                    _int(d.runs),
                    _int(d.success_runs),
                    _int(d.error_runs),
                    _int(d.cancelled_runs),
                    _int(d.finished_runs),
                    _pct(d.error_rate),
                ]
                for d in data.workflow_days
            ],
            numeric={2, 3, 4, 5, 6, 7},
        ),
    )
    return _section(
        "Error rate over time",
        "Failed runs over finished runs, per workflow (most runs first) and UTC day; the darker, the higher.",
        context,
        chart,
        summary + daily,
    )


def _node_section(data: ReportData, context: str) -> str:
    failing = [n for n in data.nodes if n.errors > 0][:TOP_NODES]
    bars = [
        (
            f"{n.node_slug} · {n.workflow_name}",
            float(n.errors),
            f"{n.node_slug} in {n.workflow_name}: {n.errors} failed of {n.finished_executions} finished "
            f"executions ({_pct(n.error_rate)}); most often: {n.top_error_message}",
        )
        for n in failing
    ]
    chart = svg.bar_chart(bars, label="Failed executions by node", fmt=lambda v: f"{v:,.0f}")
    table = _table(
        ["Node", "Workflow", "Kind", "Integration", "Connector", "Executions", "Failed", "Error rate", "Top message"],
        [
            [
                n.node_slug,
                n.workflow_name,
                n.node_kind or "",
                n.integration_slug or "",
                n.connector_name or "",
                _int(n.executions),
                _int(n.errors),
                _pct(n.error_rate),
                f"{n.top_error_message} ({n.top_error_occurrences}×)" if n.top_error_message else "",
            ]
            for n in data.nodes
            if n.errors > 0
        ],
        numeric={5, 6, 7},
    )
    return _section(
        "Failures by node",
        f"Failed executions per node over the period, the {len(failing)} nodes with the most "
        "(every failing node in the table), with their most frequent error.",
        context,
        chart,
        _details("All failing nodes", table, open_=True),
    )


def _integration_section(data: ReportData, context: str) -> str:
    failing = [i for i in data.integrations if i.errors > 0]
    bars = [
        (
            i.integration,
            float(i.errors),
            f"{i.integration}: {i.errors} failed of {i.finished_executions} finished executions "
            f"({_pct(i.error_rate)}); most often: {i.top_error_message}",
        )
        for i in failing
    ]
    chart = svg.bar_chart(
        bars, label="Failed executions by integration", fmt=lambda v: f"{v:,.0f}", colours=[svg.colour(1)] * len(bars)
    )
    table = _table(
        ["Integration", "Executions", "Failed", "Error rate", "Top message"],
        [
            [
                i.integration,
                _int(i.executions),
                _int(i.errors),
                _pct(i.error_rate),
                f"{i.top_error_message} ({i.top_error_occurrences}×)" if i.top_error_message else "",
            ]
            for i in data.integrations
        ],
        numeric={1, 2, 3},
    )
    return _section(
        "Failures by integration",
        "Failed executions per integration a node calls; nodes that call none are grouped by kind.",
        context,
        chart,
        _details("Numbers", table, open_=True),
    )


def _credits_section(data: ReportData, days: list[date], order: list[str], context: str) -> str:
    layers = _daily_series(data.workflow_days, order, lambda rows: sum(r.credits for r in rows) or None)

    def tip(s: svg.Series, day: date, value: float) -> str:
        return f"{s.name}, {day:%Y-%m-%d}: {value:,.2f} credits"

    chart = svg.stacked_bar_chart(days, layers, label="Credits per workflow and day", fmt=_num_tick, tooltip=tip)
    total = sum(d.credits for d in data.workflow_days)
    per_workflow: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for d in data.workflow_days:
        per_workflow[d.workflow_name][0] += d.credits
        per_workflow[d.workflow_name][1] += d.runs
    rows = sorted(per_workflow.items(), key=lambda kv: -kv[1][0])
    table = _table(
        ["Workflow", "Credits", "Share", "Runs", "Credits per run"],
        [
            [name, f"{c:,.2f}", _pct(_ratio(c, total)), _int(int(r)), f"{c / r:,.3f}" if r else ""]
            for name, (c, r) in rows
        ],
        numeric={1, 2, 3, 4},
    )
    daily = _details(
        "Daily numbers",
        _table(
            ["Day", "Workflow", "Credits", "Runs"],
            [[f"{d.day:%Y-%m-%d}", d.workflow_name, f"{d.credits:,.2f}", _int(d.runs)] for d in data.workflow_days],
            numeric={2, 3},
        ),
    )
    return _section(
        "Credits per workflow over time",
        f"Credits used by each workflow's runs per UTC day, stacked ({_shown(order)}).",
        context,
        chart,
        table + daily,
    )


def _duration_section(data: ReportData, days: list[date], order: list[str], context: str) -> str:
    by_key = {(d.workflow_name, d.day): d for d in data.workflow_days}
    series = [
        svg.Series(
            name, svg.colour(i), {day: by_key[(name, day)].p95_duration_s for day in days if (name, day) in by_key}
        )
        for i, name in enumerate(order)
    ]
    series = [s for s in series if any(v is not None for v in s.values.values())]

    def tip(s: svg.Series, day: date, value: float) -> str:
        row = by_key[(s.name, day)]
        return f"{s.name}, {day:%Y-%m-%d}: p95 {value:,.1f} s, median {_secs(row.p50_duration_s)} ({row.runs} runs)"

    chart = svg.small_multiples(
        days, series, label="p95 run duration per workflow and day", fmt=_secs_tick, tooltip=tip
    )
    rows = []
    for name in order:
        own = [d for d in data.workflow_days if d.workflow_name == name and d.p95_duration_s is not None]
        if not own:
            continue
        latest = max(own, key=lambda d: d.day)
        highest = max(own, key=lambda d: d.p95_duration_s or 0.0)
        rows.append(
            [
                name,
                _secs(latest.p95_duration_s),
                f"{latest.day:%Y-%m-%d}",
                _secs(highest.p95_duration_s),
                f"{highest.day:%Y-%m-%d}",
                _secs(latest.p50_duration_s),
            ]
        )
    table = _table(["Workflow", "Latest p95", "On", "Highest p95", "On", "Latest median"], rows, numeric={1, 3, 5})
    daily = _details(
        "Daily numbers",
        _table(
            ["Day", "Workflow", "Runs", "Median", "p95"],
            [
                [f"{d.day:%Y-%m-%d}", d.workflow_name, _int(d.runs), _secs(d.p50_duration_s), _secs(d.p95_duration_s)]
                for d in data.workflow_days
            ],
            numeric={2, 3, 4},
        ),
    )
    return _section(
        "p95 run duration per workflow",
        "95th percentile of the seconds from a run's creation to its end (success or error), per UTC day, "
        "one panel per workflow on a shared scale.",
        context,
        chart,
        table + daily,
    )


def _batch_section(data: ReportData, days: list[date], context: str) -> str:
    kinds: tuple[tuple[str, str], ...] = (
        ("Every record processed", svg.colour(4)),
        ("“Success” with failed records", svg.colour(2)),
        ("Not fully processed (running, failed, cancelled)", svg.OTHER_COLOUR),
    )
    counts: dict[tuple[str, date], int] = defaultdict(int)
    for b in data.batches:
        kind = 0 if b.is_fully_processed else 1 if b.is_success_with_failures else 2
        counts[(kinds[kind][0], b.day)] += 1
    layers = [svg.Series(name, col, {d: float(counts[(name, d)]) for d in days}) for name, col in kinds]

    def tip(s: svg.Series, day: date, value: float) -> str:
        return f"{day:%Y-%m-%d}: {value:,.0f} batches, {s.name.lower()}"

    chart = svg.stacked_bar_chart(
        days, layers, label="Batches per day by completeness", fmt=_num_tick, tooltip=tip, whole=True
    )
    worst = sorted(
        (b for b in data.batches if b.runs_count > 0 and not b.is_fully_processed),
        key=lambda b: (
            -(b.runs_count - b.executed_runs_count + b.failed_runs_count),
            b.success_share if b.success_share is not None else 1.0,
            b.batch_uuid,
        ),
    )[:15]
    table = _table(
        [
            "Batch",
            "Workflow",
            "Created",
            "Status",
            "Runs",
            "Executed",
            "Failed",
            "Completeness",
            "Succeeded",
            "Failing nodes",
        ],
        [
            [
                b.batch_uuid,
                b.workflow_name or "",
                f"{b.created_at.astimezone(UTC):%Y-%m-%d %H:%M}" if b.created_at else "",
                _status(b),
                _int(b.runs_count),
                _int(b.executed_runs_count),
                _int(b.failed_runs_count),
                _pct(b.completeness),
                _pct(b.success_share),
                b.failing_nodes or "",
            ]
            for b in worst
        ],
        numeric={4, 5, 6, 7, 8},
    )
    totals = {name: sum(v for (n, _), v in counts.items() if n == name) for name, _ in kinds}
    lead = (
        f"{len(data.batches):,} batches: "
        + ", ".join(f"{totals[name]:,} {name[0].lower() + name[1:]}" for name, _ in kinds)
        + ". Cargo calls a batch “success” even when some of its runs failed."
    )
    return _section(
        "Batch completeness",
        lead,
        context,
        chart,
        _details("The batches with the most records not processed (failed or not executed)", table, open_=True),
    )


def _records_section(data: ReportData, context: str) -> str:
    if not data.worst_batches:
        return _section(
            "Failed records to run again",
            "No batch in the period has failed records.",
            context,
            "",
            "",
        )
    blocks = []
    for index, batch in enumerate(data.worst_batches):
        records = data.failed_records.get(batch.batch_uuid, [])
        shown = records[:RECORDS_PER_BATCH]
        command = f"cargo-elt rerun --batch {batch.batch_uuid}"
        more = f" Showing {len(shown)} of {len(records)}." if len(records) > len(shown) else ""
        unexecuted = batch.runs_count - batch.executed_runs_count
        waiting = f", {unexecuted} not executed yet" if unexecuted > 0 else ""
        created = f", created {batch.created_at.astimezone(UTC):%Y-%m-%d %H:%M} UTC" if batch.created_at else ""
        blocks.append(
            f"<h3>{escape(batch.workflow_name or '')}: {batch.failed_runs_count} of {batch.runs_count} runs failed"
            f"{waiting} ({_pct(batch.success_share)} succeeded){created}</h3>"
        )
        blocks.append(
            f'<p>Re-run its failed records: <code class="command" id="rerun-{index}">{escape(command)}</code>'
            f'<button class="copy" type="button" data-target="rerun-{index}">Copy</button>{escape(more)}</p>'
        )
        blocks.append(
            _table(
                ["Record id", "Title", "Failed at node", "Kind", "Error"],
                [
                    [
                        r.record_id or "",
                        r.record_title or "",
                        r.failed_node_slug or "",
                        r.failed_node_kind or "",
                        r.node_error_message or "",
                    ]
                    for r in shown
                ],
            )
        )
    return _section(
        "Failed records to run again",
        f"The {len(data.worst_batches)} batches with the most failed runs in the period, their failed records, and "
        "the command that runs those records again (a dry run until --yes).",
        context,
        "",
        "".join(blocks),
    )


# -- helpers ------------------------------------------------------------------------------------------


def _workflow_order(rows: Iterable[WorkflowDay]) -> list[str]:
    """Workflows by runs in the period, most first (names are unique per workflow in practice)."""
    runs: dict[str, int] = defaultdict(int)
    for r in rows:
        runs[r.workflow_name] += r.runs
    return sorted(runs, key=lambda name: (-runs[name], name))


def _by_workflow_day(rows: Iterable[WorkflowDay], order: list[str]) -> dict[tuple[str, date], list[WorkflowDay]]:
    top = set(order[:TOP_WORKFLOWS])
    grouped: dict[tuple[str, date], list[WorkflowDay]] = defaultdict(list)
    for r in rows:
        grouped[(r.workflow_name if r.workflow_name in top or len(order) <= TOP_WORKFLOWS else OTHER, r.day)].append(r)
    return grouped


def _daily_series(
    rows: Sequence[WorkflowDay], order: list[str], value: Callable[[list[WorkflowDay]], float | None]
) -> list[svg.Series]:
    """A series per busy workflow (and one for the rest), valued per day from that day's rows."""
    grouped = _by_workflow_day(rows, order)
    names = order if len(order) <= TOP_WORKFLOWS else [*order[:TOP_WORKFLOWS], OTHER]
    result = []
    for i, name in enumerate(names):
        values = {day: value(group) for (n, day), group in grouped.items() if n == name}
        colour = svg.OTHER_COLOUR if name == OTHER else svg.colour(i)
        if any(v is not None for v in values.values()):
            result.append(svg.Series(name, colour, values))
    return result


def _workflow_totals(rows: Sequence[WorkflowDay]) -> list[tuple[str, str, int, int, int, str]]:
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    kinds: dict[str, str] = {}
    worst: dict[str, tuple[float, date]] = {}
    for r in rows:
        t = totals[r.workflow_name]
        t[0] += r.runs
        t[1] += r.finished_runs
        t[2] += r.error_runs
        kinds[r.workflow_name] = r.workflow_kind or ""
        if (
            r.error_rate is not None
            and r.error_runs > 0
            and (r.error_rate, r.day) > worst.get(r.workflow_name, (-1.0, date.min))
        ):
            worst[r.workflow_name] = (r.error_rate, r.day)
    ordered = sorted(totals.items(), key=lambda kv: (-_ratio_or_zero(kv[1][2], kv[1][1]), kv[0]))
    return [
        (
            name,
            kinds[name],
            t[0],
            t[1],
            t[2],
            f"{worst[name][1]:%Y-%m-%d} ({_pct(worst[name][0])})" if name in worst else "",
        )
        for name, t in ordered
    ]


def _day_rate(row: WorkflowDay | None) -> float | None:
    return None if row is None else row.error_rate


def _status(batch: BatchHealth) -> str:
    status = batch.batch_status or ""
    return f"{status} (with failures)" if batch.is_success_with_failures else status


def _shown(order: list[str]) -> str:
    if len(order) <= TOP_WORKFLOWS:
        return "every workflow"
    return f"the {TOP_WORKFLOWS} workflows with the most runs, the other {len(order) - TOP_WORKFLOWS} summed"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], numeric: set[int] | None = None) -> str:
    numeric = numeric or set()
    if not rows:
        return '<p class="meta">Nothing to list.</p>'
    head = "".join(f"<th{' class=n' if i in numeric else ''}>{escape(h)}</th>" for i, h in enumerate(header))
    body = "".join(
        "<tr>"
        + "".join(f"<td{' class=n' if i in numeric else ''}>{escape(str(v))}</td>" for i, v in enumerate(row))
        + "</tr>"
        for row in rows
    )
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _details(summary: str, content: str, open_: bool = False) -> str:
    return f"<details{' open' if open_ else ''}><summary>{escape(summary)}</summary>{content}</details>"


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None


def _ratio_or_zero(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else 0.0


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f} %"


def _pct_tick(value: float) -> str:
    return f"{100 * value:.0f} %" if abs(100 * value - round(100 * value)) < 1e-6 else f"{100 * value:.1f} %"


def _num_tick(value: float) -> str:
    return f"{value:,.0f}" if abs(value - round(value)) < 1e-9 else f"{value:,.1f}"


def _secs(value: float | None) -> str:
    return "–" if value is None else f"{value:,.1f} s"


def _secs_tick(value: float) -> str:
    return f"{value:,.0f} s"


def _int(value: int) -> str:
    return f"{value:,}"


def _duration(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    hours, rest = divmod(seconds, 3600)
    minutes = rest // 60
    if hours >= 48:
        return f"{hours // 24} days {hours % 24} h"
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"
