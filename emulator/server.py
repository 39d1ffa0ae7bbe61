"""Build an emulator (data + app) and serve it over real HTTP, in the foreground or in a thread.

Tests and the demo run the emulator in-process on a free port and talk to it through sockets like
any client would, so the connector's HTTP stack (pooling, retries, truncated bodies) is exercised.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import uvicorn

from .app import create_app
from .faults import FaultInjector, parse_fault_spec
from .layouts import parse_layout_option
from .state import EmulatorState
from .store import ClickHouseStore
from .workspaces import make_workspaces

logger = logging.getLogger(__name__)

SCALE_NAMES = ("tiny", "small", "medium", "large")


def default_now() -> datetime:
    """The virtual clock's start when none is given: six hours ago, on the hour.

    Kept in the past so the clock can be advanced a few hours and still stay behind the real time
    that a connector compares with; give ``now`` explicitly for byte-identical data across days.
    """
    return datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=6)


@dataclass
class EmulatorOptions:
    """Everything ``cargo-elt emulator serve`` accepts."""

    host: str = "127.0.0.1"
    port: int = 8787
    seed: int = 1
    scale: str = "small"
    workspaces: int = 2
    tokens: Sequence[str] = ()
    data_dir: str | None = None
    admin: bool = False
    faults: str = ""
    fault_seed: int | None = None
    now: datetime | None = None
    truncate_results: bool = False
    cap_overrides: dict[str, int | str] = field(default_factory=dict)
    export_layout: str = ""
    """``--export-layout``: ``NAME=VALUE,...`` switches of ``layouts.py`` (e.g. ``runOutputsFormat=ndjson``)."""
    renamed_columns: Sequence[str] = ()
    """``--rename-column``: ``table.column=new_name``, as ``orchestration/query`` shows it."""


class DataDirMismatch(RuntimeError):
    """The data directory already holds data generated with other options."""


def build_state(options: EmulatorOptions, store: ClickHouseStore | None = None) -> EmulatorState:
    """Generate (or reopen) the data and assemble the emulator's state."""
    from .generator import current_now, generate

    if options.scale not in SCALE_NAMES:
        raise ValueError(f"unknown --scale {options.scale!r}: choose one of {', '.join(SCALE_NAMES)}")
    rates = parse_fault_spec(options.faults) if options.faults else {}
    layout = parse_layout_option(options.export_layout)
    renames = [_parse_rename(text) for text in options.renamed_columns]
    workspaces = make_workspaces(options.seed, options.workspaces, options.tokens)
    store = store or ClickHouseStore(options.data_dir, namespace=1 if options.data_dir else None)
    for ws in workspaces:
        store.ensure_workspace(ws.uuid)
    existing = _stored_meta(store)
    if existing:
        wanted = {"seed": str(options.seed), "scale": options.scale, "workspaces": str(options.workspaces)}
        differing = {k: (existing.get(k), v) for k, v in wanted.items() if existing.get(k) != v}
        if differing:
            raise DataDirMismatch(
                f"--data-dir {options.data_dir} holds data generated with "
                + ", ".join(f"{k}={old}" for k, (old, _) in differing.items())
                + "; start with those options or point --data-dir at an empty directory"
            )
        logger.info("reusing data in %s (virtual now %s)", options.data_dir, current_now(store))
    else:
        generate(store, workspaces, seed=options.seed, scale=options.scale, now=options.now or default_now())
        store.execute(f"INSERT INTO {store.database}.meta (key, value) VALUES ('workspaces', '{options.workspaces}')")
    store.set_truncate_results(options.truncate_results)
    if options.cap_overrides:
        store.override_caps(**options.cap_overrides)
    for table, column, to in renames:
        store.rename_column([ws.uuid for ws in workspaces], table, column, to)
    faults = FaultInjector(rates=rates, seed=options.fault_seed if options.fault_seed is not None else options.seed)
    return EmulatorState(
        store=store,
        workspaces=workspaces,
        seed=options.seed,
        scale=options.scale,
        admin_enabled=options.admin,
        faults=faults,
        export_layout=layout,
    )


