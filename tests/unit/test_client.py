"""CargoClient: headers, error classification, retries, budget, token hygiene.

These tests fake the HTTP server with ``httpx.MockTransport``. It is the only place in the unit tests
where a mock is used, because what is tested here is how the client classifies answers and paces its
retries (429 with Retry-After, 5xx, dropped connections, truncated bodies), which a real server cannot
produce on demand. Backoff is zero and ``sleep`` only records the waits: nothing here sleeps.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import httpx
import orjson
import pytest
from pydantic import SecretStr

from cargo_elt.source.client import CargoClient, RetryPolicy, query_url, retry_after_seconds
from cargo_elt.source.errors import (
    CargoAuthError,
    CargoConfigurationError,
    CargoProtocolError,
    CargoQueryError,
    CargoRetryBudgetExceeded,
    ResultCapExceeded,
    ScanCapExceeded,
    TimeCapExceeded,
    WindowTooLarge,
)

TOKEN = "tok_live_9f8e7d6c5b4a"
WORKSPACE = "0b7a6c1e-8f2d-4c3b-9a1e-5d6f7a8b9c0d"
SQL = "SELECT count() AS n FROM runs"

Handler = Callable[[httpx.Request], httpx.Response]


class Server:
    """Answers requests from a script of responses (or exceptions), one per request."""

    def __init__(self, *answers: httpx.Response | Exception) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []
        self.waits: list[float] = []
        self._lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            self.requests.append(request)
            answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    def client(self, **options: object) -> CargoClient:
        policy = options.pop("retry", RetryPolicy(max_attempts=5, initial_backoff_s=0.0, jitter_s=0.0))
        return CargoClient(
            TOKEN,
            base_url="http://cargo.test",
            workspace_uuid=WORKSPACE,
            retry=policy,  # type: ignore[arg-type]
            transport=httpx.MockTransport(self),
            sleep=self.waits.append,
            **options,  # type: ignore[arg-type]
        )


def ok(rows: list[dict[str, object]]) -> httpx.Response:
    return httpx.Response(200, content=orjson.dumps({"rows": rows}))


def refused(status: int, message: str, **headers: str) -> httpx.Response:
    return httpx.Response(status, content=orjson.dumps({"errorMessage": message}), headers=headers)


@pytest.fixture
def server_factory() -> Iterator[Callable[..., tuple[Server, CargoClient]]]:
    clients: list[CargoClient] = []

    def make(*answers: httpx.Response | Exception, **options: object) -> tuple[Server, CargoClient]:
        server = Server(*answers)
        client = server.client(**options)
        clients.append(client)
        return server, client

    yield make
    for client in clients:
        client.close()


def test_query_sends_the_documented_request(server_factory: Callable[..., tuple[Server, CargoClient]]) -> None:
    server, client = server_factory(ok([{"n": 42}]))
    assert client.query(SQL) == [{"n": 42}]
    (request,) = server.requests
    assert request.method == "POST"
    assert str(request.url) == "http://cargo.test/v1/orchestration/query"
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert request.headers["selected-workspace-uuid"] == WORKSPACE
    assert request.headers["x-cargo-origin"] == "cargo-elt"
    assert request.headers["content-type"] == "application/json"
    assert orjson.loads(request.content) == {"query": SQL}
    assert client.stats_snapshot() == {
        "requests": 1,
        "retries": 0,
        "queries": 1,
        "calls": 0,
        "rows": 1,
        "bytes_received": len(b'{"rows":[{"n":42}]}'),
        "failures": {},
    }


def test_no_workspace_header_unless_configured() -> None:
    server = Server(ok([]))
    with CargoClient(SecretStr(TOKEN), base_url="http://cargo.test", transport=httpx.MockTransport(server)) as client:
        client.query(SQL)
    assert "selected-workspace-uuid" not in server.requests[0].headers


@pytest.mark.parametrize(
    "base", ["http://cargo.test", "http://cargo.test/", "http://cargo.test/v1", "http://cargo.test/v1/"]
)
def test_query_url(base: str) -> None:
    assert query_url(base) == "http://cargo.test/v1/orchestration/query"


def test_configuration_errors() -> None:
    with pytest.raises(CargoConfigurationError, match=r"sources\.cargo\.api_token.*SOURCES__CARGO__API_TOKEN"):
        CargoClient("  ")
    with pytest.raises(CargoConfigurationError, match="workspace_uuid"):
        CargoClient(TOKEN, workspace_uuid="ws-1\r\nx-evil: 1")
    with pytest.raises(CargoConfigurationError, match="base_url"):
        CargoClient(TOKEN, base_url="ftp://cargo.test")


# -- retries --------------------------------------------------------------------------------------------


def test_429_honours_retry_after_seconds(server_factory: Callable[..., tuple[Server, CargoClient]]) -> None:
    server, client = server_factory(httpx.Response(429, headers={"Retry-After": "7"}), ok([{"n": 1}]))
    assert client.query(SQL) == [{"n": 1}]
    assert server.waits == [7.0]
    stats = client.stats_snapshot()
    assert (stats["requests"], stats["retries"], stats["failures"]) == (2, 1, {"http_429": 1})


def test_retry_after_as_http_date() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert retry_after_seconds("Thu, 01 Jan 2026 12:00:30 GMT", now) == 30.0
    assert retry_after_seconds("Thu, 01 Jan 2026 11:00:00 GMT", now) == 0.0
    assert retry_after_seconds("2.5") == 2.5
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds(None) is None


def test_5xx_backs_off_exponentially(server_factory: Callable[..., tuple[Server, CargoClient]]) -> None:
    policy = RetryPolicy(max_attempts=5, initial_backoff_s=0.5, max_backoff_s=1.5, jitter_s=0.0)
    server, client = server_factory(
        httpx.Response(500), httpx.Response(502), httpx.Response(503), httpx.Response(504), ok([]), retry=policy
    )
    assert client.query(SQL) == []
    assert server.waits == [0.5, 1.0, 1.5, 1.5]


def test_jitter_is_added(server_factory: Callable[..., tuple[Server, CargoClient]]) -> None:
    policy = RetryPolicy(max_attempts=3, initial_backoff_s=1.0, jitter_s=0.5)
    server, client = server_factory(httpx.Response(503), ok([]), retry=policy)
    client.query(SQL)
    assert 1.0 <= server.waits[0] <= 1.5


@pytest.mark.parametrize(
    "failure",
    [
        httpx.ConnectError("connection refused"),
        httpx.ReadError("connection reset by peer"),
        httpx.RemoteProtocolError("peer closed connection without sending complete message body"),
        httpx.ReadTimeout("timed out"),
        httpx.Response(200, content=b'{"rows":[{"n":1},{"n'),
        httpx.Response(200, content=b"<html>bad gateway</html>"),
        refused(500, "Code: 202. DB::Exception: Too many simultaneous queries. (TOO_MANY_SIMULTANEOUS_QUERIES)"),
    ],
    ids=["connect", "read", "protocol", "timeout", "truncated", "html", "too-many-queries"],
)
def test_transient_failures_are_retried(
    server_factory: Callable[..., tuple[Server, CargoClient]], failure: httpx.Response | Exception
) -> None:
    server, client = server_factory(failure, ok([{"n": 1}]))
    assert client.query(SQL) == [{"n": 1}]
    assert len(server.requests) == 2


def test_retry_budget_of_attempts(server_factory: Callable[..., tuple[Server, CargoClient]]) -> None:
    server, client = server_factory(httpx.Response(503, content=b""))
    with pytest.raises(CargoRetryBudgetExceeded, match="after 5 attempts") as caught:
        client.query(SQL)
    assert len(server.requests) == 5
    assert "HTTP 503" in str(caught.value)
    assert client.stats_snapshot()["failures"] == {"http_503": 4, "budget_exceeded": 1}


def test_retry_budget_of_seconds(server_factory: Callable[..., tuple[Server, CargoClient]]) -> None:
    policy = RetryPolicy(max_attempts=50, max_total_s=10.0, initial_backoff_s=0.0, jitter_s=0.0)
    server, client = server_factory(refused(429, "slow down", **{"Retry-After": "3600"}), retry=policy)
    with pytest.raises(CargoRetryBudgetExceeded, match="Retry-After 3600 s"):
        client.query(SQL)
    assert len(server.requests) == 1
    assert server.waits == []


# -- errors that must not be retried --------------------------------------------------------------------


@pytest.mark.parametrize("status", [401, 403])
def test_auth_failures_stop_at_once_and_name_the_setting(
    server_factory: Callable[..., tuple[Server, CargoClient]], status: int
) -> None:
    server, client = server_factory(refused(status, f"Unauthorized: token {TOKEN} unknown"))
    with pytest.raises(CargoAuthError) as caught:
        client.query(SQL)
    assert len(server.requests) == 1
    message = str(caught.value)
    assert "sources.cargo.api_token" in message and "SOURCES__CARGO__API_TOKEN" in message
    assert TOKEN not in message and TOKEN not in repr(caught.value)


def test_bare_401(server_factory: Callable[..., tuple[Server, CargoClient]]) -> None:
    _, client = server_factory(httpx.Response(401))
    with pytest.raises(CargoAuthError, match="HTTP 401"):
        client.query(SQL)


@pytest.mark.parametrize(
    ("status", "message", "kind"),
    [
        (400, "Code: 158. DB::Exception: Limit for rows (controlled by 'max_rows_to_read' setting) exceeded, max rows: 10.00 million, current rows: 12.00 million. (TOO_MANY_ROWS)", ScanCapExceeded),  # noqa: E501
        (400, "Code: 159. DB::Exception: Timeout exceeded: elapsed 30.1 seconds, maximum: 30. (TIMEOUT_EXCEEDED)", TimeCapExceeded),  # noqa: E501
        (500, "Code: 158. DB::Exception: Limit for rows exceeded. (TOO_MANY_ROWS)", ScanCapExceeded),
        (400, "Code: 396. DB::Exception: Limit for result exceeded, max rows: 10.00 thousand, current rows: 10.01 thousand. (TOO_MANY_ROWS_OR_BYTES)", ResultCapExceeded),  # noqa: E501
        (400, "Code: 47. DB::Exception: Unknown expression identifier 'nope' in scope SELECT nope FROM runs. (UNKNOWN_IDENTIFIER)", CargoQueryError),  # noqa: E501
        (400, "Code: 60. DB::Exception: Table orchestration.runs doesn't exist. (UNKNOWN_TABLE)", CargoQueryError),
        (400, "Code: 62. DB::Exception: Syntax error: failed at position 8. (SYNTAX_ERROR)", CargoQueryError),
        (400, '[{"code":"invalid_type","path":["query"],"message":"expected string"}]', CargoQueryError),
    ],
)  # fmt: skip
def test_query_errors_are_classified_by_clickhouse_code(
    server_factory: Callable[..., tuple[Server, CargoClient]], status: int, message: str, kind: type[Exception]
) -> None:
    server, client = server_factory(refused(status, message))
    with pytest.raises(CargoQueryError) as caught:
        client.query(SQL)
    assert type(caught.value) is kind
    assert len(server.requests) == 1
    assert SQL in str(caught.value) and message in str(caught.value)


def test_window_caps_share_a_base_class() -> None:
    assert issubclass(ScanCapExceeded, WindowTooLarge) and issubclass(TimeCapExceeded, WindowTooLarge)
    assert not issubclass(ResultCapExceeded, WindowTooLarge)


def test_unknown_endpoint(server_factory: Callable[..., tuple[Server, CargoClient]]) -> None:
    _, client = server_factory(httpx.Response(404))
    with pytest.raises(CargoQueryError, match="check the base URL"):
        client.query(SQL)


def test_unexpected_body_shape(server_factory: Callable[..., tuple[Server, CargoClient]]) -> None:
    _, client = server_factory(httpx.Response(200, content=b'[{"n": 1}]'))
    with pytest.raises(CargoProtocolError):
        client.query(SQL)


# -- the token stays secret -----------------------------------------------------------------------------


def test_token_never_shows(
    server_factory: Callable[..., tuple[Server, CargoClient]], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    echo = refused(503, f"upstream said: bad token {TOKEN}")
    server, client = server_factory(echo, httpx.ConnectError(f"cannot connect with {TOKEN}"), echo)
    with pytest.raises(CargoRetryBudgetExceeded) as caught:
        client.query(SQL)
    assert len(server.requests) == 5
    assert TOKEN not in str(caught.value) and TOKEN not in repr(caught.value)
    assert TOKEN not in repr(client) and "***" in repr(client)
    assert TOKEN not in caplog.text
    assert "retrying" in caplog.text


def test_concurrent_queries_share_one_client(server_factory: Callable[..., tuple[Server, CargoClient]]) -> None:
    _, client = server_factory(ok([{"n": 1}, {"n": 2}]))
    threads = [threading.Thread(target=lambda: [client.query(SQL) for _ in range(25)]) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stats = client.stats_snapshot()
    assert (stats["queries"], stats["rows"], stats["requests"]) == (200, 400, 200)
