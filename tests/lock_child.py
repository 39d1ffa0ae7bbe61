"""Test-only child processes of the one-writer tests (``tests/unit/test_pipeline_lock.py``, ``tests/e2e/``).

python -m tests.lock_child hold <pipelines_dir> <pipeline_name>
    takes the pipeline's lock, prints ``locked <pid>``, holds it until a line arrives on stdin
    (or stdin closes), then releases it and exits 0. The tests coordinate on those lines, not on time.
python -m tests.lock_child duckdb <file>
    opens the DuckDB file for writing, prints ``opened <pid>``, keeps it open until stdin speaks.
python -m tests.lock_child crash <point> <cargo-elt sync arguments...>
    ``cargo-elt sync`` in this process, SIGKILLed at ``point`` (``tests/reliability/crash_child.py``):
    the kill comes while the sync holds the pipeline's lock.
python -m tests.lock_child fakesnow <fakesnow dir> <cargo-elt sync arguments...>
    ``cargo-elt sync --destination snowflake`` against fakesnow in this process (``tests/snowflake_shim.py``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def _hold(pipelines_dir: str, name: str) -> int:
    from cargo_elt.pipelines.lock import pipeline_lock

    with pipeline_lock(pipelines_dir, name, wait_seconds=0):
        print(f"locked {os.getpid()}", flush=True)
        sys.stdin.readline()
    return 0


def _duckdb(path: str) -> int:
    import duckdb

    con = duckdb.connect(path)
    try:
        print(f"opened {os.getpid()}", flush=True)
        sys.stdin.readline()
    finally:
        con.close()
    return 0


def _crash(point: str, argv: list[str]) -> int:
    from cargo_elt.pipelines.cli import main
    from tests.reliability.crash_child import install

    install(point)
    return main(["sync", *argv])


def _fakesnow(db_path: str, argv: list[str]) -> int:
    from cargo_elt.pipelines.cli import main
    from tests.snowflake_shim import fakesnow_connector

    with fakesnow_connector(Path(db_path)):
        return main(["sync", "--destination", "snowflake", *argv])


def main(argv: list[str]) -> int:
    mode, *rest = argv
    if mode == "hold":
        return _hold(*rest)
    if mode == "duckdb":
        return _duckdb(*rest)
    if mode == "crash":
        return _crash(rest[0], rest[1:])
    if mode == "fakesnow":
        return _fakesnow(rest[0], rest[1:])
    raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
