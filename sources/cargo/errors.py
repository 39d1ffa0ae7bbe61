"""Exceptions of the Cargo source, grouped by what the caller should do about them.

* ``WindowTooLarge`` (scan, time or memory cap): split the window and fetch the halves.
* ``ResultCapExceeded``: ask for fewer rows per page and continue with the keyset cursor.
* ``CargoAuthError``: stop; the token is wrong. The message names the setting, never the token.
* ``CargoRetryBudgetExceeded``: transient failures outlasted the retry budget; the run fails and
  can be resumed from the last committed frontier.
* ``CargoQueryError``: anything else the server refused; the message shows the query.
"""

from __future__ import annotations

import re
from datetime import datetime

from .settings import API_TOKEN_ENV, API_TOKEN_SETTING, ERROR_QUERY_PREVIEW_CHARS

_CODE = re.compile(r"\bCode:\s*(\d+)")

TOO_MANY_ROWS = 158
TIMEOUT_EXCEEDED = 159
MEMORY_LIMIT_EXCEEDED = 241
TOO_MANY_ROWS_OR_BYTES = 396


def clickhouse_code(message: str) -> int | None:
    """The ClickHouse error code at the start of an ``errorMessage`` (``Code: 158. DB::...``)."""
    found = _CODE.search(message)
    return int(found.group(1)) if found else None


def _preview(query: str) -> str:
    if len(query) <= ERROR_QUERY_PREVIEW_CHARS:
        return query
    return query[:ERROR_QUERY_PREVIEW_CHARS] + f"... ({len(query)} chars)"


class CargoError(Exception):
    """Base of every error this source raises on purpose."""


class UnsafeLiteralError(CargoError, ValueError):
    """A value meant for a SQL literal did not pass validation (wrong type, not a UUID, ...)."""


class CargoAuthError(CargoError):
    """Cargo rejected the credentials (401) or their scope (403). Retrying cannot help."""

    def __init__(self, status: int, server_message: str) -> None:
        self.status = status
        self.server_message = server_message
        what = "rejected the API token" if status == 401 else "refused the API token's permissions"
        super().__init__(
            f"Cargo {what} (HTTP {status}: {server_message or 'no message'}). Set a valid workspace API "
            f"token with orchestration:read access in `{API_TOKEN_SETTING}` (secrets.toml) or the "
            f"environment variable {API_TOKEN_ENV}; if the token belongs to another workspace, check "
            f"the workspace uuid setting too."
        )


class CargoConfigurationError(CargoError, ValueError):
    """A setting is missing or malformed (no token, a base URL that is not http(s), ...)."""


class CargoProtocolError(CargoError):
    """A 2xx answer whose body is valid JSON but not the documented ``{"rows": [...]}`` shape."""


class CargoRetryBudgetExceeded(CargoError):
    """Transient failures (429, 5xx, dropped connections, truncated bodies) outlasted the budget."""

    def __init__(self, attempts: int, elapsed_s: float, last_failure: str, what: str = "Cargo query") -> None:
        self.attempts = attempts
        self.elapsed_s = elapsed_s
        self.last_failure = last_failure
        super().__init__(
            f"{what} still failing after {attempts} attempts over {elapsed_s:.1f} s; last failure: "
            f"{last_failure}. Raise the retry budget or lower the concurrency if the API is throttling."
        )


class CargoQueryError(CargoError):
    """The server refused the query. ``code`` is ClickHouse's error code when the message has one."""

    def __init__(self, status: int, code: int | None, server_message: str, query: str) -> None:
        self.status = status
        self.code = code
        self.server_message = server_message
        self.query = query
        super().__init__(
            f"Cargo refused the query (HTTP {status}"
            + (f", ClickHouse code {code}" if code is not None else "")
            + f"): {server_message or 'no message'}\nQuery: {_preview(query)}"
        )


class WindowTooLarge(CargoQueryError):
    """A per-query cap tied to how much data the query touches: the caller should split the window.

    The caller knows what is still unread: the window it asked for, resumed after the last page it
    received (``fetch.fetch_pages`` yields pages up to the refusal).
    """


class ScanCapExceeded(WindowTooLarge):
    """Code 158: more than ``max_rows_to_read`` rows would be scanned."""


