"""Reading Cargo's clock through the query endpoint (``sources/cargo/server_clock.py``), over HTTP.

The emulator's clock is the test clock (``FIXED_NOW``), a month behind this machine's. Servers that
refuse ``now64`` (or both clock queries, or answer something else) are a proxy in front of the
emulator: no real server here behaves that way.
"""

from __future__ import annotations

import http.server
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest

from cargo_elt.source.client import CargoClient, RetryPolicy
from cargo_elt.source.errors import CargoProtocolError
from cargo_elt.source.server_clock import (
    CLOCK_QUERY,
    SKEW_WARNING,
    ClockReading,
    ServerClock,
    ServerClockUnavailable,
    log_reading,
    read_server_clock,
    remember_server_now,
)
from tests.conftest import FIXED_NOW
from tests.e2e.support import serve_handler


def _client(emulator: Any, base_url: str | None = None) -> CargoClient:
    token = emulator.state.workspaces[0].token
    return CargoClient(token, base_url=base_url or emulator.base_url, retry=RetryPolicy(max_attempts=1))


def test_the_reading_is_the_emulators_clock_and_the_skew_this_machines_distance_to_it(emulator: Any) -> None:
    with _client(emulator) as client:
        reading = read_server_clock(client)
    assert reading.server_now == FIXED_NOW
    assert abs(reading.skew - (FIXED_NOW - datetime.now(UTC))) < timedelta(seconds=30)
    assert reading.round_trip >= timedelta(0)


def test_the_clock_is_read_once_and_shared(emulator: Any) -> None:
    opened: list[CargoClient] = []

    def open_client() -> CargoClient:
        opened.append(_client(emulator))
        return opened[-1]

    clock = ServerClock(open_client)
    assert clock.now() == FIXED_NOW and clock.now() == FIXED_NOW
    assert clock.reading() is clock.reading()
    assert len(opened) == 1, "outside an extraction one reading serves every caller"


class _Refusing(http.server.BaseHTTPRequestHandler):
    """Cargo's query endpoint as a server without ``now64`` (mode ``now64``), without either clock
    function (``both``), or answering a text instead of a number (``text``); the rest goes upstream."""

    upstream = ""
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        mode, _, rest = self.path.lstrip("/").partition("/")
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        sql = str(orjson.loads(body)["query"])
        refuse = ("now64(" in sql) or (mode == "both" and "now()" in sql)
        if refuse and mode in ("now64", "both"):
            return self._send(400, b'{"errorMessage": "Code: 46. DB::Exception: Unknown function. (UNKNOWN_FUNCTION)"}')
        if mode == "text" and sql == CLOCK_QUERY:
            return self._send(200, b'{"rows": [{"server_now_ms": "soon"}]}')
        headers = {k: v for k, v in self.headers.items() if k.lower() in ("authorization", "content-type")}
        answer = httpx.post(f"{self.upstream}/{rest}", content=body, headers=headers, timeout=60)
        return self._send(answer.status_code, answer.content)

    def _send(self, status: int, data: bytes) -> None:
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture()
def refusing(emulator: Any) -> Iterator[str]:
    with serve_handler(type("Refusing", (_Refusing,), {"upstream": emulator.base_url})) as url:
        yield url


def test_a_server_without_now64_is_read_with_now(emulator: Any, refusing: str) -> None:
    with _client(emulator, f"{refusing}/now64") as client:
        assert read_server_clock(client).server_now == FIXED_NOW  # whole seconds, never ahead


def test_a_server_refusing_both_clock_queries_fails_clearly(emulator: Any, refusing: str) -> None:
    with _client(emulator, f"{refusing}/both") as client, pytest.raises(ServerClockUnavailable) as failed:
        read_server_clock(client)
    assert "refused both queries that read its clock" in str(failed.value)
    assert "orchestration/query" in str(failed.value)


def test_an_answer_that_is_not_a_number_is_a_protocol_error(emulator: Any, refusing: str) -> None:
    with _client(emulator, f"{refusing}/text") as client, pytest.raises(CargoProtocolError, match="not a number"):
        read_server_clock(client)


def _reading(skew: timedelta) -> ClockReading:
    return ClockReading(server_now=FIXED_NOW, client_now=FIXED_NOW - skew, round_trip=timedelta(milliseconds=8))


@pytest.mark.parametrize(
    ("skew", "level", "words"),
    [
        (timedelta(seconds=2), logging.INFO, "2.000 s ahead of"),
        (SKEW_WARNING, logging.INFO, "1.0 minutes ahead of"),
        (SKEW_WARNING + timedelta(milliseconds=1), logging.WARNING, "ahead of"),
        (-timedelta(days=30), logging.WARNING, "30.0 days behind"),
    ],
)
def test_the_skew_is_logged_once_at_info_and_past_a_minute_at_warning(
    skew: timedelta, level: int, words: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="cargo_elt.source.server_clock")
    log_reading(_reading(skew))
    assert [r.levelno for r in caplog.records] == [level]
    message = caplog.records[0].getMessage()
    assert words in message and f"skew {skew.total_seconds():+.3f} s, +/- 0.004 s" in message


def test_a_sync_in_steps_warns_once_about_a_skew_and_again_if_it_moves(caplog: pytest.LogCaptureFixture) -> None:
    """Each step of a sync reads the clock again; the same skew is not a new warning, a moved one is."""
    caplog.set_level(logging.INFO, logger="cargo_elt.source.server_clock")
    far = -timedelta(days=30)
    first = _reading(far)
    assert log_reading(first) is True
    assert log_reading(_reading(far + timedelta(seconds=3)), first) is False
    assert log_reading(_reading(far + SKEW_WARNING + timedelta(seconds=1)), first) is True
    assert log_reading(_reading(timedelta(seconds=2)), first) is False  # no longer far: INFO
    assert [r.levelno for r in caplog.records] == [logging.WARNING, logging.INFO, logging.WARNING, logging.INFO]


def test_a_clock_that_went_back_is_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    state: dict[str, Any] = {}
    remember_server_now(state, FIXED_NOW, "runs")
    remember_server_now(state, FIXED_NOW + timedelta(hours=1), "runs")
    assert not caplog.records and state["server_now"] == (FIXED_NOW + timedelta(hours=1)).isoformat()
    remember_server_now(state, FIXED_NOW, "runs")
    assert any("earlier than" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)


def test_building_the_source_reads_no_clock(closed_port: str) -> None:
    """The clock is read when the first resource runs, not when the source is built (no request then)."""
    from cargo_elt.source import TABLE_NAMES, cargo_source

    source = cargo_source(api_token="crg_test", base_url=closed_port, tables=list(TABLE_NAMES))
    assert set(source.resources) >= {"runs", "run_metrics", "batch_failures", "workflows"}


@pytest.fixture()
def closed_port() -> str:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"
