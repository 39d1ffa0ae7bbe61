"""A local stand-in for a Slack incoming webhook: records what it is sent (tests only).

``runtime.slack_incoming_hook`` points at it; each POST's JSON body is kept in order. ``status``
makes it answer with an error instead, as a revoked hook would.
"""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Received:
    url: str
    messages: list[dict[str, Any]] = field(default_factory=list)
    status: int = 200

    @property
    def texts(self) -> list[str]:
        return [str(m.get("text", "")) for m in self.messages]


@contextmanager
def alert_receiver(status: int = 200) -> Iterator[Received]:
    """A webhook on a free local port for the ``with`` block; yields what it received so far."""
    lock = threading.Lock()
    received = Received(url="", status=status)

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            with lock:
                received.messages.append(json.loads(body))
            self.send_response(received.status)
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    received.url = f"http://127.0.0.1:{server.server_address[1]}/services/T000/B000/hook"
    try:
        yield received
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
