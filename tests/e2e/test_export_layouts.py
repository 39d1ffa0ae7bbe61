"""Export layouts other than the emulator's own, and broken ones: never a silent drop.

The emulator serves the variants a real Cargo could plausibly send (``emulator/layouts.py``: NDJSON,
gzip, camelCase keys, CSV where JSON was asked, another output column), and records what it wrote
into each file (``GET /_emulator/files``). Each variant is synced into a real DuckDB and must load
exactly the rows of its files, the same rows as the emulator's own layout. A malformed file fails the
sync (exit 1, a message naming table, export and first bytes) with state and data untouched; rows
that cannot be placed are skipped only within ``max_skipped_rows``, counted in the summary.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from dlt.pipeline.exceptions import PipelineStepFailed

from cargo_elt.emulator.layouts import DIGEST_MODULUS, uuid_digest
from tests.conftest import FIXED_NOW
from tests.e2e.support import Sandbox
from tests.e2e.test_cli import Workdir, output, summary

EXPORTS = ["run_outputs", "batch_outputs"]
OWN_LAYOUT = {
    "runOutputsFormat": "array",
    "runOutputsKeys": "underscore",
    "gzipExports": False,
    "batchOutputColumn": "output",
    "malformedExports": [],
    "defectiveRows": 0,
}
Loaded = dict[str, list[tuple[Any, ...]]]


@pytest.fixture(scope="module")
def emulator() -> Iterator[Any]:
    """This module's own emulator (it changes the export layout and renames columns)."""
    from cargo_elt.emulator.server import EmulatorOptions, running_emulator

    options = EmulatorOptions(port=0, seed=11, scale="tiny", workspaces=1, admin=True, now=FIXED_NOW)
    with running_emulator(options) as running:
        yield running


def admin(emulator: Any, method: str, path: str, **kwargs: Any) -> Any:
    response = httpx.request(method, f"{emulator.base_url}{path}", timeout=120, **kwargs)
    response.raise_for_status()
    return response.json()


@pytest.fixture
def layout(emulator: Any) -> Iterator[Callable[..., None]]:
    """Switch the export layout for one test (and forget the files served so far); restored after."""

    def switch(**settings: Any) -> None:
        admin(emulator, "POST", "/_emulator/settings", json={**OWN_LAYOUT, **settings})
        admin(emulator, "DELETE", "/_emulator/files")

    yield switch
    admin(emulator, "POST", "/_emulator/settings", json=OWN_LAYOUT)


def served(emulator: Any, kind: str) -> list[dict[str, Any]]:
    files = admin(emulator, "GET", "/_emulator/files")["files"]
    return [f for f in files if f["kind"] == kind]


def loaded(box: Sandbox, tables: list[str]) -> Loaded:
    """Every loaded row of the export tables, JSON as text, in key order."""
    queries = {
        "run_outputs": (
            "SELECT run_uuid, output_node_slug, workflow_uuid, workspace_uuid, record_id, record_title, status, "
            "error_message, created_at, finished_at, CAST(input AS VARCHAR), CAST(output AS VARCHAR) "
            "FROM cargo.run_outputs ORDER BY run_uuid, output_node_slug"
        ),
        "batch_outputs": (
            "SELECT batch_uuid, output_node_slug, row_number, workflow_uuid, record_id, CAST(input AS VARCHAR), "
            "CAST(output AS VARCHAR), batch_finished_at FROM cargo.batch_outputs "
            "ORDER BY batch_uuid, output_node_slug, row_number"
        ),
    }
    with box.db() as con:
        return {table: con.execute(queries[table]).fetchall() for table in tables}


@pytest.fixture(scope="module")
def reference(emulator: Any, tmp_path_factory: pytest.TempPathFactory) -> Loaded:
    """The export tables as synced from the emulator's own layout."""
    admin(emulator, "DELETE", "/_emulator/files")
    box = Sandbox(tmp_path_factory.mktemp("reference"), emulator, name="reference")
    stats = box.sync(tables=EXPORTS)
    rows = loaded(box, EXPORTS)
    assert_rows_equal_the_files(emulator, rows)
    assert all(len(rows[t]) == stats[t].rows > 0 and stats[t].skipped == 0 for t in EXPORTS)
    assert any(r[-1] is not None for r in rows["run_outputs"]) and any(r[6] is not None for r in rows["batch_outputs"])
    return rows


