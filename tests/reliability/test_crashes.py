"""SIGKILL at ten points of a backfill (extract, normalize, load, and between loading the data and
recording the load), then a plain re-run: the destination must equal the emulator's truth exactly.

A crash after extract leaves a load package behind; the re-run first finishes it (``normalize`` and
``load``, which is what dlt's ``run`` does with pending packages) and then syncs again.

The kill points are counted, not timed (see ``crash_child.py``): the child kills itself when the N-th
data page arrives or when dlt enters a given step, so every run crashes at the same place.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import FIXED_NOW
from tests.e2e.support import Sandbox

CRASH_POINTS = (
    "page:1",
    "page:2",
    "page:4",
    "normalize:start",
    "normalize:spool",
    "normalize:commit",
    "load:start",
    "load:job",
    "load:package",
    "load:archive",
)


@pytest.fixture(scope="module")
def crash_emulator() -> Iterator[Any]:
    from cargo_elt.emulator.server import EmulatorOptions, running_emulator

    with running_emulator(
        EmulatorOptions(port=0, seed=17, scale="tiny", workspaces=1, admin=True, now=FIXED_NOW)
    ) as emulator:
        yield emulator


LOADERS = ("cargo", "dlt")
"""How the crashed sync loads: as ``cargo-elt sync`` (each fact file merged in place, idempotent per
file: ``pipelines/duckdb_load.py``), or through dlt's own DuckDB destination (staging and its
deduplicating merge), as a library user's pipeline does. The re-run loads as the crashed sync did."""


@pytest.mark.parametrize("loader", LOADERS)
@pytest.mark.parametrize("point", CRASH_POINTS)
def test_a_backfill_killed_at_a_point_ends_exact_when_run_again(
    crash_emulator: Any, tmp_path: Path, point: str, loader: str
) -> None:
    box = Sandbox(tmp_path, crash_emulator, name="crashed", plain_dlt=loader == "dlt")
    child = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.reliability.crash_child",
            crash_emulator.base_url,
            box.token,
            box.database,
            box.pipelines_dir,
            box.name,
            point,
            f"loader={loader}",
        ],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert child.returncode == -signal.SIGKILL, f"{point} was never reached: {child.stderr[-2000:]}"
    pipeline = box.pipeline()  # the same pipeline (same working directory), in this process
    pending = pipeline.has_pending_data
    # a package the crash left behind is finished first, as dlt asks ("run the pipeline again")
    assert pending == (not point.startswith("page:")), f"{point}: pending packages {pending}"
    if pending:
        pipeline.normalize()
        pipeline.load().raise_on_failed_jobs()
    box.sync()
    box.assert_equals_truth()
    with box.db() as con:
        loads = con.execute("SELECT count(*), count(DISTINCT load_id) FROM cargo._dlt_loads").fetchone()
    assert loads is not None and loads[1] >= 1
    if point != "load:archive":
        assert loads[0] == loads[1]
    # killed after the load was recorded but before dlt archived the package locally, the re-run
    # records the same load id a second time in _dlt_loads (dlt's bookkeeping; the data is exact)
