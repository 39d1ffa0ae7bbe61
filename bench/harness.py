"""Shared pieces of the benchmarks: an emulator in its own process, timed child processes, peak RSS.

The emulator runs in a separate process so the connector's memory and CPU are measured alone (chDB
in the same process would dominate both). Each measured approach also runs in a child process that
reports its own peak RSS, so one measurement never inherits another's memory.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

BENCH_TOKEN = "crg_bench_token_workspace_one"


@dataclass
class ChildResult:
    """What one measured child process reported, plus its wall time and peak RSS."""

    payload: dict[str, Any]
    seconds: float
    peak_rss_mb: float


@contextmanager
def emulator_process(scale: str, seed: int = 1, extra: Sequence[str] = (), via_cli: bool = True) -> Iterator[str]:
    """Serve the emulator from a child process; yields its base URL.

    ``via_cli=False`` serves through ``bench.serve``, which accepts every scale of the generator
    (the CLI offers only some of them).
    """
    entry = ["cargo_elt.pipelines.cli", "emulator", "serve"] if via_cli else ["bench.serve"]
    command = [
        sys.executable,
        "-m",
        *entry,
        "--port",
        "0",
        "--scale",
        scale,
        "--seed",
        str(seed),
        "--workspaces",
        "1",
        "--token",
        BENCH_TOKEN,
        "--admin",
        *extra,
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        base_url = None
        assert process.stdout is not None
        for line in process.stdout:
            found = re.search(r"listening on (http://\S+)", line)
            if found:
                base_url = found.group(1)
            if line.startswith("workspace 1:"):
                break
        if base_url is None:
            raise RuntimeError(f"the emulator did not start (exit {process.poll()})")
        yield base_url
    finally:
        process.terminate()
        process.wait(timeout=30)
        if process.stdout is not None:
            process.stdout.close()


def run_child(module: str, args: dict[str, Any], options: Sequence[str] = ()) -> ChildResult:
    """Run ``python -m <module> [options]`` with JSON args on stdin; it prints one JSON object on its last line."""
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", module, *options],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    stdout, stderr = process.communicate(json.dumps(args))
    seconds = time.monotonic() - started
    if process.returncode != 0:
        raise RuntimeError(f"{module} failed ({process.returncode}):\n{stderr[-3000:]}")
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    payload = json.loads(lines[-1])
    peak = payload.pop("peak_rss_mb", None)
    return ChildResult(payload, seconds, float(peak) if peak is not None else float("nan"))


def peak_rss_mb() -> float:
    """This process's peak resident set size, in MB (Linux reports kilobytes)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def scratch_dir(prefix: str) -> Path:
    """A fresh temporary directory for one measurement."""
    return Path(tempfile.mkdtemp(prefix=prefix))


def median(values: Sequence[float]) -> float:
    """The median of a few repeated measurements."""
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def add_latency(base_url: str, seconds: float) -> None:
    """Every API request to the emulator at ``base_url`` answered ``seconds`` later (its ``slow`` fault at
    rate 1, an ``asyncio.sleep``: no CPU), as a remote Cargo's query time and network add to each page."""
    slow = {"spec": "slow=1", "slowSeconds": seconds, "seed": 1}
    httpx.post(f"{base_url}/_emulator/faults", json=slow, timeout=60).raise_for_status()
