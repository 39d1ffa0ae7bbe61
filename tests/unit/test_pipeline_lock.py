"""The pipeline lock (``pipelines/lock.py``) between real processes: held, waited for, refused, taken over.

Other processes are ``tests/lock_child.py``; the test and a child coordinate on lines they print and
read, never on time.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pytest

from cargo_elt.pipelines.lock import (
    LockHolder,
    PipelineBusy,
    duckdb_lock_conflict,
    lock_path,
    pipeline_lock,
    read_holder,
)

REPO = Path(__file__).resolve().parents[2]


@contextmanager
def child(*args: str) -> Iterator[subprocess.Popen[str]]:
    """``python -m tests.lock_child ARGS``, its first line read (it holds what it was asked to hold)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.lock_child", *args],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.split()[1:] == [str(process.pid)], (
            f"child said {line!r}: {process.stderr.read() if process.stderr else ''}"
        )
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=60)
        for stream in (process.stdin, process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def release(process: subprocess.Popen[str]) -> None:
    assert process.stdin is not None
    process.stdin.write("release\n")
    process.stdin.flush()
    assert process.wait(timeout=60) == 0


def test_a_second_holder_is_refused_with_who_holds_it(tmp_path: Path) -> None:
    with child("hold", str(tmp_path), "cargo") as holder:
        recorded = read_holder(lock_path(tmp_path, "cargo"))
        assert recorded is not None and recorded.pid == holder.pid and recorded.host == socket.gethostname()
        with pytest.raises(PipelineBusy) as refused, pipeline_lock(tmp_path, "cargo", wait_seconds=0):
            pytest.fail("the lock was taken twice")
        message = str(refused.value)
        assert message.startswith(
            f"another sync of pipeline cargo is running (pid {holder.pid}, host {socket.gethostname()}, "
            f"since {recorded.since})"
        ), message
        assert "did not wait" in message and "--lock-wait" in message and "sources.cargo.lock_wait_seconds" in message
        # another pipeline in the same folder is not blocked by it
        with pipeline_lock(tmp_path, "other", wait_seconds=0) as mine:
            assert mine.pid == os.getpid()
        release(holder)
    with pipeline_lock(tmp_path, "cargo", wait_seconds=0) as mine:
        assert read_holder(lock_path(tmp_path, "cargo")) == mine
    assert read_holder(lock_path(tmp_path, "cargo")) is None, "a clean release leaves no record to take over"


def test_waiting_ends_when_the_holder_finishes(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    waiting = threading.Event()

    class Announce(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "waiting up to" in record.getMessage():
                waiting.set()

    announce = Announce()
    logging.getLogger("cargo_elt.pipelines.lock").addHandler(announce)
    taken: list[LockHolder] = []

    def second_sync() -> None:
        with pipeline_lock(tmp_path, "cargo", wait_seconds=600) as mine:
            taken.append(mine)

    try:
        with child("hold", str(tmp_path), "cargo") as holder:
            waiter = threading.Thread(target=second_sync)
            waiter.start()
            assert waiting.wait(timeout=120), "the second sync did not wait"
            assert not taken, "the lock was taken while held"
            release(holder)
            waiter.join(timeout=120)
    finally:
        logging.getLogger("cargo_elt.pipelines.lock").removeHandler(announce)
    assert [h.pid for h in taken] == [os.getpid()]
    assert f"another sync of pipeline cargo is running (pid {holder.pid}" in caplog.text
    assert "taking over" not in caplog.text, "a lock released cleanly is not a stale one"


def test_waiting_gives_up_after_the_wait(tmp_path: Path) -> None:
    with child("hold", str(tmp_path), "cargo") as holder:
        with pytest.raises(PipelineBusy, match=r"waited 0\.3 s") as refused, pipeline_lock(tmp_path, "cargo", 0.3):
            pytest.fail("the lock was taken while held")
        assert refused.value.holder.pid == holder.pid
        release(holder)


def test_a_lock_held_by_a_killed_process_is_taken_over(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with child("hold", str(tmp_path), "cargo") as holder:
        holder.send_signal(signal.SIGKILL)
        assert holder.wait(timeout=60) == -signal.SIGKILL
    left = read_holder(lock_path(tmp_path, "cargo"))
    assert left is not None and left.pid == holder.pid, "the killed holder's record is still in the file"
    with caplog.at_level(logging.WARNING), pipeline_lock(tmp_path, "cargo", wait_seconds=0) as mine:
        assert read_holder(lock_path(tmp_path, "cargo")) == mine
    assert f"taking over the lock left by a sync that ended without releasing it (pid {holder.pid}," in caplog.text


def test_the_lock_folder_can_be_moved(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CARGO_LOCK_DIR", str(tmp_path / "locks"))
    assert lock_path(tmp_path / "pipelines", "cargo") == tmp_path / "locks" / ".cargo.lock"
    with pipeline_lock(tmp_path / "pipelines", "cargo", wait_seconds=0):
        assert (tmp_path / "locks" / ".cargo.lock").is_file()


def test_duckdbs_lock_error_is_said_plainly(tmp_path: Path) -> None:
    database = tmp_path / "warehouse.duckdb"
    with child("duckdb", str(database)) as holder:
        with pytest.raises(duckdb.IOException) as raised:
            duckdb.connect(str(database))
        release(holder)
    text = (
        f"Connection with `client_type=DuckDbSqlClient` ... credentials ... The actual reason given is: {raised.value}"
    )
    message = duckdb_lock_conflict(text)
    assert message is not None, text
    assert message.startswith(f"another process is using the DuckDB file {database} (pid {holder.pid}, "), message
    assert "credentials" not in message
    assert duckdb_lock_conflict("IO Error: Could not open file: permission denied") is None
