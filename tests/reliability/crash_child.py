"""Test-only child process: one sync of the Cargo source into DuckDB that SIGKILLs itself at a chosen point.

    python -m tests.reliability.crash_child <base_url> <token> <duckdb> <pipelines_dir> <name> <point> \
        [step_rows=N] [loader=dlt]

Points (deterministic: counted, never timed):

* ``page:N``            extract: right after the N-th data page arrives, before it is handed to dlt;
* ``rows:N``            extract: right after the data page that brings the rows read to N or more
                        (the rows and data pages read so far are written to ``<duckdb>.killed`` first);
* ``normalize:start``   extract finished (state and items on disk), normalize not begun;
* ``normalize:spool``   normalize began: the load package is half made;
* ``normalize:commit``  every file normalized, just before the package is committed for loading;
* ``load:start``        normalized, before the first load job starts;
* ``load:job``          the first load job finished, the others not;
* ``load:package``      every job (the state table's too) loaded, before the load is recorded
                        (``_dlt_loads``): the gap between loading the data and committing the state;
* ``load:archive``      the load recorded in the destination, the package not yet archived locally.

The hooks wrap dlt's own steps and the source's HTTP client in this process only; nothing else changes.
With ``step_rows`` the sync runs in steps (``pipelines/steps.py``), as ``cargo-elt sync`` does. It
loads as ``cargo-elt sync`` does (``pipelines/duckdb_load.py``), or with ``loader=dlt`` through dlt's
own DuckDB destination (its staging merge), as a library user's pipeline does.
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


def _page_rows(sql: str, rows: list[dict[str, Any]]) -> int:
    """Rows a data page holds: a packed page says so in ``n``; row objects are one per row."""
    if "formatRow" in sql and rows:
        return int(rows[0]["n"])
    return len(rows)


def install(point: str, report: str = "") -> None:  # noqa: PLR0915 (one kill point per branch, each a few lines)
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
    elif kind == "rows":
        threshold = int(arg)
        lock = threading.Lock()
        read = [0, 0]
        query = CargoClient.query

        def counting_rows(self: CargoClient, sql: str) -> list[dict[str, Any]]:
            rows = query(self, sql)
            if " LIMIT " in sql:
                with lock:
                    read[0] += _page_rows(sql, rows)
                    read[1] += 1
                    if read[0] >= threshold:
                        with open(report, "w") as handle:
                            handle.write(f"{read[0]} {read[1]}")
                        _die()
            return rows

        CargoClient.query = counting_rows  # type: ignore[method-assign]
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
    base_url, token, database, pipelines_dir, name, point = argv[:6]
    options = dict(arg.split("=", 1) for arg in argv[6:])
    step_rows = int(options["step_rows"]) if "step_rows" in options else None
    import dlt

    from cargo_elt.pipelines.duckdb_load import duckdb_destination
    from cargo_elt.pipelines.steps import run_in_steps
    from cargo_elt.source import FACT_TABLES, SyncStats, cargo_source

    install(point, f"{database}.killed")
    pipeline = dlt.pipeline(
        pipeline_name=name,
        destination=(
            dlt.destinations.duckdb(database) if options.get("loader") == "dlt" else duckdb_destination(database)
        ),
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
        step_rows=step_rows,
        stats=(stats := SyncStats()),
    )
    if step_rows is None:
        pipeline.run(source).raise_on_failed_jobs()
    else:
        run_in_steps(pipeline, source, stats)
    return 0  # the point was never reached: the test sees exit code 0 and fails


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
