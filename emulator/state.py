"""Everything one running emulator holds, shared by its HTTP handlers."""

from __future__ import annotations

import hashlib
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from .faults import FaultInjector
from .layouts import ExportLayout, ServedFiles
from .store import ClickHouseStore
from .workspaces import Workspace


@dataclass
class EmulatorState:
    """One emulator instance: its data, its workspaces and its runtime switches."""

    store: ClickHouseStore
    workspaces: list[Workspace]
    seed: int
    scale: str
    admin_enabled: bool = False
    base_url: str = "http://127.0.0.1:8787"
    faults: FaultInjector = field(default_factory=FaultInjector)
    signing_key: bytes = b""
    signed_url_ttl_s: int = 900
    export_layout: ExportLayout = field(default_factory=ExportLayout)
    """Which export layout the file producers write (``layouts.py``)."""
    served_files: ServedFiles = field(default_factory=ServedFiles)
    query_log: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=200_000))
    request_counts: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    clock_lock: threading.Lock = field(default_factory=threading.Lock)
    """Held by whatever writes facts (the clock's advance, batch creation): one writer at a time."""
    by_token: dict[str, Workspace] = field(init=False)
    by_uuid: dict[str, Workspace] = field(init=False)

    def __post_init__(self) -> None:
        self.by_token = {ws.token: ws for ws in self.workspaces}
        self.by_uuid = {ws.uuid: ws for ws in self.workspaces}
        if not self.signing_key:
            self.signing_key = hashlib.sha256(f"emulator-signing/{self.seed}".encode()).digest()

    def count_request(self, path: str) -> None:
        """Tally a served request (tests read these through the admin endpoint)."""
        with self.lock:
            self.request_counts[path] = self.request_counts.get(path, 0) + 1

    def log_query(self, workspace_uuid: str, sql: str, outcome: str) -> None:
        """Remember a caller's query, so tests can count planning and data queries per table."""
        with self.lock:
            self.query_log.append({"workspace": workspace_uuid, "sql": sql, "outcome": outcome})