class TimeCapExceeded(WindowTooLarge):
    """Code 159: the query ran into ``max_execution_time``."""


class MemoryCapExceeded(WindowTooLarge):
    """Code 241: the query ran out of memory; a smaller window needs less."""


class ResultCapExceeded(CargoQueryError):
    """Code 396: more than ``max_result_rows`` rows in the answer; page with a smaller ``LIMIT``."""


class WindowTooNarrow(CargoError):
    """A cap (scan, time, memory) refused a window that cannot be split any further (one millisecond).

    Raised instead of retrying: the same query would fail the same way, and looping on it would
    never end. The message names the table and the window ``[start, end)``, and for a window
    refused after some of its pages (a millisecond holding more rows than a page), the last row
    received (``after``: its time and primary key), where a rerun would stop again.
    """

    def __init__(
        self,
        table: str,
        start: datetime,
        end: datetime,
        cause: CargoQueryError,
        after: tuple[datetime, tuple[object, ...]] | None = None,
    ) -> None:
        self.table = table
        self.start = start
        self.end = end
        self.cause = cause
        self.after = after
        cap = {TOO_MANY_ROWS: "scan", TIMEOUT_EXCEEDED: "time", MEMORY_LIMIT_EXCEEDED: "memory"}.get(
            cause.code or 0, "a"
        )
        resumed = ""
        if after is not None:
            key = ", ".join(str(part) for part in after[1])
            resumed = f", after the row at {after[0].isoformat()} with key ({key}) (the pages before it were read)"
        super().__init__(
            f"{table}: the server's {cap} cap (ClickHouse code {cause.code}) refuses even the smallest window "
            f"[{start.isoformat()}, {end.isoformat()}) of {table}{resumed}; it cannot be split further, "
            "so the sync stops instead of retrying it. "
            f"Server said: {cause.server_message or 'no message'}"
        )


class CargoSchemaError(CargoError):
    """The server's table lost a column the connector cannot work without (a key, time, update or status)."""


class SkippedRowsError(CargoError):
    """A table skipped more rows it could not read or place than ``sources.cargo.max_skipped_rows`` allows."""


class KeysetStalled(CargoError):
    """A full page ended on the cursor it started from, so paging would loop forever.

    Happens only if the server's timestamps are coarser than the ones rendered back, or the primary
    key is not unique; failing is better than re-reading the same page until the budget runs out.
    """


_BY_CODE: dict[int, type[CargoQueryError]] = {
    TOO_MANY_ROWS: ScanCapExceeded,
    TIMEOUT_EXCEEDED: TimeCapExceeded,
    MEMORY_LIMIT_EXCEEDED: MemoryCapExceeded,
    TOO_MANY_ROWS_OR_BYTES: ResultCapExceeded,
}


def query_error(status: int, server_message: str, query: str) -> CargoQueryError:
    """The most specific ``CargoQueryError`` subclass for a refused query."""
    code = clickhouse_code(server_message)
    cls = _BY_CODE.get(code, CargoQueryError) if code is not None else CargoQueryError
    return cls(status, code, server_message, query)


class CargoApiError(CargoError):
    """A REST endpoint refused the request with a documented ``reason`` (``tooManyRuns``,
    ``noRunsFound``, ``batchNotFinished``, ``invalidFilter``, ``*NotFound``, ...) or a 4xx message.

    ``reason`` is kept apart so callers can react to the expected ones (an empty export is not a
    failure) and let the others reach the user with the endpoint named.
    """

    def __init__(self, status: int, endpoint: str, reason: str | None, server_message: str) -> None:
        self.status = status
        self.endpoint = endpoint
        self.reason = reason
        self.server_message = server_message
        detail = reason or server_message or "no message"
        if reason and server_message and server_message != reason:
            detail = f"{reason}: {server_message}"
        super().__init__(f"Cargo refused {endpoint} (HTTP {status}): {detail}")


class SignedUrlExpired(CargoError):
    """A signed download URL was refused (expired or no longer valid): ask the API for a new one."""

    def __init__(self, status: int, detail: str) -> None:
        self.status = status
        super().__init__(f"the signed download URL was refused (HTTP {status}): {detail}")
