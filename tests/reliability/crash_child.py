"""Test-only child process: one sync of the Cargo source into DuckDB that SIGKILLs itself at a chosen point.

    python -m tests.reliability.crash_child <base_url> <token> <duckdb> <pipelines_dir> <name> <point>

Points (deterministic: counted, never timed):

* ``page:N``            extract: right after the N-th data page arrives, before it is handed to dlt;
* ``normalize:start``   extract finished (state and items on disk), normalize not begun;
* ``normalize:spool``   normalize began: the load package is half made;
* ``normalize:commit``  every file normalized, just before the package is committed for loading;
* ``load:start``        normalized, before the first load job starts;
* ``load:job``          the first load job finished, the others not;
* ``load:package``      every job (the state table's too) loaded, before the load is recorded
                        (``_dlt_loads``): the gap between loading the data and committing the state;
* ``load:archive``      the load recorded in the destination, the package not yet archived locally.

The hooks wrap dlt's own steps and the source's HTTP client in this process only; nothing else changes.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any


def _die() -> None:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def _before(owner: Any, name: str, condition: Callable[[], bool] = lambda: True) -> None:
    original = getattr(owner, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if condition():
            _die()
        return original(*args, **kwargs)

    setattr(owner, name, wrapper)


def install(point: str) -> None:
    """Arm the kill at ``point``."""
    from dlt.common.storages.load_package import PackageStorage
    from dlt.common.storages.load_storage import LoadStorage
    from dlt.load.load import Load
    from dlt.normalize.normalize import Normalize

    from cargo_elt.source.client import CargoClient

    kind, _, arg = point.partition(":")
    if kind == "page":
        limit = int(arg)
        lock = threading.Lock()
        seen = [0]
        query = CargoClient.query

        def counting(self: CargoClient, sql: str) -> list[dict[str, Any]]:
            rows = query(self, sql)
            if " LIMIT " in sql:
                with lock:
                    seen[0] += 1
                    if seen[0] >= limit:
                        _die()
            return rows

        CargoClient.query = counting  # type: ignore[method-assign]
    elif point == "normalize:start":
        _before(Normalize, "run")
    elif point == "normalize:spool":
        _before(Normalize, "spool_files")
    elif point == "normalize:commit":
        _before(LoadStorage, "commit_new_load_package")
    elif point == "load:start":
        _before(Load, "run")
    elif point == "load:job":
        complete_job = PackageStorage.complete_job

        def after_first(self: PackageStorage, load_id: str, file_name: str) -> str:
            moved = complete_job(self, load_id, file_name)
            _die()  # the first job's file is committed as completed; the others are not
            return moved

        PackageStorage.complete_job = after_first  # type: ignore[method-assign]
    elif point == "load:package":
        _before(Load, "complete_package")
    elif point == "load:archive":
        _before(LoadStorage, "complete_load_package")
    else:
        raise SystemExit(f"unknown crash point {point!r}")


def main(argv: list[str]) -> int:
    base_url, token, database, pipelines_dir, name, point = argv
    import dlt

    from cargo_elt.source import FACT_TABLES, cargo_source

    install(point)
    pipeline = dlt.pipeline(
        pipeline_name=name,
        destination=dlt.destinations.duckdb(database),
        dataset_name="cargo",
        pipelines_dir=pipelines_dir,
    )
    source = cargo_source(
        api_token=token,
        base_url=base_url,
        start_date="2026-01-01",
        concurrency=4,
        tables=list(FACT_TABLES),
        settle_seconds=0,  # up to Cargo's now, so the re-run is compared with the truth at once
    )
    pipeline.run(source).raise_on_failed_jobs()
    return 0  # the point was never reached: the test sees exit code 0 and fails


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
