"""What every table's read connects with: the client settings, the shared reader threads and backlog.

Each table's read opens its own ``CargoClient`` (own pool, own retry counts) from one ``Connection``;
the reader threads and the backlog of pages not yet handed to dlt are shared by all tables of a source.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from .client import CargoClient, RetryPolicy
from .extract import BACKLOG_PAGES_PER_READER, Backlog


class Connection:
    """Client settings; each table's read opens its own client (own pool, own retry counts)."""

    def __init__(self, token: str, base_url: str, workspace_uuid: str | None, timeout: float, concurrency: int) -> None:
        self._token = token
        self.base_url = base_url
        self.workspace_uuid = workspace_uuid
        self.timeout = timeout
        self.concurrency = concurrency
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        self.backlog = Backlog(BACKLOG_PAGES_PER_READER * concurrency)
        """Pages read and not yet handed to dlt, across the tables (``extract.Backlog``)."""

    @property
    def pool(self) -> ThreadPoolExecutor:
        """The reader threads shared by all tables of the source (``concurrency`` of them)."""
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="cargo-reader")
            return self._pool

    def __repr__(self) -> str:
        return f"Connection(base_url={self.base_url!r}, token=***)"

    def open(self) -> CargoClient:
        import httpx

        return CargoClient(
            self._token,
            base_url=self.base_url,
            workspace_uuid=self.workspace_uuid,
            retry=RetryPolicy(),
            max_connections=self.concurrency,
            timeout=httpx.Timeout(self.timeout, connect=10.0),
        )
