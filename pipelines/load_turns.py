"""DuckDB takes one writer: the chunks of a parallel backfill load into one DuckDB file in turns.

DuckDB lets one process open a database file for writing; a second fails at once ("Could not set
lock on file"). The chunks of ``cargo-elt backfill --workers N`` (and of the backfill DAG on one
machine) therefore extract and normalize in parallel, each in its own process, and take turns for
the load: an OS file lock (``flock``) beside the DuckDB file, held from opening the file to closing
it. A chunk that finishes its extract while another loads waits for its turn; the kernel releases
the lock however the holder ends, so a killed chunk never blocks the others. Warehouses that take
concurrent loads (Snowflake, BigQuery) need no turn: their loads run at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Turn:
    """How long a load waited for its turn (seconds, this machine's monotonic clock: a figure only)."""

    waited: float = 0.0


def turn_lock_path(duckdb_path: str | os.PathLike[str]) -> Path:
    """The lock file of a DuckDB file's loads: ``<file>.load.lock`` beside it."""
    path = Path(os.path.abspath(duckdb_path))
    return path.with_name(path.name + ".load.lock")


@contextlib.contextmanager
def duckdb_load_turn(duckdb_path: str | os.PathLike[str]) -> Iterator[Turn]:
    """Hold the DuckDB file's load turn for the ``with`` block, waiting as long as it takes.

    No timeout: every holder is a chunk of the same backfill, which ends its load and lets go.
    """
    path = turn_lock_path(duckdb_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    started = time.monotonic()
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield Turn(time.monotonic() - started)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


@contextlib.contextmanager
def no_turn() -> Iterator[Turn]:
    """A warehouse that takes concurrent loads: no waiting."""
    yield Turn()
