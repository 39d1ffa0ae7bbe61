"""The dbt project on the other two warehouses: Snowflake run for real against fakesnow, BigQuery and
Snowflake compiled offline with their adapters.

Snowflake: the sync loads through dlt's Snowflake destination into fakesnow (``tests/snowflake_shim.py``),
then dbt-snowflake builds and tests every model and checks freshness there, and the marts are compared
with ClickHouse's answers as on DuckDB. dbt runs in this process, through the same function dlt's runner
calls in its subprocess (``dlt.helpers.dbt.dbt_utils.run_dbt_command``) with the profile and credentials
the runner derives from the pipeline: fakesnow patches the connector in this process only, so dbt cannot
run in a child process here. fakesnow executes Snowflake SQL by translating it to DuckDB (sqlglot), so
this shows the Snowflake dialect the project generates is accepted and computes the same answers; it is
not real Snowflake.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cargo_elt.pipelines.demo import DEMO_TABLES
from cargo_elt.pipelines.models import MARTS, PROFILES_DIR, PROJECT_DIR
from cargo_elt.source.client import CargoClient
from tests.e2e.marts_support import assert_marts_equal_clickhouse, frontiers

pytest.importorskip("fakesnow", reason="fakesnow comes with the `dev` extra")

pytestmark = [
    # fakesnow's cursor fetches DB-API results through arrow and warns about the copy it makes
    # (fakesnow/cursor.py), as in tests/e2e/test_snowflake_fakesnow.py.
    pytest.mark.filterwarnings("ignore:Arrow output on a DB-API result makes an extra copy:UserWarning"),
]


@pytest.fixture(scope="module")
def live_emulator() -> Iterator[Any]:
    from cargo_elt.emulator.server import EmulatorOptions, running_emulator

    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    with running_emulator(EmulatorOptions(port=0, seed=6, scale="tiny", workspaces=1, admin=True, now=now)) as emu:
        yield emu


def test_models_build_on_snowflake_through_fakesnow(
    live_emulator: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dlt
    from dbt.cli.main import dbtRunner
    from dlt.common.configuration.utils import add_config_to_env
    from dlt.helpers.dbt.dbt_utils import run_dbt_command

    from cargo_elt.source import cargo_source
    from cargo_elt.source.warehouse import apply_snowflake_layout
    from tests.snowflake_shim import fakesnow_destination

    tables = [t for t in DEMO_TABLES if t != "segment_records"]
    with fakesnow_destination(tmp_path / "fakesnow") as destination:
        pipeline = dlt.pipeline(
            "cargo_snowflake_models", destination=destination, dataset_name="cargo", pipelines_dir=str(tmp_path)
        )
        token = live_emulator.state.workspaces[0].token
        source = apply_snowflake_layout(cargo_source(api_token=token, base_url=live_emulator.base_url, tables=tables))
        pipeline.run(source).raise_on_failed_jobs()

        runner = dlt.dbt.package(pipeline, str(PROJECT_DIR), venv=dlt.dbt.get_venv(pipeline, venv_path=""))
        assert runner.config.package_profile_name == "snowflake"
        saved = dict(os.environ)
        add_config_to_env(runner.credentials, ("dlt",))  # what the runner gives dbt: DLT__CREDENTIALS__*
        for key, value in os.environ.items():
            if key not in saved or saved[key] != value:
                monkeypatch.setenv(key, value)  # undone after the test
        paths = ["--target-path", str(tmp_path / "target"), "--log-path", str(tmp_path / "logs")]
        results = run_dbt_command(
            str(PROJECT_DIR),
            "build",
            str(PROFILES_DIR),
            runner.config.package_profile_name,
            # no dbt.log: dbt leaves its file handler open in the calling process
            global_args=["--quiet", "--no-print", "--log-level-file", "none"],
            command_args=[*paths, "--threads", "1"],
            package_vars={"source_dataset_name": runner.source_dataset_name},
        )
        statuses = {r.model_name: r.status for r in results}  # type: ignore[union-attr]
        assert set(MARTS) <= set(statuses)
        assert set(statuses.values()) <= {"success", "pass"}, statuses
        assert sum(1 for s in statuses.values() if s == "pass") >= 70, "the data tests ran"

        freshness = dbtRunner().invoke(
            [
                "--quiet",
                "--log-level-file",
                "none",
                "source",
                "freshness",
                "--project-dir",
                str(PROJECT_DIR),
                "--profiles-dir",
                str(PROFILES_DIR),
                "--profile",
                "snowflake",
                "--vars",
                '{"source_dataset_name": "cargo"}',
                *paths,
            ],
        )
        assert freshness.success, freshness.exception
        # The emulator's data ends an hour before this machine's clock, but how recent each table's
        # newest change is depends on the hour the data was generated for (a tiny workspace is quiet at
        # night): each table's status is the one its own age calls for, on the project's 6 h / 24 h limits.
        checked: dict[str, tuple[str, str]] = {}
        for result in freshness.result:  # type: ignore[union-attr]
            age_hours = float(result.age) / 3600
            expected = "pass" if age_hours < 6 else "warn" if age_hours < 24 else "error"
            checked[result.node.name] = (str(result.status), expected)
        assert set(checked) == {"runs", "batches", "spans", "records"}
        assert all(status == expected for status, expected in checked.values()), checked

        def query(sql: str) -> list[Any]:
            with pipeline.sql_client() as client:
                client.execute_sql("USE SCHEMA cargo")  # the marts are read by their bare names
                return list(client.execute_sql(sql) or [])

        with CargoClient(token, base_url=live_emulator.base_url) as client:
            assert_marts_equal_clickhouse(query, client, frontiers(pipeline))


def _fake_service_account_key() -> str:
    """A well-formed private key, so dbt-bigquery builds its credentials object (it never signs a token here)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return pem.decode()