def assert_rows_equal_the_files(emulator: Any, rows: Loaded) -> None:
    """What was loaded is what the emulator wrote: as many rows, the same runs, the same rows per batch."""
    if "run_outputs" in rows:
        files = served(emulator, "run-outputs")
        assert files and not any(f.get("malformed") for f in files)
        assert sum(f["rows"] - f["defective"] for f in files) == len(rows["run_outputs"])
        digest = sum(uuid_digest(str(r[0])) for r in rows["run_outputs"]) % DIGEST_MODULUS
        assert sum(f["runsDigest"] for f in files) % DIGEST_MODULUS == digest, "not the runs written"
    if "batch_outputs" in rows:
        files = served(emulator, "batch")
        per_batch: dict[str, int] = {}
        for row in rows["batch_outputs"]:
            per_batch[str(row[0])] = per_batch.get(str(row[0]), 0) + 1
        written = {f["batch"]: f["rows"] - f["defective"] for f in files if f["rows"] - f["defective"]}
        assert written and per_batch == written


VARIANTS = [
    pytest.param(
        {"runOutputsFormat": "ndjson", "runOutputsKeys": "camel", "gzipExports": True},
        ("run_outputs: the export arrives as NDJSON (gzip)", "run_outputs: keys spelled like 'createdAt'"),
        id="ndjson-gzip-camel",
    ),
    pytest.param(
        {"runOutputsKeys": "snake", "gzipExports": True},
        ("run_outputs: the export arrives as a JSON array (gzip)", "keys spelled like 'created_at'"),
        id="array-gzip-snake",
    ),
    pytest.param(
        {"runOutputsFormat": "csv"}, ("run_outputs: the export arrives as CSV,",), id="csv-although-json-was-asked"
    ),
    pytest.param(
        {"batchOutputColumn": "{slug}", "gzipExports": True},
        ("batch_outputs: the files arrive as CSV (gzip), the output in column 'end'",),
        id="output-column-named-after-the-node",
    ),
    pytest.param(
        {"batchOutputColumn": "_output"},
        ("batch_outputs: the files arrive as CSV, the output in column '_output'",),
        id="output-column-underscored",
    ),
]


