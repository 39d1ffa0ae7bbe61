"""Cut a backfill's range into chunks of similar size, for workers that load them in parallel.

``cargo-elt backfill --workers N`` and the Airflow backfill DAG both start here: one histogram per
fact table over the whole range (the planner's own histograms, ``fetch.run_histogram``: bisected
while the server refuses one for its scan cap), then cuts that give every chunk about the same
share of the work. The chunks are time ranges that every table is read over by its own time
column (``since``/``until`` of a stateless chunk), so a row lives in exactly one chunk: its time
column never changes. Chunk edges are bucket edges (whole seconds or more, so whole milliseconds),
contiguous, and the chunks cover the range exactly.

Work is weighed in cells (rows times the columns read), not rows: a ``spans`` row carries 41
columns and costs the server and the client about twice what a ``runs`` row does (a 10,000-row page:
234 ms against 114 ms at ``medium``), so a chunk dense in spans is a long chunk (``ROW_COST``).
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from .fetch import QueryExecutor, run_histogram
from .planner import Bucket, HistogramRequest, QueryWindow, plan_step, replace_buckets
from .specs import TableSpec
from .sqltext import floor_ms, parse_timestamp

MAX_CHUNKS = 1_000
"""The most chunks one backfill is cut into: each costs its own planning queries and its own load."""


def row_cost(spec: TableSpec) -> int:
    """[I] The relative cost of reading one row of ``spec``: the columns it reads.

    The server's time per page and the client's decoding both grow with the cells of a page; the
    emulator's pages bear it out (spans 41 columns, 234 ms per 10,000 rows; runs 26, 114 ms). Cargo's
    own cost per cell is not documented: this is the one place to change if it weighs otherwise.
    """
    return len(spec.columns)


@dataclass(frozen=True)
class Chunk:
    """One chunk of a backfill: ``[start, end)`` on every table's time column."""

    index: int
    start: datetime
    end: datetime
    rows: Mapping[str, int] = field(default_factory=dict, compare=False)
    """Rows planning counted per table (rows keep arriving: informational)."""

    @property
    def window(self) -> QueryWindow:
        return QueryWindow(self.start, self.end)

    def document(self) -> dict[str, object]:
        """As JSON (an Airflow XCom, the backfill's report)."""
        return {
            "index": self.index,
            "since": self.start.isoformat(),
            "until": self.end.isoformat(),
            "rows": dict(self.rows),
        }

    @classmethod
    def from_document(cls, document: Mapping[str, object]) -> Chunk:
        """The chunk ``document`` describes (what ``document`` wrote)."""
        rows = document.get("rows")
        return cls(
            index=int(str(document["index"])),
            start=parse_timestamp(str(document["since"])),
            end=parse_timestamp(str(document["until"])),
            rows={str(k): int(str(v)) for k, v in rows.items()} if isinstance(rows, Mapping) else {},
        )


def plan_chunks(executor: QueryExecutor, specs: Sequence[TableSpec], window: QueryWindow, count: int) -> list[Chunk]:
    """``window`` cut into at most ``count`` chunks of similar cost over the tables of ``specs``.

    One histogram per table (more where the server refuses one for its scan cap: its halves are
    counted separately), cut; then, where a cut falls in a stretch holding more than
    ``REFINE_FRACTION`` of a chunk's share (a burst: a batch starts thousands of runs within a
    second), one finer histogram of that stretch per table with rows there, and the cuts again.
    Fewer chunks come back when the rows do not spread over enough buckets.
    """
    if not 1 <= count <= MAX_CHUNKS:
        raise ValueError(f"chunks must be 1 to {MAX_CHUNKS}, got {count}")
    step = plan_step(window)
    histograms = {spec.name: run_histogram(executor, spec, HistogramRequest(window, step)) for spec in specs}
    costs = {spec.name: row_cost(spec) for spec in specs}
    for stretch in stretches_to_refine(histograms, window, count, costs):
        for spec in specs:
            if any(b.start < stretch.end and b.end > stretch.start for b in histograms[spec.name]):
                fine = run_histogram(executor, spec, HistogramRequest(stretch, plan_step(stretch)))
                histograms[spec.name] = replace_buckets(histograms[spec.name], stretch, fine)
    return cut_chunks(histograms, window, count, costs)


REFINE_FRACTION = 0.1
"""A cut is refined when the stretch it must fall in holds more than this share of one chunk's cost."""


