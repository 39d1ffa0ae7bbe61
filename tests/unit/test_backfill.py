"""The pieces of ``cargo-elt backfill`` that need no server: names, staging layouts, plans, the chunk check."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import dlt
import pytest

from cargo_elt.pipelines.backfill import (
    BackfillFailed,
    BackfillPlan,
    BackfillReport,
    ChunkResult,
    check_chunks_loaded,
    chunk_pipeline_name,
    chunk_staging_layout,
    default_chunks,
    with_staging_layout,
)
from cargo_elt.source.chunks import Chunk

T0 = datetime(2026, 1, 1, tzinfo=UTC)
PLAN = BackfillPlan(
    started_at=T0 + timedelta(days=30),
    since=T0,
    until=T0 + timedelta(days=30) - timedelta(minutes=2),
    tables=("runs", "spans"),
    chunks=(
        Chunk(0, T0, T0 + timedelta(days=10), {"runs": 10, "spans": 50}),
        Chunk(1, T0 + timedelta(days=10), T0 + timedelta(days=30) - timedelta(minutes=2), {"runs": 12, "spans": 40}),
    ),
    planning_queries=2,
)


def loaded(index: int, error: str | None = None) -> ChunkResult:
    chunk = PLAN.chunks[index]
    return ChunkResult(index, chunk.start.isoformat(), chunk.end.isoformat(), {"runs": 1}, error=error)


def test_every_chunk_must_load_exactly_once_before_the_handover() -> None:
    check_chunks_loaded(PLAN, [loaded(1), loaded(0)])
    with pytest.raises(BackfillFailed, match=r"chunks \[1\] not loaded"):
        check_chunks_loaded(PLAN, [loaded(0)])
    with pytest.raises(BackfillFailed, match=r"chunks \[1\] not loaded"):
        check_chunks_loaded(PLAN, [loaded(0), loaded(1, error="boom")])
    with pytest.raises(BackfillFailed, match=r"chunks \[0\] loaded twice"):
        check_chunks_loaded(PLAN, [loaded(0), loaded(0), loaded(1)])


def test_each_chunk_gets_its_own_pipeline_and_staging_dataset() -> None:
    assert chunk_pipeline_name("cargo", 7) == "cargo_backfill_007"
    base = dlt.destinations.duckdb("/tmp/never-opened.duckdb", create_indexes=True)
    chunked = with_staging_layout(base, chunk_staging_layout(7))
    assert type(chunked) is type(base)
    assert chunked.config_params["staging_dataset_name_layout"] == "%s_backfill_007_staging"
    assert chunked.config_params["credentials"] == base.config_params["credentials"]
    assert chunked.config_params["create_indexes"] is True
    assert "staging_dataset_name_layout" not in base.config_params, "the original factory is left as it was"
    config = chunked.configuration(None, accept_partial=True)
    config.dataset_name = "cargo"
    assert config.normalize_staging_dataset_name(dlt.Schema("cargo")) == "cargo_backfill_007_staging"


def test_one_chunk_per_worker_by_default() -> None:
    assert [default_chunks(w) for w in (1, 2, 4)] == [1, 2, 4]


def test_plan_documents_round_trip_for_airflow() -> None:
    again = BackfillPlan.from_document(PLAN.document())
    assert again == PLAN
    assert [c.rows for c in again.chunks] == [c.rows for c in PLAN.chunks]


def test_the_report_sums_rows_per_table() -> None:
    results = [
        ChunkResult(0, PLAN.chunks[0].start.isoformat(), PLAN.chunks[0].end.isoformat(), {"runs": 10, "spans": 50}),
        ChunkResult(1, PLAN.chunks[1].start.isoformat(), PLAN.chunks[1].end.isoformat(), {"runs": 12, "spans": 41}),
    ]
    report = BackfillReport(PLAN, 2, results, {"runs": PLAN.until.isoformat(), "spans": None}, 12.5)
    assert report.rows() == {"runs": 22, "spans": 91}
    text = report.text()
    assert "backfill of [2026-01-01 00:00:00Z, 2026-01-30 23:58:00Z)" in text
    assert "2 chunks, 2 workers" in text and "runs                        22  2026-01-30 23:58:00Z" in text
    assert report.document()["rows"] == {"runs": 22, "spans": 91}


def test_workers_and_chunks_out_of_range_name_the_option() -> None:
    from cargo_elt.pipelines.backfill import MAX_WORKERS, check_chunks, check_workers
    from cargo_elt.source.errors import CargoConfigurationError

    assert check_workers(4) == 4 and check_chunks(12) == 12
    for bad in (0, -1, MAX_WORKERS + 1, True, 2.5, "4"):
        with pytest.raises(CargoConfigurationError, match=rf"^--workers {bad!r} is not a whole number from 1 to"):
            check_workers(bad)
    with pytest.raises(CargoConfigurationError, match=r"^conf chunks 0 is not a whole number from 1 to 1000"):
        check_chunks(0, "conf chunks")


def test_every_chunk_and_the_handover_get_the_checked_settings() -> None:
    """A chunk in another process (or on another Airflow worker) reads with what was checked, not what its own
    environment holds: every setting but the ones a chunk sets itself travels in ``source_args``."""
    from cargo_elt.pipelines.backfill import LoadTarget
    from cargo_elt.source.config import parse_settings

    settings = parse_settings(
        {
            "api_token": "secret-token",
            "base_url": "http://cargo.test",
            "tables": ["runs", "spans"],
            "since": "2026-01-01",
            "start_date": "2025-06-01",
            "concurrency": 3,
            "settle_seconds": 0,
        }
    )
    target = LoadTarget.of(settings, destination=dlt.destinations.duckdb(":memory:"), dataset="d", pipeline_name="p")
    assert (target.token, target.base_url, target.tables) == ("secret-token", "http://cargo.test", ("runs", "spans"))
    assert not {"api_token", "base_url", "tables", "since", "until"} & target.source_args.keys()
    assert target.source_args["concurrency"] == 3
    assert target.source_args["settle_seconds"] == 0
    assert target.source_args["start_date"] == "2025-06-01T00:00:00+00:00"
    assert "secret-token" not in repr(target)


def test_a_chunk_reads_in_steps_and_loads_into_duckdb_as_sync_does(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A chunk is a first sync of its range: steps bound its load's memory (a whole chunk at once took
    1 GB for a million rows at ``medium``), and DuckDB merges each fact file in place within ``auto``."""
    from cargo_elt.pipelines.backfill import BackfillRequest, _destination, backfill_settings
    from cargo_elt.pipelines.duckdb_load import auto_memory_limit, duckdb_destination
    from cargo_elt.source.steps import DEFAULT_STEP_ROWS, DEFAULT_STEP_SECONDS

    monkeypatch.setenv("SOURCES__CARGO__API_TOKEN", "unit-token")
    request = BackfillRequest(since="2026-01-01", base_url="http://cargo.test")
    settings, _ = backfill_settings(request)
    assert (settings.step_rows, settings.step_seconds) == (DEFAULT_STEP_ROWS, DEFAULT_STEP_SECONDS)
    monkeypatch.setenv("SOURCES__CARGO__STEP_ROWS", "50000")
    assert backfill_settings(request)[0].step_rows == 50_000, "the user's step is kept"

    destination = _destination("duckdb", str(tmp_path / "w.duckdb"), "auto", 2_000_000)
    assert isinstance(destination, duckdb_destination)
    assert destination.config_params["credentials"].global_config["memory_limit"] == auto_memory_limit(2_000_000)
    unbounded = _destination("duckdb", str(tmp_path / "w.duckdb"), "none", 2_000_000)
    assert not getattr(unbounded.config_params["credentials"], "global_config", None), "none: DuckDB's own"
