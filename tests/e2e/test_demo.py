"""``cargo-elt demo`` as a user runs it (a subprocess), at the tiny scale, in a scratch directory: it
syncs, builds and tests the models, answers from the marts and ends with the report's path."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import duckdb


def test_demo_answers_with_play_names(tmp_path: Path) -> None:
    database = tmp_path / "demo.duckdb"
    env = {**os.environ, "DLT_DATA_DIR": str(tmp_path / "dlt")}
    result = subprocess.run(
        [sys.executable, "-m", "cargo_elt.pipelines.cli", "demo", "--scale", "tiny", "--database", str(database)],
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Top failing plays, by name" in result.stdout
    with duckdb.connect(str(database), read_only=True) as con:
        plays = {row[0] for row in con.execute("SELECT name FROM cargo.plays").fetchall()}
        failing = con.execute(
            "SELECT w.name FROM cargo.runs r JOIN cargo.workflows w ON w.uuid = r.workflow_uuid "
            "WHERE r.status = 'error' AND w.owner_kind = 'play' GROUP BY 1 ORDER BY count(*) DESC LIMIT 1"
        ).fetchall()
    assert failing, "the tiny scale has failed play runs"
    section = result.stdout.split("Top failing plays, by name")[1].split("\n\n")[0]
    assert failing[0][0] in section and failing[0][0] in plays
    assert "28 of 28 models built" in result.stdout and "tests: " in result.stdout
    # the clock moved an hour for the incremental sync: said on stdout, warned about once on stderr
    assert "warns that Cargo's clock is now an hour ahead" in result.stdout
    assert result.stderr.count("ahead of this machine's") == 1, result.stderr[-3000:]
    report = Path(result.stdout.strip().splitlines()[-1])
    assert report == tmp_path / "cargo_demo_report.html" and report.is_file(), "the last line is the report's path"
    assert failing[0][0] in report.read_text()
    with duckdb.connect(str(database), read_only=True) as con:
        marts = {
            r[0]
            for r in con.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_name LIKE 'cargo_%'"
            ).fetchall()
        }
    assert {"cargo_runs_daily", "cargo_node_failures_daily", "cargo_credits_daily", "cargo_batch_health"} <= marts
