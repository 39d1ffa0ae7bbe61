"""Soak: a backfill and many incremental syncs through a faulty network, each checked against the truth.

Per seed: a fresh emulator (its own process namespace, its own data), faults injected into every API
request at the rates of issue 7 (10 % 5xx, 5 % 429, 2 % dropped connections, 1 % truncated bodies,
plus slow answers), one backfill, then ``syncs`` incremental syncs while the emulator's clock moves
on. After every sync the DuckDB tables must equal the emulator's ground truth key by key.

    python -m bench.soak --seeds 5 --scale small --syncs 10        # the full soak
    python -m bench.soak --seeds 1 --scale tiny --syncs 3 --fast   # a quick look

``--fast`` shortens the client's backoff (not the faults): CI uses it so five seeds fit in a minute.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

SOAK_FAULTS = "500=0.04,502=0.03,503=0.03,429=0.05,reset=0.02,truncate=0.01,slow=0.05"
"""10 % 5xx, 5 % 429, 2 % dropped connections, 1 % truncated bodies, 5 % slow answers."""

ADVANCE_SECONDS = 900
"""Virtual time between two syncs: new runs arrive, pending ones finish, a few are soft-deleted."""


@dataclass
class SoakResult:
    """What one seed's soak did and measured."""

    seed: int
    scale: str
    syncs: int = 0
    rows_loaded: int = 0
    queries: int = 0
    retries: int = 0
    faults: dict[str, int] = field(default_factory=dict)
    truth_rows: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


@contextmanager
def fast_retries() -> Iterator[None]:
    """Backoff of 50 ms (+ up to 50 ms jitter) instead of 1 s: the retries happen, only the waits shrink.

    ``cargo_source`` builds its ``RetryPolicy`` itself and has no argument for it, so the policy
    class it uses is swapped for the duration (a configuration change, not a mock: every request
    still goes over HTTP to the faulty emulator and every retry is real).
    """
    from cargo_elt.source import connection
    from cargo_elt.source.client import RetryPolicy

    original = connection.__dict__["RetryPolicy"]
    fast = functools.partial(RetryPolicy, initial_backoff_s=0.05, jitter_s=0.05, max_backoff_s=1.0)
    setattr(connection, "RetryPolicy", fast)  # noqa: B010 (a class swapped for a factory of it)
    try:
        yield
    finally:
        setattr(connection, "RetryPolicy", original)  # noqa: B010


def run_soak(
    seed: int,
    scale: str,
    syncs: int,
    workdir: Path,
    *,
    fast: bool = True,
    retry_after_s: int = 1,
    slow_s: float = 0.2,
) -> SoakResult:
    """One seed: backfill + ``syncs`` incremental syncs under faults; raises AssertionError on any difference."""
    from cargo_elt.emulator.server import EmulatorOptions, running_emulator
    from tests.e2e.support import Sandbox

    result = SoakResult(seed=seed, scale=scale)
    started = time.monotonic()
    with (
        running_emulator(EmulatorOptions(port=0, seed=seed, scale=scale, workspaces=1, admin=True)) as emulator,
        fast_retries() if fast else _nothing(),
    ):
        box = Sandbox(workdir, emulator, name=f"soak_{seed}")
        box.admin(
            "POST",
            "/_emulator/faults",
            json={"spec": SOAK_FAULTS, "seed": seed, "retryAfter": retry_after_s, "slowSeconds": slow_s},
        )
        faults: dict[str, int] = {}
        for step in range(syncs + 1):
            if step:
                box.admin("POST", "/_emulator/advance", json={"seconds": ADVANCE_SECONDS})
            stats = box.sync()
            for kind, count in box.admin("GET", "/_emulator/queries")["faults"].items():
                faults[kind] = count  # the injector's counts are cumulative since configured
            result.syncs += 1
            result.rows_loaded += sum(s.rows for s in stats.values())
            result.queries += sum(s.queries for s in stats.values()) + stats.server_clock.queries
            result.retries += sum(s.retries for s in stats.values()) + stats.server_clock.retries
            try:
                box.assert_equals_truth()
            except AssertionError as exc:
                raise AssertionError(f"seed {seed}, sync {step}: {exc}") from None
        box.admin("POST", "/_emulator/faults", json={"spec": "", "seed": 0})
        result.faults = faults
        result.truth_rows = {table: len(box.truth_rows(table)) for table in ("runs", "batches", "spans", "records")}
    result.seconds = round(time.monotonic() - started, 1)
    return result


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=5, help="seeds 1..N (default 5)")
    parser.add_argument("--scale", default="small", choices=("tiny", "small", "medium"))
    parser.add_argument("--syncs", type=int, default=10, help="incremental syncs after the backfill (default 10)")
    parser.add_argument("--fast", action="store_true", help="short client backoff (CI)")
    parser.add_argument("--slow-seconds", type=float, default=1.5, help="delay of a 'slow' answer (default 1.5)")
    args = parser.parse_args(argv)
    results: list[dict[str, Any]] = []
    failed = 0
    for seed in range(1, args.seeds + 1):
        with tempfile.TemporaryDirectory(prefix=f"soak{seed}-") as tmp:
            try:
                outcome = run_soak(seed, args.scale, args.syncs, Path(tmp), fast=args.fast, slow_s=args.slow_seconds)
            except AssertionError as exc:
                failed += 1
                print(f"seed {seed}: FAILED: {exc}", flush=True)
                continue
        results.append(asdict(outcome))
        print(json.dumps(asdict(outcome)), flush=True)
    print(f"{len(results)} of {args.seeds} seeds exact", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
