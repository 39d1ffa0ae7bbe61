"""Opt-in, against a real Cargo workspace: ``cargo-elt check``, then a bounded sync of the last day.

Run with ``CARGO_LIVE_TOKEN=crg_... pytest -m live`` (``CARGO_LIVE_BASE_URL`` for a host other than
``https://api.getcargo.io``). Without the token both tests are reported as skipped, with the reason.
They use the real service and a real DuckDB file under the test's temporary directory; nothing is
mocked, and nothing is written to Cargo (``check`` is read-only, a sync only reads).

What a failure means: ``check``'s report (printed in the failure) names each way the workspace
differs from what the connector assumes; the sync's output says which table failed and why.
"""

from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path

import duckdb
import pytest

from tests.e2e.test_cli import Workdir, cargo_elt, output, summary

TOKEN = os.environ.get("CARGO_LIVE_TOKEN", "")
BASE_URL = os.environ.get("CARGO_LIVE_BASE_URL", "") or "https://api.getcargo.io"
FACT_TABLES = ("runs", "batches", "spans", "records")

pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(
        not TOKEN.strip(),
        reason="live Cargo: set CARGO_LIVE_TOKEN (and CARGO_LIVE_BASE_URL for another host) and run pytest -m live",
    ),
]


def test_check_passes_against_the_live_workspace(tmp_path: Path) -> None:
    work = Workdir(tmp_path, TOKEN)
    result = work.run([*cargo_elt(), "check", "--json", "--base-url", BASE_URL])
    assert result.returncode in (0, 1), output(result)
    document = json.loads(result.stdout)
    differences = [f"{c['name']}: {c['result']}: {c['detail']}" for c in document["checks"] if c["result"] != "ok"]
    print("\n".join(differences))  # shown with -s / -rA: where the live Cargo differs from what was assumed
    assert document["exit_code"] == 0, "tables that cannot be loaded:\n" + "\n".join(differences)
    assert document["workspace"].get("uuid"), output(result)


def test_a_bounded_sync_of_the_last_day_loads_into_duckdb(tmp_path: Path) -> None:
    from cargo_elt.pipelines.probes import read_server_clock
    from cargo_elt.source.client import CargoClient

    with CargoClient(TOKEN, base_url=BASE_URL) as client:
        since = read_server_clock(client) - timedelta(days=1)  # the server's day, not this machine's
    work = Workdir(tmp_path, TOKEN)
    database = tmp_path / "live_warehouse.duckdb"
    result = work.sync(
        "--base-url", BASE_URL, "--since", since.isoformat(), "--duckdb-path", str(database), "--progress", "none"
    )
    assert result.returncode == 0, output(result)
    report = summary(result.stdout)
    assert set(FACT_TABLES) <= set(report), output(result)
    assert all(line[1] == 0 for line in report.values()), f"rows skipped\n{output(result)}"
    con = duckdb.connect(str(database), read_only=True)
    try:
        for table in FACT_TABLES:
            loaded = report[table][0]
            if loaded:
                count = con.execute(f"SELECT count(*) FROM cargo.{table}").fetchone()
                assert count is not None and count[0] == loaded, f"{table}: {count} rows, the summary said {loaded}"
    finally:
        con.close()