def _parse_rename(text: str) -> tuple[str, str, str]:
    """``records.id=record_id`` -> ``("records", "id", "record_id")``."""
    column, sep, to = text.partition("=")
    table, dot, name = column.partition(".")
    if not sep or not dot or not table or not name or not to:
        raise ValueError(f"--rename-column {text!r} is not TABLE.COLUMN=NEW_NAME (e.g. records.id=record_id)")
    return table.strip(), name.strip(), to.strip()


def _stored_meta(store: ClickHouseStore) -> dict[str, str]:
    exists = store.scalar(f"SELECT count() FROM system.tables WHERE database = '{store.database}' AND name = 'meta'")
    if not exists:
        return {}
    rows = store.rows(f"SELECT key, value FROM {store.database}.meta FINAL")
    return {row["key"]: row["value"] for row in rows}


def bind_socket(host: str, port: int) -> socket.socket:
    """Bind before serving, so port 0 gives a free port whose number is known at once."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(256)
    sock.set_inheritable(True)
    return sock


class RunningEmulator:
    """An emulator served by uvicorn on a background thread."""

    def __init__(self, state: EmulatorState, sock: socket.socket) -> None:
        self.state = state
        self._sock = sock
        host, port = sock.getsockname()[:2]
        self.base_url = f"http://{host}:{port}"
        state.base_url = self.base_url
        config = uvicorn.Config(
            create_app(state), log_level="warning", access_log=False, timeout_keep_alive=30, lifespan="off"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, daemon=True)

    def start(self) -> RunningEmulator:
        """Serve until ``stop``; returns once the socket answers."""
        self._thread.start()
        started = threading.Event()
        while not self._server.started and self._thread.is_alive():
            started.wait(0.01)
        if not self._server.started:
            raise RuntimeError("the emulator's HTTP server did not start")
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._sock.close()


@contextlib.contextmanager
def running_emulator(options: EmulatorOptions, store: ClickHouseStore | None = None) -> Iterator[RunningEmulator]:
    """Build and serve an emulator for the duration of a ``with`` block (port 0 = a free port)."""
    state = build_state(options, store)
    emulator = RunningEmulator(state, bind_socket(options.host, options.port)).start()
    try:
        yield emulator
    finally:
        emulator.stop()


def serve_forever(options: EmulatorOptions, announce: bool = True) -> None:
    """Run the emulator in the foreground (``cargo-elt emulator serve``) until interrupted."""
    with _terminate_exits_normally():
        _serve_in_foreground(options, announce)


def _serve_in_foreground(options: EmulatorOptions, announce: bool) -> None:
    state = build_state(options)
    sock = bind_socket(options.host, options.port)
    host, port = sock.getsockname()[:2]
    state.base_url = f"http://{host}:{port}"
    if announce:
        print(f"Cargo API emulator listening on {state.base_url} (API base {state.base_url}/v1)", flush=True)
        print(f"seed {options.seed}, scale {options.scale}, admin endpoints {'on' if options.admin else 'off'}")
        for ws in state.workspaces:
            print(f"workspace {ws.index + 1}: uuid {ws.uuid}  token {ws.token}  ({ws.name})", flush=True)
    config = uvicorn.Config(create_app(state), log_level="warning", access_log=False, lifespan="off")
    uvicorn.Server(config).run(sockets=[sock])


class Terminated(SystemExit):
    """SIGTERM, turned into an orderly interpreter exit."""


@contextlib.contextmanager
def _terminate_exits_normally() -> Iterator[None]:
    """Make SIGTERM end the process through the interpreter's normal shutdown.

    uvicorn shuts down gracefully on SIGTERM and then raises the signal again with the previous
    handler in place. With Python's default handler the process dies on the spot, and chDB never
    removes its ``clickhouse-embedded-*`` directory from the temporary directory: gigabytes per stop
    at the larger scales. Raising ``SystemExit`` from the handler lets chDB clean up as on Ctrl-C.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _exit(signum: int, frame: object) -> None:
        raise Terminated(0)

    previous = signal.signal(signal.SIGTERM, _exit)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
