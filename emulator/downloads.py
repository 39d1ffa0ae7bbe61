"""Signed, expiring download URLs and the file server behind them.

Cargo's exports are two-step (REFERENCE.md section 7): the API answers ``{url}`` (or ``{urls}``), a
short-lived presigned object-storage URL, and the client fetches it *without* Cargo's auth headers.
The emulator reproduces that contract:

* ``sign_file_url`` describes the file to produce (``FileSpec``: workspace, kind, parameters) and
  returns ``<base_url>/_files/<id>?expires=<unix>&signature=<hmac>``. The id *is* the spec
  (compressed JSON, so URLs survive a restart with the same signing key); a spec too large for a
  URL is kept in a small in-process table and the id names it. The HMAC covers the id and the
  expiry, so a URL can neither be stretched in time nor pointed at another file or workspace.
* ``FILE_ROUTES`` serves ``/_files/{id}`` with no auth. Failures answer like S3 does (403 XML
  ``AccessDenied`` / ``SignatureDoesNotMatch``, ``Request has expired``; 404 ``NoSuchKey``).
* Files are produced lazily, when fetched, by the producer registered for the spec's kind, and
  streamed in chunks: an export of millions of rows never sits whole in memory.

Expiry uses the real wall clock (a URL's lifetime is about real time, not the emulator's virtual
clock); the lifetime is ``EmulatorState.signed_url_ttl_s`` (``SIGNED_URL_TTL_S`` by default).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from xml.sax.saxutils import escape

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from .state import EmulatorState

FILES_PREFIX = "/_files"
INLINE_ID_MAX_CHARS = 2000
"""Specs whose encoded id would be longer than this are kept server-side (URLs stay short)."""

_STORED_MAX = 10_000
_INLINE = "z"
_STORED = "s"


@dataclass(frozen=True)
class FileSpec:
    """What a signed URL points at: which workspace's data, which export, with which parameters."""

    workspace_uuid: str
    kind: str
    params: dict[str, Any]
    filename: str

    def to_json(self) -> bytes:
        return orjson.dumps({"w": self.workspace_uuid, "k": self.kind, "p": self.params, "n": self.filename})

    @classmethod
    def from_json(cls, data: bytes) -> FileSpec:
        raw = orjson.loads(data)
        return cls(workspace_uuid=raw["w"], kind=raw["k"], params=raw["p"], filename=raw["n"])


@dataclass(frozen=True)
class FileBody:
    """A produced file: its media type and its content as a stream of chunks."""

    media_type: str
    chunks: Iterator[bytes]


Producer = Callable[[EmulatorState, FileSpec], FileBody]
_producers: dict[str, Producer] = {}
_stored: dict[str, tuple[float, bytes]] = {}
_stored_lock = threading.Lock()


def register_producer(kind: str, producer: Producer) -> None:
    """Declare how files of ``kind`` are produced (the API modules call this at import time)."""
    _producers[kind] = producer


def _ttl(state: EmulatorState) -> int:
    from .api.limits import SIGNED_URL_TTL_S  # imported late: emulator.api imports this module

    ttl = getattr(state, "signed_url_ttl_s", SIGNED_URL_TTL_S)
    return int(ttl) if isinstance(ttl, int | float) and not isinstance(ttl, bool) else SIGNED_URL_TTL_S


def _signature(state: EmulatorState, file_id: str, expires: int) -> str:
    return hmac.new(state.signing_key, f"{file_id}\n{expires}".encode(), hashlib.sha256).hexdigest()


def _encode_id(spec: FileSpec, expires: int) -> str:
    packed = spec.to_json()
    inline = _INLINE + base64.urlsafe_b64encode(zlib.compress(packed, 9)).decode().rstrip("=")
    if len(inline) <= INLINE_ID_MAX_CHARS:
        return inline
    key = _STORED + secrets.token_urlsafe(18)
    now = time.time()
    with _stored_lock:
        for stale in [k for k, (until, _) in _stored.items() if until < now]:
            del _stored[stale]
        while len(_stored) >= _STORED_MAX:
            del _stored[next(iter(_stored))]
        _stored[key] = (float(expires), packed)
    return key


def _decode_id(file_id: str) -> FileSpec | None:
    try:
        if file_id.startswith(_INLINE):
            data = file_id[1:]
            packed = zlib.decompress(base64.urlsafe_b64decode(data + "=" * (-len(data) % 4)))
            return FileSpec.from_json(packed)
        if file_id.startswith(_STORED):
            with _stored_lock:
                entry = _stored.get(file_id)
            return FileSpec.from_json(entry[1]) if entry is not None else None
    except (ValueError, KeyError, zlib.error, orjson.JSONDecodeError):
        return None
    return None


def sign_file_url(state: EmulatorState, spec: FileSpec) -> str:
    """A presigned-style URL to the file ``spec`` describes, valid for the state's URL lifetime."""
    expires = int(time.time()) + _ttl(state)
    file_id = _encode_id(spec, expires)
    signature = _signature(state, file_id, expires)
    return f"{state.base_url.rstrip('/')}{FILES_PREFIX}/{file_id}?expires={expires}&signature={signature}"


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def s3_error(status: int, code: str, message: str, **extra: str) -> Response:
    """An S3-style XML error, which is what a presigned object-storage URL answers with."""
    request_id = secrets.token_hex(8).upper()
    fields = "".join(f"<{key}>{escape(value)}</{key}>" for key, value in extra.items())
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{escape(code)}</Code><Message>{escape(message)}</Message>{fields}"
        f"<RequestId>{request_id}</RequestId></Error>"
    )
    return Response(body, status_code=status, media_type="application/xml")


async def serve_file(request: Request) -> Response:
    """``GET /_files/{file_id}``: verify the signature and expiry, then stream the produced file."""
    state: EmulatorState = request.app.state.emulator
    file_id = request.path_params["file_id"]
    expires_text = request.query_params.get("expires", "")
    signature = request.query_params.get("signature", "")
    if not expires_text or not signature:
        return s3_error(
            403, "AccessDenied", "Query-string authentication requires the expires and signature parameters"
        )
    try:
        expires = int(expires_text)
    except ValueError:
        return s3_error(403, "AccessDenied", "Invalid date (should be seconds since epoch)", Expires=expires_text)
    expected = _signature(state, file_id, expires)
    # as bytes: compare_digest raises TypeError on a str with non-ASCII characters (a forged signature
    # such as a full-width digit would otherwise end in a 500 rather than S3's 403)
    if not hmac.compare_digest(expected.encode(), signature.encode("utf-8", "surrogateescape")):
        return s3_error(
            403,
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided. "
            "Check your key and signing method.",
        )
    now = time.time()
    if now > expires:
        return s3_error(403, "AccessDenied", "Request has expired", Expires=_iso(expires), ServerTime=_iso(now))
    spec = _decode_id(file_id)
    if spec is None or spec.kind not in _producers or spec.workspace_uuid not in state.by_uuid:
        return s3_error(404, "NoSuchKey", "The specified key does not exist.", Key=file_id[:64])
    produced = await run_in_threadpool(_producers[spec.kind], state, spec)
    headers = {"content-disposition": f'attachment; filename="{spec.filename}"', "cache-control": "no-store"}
    return StreamingResponse(produced.chunks, media_type=produced.media_type, headers=headers)


FILE_ROUTES: list[BaseRoute] = [Route(FILES_PREFIX + "/{file_id}", serve_file, methods=["GET"])]
