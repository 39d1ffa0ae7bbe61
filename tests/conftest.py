"""Shared fixtures: one in-process emulator per test session, served over real HTTP on a free port."""

from __future__ import annotations

import logging
import os
import tempfile
import weakref
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import httpx
import pytest

FIXED_NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
"""The virtual clock of test emulators: fixed, so the seeded data is the same on every run."""


def pytest_configure(config: pytest.Config) -> None:
    """Each test process gets its own dlt data directory (``DLT_DATA_DIR``, dlt's ``~/.dlt``).

    Pipelines a test opens without a ``pipelines_dir`` (the demo, the CLI's subprocesses, which
    inherit the variable) would otherwise share the user's ``~/.dlt``, and two pytest-xdist
    workers would share, and drop, each other's pipelines of the same name.
    """
    if "DLT_DATA_DIR" not in os.environ or os.environ.get("PYTEST_XDIST_WORKER"):
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        os.environ["DLT_DATA_DIR"] = tempfile.mkdtemp(prefix=f"cargo-elt-tests-dlt-{worker}-")


@pytest.fixture(scope="session")
def emulator() -> Iterator[object]:
    """A tiny two-workspace emulator with admin endpoints, shared by read-only tests."""
    from cargo_elt.emulator.server import EmulatorOptions, running_emulator

    options = EmulatorOptions(port=0, seed=1, scale="tiny", workspaces=2, admin=True, now=FIXED_NOW)
    with running_emulator(options) as running:
        yield running


@pytest.fixture()
def api(emulator: object) -> Iterator[Callable[..., httpx.Client]]:
    """Factory of HTTP clients for the shared emulator: ``api()`` is workspace one, ``api(1)`` two."""
    clients: list[httpx.Client] = []

    def make(index: int = 0, *, token: str | None = None) -> httpx.Client:
        ws = emulator.state.workspaces[index]  # type: ignore[attr-defined]
        chosen = ws.token if token is None else token
        headers = {"authorization": f"Bearer {chosen}"} if chosen else {}
        client = httpx.Client(base_url=emulator.base_url + "/v1", headers=headers, timeout=60)  # type: ignore[attr-defined]
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture(autouse=True)
def _cargo_elt_logs_reach_caplog(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """cargo_elt's loggers hand their records to dlt's logger and, like it, do not propagate to the
    root logger (``sources/cargo/log.py``), where pytest's ``caplog`` listens: listen on them too."""
    from cargo_elt.source.log import route_to_dlt_logger

    names = ("cargo_elt.source", "cargo_elt.pipelines")
    for name in names:  # routed from the start, so no record reaches caplog twice (directly and via root)
        route_to_dlt_logger(name)
    loggers = [logging.getLogger(name) for name in names]
    once = _EachRecordOnce()  # dlt's logger may reach caplog too, by its own handlers: count a record once
    caplog.handler.addFilter(once)
    for logger in loggers:
        logger.addHandler(caplog.handler)
    yield
    for logger in loggers:
        logger.removeHandler(caplog.handler)
    caplog.handler.removeFilter(once)


class _EachRecordOnce(logging.Filter):
    """Lets each ``LogRecord`` object through once, whichever logger's handler sees it first."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: weakref.WeakSet[logging.LogRecord] = weakref.WeakSet()

    def filter(self, record: logging.LogRecord) -> bool:
        if record in self.seen:
            return False
        self.seen.add(record)
        return True
