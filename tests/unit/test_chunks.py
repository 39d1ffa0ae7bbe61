"""The backfill's chunk planner: exact, contiguous cover on whole milliseconds, similar costs per chunk."""

from __future__ import annotations

import itertools
import random
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest

from cargo_elt.source.chunks import Chunk, cut_chunks, plan_chunks, row_cost
from cargo_elt.source.planner import Bucket, QueryWindow, histogram_query, plan_step
from cargo_elt.source.specs import RUNS, SPANS

T0 = datetime(2026, 1, 1, tzinfo=UTC)
WINDOW = QueryWindow(T0, T0 + timedelta(days=10))


def hourly(rows: Sequence[int], start: datetime = T0) -> list[Bucket]:
    """One bucket per hour from ``start``, holding ``rows[i]`` rows."""
    hour = timedelta(hours=1)
    return [Bucket(start + i * hour, start + (i + 1) * hour, n, n) for i, n in enumerate(rows) if n]


def assert_exact_cover(chunks: Sequence[Chunk], window: QueryWindow) -> None:
    assert chunks[0].start == window.start and chunks[-1].end == window.end
    for before, after in itertools.pairwise(chunks):
        assert before.end == after.start, "chunks must be contiguous"
    for index, chunk in enumerate(chunks):
        assert chunk.index == index and chunk.start < chunk.end
        assert chunk.start.microsecond % 1000 == 0 and chunk.end.microsecond % 1000 == 0


def cost(chunk: Chunk, costs: dict[str, int]) -> float:
    return sum(costs[name] * rows for name, rows in chunk.rows.items())


def test_uniform_rows_cut_into_equal_chunks() -> None:
    histograms = {"runs": hourly([100] * 240)}
    chunks = cut_chunks(histograms, WINDOW, 4, {"runs": 1})
    assert_exact_cover(chunks, WINDOW)
    assert [c.rows["runs"] for c in chunks] == [6000] * 4
    assert [c.end - c.start for c in chunks] == [timedelta(hours=60)] * 4


def test_chunks_balance_the_weighted_cost_not_the_time() -> None:
    rng = random.Random(7)
    runs = [rng.randrange(0, 400) for _ in range(240)]
    spans = [rng.randrange(0, 40) * (10 if 100 < i < 140 else 1) for i in range(240)]  # a burst of spans
    costs = {"runs": row_cost(RUNS), "spans": row_cost(SPANS)}
    chunks = cut_chunks({"runs": hourly(runs), "spans": hourly(spans)}, WINDOW, 8, costs)
    assert_exact_cover(chunks, WINDOW)
    assert len(chunks) == 8
    assert sum(c.rows["runs"] for c in chunks) == sum(runs)
    assert sum(c.rows["spans"] for c in chunks) == sum(spans)
    # each cut lands on an hour edge: a chunk is off its share by at most the heaviest hour
    share = (costs["runs"] * sum(runs) + costs["spans"] * sum(spans)) / 8
    heaviest = max(costs["runs"] * r + costs["spans"] * s for r, s in zip(runs, spans, strict=True))
    assert all(abs(cost(c, costs) - share) <= heaviest for c in chunks), [cost(c, costs) for c in chunks]
    durations = {c.end - c.start for c in chunks}
    assert len(durations) > 1, "the burst's chunks are shorter in time"


def test_spans_weigh_more_than_runs_per_row() -> None:
    assert row_cost(SPANS) > row_cost(RUNS)
    # the same rows, once as runs and once as spans: the spans' half of the range gets more chunks
    runs = hourly([100] * 120)
    spans = hourly([100] * 120, start=T0 + timedelta(hours=120))
    chunks = cut_chunks({"runs": runs, "spans": spans}, WINDOW, 10, {"runs": row_cost(RUNS), "spans": row_cost(SPANS)})
    middle = T0 + timedelta(hours=120)
    assert sum(c.end <= middle for c in chunks) < sum(c.start >= middle for c in chunks)


def test_few_busy_buckets_give_fewer_chunks_never_empty_ones() -> None:
    histograms = {"runs": [Bucket(T0 + timedelta(hours=5), T0 + timedelta(hours=6), 5000, 5000)]}
    chunks = cut_chunks(histograms, WINDOW, 16, {"runs": 1})
    assert_exact_cover(chunks, WINDOW)
    assert [c.rows["runs"] for c in chunks] == [5000], "its rows cannot be told apart within the bucket"
    two = [*histograms["runs"], Bucket(T0 + timedelta(days=3), T0 + timedelta(days=3, hours=1), 5000, 5000)]
    chunks = cut_chunks({"runs": two}, WINDOW, 16, {"runs": 1})
    assert_exact_cover(chunks, WINDOW)
    assert [c.rows["runs"] for c in chunks] == [5000, 5000]


def test_no_rows_is_one_chunk_of_the_whole_range() -> None:
    chunks = cut_chunks({"runs": [], "spans": []}, WINDOW, 4, {"runs": 1, "spans": 1})
    assert chunks == [Chunk(0, WINDOW.start, WINDOW.end)]


def test_one_chunk_is_the_whole_range() -> None:
    chunks = cut_chunks({"runs": hourly([3] * 240)}, WINDOW, 1, {"runs": 1})
    assert [(c.start, c.end, c.rows["runs"]) for c in chunks] == [(WINDOW.start, WINDOW.end, 720)]


