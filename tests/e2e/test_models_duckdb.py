"""The dbt project built and tested for real on DuckDB, through dlt's dbt runner, and its marts checked
against the emulator's own SQL answers (ClickHouse) to the same questions."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from cargo_elt.pipelines.models import MARTS, ModelsFailed, ModelsRequest, run_models
from cargo_elt.source.client import CargoClient
from tests.e2e.conftest import ModelledWarehouse
from tests.e2e.marts_support import assert_marts_equal_clickhouse, frontiers

REPO = Path(__file__).resolve().parents[2]


def test_models_build_test_and_are_fresh(modelled_warehouse: ModelledWarehouse) -> None:
    report = modelled_warehouse.models
    built = {m.name: m.status for m in report.models}
    assert set(MARTS) <= set(built), "every mart is built"
    assert set(built.values()) == {"success"}, built
    assert len(report.tests) >= 70 and {t.status for t in report.tests} == {"pass"}, [
        (t.name, t.status, t.message) for t in report.tests if t.status != "pass"
    ]
    # each table's status is the one its own age calls for (6 h / 24 h): the data ends an hour or two
    # before this machine's clock, and how recent a tiny workspace's newest change is depends on its seed
    assert {f.table for f in report.freshness} == {"runs", "batches", "spans", "records"}
    for f in report.freshness:
        assert f.age_hours is not None
        assert f.status == ("pass" if f.age_hours < 6 else "warn" if f.age_hours < 24 else "error"), f
    assert min(f.age_hours or 0 for f in report.freshness) < 6, "the emulator's data ends near this machine's now"


def test_marts_answer_like_clickhouse(modelled_warehouse: ModelledWarehouse) -> None:
    box = modelled_warehouse
    token = box.emulator.state.workspaces[0].token
    with CargoClient(token, base_url=box.emulator.base_url) as client:
        assert_marts_equal_clickhouse(box.query, client, frontiers(box.pipeline()))


def test_marts_name_every_workflow_and_leave_out_soft_deleted_runs(modelled_warehouse: ModelledWarehouse) -> None:
    box = modelled_warehouse
    unnamed = box.query("select count(*) from cargo_runs_daily where workflow_name is null")[0][0]
    assert unnamed == 0
    deleted = box.query("select count(*) from runs where deleted_at is not null")[0][0]
    counted = box.query("select sum(runs) from cargo_runs_daily")[0][0]
    loaded = box.query("select count(*) from runs")[0][0]
    assert counted == loaded - deleted
    listed = box.query(
        "select count(*) from cargo_batch_health where is_success_with_failures and rerun_record_ids is not null"
    )[0][0]
    assert listed > 0, "batches Cargo calls successful list the records to run again"


def test_run_metrics_daily_sums_the_nodes_and_reads_empty_without_the_table(
    modelled_warehouse: ModelledWarehouse,
) -> None:
    box = modelled_warehouse
    expected = box.query(
        "select workflow_uuid, coalesce(release_uuid, ''), day, sum(total_executions_count), "
        "sum(error_executions_count), round(sum(credits_used_count), 6) from run_metrics_daily group by all"
    )
    marts = box.query(
        "select workflow_uuid, coalesce(release_uuid, ''), day, total_executions_count, error_executions_count, "
        "round(credits_used_count, 6) from cargo_run_metrics_daily"
    )
    assert expected and sorted(marts) == sorted(expected), "one row per workflow and day, the nodes summed"
    assert box.query("select count(*) from cargo_run_metrics_daily where workflow_name is null")[0][0] == 0

    # a warehouse synced without the table (--tables, or an older source): the mart builds, empty
    copy = box.root / "without_daily_metrics.duckdb"
    shutil.copy(box.database, copy)
    with duckdb.connect(str(copy)) as con:
        con.execute("drop table cargo.run_metrics_daily")
    run_models(
        ModelsRequest(
            pipeline_name="cargo_models_copy",
            pipelines_dir=str(box.pipelines_dir),
            duckdb_path=str(copy),
            select="stg_cargo__run_metrics_daily+",
            check_freshness=False,
            quiet=True,
        )
    )
    with duckdb.connect(str(copy), read_only=True) as con:
        assert con.execute("select count(*) from cargo.cargo_run_metrics_daily").fetchone() == (0,)


def test_freshness_beyond_the_limit_fails_and_names_the_setting(modelled_warehouse: ModelledWarehouse) -> None:
    box = modelled_warehouse
    # the newest change is at least an hour old (the emulator's clock starts an hour before the current hour)
    with pytest.raises(ModelsFailed, match=r"dbt source freshness failed: .*runs error.*cargo_freshness_error_hours"):
        run_models(
            ModelsRequest(
                pipeline_name=box.pipeline_name,
                pipelines_dir=str(box.pipelines_dir),
                duckdb_path=str(box.database),
                select="stg_cargo__runs",
                run_tests=False,
                variables={"cargo_freshness_warn_hours": 1, "cargo_freshness_error_hours": 1},
                quiet=True,
            )
        )


def _cli(box: ModelledWarehouse, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DLT_DATA_DIR": str(box.data_dir), "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "cargo_elt.pipelines.cli", *args],
        cwd=box.root,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_cli_models_and_report(modelled_warehouse: ModelledWarehouse) -> None:
    box = modelled_warehouse
    where = ["--pipeline-name", box.pipeline_name, "--duckdb-path", str(box.database)]
    models = _cli(box, "models", *where, "--select", "cargo_runs_daily", "--no-freshness")
    assert models.returncode == 0, models.stderr[-3000:]
    assert "1 of 1 models built" in models.stdout and "marts: cargo_runs_daily" in models.stdout
    out = box.root / "cli_report.html"
    report = _cli(box, "report", *where, "--out", str(out), "--days", "7")
    assert report.returncode == 0, report.stderr[-3000:]
    assert report.stdout.strip().splitlines()[-1] == str(out)
    assert "Cargo workspace report" in out.read_text() and ", 7 days" in out.read_text()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["models", "--destination", "postgres"], "the models are written for duckdb, bigquery, snowflake"),
        (["models", "--duckdb-path", "nowhere.duckdb"], "no DuckDB warehouse at"),
        (["models", "--vars", "[1, 2]"], "--vars '[1, 2]' is not a mapping"),
        (["models", "--vars", "{cargo_freshness_warn_hours: -1}"], "must be a positive whole number of hours"),
        (["report", "--days", "0"], "--days 0 is out of range"),
        (["report", "--duckdb-path", "nowhere.duckdb"], "no DuckDB warehouse at"),
    ],
)
def test_cli_bad_input_exits_2(modelled_warehouse: ModelledWarehouse, args: list[str], message: str) -> None:
    result = _cli(modelled_warehouse, *args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and result.stderr.startswith("error: ")


def test_report_on_marts_not_built_says_what_to_run(modelled_warehouse: ModelledWarehouse, tmp_path: Path) -> None:
    bare = tmp_path / "bare.duckdb"
    with duckdb.connect(str(bare)) as con:
        con.execute("create schema cargo")
    result = _cli(modelled_warehouse, "report", "--pipeline-name", "bare", "--duckdb-path", str(bare))
    assert result.returncode == 1
    assert "cannot read the marts" in result.stderr and "cargo-elt models" in result.stderr
