"""The emulator's ASGI app: Cargo's ``/v1`` API, signed file downloads and admin controls.

Layers, outermost first: fault injection (so retries see what a flaky network does), bearer-token
auth (the token decides the workspace, as on Cargo), then the routes. ``orchestration/query`` lives
here because it is the heart of the emulator; the other endpoints come from ``emulator.api``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route

from . import layouts
from .faults import TIMEOUT_MESSAGE, FaultSpecError, parse_fault_spec
from .http import error_response, json_response, validation_error_response
from .state import EmulatorState
from .store import QueryRefused
from .validation import StrictPayload, ValidationFailed, validate_body

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

UNAUTHORIZED = orjson.dumps({"errorMessage": "Unauthorized"})
FORBIDDEN = orjson.dumps({"errorMessage": "forbidden"})


def _transport_of(send: Send) -> Any:
    """uvicorn's transport behind ``send`` (its request cycle keeps it), to drop a connection for real."""
    return getattr(getattr(send, "__self__", None), "transport", None)


class FaultMiddleware:
    """Injects the configured faults into API and file requests (never into admin calls)."""

    def __init__(self, app: ASGIApp, state: EmulatorState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith(("/v1/", "/_files/")):
            await self.app(scope, receive, send)
            return
        faults = self.state.faults
        if faults.match:
            receive, body = await _buffered(receive)
            fault = faults.draw() if faults.match.encode() in body else None
        else:
            fault = faults.draw()
        if fault is None:
            await self.app(scope, receive, send)
        elif fault == "slow":
            await asyncio.sleep(self.state.faults.slow_s)
            await self.app(scope, receive, send)
        elif fault in {"429", "500", "502", "503"}:
            headers = [(b"content-type", b"application/json")]
            body = b""
            if fault == "429":
                headers.append((b"retry-after", str(self.state.faults.retry_after_s).encode()))
            else:
                body = orjson.dumps({"errorMessage": "Server error"}) if fault == "500" else b""
            headers.append((b"content-length", str(len(body)).encode()))
            await send({"type": "http.response.start", "status": int(fault), "headers": headers})
            await send({"type": "http.response.body", "body": body})
        elif fault == "timeout":
            await _send_bytes(send, 400, orjson.dumps({"errorMessage": TIMEOUT_MESSAGE}))
        elif fault == "reset":
            transport = _transport_of(send)
            if transport is None:
                raise ConnectionAbortedError("fault injection: reset")
            transport.abort()
        else:  # truncate: the headers promise the whole body, half of it arrives, then the socket closes
            await self._truncated(scope, receive, send)

    async def _truncated(self, scope: Scope, receive: Receive, send: Send) -> None:
        transport = _transport_of(send)
        cut = False

        async def cutting_send(message: Message) -> None:
            nonlocal cut
            if cut:
                return
            if message["type"] == "http.response.body":
                body = message.get("body", b"")
                await send({"type": "http.response.body", "body": body[: len(body) // 2], "more_body": True})
                cut = True
                if transport is not None:
                    transport.close()
                return
            await send(message)

        await self.app(scope, receive, cutting_send)


async def _buffered(receive: Receive) -> tuple[Receive, bytes]:
    """The whole request body, and a ``receive`` that hands the same messages on to the app."""
    messages: list[Message] = []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request" or not message.get("more_body", False):
            break
    body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.request")
    pending = list(messages)

    async def replay() -> Message:
        return pending.pop(0) if pending else await receive()

    return replay, body


class AuthMiddleware:
    """Resolves the bearer token to its workspace for every ``/v1`` request."""

    def __init__(self, app: ASGIApp, state: EmulatorState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope.get("path", "").startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        self.state.count_request(scope["path"])
        scheme, _, token = headers.get("authorization", "").partition(" ")
        workspace = self.state.by_token.get(token.strip()) if scheme.lower() == "bearer" else None
        if workspace is None:
            await _send_bytes(send, 401, UNAUTHORIZED)
            return
        selected = headers.get("selected-workspace-uuid")
        user_level = scope["path"].startswith("/v1/userManagement/")
        if selected and not user_level and selected.lower() != workspace.uuid:
            await _send_bytes(send, 403, FORBIDDEN)
            return
        scope.setdefault("state", {})["workspace"] = workspace
        await self.app(scope, receive, send)


async def _send_bytes(send: Send, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _emulator(request: Request) -> EmulatorState:
    state: EmulatorState = request.app.state.emulator
    return state


class QueryPayload(StrictPayload):
    """``orchestration/query``'s payload: one SQL statement, nothing else (REFERENCE.md 3.2)."""

    query: str


async def orchestration_query(request: Request) -> Response:
    """``POST /v1/orchestration/query``: the caller's SQL, scoped and capped (REFERENCE.md 3.2, 4)."""
    state = _emulator(request)
    workspace = request.state.workspace
    try:
        raw = await request.body()
    except ClientDisconnect:
        return Response(status_code=499)  # the caller went away (e.g. killed) before sending its query
    try:
        decoded: Any = orjson.loads(raw)
    except orjson.JSONDecodeError:
        decoded = raw.decode("utf-8", "replace")  # refused below as "Expected object, received string"
    try:
        query = validate_body(QueryPayload, decoded).query
    except ValidationFailed as failed:
        return validation_error_response(failed.issues)
    try:
        body = await run_in_threadpool(state.store.caller_query, workspace.uuid, query)
    except QueryRefused as refused:
        state.log_query(workspace.uuid, query, refused.message.split(".", 1)[0])
        return error_response(400, message=refused.message)
    state.log_query(workspace.uuid, query, "ok")
    return Response(body, media_type="application/json")


# -- admin ------------------------------------------------------------------------------------------


async def admin_advance(request: Request) -> Response:
    """Advance the virtual clock: new runs arrive, pending ones finish, a few are soft-deleted."""
    from .clock import advance

    state = _emulator(request)
    payload = orjson.loads(await request.body() or b"{}")
    seconds = payload.get("seconds")
    if not isinstance(seconds, int) or isinstance(seconds, bool) or seconds <= 0:
        return error_response(400, message="'seconds' must be a positive integer")

    def locked_advance() -> Any:
        with state.clock_lock:
            return advance(state.store, state.workspaces, seconds, seed=state.seed)

    report = await run_in_threadpool(locked_advance)
    return json_response(_as_json(report))


async def admin_truth(request: Request) -> Response:
    """Ground truth per table (count + checksum), and every key's state when ``rows=<table>`` is asked."""
    from .truth import ground_truth, truth_rows

    state = _emulator(request)
    ws_uuid = request.query_params.get("workspace") or state.workspaces[0].uuid
    if ws_uuid not in state.by_uuid:
        return error_response(404, reason="workspaceNotFound")
    result: dict[str, Any] = {"workspace": ws_uuid}
    result["tables"] = await run_in_threadpool(ground_truth, state.store, ws_uuid)
    table = request.query_params.get("rows")
    if table:
        result["rows"] = await run_in_threadpool(truth_rows, state.store, ws_uuid, table)
    return json_response(result)


async def admin_faults(request: Request) -> Response:
    """Set fault rates at run time: ``{"spec": "429=0.05,reset=0.01", "seed": 7}``.

    Optional: ``retryAfter`` (whole seconds sent with 429), ``slowSeconds`` (the ``slow`` delay) and
    ``match`` (inject only into requests whose body contains this text).
    """
    state = _emulator(request)
    payload = orjson.loads(await request.body() or b"{}")
    try:
        rates = parse_fault_spec(str(payload.get("spec", "")))
    except FaultSpecError as exc:
        return error_response(400, message=str(exc))
    seed = payload.get("seed")
    retry_after = payload.get("retryAfter")
    slow = payload.get("slowSeconds")
    match = payload.get("match")
    if retry_after is not None and (not isinstance(retry_after, int) or retry_after < 0):
        return error_response(400, message="'retryAfter' must be a whole number of seconds")
    if slow is not None and (not isinstance(slow, int | float) or slow < 0):
        return error_response(400, message="'slowSeconds' must be a non-negative number")
    state.faults.configure(
        rates,
        seed if isinstance(seed, int) else None,
        retry_after_s=retry_after,
        slow_s=float(slow) if slow is not None else None,
        match=str(match) if match else None,
    )
    return json_response(
        {
            "rates": state.faults.rates,
            "seed": state.faults.seed,
            "retryAfter": state.faults.retry_after_s,
            "slowSeconds": state.faults.slow_s,
            "match": state.faults.match,
        }
    )


async def admin_schema(request: Request) -> Response:
    """Schema drift: ``{"table": "runs", "action": "add|drop|modify", "column": "c", "type": "String",
    "fill": "<ClickHouse expression>"}`` alters the physical table and re-creates the workspace views.

    ``fill`` (optional) rewrites the column's values after the change (an ``ALTER ... UPDATE``), e.g. to
    give a column whose type changed values the old type cannot read. ``{"action": "rename", "table":
    "records", "column": "id", "to": "record_id"}`` renames a column as ``orchestration/query`` shows it
    (the views), leaving the stored data and every other endpoint alone; ``to`` equal to ``column``
    undoes it.
    """
    state = _emulator(request)
    payload = orjson.loads(await request.body() or b"{}")
    if payload.get("action") == "rename":
        try:
            await run_in_threadpool(
                state.store.rename_column,
                [ws.uuid for ws in state.workspaces],
                str(payload.get("table", "")),
                str(payload.get("column", "")),
                str(payload.get("to", "")),
            )
        except ValueError as exc:
            return error_response(400, message=str(exc))
        return json_response({"renamed": True})
    try:
        await run_in_threadpool(
            state.store.alter_column,
            [ws.uuid for ws in state.workspaces],
            str(payload.get("table", "")),
            str(payload.get("action", "")),
            str(payload.get("column", "")),
            payload.get("type"),
            payload.get("fill"),
        )
    except ValueError as exc:
        return error_response(400, message=str(exc))
    return json_response({"altered": True})


async def admin_late(request: Request) -> Response:
    """Late rows (ClickHouse insert lag): ``{"table": "runs", "rows": 5, "ageSeconds": 180, "seed": 1}``.

    Copies ``rows`` existing rows of the first workspace as new keys whose time and update columns
    lie ``ageSeconds`` before the virtual clock's now, as if their insert became visible only now.
    """
    state = _emulator(request)
    payload = orjson.loads(await request.body() or b"{}")
    rows = payload.get("rows")
    age = payload.get("ageSeconds")
    if not isinstance(rows, int) or rows <= 0 or not isinstance(age, int) or age < 0:
        return error_response(400, message="'rows' must be a positive integer and 'ageSeconds' a non-negative one")
    try:
        inserted = await run_in_threadpool(
            state.store.insert_late,
            state.workspaces[0].uuid,
            str(payload.get("table", "")),
            rows,
            age,
            int(payload.get("seed", 0)),
        )
    except ValueError as exc:
        return error_response(400, message=str(exc))
    return json_response({"inserted": inserted})


async def admin_settings(request: Request) -> Response:
    """Runtime switches: result-cap truncation, signed-URL lifetime, the export layout (``layouts.py``)."""
    state = _emulator(request)
    payload = orjson.loads(await request.body() or b"{}")
    try:
        state.export_layout = layouts.updated(state.export_layout, payload)
    except ValueError as exc:
        return error_response(400, message=str(exc))
    if "truncateResults" in payload:
        state.store.set_truncate_results(bool(payload["truncateResults"]))
    if "signedUrlTtl" in payload:
        state.signed_url_ttl_s = int(payload["signedUrlTtl"])
    return json_response(
        {
            "truncateResults": state.store.truncate_results,
            "signedUrlTtl": state.signed_url_ttl_s,
            **state.export_layout.to_json(),
        }
    )


async def admin_files(request: Request) -> Response:
    """The export files served so far and what each held (``DELETE`` forgets them)."""
    state = _emulator(request)
    if request.method == "DELETE":
        state.served_files.clear()
    return json_response({"files": state.served_files.listed()})


async def admin_queries(request: Request) -> Response:
    """The caller queries served so far (``DELETE`` clears them), with request counts and faults."""
    state = _emulator(request)
    # the emulator's own CPU time (all threads, chDB's included): benchmarks sharing the machine
    # with it subtract two readings to tell the server's work from the client's
    cpu_seconds = time.process_time()
    if request.method == "DELETE":
        with state.lock:
            state.query_log.clear()
            state.request_counts.clear()
        return json_response({"cleared": True, "cpu_seconds": cpu_seconds})
    with state.lock:
        queries = list(state.query_log)
        counts = dict(state.request_counts)
    return json_response(
        {"queries": queries, "requests": counts, "faults": dict(state.faults.counts), "cpu_seconds": cpu_seconds}
    )


async def admin_workspaces(request: Request) -> Response:
    """Workspaces with their tokens (admin only: this is how a test harness finds them)."""
    state = _emulator(request)
    return json_response({"workspaces": [{"uuid": w.uuid, "name": w.name, "token": w.token} for w in state.workspaces]})


def _as_json(value: Any) -> Any:
    if hasattr(value, "__dataclass_fields__"):
        from dataclasses import asdict

        return asdict(value)
    return value


ADMIN_ROUTES: list[BaseRoute] = [
    Route("/_emulator/advance", admin_advance, methods=["POST"]),
    Route("/_emulator/truth", admin_truth, methods=["GET"]),
    Route("/_emulator/faults", admin_faults, methods=["POST"]),
    Route("/_emulator/settings", admin_settings, methods=["POST"]),
    Route("/_emulator/queries", admin_queries, methods=["GET", "DELETE"]),
    Route("/_emulator/workspaces", admin_workspaces, methods=["GET"]),
    Route("/_emulator/schema", admin_schema, methods=["POST"]),
    Route("/_emulator/late", admin_late, methods=["POST"]),
    Route("/_emulator/files", admin_files, methods=["GET", "DELETE"]),
]


async def not_found(request: Request, exc: Exception) -> Response:
    """Unknown routes answer 404 with Cargo's error shape."""
    return error_response(404, message="Not found")


async def method_not_allowed(request: Request, exc: Exception) -> Response:
    """Wrong method on a known path."""
    return error_response(405, message="Method not allowed")


def create_app(state: EmulatorState) -> ASGIApp:
    """The whole emulator as one ASGI app."""
    from .api import FILE_ROUTES, V1_ROUTES

    v1: list[BaseRoute] = [Route("/orchestration/query", orchestration_query, methods=["POST"]), *V1_ROUTES]
    routes: list[BaseRoute] = [Mount("/v1", routes=v1), *FILE_ROUTES]
    if state.admin_enabled:
        routes.extend(ADMIN_ROUTES)
    app = Starlette(routes=routes, exception_handlers={404: not_found, 405: method_not_allowed})
    app.state.emulator = state
    return FaultMiddleware(AuthMiddleware(app, state), state)
