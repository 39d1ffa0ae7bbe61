"""HTTP client for ``POST /v1/orchestration/query``: auth, retries, error classification, counters.

One ``httpx.Client`` (one connection pool) is shared by every window fetch; httpx clients are safe
to use from several threads. What the client decides, and why:

* transient failures (408, 429, 500, 502-504, CDN 52x, dropped connections, read errors, bodies that are
  truncated or not JSON, ClickHouse errors about server load) are retried with exponential backoff
  and jitter, honouring ``Retry-After``, within a budget of attempts *and* seconds; past it the
  query fails with ``CargoRetryBudgetExceeded`` (the run resumes from its last committed frontier);
* 401/403 fail at once: a static token does not get better by asking again;
* ClickHouse errors are classified by the ``Code: N`` in ``errorMessage`` (``errors.query_error``),
  whatever the HTTP status, because the caller's reaction depends on the code, not on the status.

The token is held as a ``SecretStr`` and added to each request by an ``httpx.Auth`` hook, so it is
not among the client's default headers; every text that could end up in an exception or a log line
passes through ``_redact`` in case the server echoes it.
"""

from __future__ import annotations

import contextlib
import email.utils
import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import httpx
import orjson
from pydantic import SecretStr
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt, stop_before_delay

from .errors import (
    CargoApiError,
    CargoAuthError,
    CargoConfigurationError,
    CargoError,
    CargoProtocolError,
    CargoQueryError,
    CargoRetryBudgetExceeded,
    SignedUrlExpired,
    clickhouse_code,
    query_error,
)
from .settings import (
    API_VERSION_PREFIX,
    CONNECT_TIMEOUT_S,
    DEFAULT_BASE_URL,
    DEFAULT_CONCURRENCY,
    ORIGIN,
    POOL_TIMEOUT_S,
    QUERY_ENDPOINT,
    READ_TIMEOUT_S,
    RETRY_INITIAL_BACKOFF_S,
    RETRY_JITTER_S,
    RETRY_MAX_ATTEMPTS,
    RETRY_MAX_BACKOFF_S,
    RETRY_MAX_TOTAL_S,
    RETRYABLE_CLICKHOUSE_CODES,
    RETRYABLE_STATUSES,
    WRITE_TIMEOUT_S,
)

logger = logging.getLogger(__name__)

Row = dict[str, Any]
T = TypeVar("T")
DOWNLOAD_CHUNK_BYTES = 1 << 20

_REDACTED = "***"


@dataclass(frozen=True)
class RetryPolicy:
    """How long one query may keep retrying transient failures."""

    max_attempts: int = RETRY_MAX_ATTEMPTS
    max_total_s: float = RETRY_MAX_TOTAL_S
    initial_backoff_s: float = RETRY_INITIAL_BACKOFF_S
    max_backoff_s: float = RETRY_MAX_BACKOFF_S
    jitter_s: float = RETRY_JITTER_S

    def backoff(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based) without a Retry-After."""
        exponential: float = self.initial_backoff_s * 2.0 ** (attempt - 1)
        return min(self.max_backoff_s, exponential) + random.uniform(0.0, self.jitter_s)


def default_timeout() -> httpx.Timeout:
    """Read timeout above the server's 30 s query cap, so the server's own 159 error wins."""
    return httpx.Timeout(connect=CONNECT_TIMEOUT_S, read=READ_TIMEOUT_S, write=WRITE_TIMEOUT_S, pool=POOL_TIMEOUT_S)


@dataclass
class ClientStats:
    """Counters for the run summary. Updated under the client's lock; read them via ``snapshot``."""

    requests: int = 0
    retries: int = 0
    queries: int = 0
    calls: int = 0
    rows: int = 0
    bytes_received: int = 0
    failures: Counter[str] = field(default_factory=Counter)

    def snapshot(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "retries": self.retries,
            "queries": self.queries,
            "calls": self.calls,
            "rows": self.rows,
            "bytes_received": self.bytes_received,
            "failures": dict(self.failures),
        }


class _Transient(Exception):
    """A failure worth retrying; ``retry_after`` is the server's requested delay, if it sent one.

    ``kind`` is a short label for the run summary (``http_429``, ``ReadError``, ``bad_json``, ...).
    """

    def __init__(self, kind: str, description: str, retry_after: float | None = None) -> None:
        super().__init__(description)
        self.kind = kind
        self.description = description
        self.retry_after = retry_after


class _BearerAuth(httpx.Auth):
    """Adds the bearer token to each request, keeping it out of the client's default headers."""

    def __init__(self, token: SecretStr) -> None:
        self._token = token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["authorization"] = f"Bearer {self._token.get_secret_value()}"
        yield request

    def __repr__(self) -> str:
        return "_BearerAuth(token=***)"