def test_odd_window_edges_stay_exact() -> None:
    window = QueryWindow(T0 + timedelta(milliseconds=123), T0 + timedelta(days=2, milliseconds=457))
    clipped = [Bucket(max(b.start, window.start), min(b.end, window.end), b.rows, b.rows) for b in hourly([50] * 49)]
    chunks = cut_chunks({"runs": [b for b in clipped if b.start < b.end]}, window, 3, {"runs": 1})
    assert_exact_cover(chunks, window)
    assert len(chunks) == 3


def test_chunk_documents_round_trip() -> None:
    chunk = Chunk(3, T0, T0 + timedelta(hours=1, milliseconds=5), {"runs": 12, "spans": 40})
    again = Chunk.from_document(chunk.document())
    assert again == chunk and again.rows == chunk.rows


class Histograms:
    """Answers the planner's histogram queries from fixed rows (no server: the cut is what is tested)."""

    def __init__(self, rows: dict[str, list[dict[str, object]]]) -> None:
        self.rows = rows
        self.queries: list[str] = []

    def query(self, sql: str) -> list[dict[str, object]]:
        self.queries.append(sql)
        table = sql.split(" FROM ")[1].split(maxsplit=1)[0]
        return self.rows[table]


def test_plan_chunks_runs_one_histogram_per_table() -> None:
    step = plan_step(WINDOW)
    rows = {
        "runs": [{"bucket": (T0 + timedelta(milliseconds=step * i)).isoformat(), "n": 10} for i in range(100)],
        "spans": [{"bucket": (T0 + timedelta(milliseconds=step * i)).isoformat(), "n": 40} for i in range(100)],
    }
    server = Histograms(rows)
    chunks = plan_chunks(server, [RUNS, SPANS], WINDOW, 4)
    assert server.queries == [histogram_query(RUNS, WINDOW, step), histogram_query(SPANS, WINDOW, step)]
    assert_exact_cover(chunks, WINDOW)
    assert [c.rows for c in chunks] == [{"runs": 250, "spans": 1000}] * 4
    with pytest.raises(ValueError, match="chunks"):
        plan_chunks(server, [RUNS], WINDOW, 0)


class RowTimes:
    """Answers histogram queries from given row times per table, as the server would count them."""

    QUERY = re.compile(
        r"INTERVAL (?P<n>\d+) (?P<unit>SECOND|MILLISECOND)\).* FROM (?P<table>\w+) WHERE \w+ >= "
        r"toDateTime64\('(?P<start>[^']+)', 3, 'UTC'\) AND \w+ < toDateTime64\('(?P<end>[^']+)', 3, 'UTC'\)"
    )

    def __init__(self, times: dict[str, list[datetime]]) -> None:
        self.times = times
        self.queries: list[str] = []

    def query(self, sql: str) -> list[dict[str, object]]:
        self.queries.append(sql)
        found = self.QUERY.search(sql)
        assert found, sql
        size = int(found["n"])
        step = timedelta(seconds=size) if found["unit"] == "SECOND" else timedelta(milliseconds=size)
        start, end = (datetime.fromisoformat(found[k]).replace(tzinfo=UTC) for k in ("start", "end"))
        counts: dict[datetime, int] = {}
        epoch = datetime(1970, 1, 1, tzinfo=UTC)
        for at in self.times[found["table"]]:
            if start <= at < end:
                bucket = epoch + ((at - epoch) // step) * step
                counts[bucket] = counts.get(bucket, 0) + 1
        return [{"bucket": b.isoformat(), "n": n} for b, n in sorted(counts.items())]


def test_cuts_inside_a_burst_are_refined_with_finer_histograms() -> None:
    rng = random.Random(3)
    spread = [T0 + timedelta(seconds=rng.randrange(0, 10 * 86_400)) for _ in range(4_000)]
    # a batch starts 4,000 runs within a minute of day 5: one coarse bucket (two minutes) holds half the rows
    burst = [T0 + timedelta(days=5, seconds=rng.randrange(0, 60)) for _ in range(4_000)]
    server = RowTimes({"runs": spread + burst, "spans": []})
    chunks = plan_chunks(server, [RUNS, SPANS], WINDOW, 4)
    assert_exact_cover(chunks, WINDOW)
    assert len(chunks) == 4
    rows = [c.rows["runs"] for c in chunks]
    assert sum(rows) == 8_000
    assert max(rows) - min(rows) <= 200, rows  # a one-second bucket of the burst holds about 70
    coarse = cut_chunks({"runs": _coarse(server), "spans": []}, WINDOW, 4, {"runs": 26, "spans": 41})
    assert max(c.rows["runs"] for c in coarse) - min(c.rows["runs"] for c in coarse) > 1_000, "the burst unrefined"
    # one coarse histogram per table, then one finer one of the burst's stretch for runs only (spans has no rows)
    assert len(server.queries) == 3, server.queries


def _coarse(server: RowTimes) -> list[Bucket]:
    from cargo_elt.source.planner import parse_histogram

    step = plan_step(WINDOW)
    return parse_histogram(RowTimes(server.times).query(histogram_query(RUNS, WINDOW, step)), WINDOW, step)
