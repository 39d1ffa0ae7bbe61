"""Charts as inline SVG, drawn from the numbers in Python: the page needs no script and no network.

Four kinds are enough for the report: a heatmap (a row per name, a cell per day), small multiples
(a small line chart per series), horizontal bars (one per label) and stacked bars over days. Every
data mark carries ``class="mark"`` (the browser test counts them) and a ``<title>`` with its numbers
(the browser's tooltip). The ``viewBox`` makes a chart scale to the page's width on a laptop and on
paper.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from html import escape

PALETTE: tuple[str, ...] = (
    "#4269d0",
    "#efb118",
    "#ff725c",
    "#6cc5b0",
    "#3ca951",
    "#ff8ab7",
    "#a463f2",
    "#97bbf5",
    "#9c6b4e",
    "#9498a0",
)
"""Categorical colours (Observable's tableau-like scheme), distinguishable in print as well."""
OTHER_COLOUR = "#c9ccd1"

WIDTH = 880
FONT = 12


@dataclass(frozen=True)
class Series:
    """One line (or one stack layer): a name, a colour and a value per day (``None``: no point)."""

    name: str
    colour: str
    values: dict[date, float | None]


def element(tag: str, content: str = "", **attributes: object) -> str:
    """One SVG element; ``class_`` stands for ``class``, numbers are written with one decimal."""
    parts = []
    for key, value in attributes.items():
        text = f"{value:.1f}" if isinstance(value, float) else str(value)
        parts.append(f'{key.rstrip("_").replace("_", "-")}="{escape(text)}"')
    attrs = " ".join(parts)
    return f"<{tag} {attrs}>{content}</{tag}>" if content else f"<{tag} {attrs}/>"


def mark(tag: str, tooltip: str, **attributes: object) -> str:
    """A data mark: counted by the browser test (``class="mark"``), its numbers in its tooltip."""
    return element(tag, f"<title>{escape(tooltip)}</title>", class_="mark", **attributes)


def colour(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def nice_ticks(maximum: float, count: int = 5, whole: bool = False) -> list[float]:
    """Round tick values from 0 to at least ``maximum`` (1, 2, 2.5 or 5 times a power of ten; with
    ``whole``, whole numbers only, for counts)."""
    if maximum <= 0 or not math.isfinite(maximum):
        return [0.0, 1.0]
    raw = maximum / count
    power = 10 ** math.floor(math.log10(raw))
    steps = (1, 2, 5, 10) if whole else (1, 2, 2.5, 5, 10)
    step = next(m * power for m in steps if m * power >= raw)
    if whole:
        step = max(1.0, float(round(step)))
    return [i * step for i in range(math.ceil(maximum / step - 1e-9) + 1)]


def _svg(height: int, body: list[str], label: str) -> str:
    return (
        f'<svg class="chart" role="img" aria-label="{escape(label)}" viewBox="0 0 {WIDTH} {height}" '
        f'xmlns="http://www.w3.org/2000/svg" font-size="{FONT}">' + "".join(body) + "</svg>"
    )


def _legend(series: Sequence[Series], top: float) -> tuple[list[str], float]:
    """Swatches and names in rows under a chart; returns the parts and the height used."""
    parts: list[str] = []
    x, y = 60.0, top
    for s in series:
        width = 22 + 7 * len(s.name)
        if x + width > WIDTH - 10:
            x, y = 60.0, y + 18
        parts.append(
            f'<rect x="{x:.0f}" y="{y - 9:.0f}" width="12" height="12" rx="2" fill="{s.colour}"/>'
            f'<text x="{x + 16:.0f}" y="{y + 1:.0f}" fill="#333">{escape(s.name)}</text>'
        )
        x += width + 14
    return parts, y - top + 18


def _day_axis(days: Sequence[date], x_of: Callable[[date], float], bottom: float) -> list[str]:
    """Day labels along the bottom, thinned to about ten."""
    step = max(1, math.ceil(len(days) / 10))
    shown = list(range(0, len(days), step))
    shown[-1] = len(days) - 1  # the last day is always labelled; the label before it gives way
    parts = []
    for i in shown:
        parts.append(
            f'<text x="{x_of(days[i]):.1f}" y="{bottom + 16:.0f}" text-anchor="middle" fill="#555">'
            f"{days[i].strftime('%b %d')}</text>"
        )
    return parts


def _value_axis(ticks: Sequence[float], y_of: Callable[[float], float], fmt: Callable[[float], str]) -> list[str]:
    parts = []
    for tick in ticks:
        y = y_of(tick)
        parts.append(f'<line x1="60" x2="{WIDTH - 20}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e3e5e8"/>')
        parts.append(f'<text x="54" y="{y + 4:.1f}" text-anchor="end" fill="#555">{escape(fmt(tick))}</text>')
    return parts


def _path(points: Sequence[str], stroke: str) -> str:
    return f'<polyline points="{" ".join(points)}" fill="none" stroke="{stroke}" stroke-width="1.8"/>'


def bar_chart(
    bars: Sequence[tuple[str, float, str]],
    *,
    label: str,
    fmt: Callable[[float], str],
    colours: Sequence[str] | None = None,
) -> str:
    """Horizontal bars, one per ``(label, value, tooltip)``, largest first as given."""
    if not bars:
        return _empty(label)
    row = 24
    height = row * len(bars) + 30
    label_width = 300.0
    left, right = label_width + 10, float(WIDTH - 70)
    maximum = max(v for _, v, _ in bars) or 1.0
    body: list[str] = []
    for i, (name, value, tip) in enumerate(bars):
        y = 10 + i * row
        width = max(1.5, (value / maximum) * (right - left))
        fill = colours[i] if colours else PALETTE[0]
        shown = name if len(name) <= 46 else name[:45] + "…"
        body.append(
            f'<text x="{label_width:.0f}" y="{y + 15}" text-anchor="end" fill="#333">{escape(shown)}</text>'
            + mark("rect", tip, x=left, y=y + 3, width=width, height=row - 8, rx=2, fill=fill)
            + f'<text x="{left + width + 6:.1f}" y="{y + 15}" fill="#333">{escape(fmt(value))}</text>'
        )
    return _svg(height, body, label)


def stacked_bar_chart(
    days: Sequence[date],
    layers: Sequence[Series],
    *,
    label: str,
    fmt: Callable[[float], str],
    tooltip: Callable[[Series, date, float], str],
    height: int = 260,
    whole: bool = False,
) -> str:
    """A bar per day, stacked from the layers' values (missing or zero values draw nothing); ``whole``:
    the values are counts, ticked in whole numbers."""
    if not days or not layers:
        return _empty(label)
    top, bottom = 14.0, float(height - 30)
    totals = [sum((s.values.get(d) or 0.0) for s in layers) for d in days]
    ticks = nice_ticks(max(totals, default=0.0), whole=whole)
    span = ticks[-1] or 1.0
    left, right = 70.0, float(WIDTH - 30)
    slot = (right - left) / len(days)
    bar = max(2.0, slot * 0.72)

    index = {day: i for i, day in enumerate(days)}

    def x_of(day: date) -> float:
        return left + (index[day] + 0.5) * slot

    def y_of(value: float) -> float:
        return bottom - (value / span) * (bottom - top)

    body = _value_axis(ticks, y_of, fmt) + _day_axis(days, x_of, bottom)
    for day in days:
        base = 0.0
        for s in layers:
            value = s.values.get(day) or 0.0
            if value <= 0:
                continue
            y_top, y_base = y_of(base + value), y_of(base)
            body.append(
                mark(
                    "rect",
                    tooltip(s, day, value),
                    x=x_of(day) - bar / 2,
                    y=y_top,
                    width=bar,
                    height=max(0.5, y_base - y_top),
                    fill=s.colour,
                )
            )
            base += value
    legend, used = _legend(layers, float(height) + 8)
    return _svg(int(height + used + 6), [*body, *legend], label)


def heatmap(
    days: Sequence[date],
    rows: Sequence[tuple[str, dict[date, float]]],
    *,
    label: str,
    fmt: Callable[[float], str],
    tooltip: Callable[[str, date, float], str],
) -> str:
    """A row per name, a cell per day coloured by its value (white to dark red); blank: no value."""
    if not days or not rows:
        return _empty(label)
    label_width, row_height = 220.0, 20.0
    left, right = label_width + 10, float(WIDTH - 20)
    cell = (right - left) / len(days)
    index = {day: i for i, day in enumerate(days)}
    maximum = max((v for _, values in rows for v in values.values()), default=0.0) or 1.0
    body: list[str] = []
    for r, (name, values) in enumerate(rows):
        y = 8 + r * row_height
        shown = name if len(name) <= 32 else name[:31] + "…"
        body.append(element("text", escape(shown), x=label_width, y=y + 14, text_anchor="end", fill="#333"))
        body.append(element("rect", x=left, y=y, width=right - left, height=row_height - 2, fill="#f3f4f6"))
        for day, value in values.items():
            body.append(
                mark(
                    "rect",
                    tooltip(name, day, value),
                    x=left + index[day] * cell + 0.5,
                    y=y,
                    width=max(1.0, cell - 1),
                    height=row_height - 2,
                    fill=_red(value / maximum),
                )
            )
    bottom = 8 + len(rows) * row_height
    body += _day_axis(days, lambda d: left + (index[d] + 0.5) * cell, bottom - 4)
    scale_y = bottom + 26
    steps = 6
    body.append(f'<text x="{left:.0f}" y="{scale_y + 11:.0f}" fill="#555">Scale:</text>')
    for i in range(steps):
        x = left + 46 + i * 72
        share = i / (steps - 1)
        body.append(
            f'<rect x="{x:.0f}" y="{scale_y:.0f}" width="16" height="14" fill="{_red(share)}" stroke="#ddd"/>'
            f'<text x="{x + 20:.0f}" y="{scale_y + 11:.0f}" fill="#555">{escape(fmt(share * maximum))}</text>'
        )
    x = left + 46 + steps * 72
    body.append(element("rect", x=x, y=scale_y, width=16, height=14, fill="#f3f4f6", stroke="#ddd"))
    body.append(element("text", "no finished run", x=x + 20, y=scale_y + 11, fill="#555"))
    return _svg(int(scale_y + 24), body, label)


def _red(share: float) -> str:
    """White (0) to dark red (1), through the light reds a printer still tells apart."""
    share = min(1.0, max(0.0, share))
    low, high = (255, 245, 240), (165, 15, 21)
    r, g, b = (round(lo + (hi - lo) * share**0.8) for lo, hi in zip(low, high, strict=True))
    return f"#{r:02x}{g:02x}{b:02x}"


def small_multiples(
    days: Sequence[date],
    series: Sequence[Series],
    *,
    label: str,
    fmt: Callable[[float], str],
    tooltip: Callable[[Series, date, float], str],
    columns: int = 4,
) -> str:
    """A small line chart per series on one shared scale, in a grid: comparable without a tangle."""
    if not days or not series:
        return _empty(label)
    gap, panel_height = 14.0, 118.0
    panel_width = (WIDTH - 10 - gap * (columns - 1)) / columns
    index = {day: i for i, day in enumerate(days)}
    maximum = max((v for s in series for v in s.values.values() if v is not None), default=0.0)
    ticks = nice_ticks(maximum, count=2)
    span = ticks[-1] or 1.0
    body: list[str] = []
    for n, s in enumerate(series):
        px = 5 + (n % columns) * (panel_width + gap)
        py = 4 + (n // columns) * (panel_height + gap)
        left, right = px + 40, px + panel_width - 6
        top, bottom = py + 28, py + panel_height - 18
        slot = (right - left) / max(1, len(days) - 1)

        def x_of(day: date, left: float = left, slot: float = slot) -> float:
            return left + index[day] * slot

        def y_of(value: float, top: float = top, bottom: float = bottom) -> float:
            return bottom - (value / span) * (bottom - top)

        shown = s.name if len(s.name) <= 30 else s.name[:29] + "…"
        body.append(f'<text x="{px:.0f}" y="{py + 12:.0f}" font-weight="600" fill="#333">{escape(shown)}</text>')
        for tick in ticks:
            body.append(element("line", x1=left, x2=right, y1=y_of(tick), y2=y_of(tick), stroke="#e3e5e8"))
            body.append(
                element("text", escape(fmt(tick)), x=left - 4, y=y_of(tick) + 4, text_anchor="end", fill="#555")
            )
        for day in (days[0], days[-1]):
            anchor = "start" if day == days[0] else "end"
            body.append(
                f'<text x="{x_of(day):.0f}" y="{bottom + 14:.0f}" text-anchor="{anchor}" fill="#555">'
                f"{day.strftime('%b %d')}</text>"
            )
        run: list[str] = []
        for day in days:
            value = s.values.get(day)
            if value is None:
                if len(run) > 1:
                    body.append(_path(run, s.colour))
                run = []
                continue
            run.append(f"{x_of(day):.1f},{y_of(value):.1f}")
        if len(run) > 1:
            body.append(_path(run, s.colour))
        for day in days:
            value = s.values.get(day)
            if value is not None:
                body.append(mark("circle", tooltip(s, day, value), cx=x_of(day), cy=y_of(value), r=2.4, fill=s.colour))
    rows = (len(series) + columns - 1) // columns
    return _svg(int(8 + rows * (panel_height + gap)), body, label)


def _empty(label: str) -> str:
    """A chart with no data says so (and has no marks: the page says why next to it)."""
    return _svg(
        60,
        [f'<text x="{WIDTH / 2:.0f}" y="34" text-anchor="middle" fill="#777">No data in this period.</text>'],
        label,
    )
