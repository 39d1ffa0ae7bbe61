"""Plumbing shared by the REST endpoints: request context, error mapping, SQL and time helpers.

Every endpoint is written as a plain synchronous function of a ``Call`` (the request with its body
already read, the workspace, the emulator state). ``endpoint`` turns it into a Starlette endpoint
that runs it in the threadpool (chDB calls block) and maps the two expected failure kinds to
Cargo's error bodies: ``ValidationFailed`` -> 400 zod issues, ``ApiError`` -> ``reason`` /
``errorMessage`` with the status chosen per REFERENCE.md section 1.6.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from ..http import error_response, json_response, validation_error_response
from ..state import EmulatorState
from ..store import ClickHouseStore
from ..validation import ValidationFailed, validate_body, validate_query
from ..workspaces import Workspace

ModelT = TypeVar("ModelT", bound=BaseModel)
logger = logging.getLogger(__name__)


class ApiError(Exception):
    """An expected failure with Cargo's error body (``reason`` and/or ``errorMessage``)."""

    def __init__(self, status: int, *, reason: str | None = None, message: str | None = None) -> None:
        super().__init__(reason or message or str(status))
        self.status = status
        self.reason = reason
        self.message = message

    def response(self) -> Response:
        return error_response(self.status, message=self.message, reason=self.reason)


def not_found(reason: str) -> ApiError:
    """A ``*NotFound`` reason: 404 (REFERENCE.md 1.6, suggested mapping)."""
    return ApiError(404, reason=reason)


def rejected(reason: str) -> ApiError:
    """A business-rule reason (``tooManyRuns``, ``batchNotFinished``, ...): 400."""
    return ApiError(400, reason=reason)


@dataclass(frozen=True)
class Call:
    """One API request as the handlers see it."""

    request: Request
    state: EmulatorState
    workspace: Workspace
    body: bytes
    query_string: bytes
    path_params: dict[str, str]

    @property
    def store(self) -> ClickHouseStore:
        return self.state.store

    @property
    def ws(self) -> str:
        """The caller's workspace UUID (every read is scoped to it)."""
        return self.workspace.uuid

    def payload(self, model: type[ModelT]) -> ModelT:
        """The JSON body validated against ``model``; an absent body counts as ``{}`` (as Express does)."""
        if not self.body.strip():
            return validate_body(model, {})
        try:
            decoded = orjson.loads(self.body)
        except orjson.JSONDecodeError:
            raise ApiError(400, message="Invalid JSON body") from None
        return validate_body(model, decoded)

    def params(self, model: type[ModelT]) -> ModelT:
        """The query string validated against ``model``."""
        return validate_query(model, self.query_string)


Handler = Callable[[Call], Response]


def endpoint(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """Wrap a synchronous handler: read the body, run it in the threadpool, map expected errors."""

    @functools.wraps(handler)
    async def run(request: Request) -> Response:
        body = await request.body() if request.method != "GET" else b""
        call = Call(
            request=request,
            state=request.app.state.emulator,
            workspace=request.state.workspace,
            body=body,
            query_string=request.scope.get("query_string", b""),
            path_params=dict(request.path_params),
        )
        try:
            return await run_in_threadpool(handler, call)
        except ValidationFailed as failed:
            return validation_error_response(failed.issues)
        except ApiError as error:
            return error.response()
        except Exception:
            logger.exception("%s %s failed", request.method, request.url.path)
            return error_response(500, message="Internal Server Error")

    return run


def ok(payload: dict[str, Any]) -> Response:
    """A 200 with Cargo's object wrapper."""
    return json_response(payload)


# -- SQL helpers -----------------------------------------------------------------------------------


def lit(text: str) -> str:
    """``text`` as a ClickHouse string literal (every caller value goes through this or ``uuid_lit``)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def uuid_lit(value: str) -> str:
    """A UUID literal that never fails: a malformed value becomes the nil UUID and matches nothing."""
    return f"toUUIDOrZero({lit(value)})"


def ts_lit(value: str) -> str:
    """A normalised payload timestamp (see ``validation.Timestamp``) as a DateTime64 literal."""
    return f"toDateTime64({lit(value)}, 3, 'UTC')"


class Where:
    """A conjunction of SQL predicates, always starting with the workspace scope."""

    def __init__(self, workspace_uuid: str) -> None:
        self.parts: list[str] = [f"workspace_uuid = toUUID({lit(workspace_uuid)})"]

    def add(self, predicate: str) -> None:
        self.parts.append(predicate)

    def uuid_eq(self, column: str, value: str | None) -> None:
        if value is not None:
            self.parts.append(f"{column} = {uuid_lit(value)}")

    def uuid_in(self, column: str, values: Iterable[str] | None) -> None:
        if values is not None:
            items = list(values)
            self.parts.append(f"{column} IN ({', '.join(uuid_lit(v) for v in items)})" if items else "0")

    def eq(self, column: str, value: str | None) -> None:
        if value is not None:
            self.parts.append(f"{column} = {lit(value)}")

    def in_(self, column: str, values: Iterable[str] | None) -> None:
        if values is not None:
            items = list(values)
            self.parts.append(f"{column} IN ({', '.join(lit(v) for v in items)})" if items else "0")

    def contains(self, column: str, value: str | None) -> None:
        """Case-insensitive substring match (what the docs describe as ``ILIKE '%...%'``)."""
        if value is not None:
            self.parts.append(contains_sql(column, value))

    def flag(self, column: str, value: bool | None) -> None:
        if value is not None:
            self.parts.append(f"coalesce({column}, false) = {'true' if value else 'false'}")

    def is_set(self, column: str, value: bool | None) -> None:
        if value is not None:
            self.parts.append(f"{column} IS {'NOT ' if value else ''}NULL")

    def after(self, column: str, value: str | None) -> None:
        """``xxxAfter`` filters are inclusive ([I]: half-open windows ``[after, before)``)."""
        if value is not None:
            self.parts.append(f"{column} >= {ts_lit(value)}")

    def before(self, column: str, value: str | None) -> None:
        if value is not None:
            self.parts.append(f"{column} < {ts_lit(value)}")

    def sql(self) -> str:
        return " AND ".join(f"({part})" for part in self.parts)


def contains_sql(column: str, value: str) -> str:
    """Case-insensitive substring predicate on a (possibly NULL) string column."""
    return f"positionCaseInsensitiveUTF8(ifNull({column}, ''), {lit(value)}) > 0"


# -- values ----------------------------------------------------------------------------------------


def iso(value: Any) -> str | None:
    """A ClickHouse DateTime64 text (``2026-07-22 00:20:41.999``) as Cargo's ISO form (``...T...999Z``)."""
    if value is None:
        return None
    text = str(value).replace(" ", "T", 1)
    if "." not in text:
        text += ".000"
    head, _, fraction = text.partition(".")
    return f"{head}.{(fraction + '000')[:3]}Z"


def json_or_none(value: Any) -> Any:
    """A JSON-text column (``nodes``, ``data``) decoded; NULL or empty stays ``None``."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            return value
    return value


def camel(name: str) -> str:
    """``execution_started_at`` -> ``executionStartedAt``."""
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)
