"""One writer per pipeline: an OS file lock held for the whole of a sync (``cargo-elt sync``, a DAG task).

Two syncs of one pipeline at once would both read the same frontier and both write the pipeline's
state; on DuckDB the second fails at load with dlt's text about credentials, on a warehouse nothing
stops it. So a sync first takes ``<pipelines dir>/.<pipeline name>.lock``:

* next to dlt's working folder of the pipeline, not inside it: dlt wipes that folder whole
  (``pipeline.drop()``, ``dlt pipeline <name> drop``, the Airflow helper), and a lock file deleted
  while held would let a third sync lock a new file;
* with ``flock``: the kernel releases it when its process ends, however it ends (``SIGKILL``, OOM),
  so a lock left by a killed sync is free for the next one, which takes it over and says so; the
  file is never deleted (deleting lock files races), only rewritten;
* holding the holder's pid, host and start time (JSON), for the message a waiting sync prints.

A lock file coordinates the processes of one machine (and of machines sharing a filesystem whose
``flock`` spans them, which NFS does not promise). Syncs of one pipeline from several machines need
one scheduler to own the pipeline: Airflow's ``max_active_runs=1`` (the DAG sets it) runs one DAG run
at a time on any worker, with its tasks one after another (README, Airflow).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cargo_elt.source.settings import DEFAULT_LOCK_WAIT_SECONDS

logger = logging.getLogger(__name__)

LOCK_WAIT_SETTING = "sources.cargo.lock_wait_seconds"
LOCK_DIR_ENV = "CARGO_LOCK_DIR"
"""Overrides where the lock file lives (default: the pipelines directory), e.g. for the Airflow DAG,
whose pipelines directory is a temporary folder per worker process."""

POLL_SECONDS = 0.25
"""How often a waiting sync tries the lock again (``flock`` has no timeout of its own)."""


@dataclass(frozen=True)
class LockHolder:
    """Who holds (or last held) a pipeline's lock, as recorded in the lock file."""

    pid: int | None
    host: str | None
    since: str | None
    """When it took the lock: UTC ISO on the holder's clock (shown, never compared)."""

    def describe(self) -> str:
        if self.pid is None:
            return "pid unknown: it has only just started"
        return f"pid {self.pid}, host {self.host or 'unknown'}, since {self.since or 'unknown'}"


class PipelineBusy(Exception):
    """Another sync of the pipeline holds its lock past the time this one may wait."""

    def __init__(self, pipeline_name: str, holder: LockHolder, waited: float, path: Path) -> None:
        self.pipeline_name = pipeline_name
        self.holder = holder
        self.waited = waited
        self.path = path
        waited_text = "did not wait" if waited <= 0 else f"waited {waited:g} s"
        super().__init__(
            f"another sync of pipeline {pipeline_name} is running ({holder.describe()}); {waited_text} "
            f"(--lock-wait / {LOCK_WAIT_SETTING}). Nothing was changed: run again once it has finished. "
            f"Lock file: {path}"
        )


def lock_path(pipelines_dir: str | os.PathLike[str], pipeline_name: str) -> Path:
    """Where the lock of ``pipeline_name`` lives: ``$CARGO_LOCK_DIR`` if set, else the pipelines directory.

    A hidden file: pipeline names never start with a dot, so it cannot be a pipeline's folder, and
    ``dlt pipeline --list`` lists folders only.
    """
    folder = os.environ.get(LOCK_DIR_ENV) or os.fspath(pipelines_dir)
    return Path(folder) / f".{pipeline_name}.lock"


def read_holder(path: Path) -> LockHolder | None:
    """The record in a lock file, or ``None`` when it holds none (free, or released cleanly)."""
    try:
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    return _parse(text)


def _parse(text: str) -> LockHolder | None:
    if not text:
        return None
    try:
        record = json.loads(text)
        pid = int(record["pid"])
    except (ValueError, KeyError, TypeError):
        return LockHolder(None, None, None)  # a record being written, or not ours
    return LockHolder(pid, str(record.get("host") or "") or None, str(record.get("since") or "") or None)


@contextlib.contextmanager
def pipeline_lock(
    pipelines_dir: str | os.PathLike[str], pipeline_name: str, wait_seconds: float = DEFAULT_LOCK_WAIT_SECONDS
) -> Iterator[LockHolder]:
    """Hold the pipeline's lock for the ``with`` block; yields this process's record.

    Waits up to ``wait_seconds`` (0: not at all) for another holder, then raises ``PipelineBusy``.
    """
    path = lock_path(pipelines_dir, pipeline_name)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        _acquire(fd, path, pipeline_name, wait_seconds)
        try:
            yield _record(fd, path, pipeline_name)
        finally:
            os.ftruncate(fd, 0)  # released cleanly: the next holder has nothing to take over
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _acquire(fd: int, path: Path, pipeline_name: str, wait_seconds: float) -> None:
    started = time.monotonic()  # the client's clock, for a timeout only
    deadline = started + max(0.0, wait_seconds)
    announced = False
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            pass
        holder = read_holder(path) or LockHolder(None, None, None)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise PipelineBusy(pipeline_name, holder, wait_seconds, path)
        if not announced:
            logger.warning(
                "another sync of pipeline %s is running (%s): waiting up to %g s for it to finish",
                pipeline_name,
                holder.describe(),
                wait_seconds,
            )
            announced = True
        time.sleep(min(POLL_SECONDS, remaining))


def _record(fd: int, path: Path, pipeline_name: str) -> LockHolder:
    """Write this process's record, after reporting a record a killed holder left behind."""
    previous = _parse(os.pread(fd, 4096, 0).decode("utf-8", "replace").strip())
    if previous is not None:
        logger.warning(
            "pipeline %s: taking over the lock left by a sync that ended without releasing it (%s; killed?)",
            pipeline_name,
            previous.describe(),
        )
    mine = LockHolder(os.getpid(), socket.gethostname(), datetime.now(UTC).isoformat(timespec="seconds"))
    payload = json.dumps({"pid": mine.pid, "host": mine.host, "since": mine.since}).encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, payload, 0)
    os.fsync(fd)
    logger.info("pipeline %s: lock taken (%s)", pipeline_name, path)
    return mine


_DUCKDB_LOCK = re.compile(
    r'Could not set lock on file "(?P<path>[^"]+)": Conflicting lock is held in (?P<program>.+?) \(PID (?P<pid>\d+)\)'
)


def duckdb_lock_conflict(text: str) -> str | None:
    """DuckDB's "Could not set lock on file" (which dlt wraps in advice about credentials) said plainly.

    DuckDB lets one process open a file for writing: another pipeline loading into the same file, a
    sync that did not take this pipeline's lock, or an open DuckDB session holds it.
    """
    found = _DUCKDB_LOCK.search(text)
    if found is None:
        if "Could not set lock on file" not in text:
            return None
        return (
            "another process is using the DuckDB file (DuckDB lets one process write a file at a time): "
            "let it finish or close it, then run again"
        )
    return (
        f"another process is using the DuckDB file {found['path']} (pid {found['pid']}, {found['program']}): "
        "DuckDB lets one process write a file at a time; let that process finish (another sync into this file) "
        "or close its connection (a DuckDB shell, a notebook), then run again"
    )