def query_url(base_url: str) -> str:
    """``{base}/v1/orchestration/query``; a base given with or without ``/v1`` or a trailing slash."""
    base = base_url.strip().rstrip("/")
    if base.endswith(API_VERSION_PREFIX):
        base = base[: -len(API_VERSION_PREFIX)]
    return f"{base}{API_VERSION_PREFIX}/{QUERY_ENDPOINT}"


def api_url(base_url: str, path: str) -> str:
    """``{base}/v1/{path}`` for a REST endpoint, with the same base URL rules as ``query_url``."""
    return query_url(base_url)[: -len(QUERY_ENDPOINT)] + path.lstrip("/")


def query_pairs(params: Mapping[str, Any]) -> list[tuple[str, str | int | float | bool | None]]:
    """GET parameters the way Cargo's client (Axios) sends them: ``key[]`` per array item,
    ``true``/``false`` for booleans, nulls omitted (REFERENCE.md 1.3)."""
    pairs: list[tuple[str, str | int | float | bool | None]] = []
    for key, value in params.items():
        if value is None:
            continue
        items = value if isinstance(value, list | tuple) else None
        if items is not None:
            pairs.extend((f"{key}[]", _param_text(item)) for item in items if item is not None)
        else:
            pairs.append((key, _param_text(value)))
    return pairs


def _param_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _reason(body: bytes) -> str | None:
    try:
        parsed = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        return None
    reason = parsed.get("reason") if isinstance(parsed, dict) else None
    return reason if isinstance(reason, str) else None


