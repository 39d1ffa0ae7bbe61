"""The soak of issue 7: backfill + incremental syncs under 10 % 5xx, 5 % 429, 2 % resets, 1 % truncated
bodies and slow answers, exact after every sync, for five seeds.

CI runs the tiny size (two incremental syncs per seed). ``CARGO_SOAK_FULL=1`` runs the full size
(small scale, ten incremental syncs, real backoff), as does ``python -m bench.soak --seeds 5 --scale small``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench.soak import run_soak

FULL = os.environ.get("CARGO_SOAK_FULL") == "1"


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_soak_under_faults_stays_exact(seed: int, tmp_path: Path) -> None:
    if FULL:
        result = run_soak(seed, "small", 10, tmp_path, fast=False, slow_s=1.5)
    else:
        result = run_soak(seed, "tiny", 2, tmp_path, fast=True, slow_s=0.2)
    injected = {k: v for k, v in result.faults.items() if k != "none"}
    assert sum(injected.values()) > 0, "no fault was injected: the soak proves nothing"
    assert result.retries > 0
    # every injected failure (all but 'slow') costs one retry of the client, no more
    assert result.retries == sum(v for k, v in injected.items() if k != "slow")
    assert result.rows_loaded >= sum(result.truth_rows.values())