def stretches_to_refine(
    histograms: Mapping[str, Sequence[Bucket]], window: QueryWindow, count: int, costs: Mapping[str, float]
) -> list[QueryWindow]:
    """The stretches of whole buckets (of every table) where a cut must fall but the buckets are too coarse."""
    weighted = [(b, costs.get(name, 1.0) * b.rows) for name, buckets in histograms.items() for b in buckets]
    edges, cumulated = _cumulate(weighted, _ms(window.start), _ms(window.end))
    total = cumulated[-1]
    if total <= 0 or count < 2:
        return []
    stretches: list[tuple[int, int]] = []
    for k in range(1, count):
        at = bisect.bisect_left(cumulated, total * k / count)
        if not 0 < at < len(edges) or cumulated[at] - cumulated[at - 1] <= REFINE_FRACTION * total / count:
            continue
        begin, end = _whole_buckets(histograms, edges[at - 1], edges[at])
        if end - begin < 2_000:  # histograms step by whole seconds here: one second cannot be parted
            continue
        if stretches and begin <= stretches[-1][1]:
            stretches[-1] = (stretches[-1][0], max(end, stretches[-1][1]))
        else:
            stretches.append((begin, end))
    return [QueryWindow(_instant(begin), _instant(end)) for begin, end in stretches]


def _whole_buckets(histograms: Mapping[str, Sequence[Bucket]], begin: int, end: int) -> tuple[int, int]:
    """``[begin, end)`` widened to the edges of every bucket it touches: a finer histogram then replaces
    whole buckets of each table (``replace_buckets`` drops those the stretch touches)."""
    while True:
        touched = [
            (_ms(b.start), _ms(b.end))
            for buckets in histograms.values()
            for b in buckets
            if _ms(b.start) < end and _ms(b.end) > begin
        ]
        wider = (min([begin, *(t[0] for t in touched)]), max([end, *(t[1] for t in touched)]))
        if wider == (begin, end):
            return begin, end
        begin, end = wider


def cut_chunks(
    histograms: Mapping[str, Sequence[Bucket]], window: QueryWindow, count: int, costs: Mapping[str, float]
) -> list[Chunk]:
    """Chunks covering ``window`` exactly, cut where the cumulated cost is closest to ``k / count``.

    Within a bucket rows are taken as spread evenly (the cumulated cost is piecewise linear), but cuts
    fall on bucket edges only, where the counts are exact. No chunk is empty (but for a range without
    rows: one chunk), so a range with few busy buckets yields fewer chunks than asked for.
    """
    if count < 1:
        raise ValueError("count must be at least 1")
    weighted = [(b, costs.get(name, 1.0) * b.rows) for name, buckets in histograms.items() for b in buckets]
    start_ms, end_ms = _ms(window.start), _ms(window.end)
    edges, cumulated = _cumulate(weighted, start_ms, end_ms)
    total = cumulated[-1]
    cuts: list[int] = []  # indices into edges
    if total > 0:
        for k in range(1, count):
            target = total * k / count
            at = bisect.bisect_left(cumulated, target)
            candidates = [i for i in (at - 1, at) if 0 < i < len(edges) - 1]
            if not candidates:
                continue
            best = min(candidates, key=lambda i: abs(cumulated[i] - target))
            # a cut that repeats the last one, or leaves the chunk before it empty, is no cut
            if cumulated[best] > (cumulated[cuts[-1]] if cuts else 0.0):
                cuts.append(best)
    if cuts and cumulated[-1] <= cumulated[cuts[-1]]:
        cuts.pop()  # nothing after the last cut: the last chunk reaches the end
    bounds = [start_ms, *(edges[i] for i in cuts), end_ms]
    chunks = []
    for index, (begin, end) in enumerate(itertools.pairwise(bounds)):
        rows = {name: _rows_within(buckets, begin, end) for name, buckets in histograms.items()}
        chunks.append(Chunk(index, _instant(begin), _instant(end), rows))
    return chunks


def _cumulate(weighted: Iterable[tuple[Bucket, float]], start_ms: int, end_ms: int) -> tuple[list[int], list[float]]:
    """Every bucket edge within ``[start_ms, end_ms]`` and the cost cumulated up to it (a sweep)."""
    deltas: dict[int, float] = {start_ms: 0.0, end_ms: 0.0}
    for bucket, cost in weighted:
        begin, end = max(_ms(bucket.start), start_ms), min(_ms(bucket.end), end_ms)
        if end <= begin or cost <= 0:
            continue
        slope = cost / (end - begin)
        deltas[begin] = deltas.get(begin, 0.0) + slope
        deltas[end] = deltas.get(end, 0.0) - slope
    edges = sorted(deltas)
    cumulated = [0.0]
    slope = deltas[edges[0]]
    for previous, edge in itertools.pairwise(edges):
        cumulated.append(cumulated[-1] + slope * (edge - previous))
        slope += deltas[edge]
    return edges, cumulated


def _rows_within(buckets: Sequence[Bucket], begin_ms: int, end_ms: int) -> int:
    """Rows of the buckets within ``[begin_ms, end_ms)`` (a bucket cut across counts pro rata)."""
    total = 0.0
    for bucket in buckets:
        start, end = _ms(bucket.start), _ms(bucket.end)
        overlap = min(end, end_ms) - max(start, begin_ms)
        if overlap > 0 and end > start:
            total += bucket.rows * overlap / (end - start)
    return round(total)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _ms(value: datetime) -> int:
    return (floor_ms(value) - _EPOCH) // timedelta(milliseconds=1)


def _instant(ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=ms)