def _s3_message(text: str) -> str:
    """The ``<Message>`` of an S3-style XML error, else the text itself."""
    start, end = text.find("<Message>"), text.find("</Message>")
    if 0 <= start < end:
        return text[start + len("<Message>") : end]
    return text.strip() or "no message"


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """``Retry-After`` as seconds from now: delta-seconds or an HTTP date; ``None`` if absent or bad."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _server_message(content: bytes, redact: Callable[[str], str]) -> str:
    """``errorMessage`` (or ``reason``) of an error body; the raw text if it is not JSON.

    ``redact`` runs on the whole text before it is cut, so a token echoed by a proxy can never be
    left half visible at the cut.
    """
    body: Any = None
    parsed = True
    try:
        body = orjson.loads(content) if content else None
    except orjson.JSONDecodeError:
        parsed = False
    if not parsed:
        return redact(content.decode("utf-8", "replace")).strip()[:500]
    if isinstance(body, dict):
        for key in ("errorMessage", "reason"):
            if isinstance(body.get(key), str):
                return redact(str(body[key]))
    return "" if body is None else redact(orjson.dumps(body).decode("utf-8", "replace"))[:500]


class CargoClient:
    """Runs ClickHouse SQL through Cargo's ``orchestration/query`` endpoint.

    ``query`` is safe to call from several threads at once; ``max_connections`` should match the
    number of concurrent window fetches. ``transport`` and ``sleep`` exist for tests.
    """

    def __init__(
        self,
        api_token: SecretStr | str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        workspace_uuid: str | None = None,
        retry: RetryPolicy | None = None,
        max_connections: int = DEFAULT_CONCURRENCY,
        timeout: httpx.Timeout | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        from .config import CargoConnection, parse_settings  # config.py imports the catalogue, which imports this

        # the token goes into a header, the workspace uuid too: both checked like every setting (config.py)
        connection = parse_settings(
            {"api_token": api_token, "base_url": base_url, "workspace_uuid": workspace_uuid}, model=CargoConnection
        )
        token = connection.api_token
        if max_connections < 1:
            raise CargoConfigurationError("max_connections must be at least 1")
        self._token = token
        self.base_url = base_url
        self.workspace_uuid = workspace_uuid
        self.retry = retry or RetryPolicy()
        self._url = query_url(base_url)
        self._sleep = sleep
        self._lock = threading.Lock()
        self.stats = ClientStats()
        headers = {"x-cargo-origin": ORIGIN, "content-type": "application/json", "accept": "application/json"}
        with contextlib.suppress(PackageNotFoundError):
            headers["x-cargo-origin-version"] = version("cargo-elt")
        if workspace_uuid is not None:
            headers["selected-workspace-uuid"] = workspace_uuid
        self._http = httpx.Client(
            auth=_BearerAuth(token),
            headers=headers,
            timeout=timeout or default_timeout(),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            transport=transport,
            follow_redirects=False,
        )
        # Signed URLs go to object storage: no Cargo auth, no Cargo headers, redirects followed.
        self._files = httpx.Client(timeout=timeout or default_timeout(), transport=transport, follow_redirects=True)

    def __repr__(self) -> str:
        return f"CargoClient(base_url={self.base_url!r}, workspace_uuid={self.workspace_uuid!r}, api_token=***)"

    def __enter__(self) -> CargoClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()
        self._files.close()

    def stats_snapshot(self) -> dict[str, Any]:
        """Requests, retries, queries, rows, bytes and failures by kind so far (for the run summary)."""
        with self._lock:
            return self.stats.snapshot()

    def query(self, sql: str) -> list[Row]:
        """The rows of one SQL statement, retried through transient failures.

        Raises ``CargoAuthError``, a ``CargoQueryError`` subclass chosen by ClickHouse code
        (``ScanCapExceeded``, ``TimeCapExceeded``, ``ResultCapExceeded``, ...),
        ``CargoProtocolError`` or ``CargoRetryBudgetExceeded``.
        """
        body = orjson.dumps({"query": sql})
        rows = self._retrying(lambda: self._attempt(sql, body), "Cargo query")
        self._count(queries=1, rows=len(rows))
        return rows

    def call(
        self, method: str, path: str, payload: Mapping[str, Any] | None = None, params: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """One REST endpoint (``path`` relative to ``/v1``, e.g. ``orchestration/workflows/list``).

        GET parameters are serialised as Cargo's own client does (``key[]=a&key[]=b``, booleans as
        ``true``/``false``, nulls left out). The answer is the JSON object wrapper; a documented refusal
        raises ``CargoApiError`` with its ``reason``; transient failures are retried like queries.
        """
        url = api_url(self.base_url, path)
        content = orjson.dumps(payload) if payload is not None else None
        pairs = query_pairs(params or {})
        body = self._retrying(lambda: self._rest_attempt(method, url, path, content, pairs), f"Cargo {path}")
        self._count(calls=1)
        return body

    def download_to(self, url: str, target: Path) -> int:
        """Stream a signed download URL into ``target`` and return its size in bytes.

        The URL carries its own signature, so no Cargo credentials are sent with it (they must not
        reach object storage). Transient failures restart the file from the beginning; a refused or
        expired signature raises ``SignedUrlExpired`` so the caller asks the API for a fresh URL.
        """
        return self._retrying(lambda: self._download_attempt(url, target), "Cargo download")

    def _retrying(self, attempt_once: Callable[[], T], what: str) -> T:
        started = time.monotonic()
        retrying = Retrying(
            stop=stop_after_attempt(self.retry.max_attempts) | stop_before_delay(self.retry.max_total_s),
            wait=self._wait,
            retry=retry_if_exception_type(_Transient),
            sleep=self._sleep,
            before_sleep=self._before_sleep,
            reraise=True,
        )
        try:
            for attempt in retrying:
                with attempt:
                    result = attempt_once()
        except _Transient as exc:
            self._count(failure="budget_exceeded")
            raise CargoRetryBudgetExceeded(
                retrying.statistics.get("attempt_number", 1), time.monotonic() - started, exc.description, what
            ) from None
        except CargoError as exc:
            self._count(failure=type(exc).__name__)
            raise
        return result

    # -- one attempt ------------------------------------------------------------------------------

    def _attempt(self, sql: str, body: bytes) -> list[Row]:
        self._count(requests=1)
        try:
            # Streamed and joined here rather than ``response.content``: httpx keeps a response in a
            # reference cycle with its stream, so a cached body (megabytes per page) would live until
            # the next full garbage collection; a local ``bytes`` is freed as soon as it is parsed.
            with self._http.stream("POST", self._url, content=body) as response:
                content = b"".join(response.iter_bytes())
        except httpx.TransportError as exc:
            raise _Transient(type(exc).__name__, self._redact(f"{type(exc).__name__}: {exc}")) from None
        self._count(bytes_received=len(content))
        status = response.status_code
        if 200 <= status < 300:
            return self._rows(content)
        message = _server_message(content, self._redact)
        if status in (401, 403):
            raise CargoAuthError(status, message)
        code = clickhouse_code(message)
        if code in RETRYABLE_CLICKHOUSE_CODES:
            retry_after = retry_after_seconds(response.headers.get("retry-after"))
            raise _Transient(f"clickhouse_{code}", f"HTTP {status}: {message}", retry_after)
        if code is not None:
            raise query_error(status, message, sql)
        if status in RETRYABLE_STATUSES:
            retry_after = retry_after_seconds(response.headers.get("retry-after"))
            hint = f" (Retry-After {retry_after:.0f} s)" if retry_after is not None else ""
            raise _Transient(f"http_{status}", f"HTTP {status}: {message or 'no message'}{hint}", retry_after)
        if status == 404 and not message:
            message = f"no such endpoint {self._url}; check the base URL"
        raise CargoQueryError(status, None, message, sql)

    def _rest_attempt(
        self,
        method: str,
        url: str,
        path: str,
        content: bytes | None,
        params: list[tuple[str, str | int | float | bool | None]],
    ) -> dict[str, Any]:
        self._count(requests=1)
        try:
            with self._http.stream(method, url, content=content, params=params) as response:
                body = b"".join(response.iter_bytes())
        except httpx.TransportError as exc:
            raise _Transient(type(exc).__name__, self._redact(f"{type(exc).__name__}: {exc}")) from None
        self._count(bytes_received=len(body))
        status = response.status_code
        if 200 <= status < 300:
            failure = None
            try:
                parsed = orjson.loads(body) if body else {}
            except orjson.JSONDecodeError as exc:
                failure = f"unparsable JSON body from {path} ({len(body)} bytes): {exc.msg}"
            if failure is not None:
                raise _Transient("bad_json", failure)
            if not isinstance(parsed, dict):
                shown = self._redact(str(parsed))[:200]
                raise CargoProtocolError(f"expected a JSON object from {path}, got {shown!r}")
            return parsed
        message = _server_message(body, self._redact)
        if status in (401, 403):
            raise CargoAuthError(status, message)
        if status in RETRYABLE_STATUSES:
            retry_after = retry_after_seconds(response.headers.get("retry-after"))
            raise _Transient(f"http_{status}", f"HTTP {status} from {path}: {message or 'no message'}", retry_after)
        raise CargoApiError(status, path, _reason(body), message)

    def _download_attempt(self, url: str, target: Path) -> int:
        self._count(requests=1)
        size = 0
        try:
            with self._files.stream("GET", url) as response:
                status = response.status_code
                if 200 <= status < 300:
                    with target.open("wb") as out:
                        for chunk in response.iter_bytes(DOWNLOAD_CHUNK_BYTES):
                            out.write(chunk)
                            size += len(chunk)
                    expected = response.headers.get("content-length")
                    if expected is not None and expected.isdigit() and int(expected) != response.num_bytes_downloaded:
                        raise _Transient("truncated_file", f"download ended after {size} of {expected} bytes")
                else:
                    detail = self._redact(b"".join(response.iter_bytes()).decode("utf-8", "replace"))[:300]
        except httpx.TransportError as exc:
            raise _Transient(type(exc).__name__, f"download failed: {type(exc).__name__}") from None
        self._count(bytes_received=size)
        if 200 <= status < 300:
            return size
        if status in RETRYABLE_STATUSES:
            raise _Transient(f"http_{status}", f"HTTP {status} from a download URL")
        if status in (400, 401, 403, 404, 410):
            raise SignedUrlExpired(status, _s3_message(detail))
        raise CargoProtocolError(f"download URL answered HTTP {status}: {_s3_message(detail)}")

    def _rows(self, content: bytes) -> list[Row]:
        failure = None
        try:
            payload = orjson.loads(content)
        except orjson.JSONDecodeError as exc:
            failure = f"unparsable JSON body ({len(content)} bytes, likely truncated): {exc.msg}"
        if failure is not None:  # raised outside ``except``: the decode error (holding the body) is not chained
            raise _Transient("bad_json", failure)
        rows = payload.get("rows") if isinstance(payload, dict) else None
        if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows[:1]):
            shown = self._redact(str(payload))[:200]
            raise CargoProtocolError(f"expected a body of the form {{'rows': [{{...}}]}}, got {shown!r}")
        return rows

    # -- retry plumbing ---------------------------------------------------------------------------

    def _wait(self, state: RetryCallState) -> float:
        failure = state.outcome.exception() if state.outcome else None
        if isinstance(failure, _Transient) and failure.retry_after is not None:
            return failure.retry_after
        return self.retry.backoff(state.attempt_number)

    def _before_sleep(self, state: RetryCallState) -> None:
        failure = state.outcome.exception() if state.outcome else None
        self._count(retries=1, failure=failure.kind if isinstance(failure, _Transient) else None)
        wait = state.next_action.sleep if state.next_action else 0.0
        logger.warning("Cargo query attempt %d failed (%s); retrying in %.1f s", state.attempt_number, failure, wait)

    def _count(self, *, failure: str | None = None, **amounts: int) -> None:
        with self._lock:
            for name, amount in amounts.items():
                setattr(self.stats, name, getattr(self.stats, name) + amount)
            if failure is not None:
                self.stats.failures[failure] += 1

    def _redact(self, text: str) -> str:
        secret = self._token.get_secret_value()
        return text.replace(secret, _REDACTED) if secret and secret in text else text