COMPILE_CASES = {
    "bigquery": (
        {
            "DLT__CREDENTIALS__PROJECT_ID": "offline-project",
            "DLT__CREDENTIALS__CLIENT_EMAIL": "loader@offline-project.iam.gserviceaccount.com",
        },
        (
            "percentile_cont(duration_s, 0.95) over (partition by workflow_uuid, created_day)",
            "date(created_at, 'UTC') as created_day",
            "string_agg(",
            "`offline-project`.`cargo`.`runs`",
        ),
    ),
    "snowflake": (
        {
            "DLT__CREDENTIALS__HOST": "offline-account",
            "DLT__CREDENTIALS__USERNAME": "loader",
            "DLT__CREDENTIALS__PASSWORD": "not-used-offline",
            "DLT__CREDENTIALS__DATABASE": "ANALYTICS",
        },
        (
            "percentile_cont(0.95) within group (order by duration_s) over (partition by workflow_uuid, created_day)",
            "to_date(convert_timezone('UTC', created_at)) as created_day",
            "listagg(",
            "ANALYTICS.cargo.runs",
        ),
    ),
}


@pytest.mark.parametrize("profile", sorted(COMPILE_CASES))
def test_models_compile_offline(profile: str, tmp_path: Path) -> None:
    credentials, expected = COMPILE_CASES[profile]
    env = {k: v for k, v in os.environ.items() if not k.startswith("DLT__")}
    env.update(credentials)
    if profile == "bigquery":
        env["DLT__CREDENTIALS__PRIVATE_KEY"] = _fake_service_account_key()
    # any connection attempt goes to a closed local port: the compile must not need one
    env.update({"HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9", "NO_PROXY": ""})
    target = tmp_path / "target"
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "from dbt.cli.main import cli; cli()",
            "compile",
            "--no-populate-cache",
            "--profiles-dir",
            str(PROFILES_DIR),
            "--profile",
            profile,
            "--target-path",
            str(target),
            "--log-path",
            str(tmp_path / "logs"),
            "--vars",
            '{"source_dataset_name": "cargo", "cargo_check_sources": false}',
        ],
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    compiled = target / "compiled" / "cargo_elt" / "models"
    sql = {path.stem: path.read_text() for path in compiled.rglob("*.sql")}
    assert set(MARTS) <= set(sql)
    text = "\n".join(sql.values())
    for fragment in expected:
        assert fragment in text, f"{profile}: {fragment!r} not in the compiled SQL"
