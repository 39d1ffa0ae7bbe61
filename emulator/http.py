"""Response helpers shared by the emulator's handlers: Cargo's wrappers and error bodies."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response


def json_response(payload: Any, status: int = 200) -> Response:
    """A JSON body encoded the way Cargo's server sends it (compact, UTF-8, nulls kept)."""
    return Response(orjson.dumps(payload), status_code=status, media_type="application/json")


def error_response(status: int, *, message: str | None = None, reason: str | None = None) -> Response:
    """Cargo's error body: ``errorMessage`` and/or ``reason`` (REFERENCE.md section 1.6)."""
    body: dict[str, Any] = {}
    if message is not None:
        body["errorMessage"] = message
    if reason is not None:
        body["reason"] = reason
    return json_response(body, status)


def validation_error_response(issues: list[dict[str, Any]]) -> Response:
    """A request-schema violation: 400 with the zod issue list JSON-encoded in ``errorMessage``.

    REFERENCE.md section 1.6: the client's RequestError message is ``errorMessage`` and the CLI
    prints ``RequestError: [ ...zod issues... ]``, so the issue array travels as a string there.
    """
    return error_response(400, message=orjson.dumps(issues).decode())