@pytest.mark.parametrize(("settings", "said"), VARIANTS)
def test_every_plausible_layout_loads_exactly_the_rows_of_its_files(
    settings: dict[str, Any],
    said: tuple[str, ...],
    emulator: Any,
    reference: Loaded,
    layout: Callable[..., None],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    layout(**settings)
    caplog.set_level(logging.INFO, logger="cargo_elt.source")
    box = Sandbox(tmp_path, emulator, name="variant")
    stats = box.sync(tables=EXPORTS)
    infos = "\n".join(r.getMessage() for r in caplog.records if r.levelno == logging.INFO)
    for fragment in said:
        assert fragment in infos, f"the adaptation is not said at INFO: {fragment!r} in\n{infos}"
    rows = loaded(box, EXPORTS)
    assert_rows_equal_the_files(emulator, rows)
    for table in EXPORTS:
        assert stats[table].skipped == 0 and stats[table].rows == len(rows[table])
        assert rows[table] == reference[table], f"{table}: other rows than from the emulator's own layout"
    if settings.get("gzipExports"):
        assert all(f.get("gzip") for f in served(emulator, "run-outputs") + served(emulator, "batch"))


def test_gzipped_segment_shards_load_like_plain_ones(
    emulator: Any, layout: Callable[..., None], tmp_path: Path
) -> None:
    token = emulator.state.workspaces[0].token
    models = httpx.get(
        f"{emulator.base_url}/v1/storage/models/list", headers={"authorization": f"Bearer {token}"}, timeout=60
    ).json()["models"]
    segments = [{"model_uuid": models[0]["uuid"], "table_name": "every_record"}]
    counts = []
    for gz in (False, True):
        layout(gzipExports=gz)
        box = Sandbox(tmp_path, emulator, name=f"segments_{gz}")
        stats = box.sync(tables=["segment_records"], segments=segments)
        written = served(emulator, "segment")
        assert all(bool(f.get("gzip")) is gz for f in written)
        with box.db() as con:
            ids = sorted(r[0] for r in con.execute("SELECT _id FROM cargo.every_record").fetchall())
        assert len(ids) == sum(f["rows"] for f in written) == stats["every_record"].rows > 0
        counts.append(ids)
    assert counts[0] == counts[1]


# -- rows that cannot be placed ------------------------------------------------------------------------


def test_defective_rows_fail_the_sync_unless_allowed_and_hold_the_frontier(
    emulator: Any, layout: Callable[..., None], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    layout(defectiveRows=4)
    box = Sandbox(tmp_path, emulator, name="defective")
    with pytest.raises(PipelineStepFailed, match=r"could not be read or placed .*max_skipped_rows is 0"):
        box.sync(tables=["run_outputs"])
    assert not box.pipeline().state.get("sources"), "a failed sync leaves no state"

    caplog.set_level(logging.WARNING, logger="cargo_elt.source")
    admin(emulator, "DELETE", "/_emulator/files")
    stats = box.sync(tables=EXPORTS, max_skipped_rows=10_000)
    rows = loaded(box, EXPORTS)
    assert_rows_equal_the_files(emulator, rows)  # every row written, less the defective ones
    defective = {
        "run_outputs": sum(f["defective"] for f in served(emulator, "run-outputs")),
        "batch_outputs": sum(f["defective"] for f in served(emulator, "batch")),
    }
    assert all(defective.values())
    assert {t: stats[t].skipped for t in EXPORTS} == defective
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "run_outputs: skipped 1 row(s): run outputs: no creation time (_created_at) (runs/download-outputs" in logged
    assert "batch_outputs: skipped 1 row(s): batch outputs: a row whose cells do not match the header" in logged
    state = box.pipeline().state["sources"]["cargo"]["resources"]
    frontiers = state["run_outputs"]["frontiers"]
    start = "2026-01-01T00:00:00+00:00"
    for written in served(emulator, "run-outputs"):
        frontier = frontiers[f"{written['workflow']}:{written['outputNodeSlug']}"]
        assert (frontier == start) is bool(written["defective"]), "held before the skipped rows, only there"
    assert state["batch_outputs"]["frontier"] < FIXED_NOW.isoformat(), "held at the first batch with a skipped row"


# -- the command line: malformed files and the summary ----------------------------------------------


@pytest.fixture(scope="module")
def synced(emulator: Any, tmp_path_factory: pytest.TempPathFactory) -> Workdir:
    """A working directory after one good ``cargo-elt sync`` of the exports."""
    admin(emulator, "POST", "/_emulator/settings", json=OWN_LAYOUT)
    work = Workdir(tmp_path_factory.mktemp("synced"), emulator.state.workspaces[0].token)
    result = work.sync(
        "--base-url", emulator.base_url, "--tables", ",".join(EXPORTS), "--progress", "none",
        SOURCES__CARGO__START_DATE="2026-01-01",
    )  # fmt: skip
    assert result.returncode == 0, output(result)
    assert {t: line[1] for t, line in summary(result.stdout).items()} == dict.fromkeys(EXPORTS, 0)
    return work


def state_of(work: Workdir) -> dict[str, Any]:
    state = json.loads((work.pipeline_dir / "state.json").read_text())
    state.pop("_local", None)
    assert isinstance(state, dict)
    return state


FAILURES = [
    pytest.param(
        {"malformedExports": ["run-outputs"]},
        "run_outputs",
        (
            "reading run_outputs",
            "run_outputs: cannot read the file of runs/download-outputs (workflow ",
            "an HTML or XML document (an error page?), starting b'<!DOCTYPE html>",
            "expected a JSON array of objects, NDJSON (one JSON object per line) or CSV with a header row",
            "sync state is unchanged",
        ),
        id="html-instead-of-run-outputs",
    ),
    pytest.param(
        {"batchOutputColumn": "node_result_v2"},
        "batch_outputs",
        (
            "batch_outputs: cannot read the file of orchestration/batches/",
            "CSV with header [",
            "'node_result_v2'] (",
            "in all), which has no output column",
            "expected the node's output in a column named 'output' or",
            "sync state is unchanged",
        ),
        id="unknown-batch-output-column",
    ),
    pytest.param(
        {"defectiveRows": 3},
        "run_outputs,batch_outputs",
        ("row(s) could not be read or placed", "set sources.cargo.max_skipped_rows to at least", "unchanged"),
        id="skipped-rows-not-allowed",
    ),
]


@pytest.mark.parametrize(("settings", "tables", "expect"), FAILURES)
def test_a_file_the_sync_cannot_read_fails_it_and_changes_nothing(
    settings: dict[str, Any],
    tables: str,
    expect: tuple[str, ...],
    emulator: Any,
    synced: Workdir,
    layout: Callable[..., None],
    tmp_path: Path,
) -> None:
    shutil.copytree(synced.root, tmp_path, dirs_exist_ok=True)
    work = Workdir(tmp_path, synced.token)
    state, counts = state_of(work), work.counts()
    layout(**settings)
    result = work.sync(
        "--base-url", emulator.base_url, "--full-refresh", "--tables", tables, "--progress", "none",
        SOURCES__CARGO__START_DATE="2026-01-01",
    )  # fmt: skip
    assert result.returncode == 1, output(result)
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: the sync failed reading "), output(result)
    for fragment in expect:
        assert fragment in last, f"{fragment!r} not in the message\n{output(result)}"
    assert "Traceback" not in result.stderr and result.stdout == "", output(result)
    assert state_of(work) == state, "the sync state changed"
    assert work.counts() == counts, "the warehouse changed"


def test_allowed_skips_are_in_the_summary_and_the_log(
    emulator: Any, synced: Workdir, layout: Callable[..., None], tmp_path: Path
) -> None:
    shutil.copytree(synced.root, tmp_path, dirs_exist_ok=True)
    work = Workdir(tmp_path, synced.token)
    layout(defectiveRows=3)
    result: subprocess.CompletedProcess[str] = work.sync(
        "--base-url", emulator.base_url, "--full-refresh", "--tables", ",".join(EXPORTS), "--progress", "none",
        SOURCES__CARGO__START_DATE="2026-01-01", SOURCES__CARGO__MAX_SKIPPED_ROWS="100000",
    )  # fmt: skip
    assert result.returncode == 0, output(result)
    report = summary(result.stdout)
    defective = {
        "run_outputs": sum(f["defective"] for f in served(emulator, "run-outputs")),
        "batch_outputs": sum(f["defective"] for f in served(emulator, "batch")),
    }
    assert all(defective.values())
    assert {t: line[1] for t, line in report.items()} == defective, output(result)
    assert "row(s) skipped and not loaded, within sources.cargo.max_skipped_rows = 100000" in result.stderr
    written = {
        "run_outputs": sum(f["rows"] for f in served(emulator, "run-outputs")),
        "batch_outputs": sum(f["rows"] for f in served(emulator, "batch")),
    }
    assert {t: line[0] + line[1] for t, line in report.items()} == written, "loaded + skipped = rows in the files"


# -- fact columns under other names ---------------------------------------------------------------------


@pytest.fixture
def rename(emulator: Any) -> Iterator[Callable[[str, str, str], None]]:
    done: list[tuple[str, str]] = []

    def apply(table: str, column: str, to: str) -> None:
        admin(
            emulator, "POST", "/_emulator/schema", json={"action": "rename", "table": table, "column": column, "to": to}
        )
        done.append((table, column))

    yield apply
    for table, column in done:
        admin(
            emulator,
            "POST",
            "/_emulator/schema",
            json={"action": "rename", "table": table, "column": column, "to": column},
        )


def test_the_record_key_under_another_name_is_mapped(
    emulator: Any, rename: Callable[[str, str, str], None], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rename("records", "id", "record_id")
    caplog.set_level(logging.INFO, logger="cargo_elt.source")
    box = Sandbox(tmp_path, emulator, name="renamed_key")
    box.sync(tables=["records"])
    box.assert_equals_truth(("records",))
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert "records.id: the server calls this column record_id; reading it from there" in infos
    with box.db() as con:
        columns = [r[0] for r in con.execute("DESCRIBE cargo.records").fetchall()]
    assert "id" in columns and "record_id" not in columns


def test_a_missing_column_is_dropped_a_missing_time_column_fails_the_table(
    emulator: Any, rename: Callable[[str, str, str], None], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rename("runs", "temporal_workflow_id", "workflow_run_reference")
    caplog.set_level(logging.INFO, logger="cargo_elt.source")
    box = Sandbox(tmp_path, emulator, name="renamed")
    stats = box.sync(tables=["runs"])
    box.assert_equals_truth(("runs",))
    said = {r.getMessage(): r.levelno for r in caplog.records}
    assert said.get("runs.temporal_workflow_id: the server has no such column; it is not read, rows loaded from "
                    "now on hold NULL in it (a destination that has the column keeps it)") == logging.INFO  # fmt: skip
    with box.db() as con:
        kept = con.execute(
            "SELECT count(workflow_run_reference), count(temporal_workflow_id) FROM cargo.runs"
        ).fetchone()
    assert kept == (stats["runs"].rows, 0), "the column under its new name is loaded, the old one is NULL"

    rename("spans", "execution_started_at", "started_at")
    with pytest.raises(
        PipelineStepFailed, match=r"spans: the server no longer has column\(s\) \['execution_started_at'\]"
    ):
        Sandbox(tmp_path, emulator, name="renamed_time").sync(tables=["spans"])
