"""What the API takes as input, and how it says no: strict bodies, bounded sizes, one line.

- :class:`Strict` is the base of every request body: no coercion (``"admin": "yes"``,
  ``"gpus": true``, ``"gpus": "1"`` and ``"gpus": 1.0`` are refused, not read as ``True``
  and ``1``) and no unknown field (a misspelt ``"completion"`` is refused, not ignored).
- :func:`validation_error` answers a refused request (body, query or path) with HTTP 422
  and ``{"detail": "<field>: <reason>"}`` on one line, the first problem only.
- :class:`BodyLimit` refuses a request body over :data:`MAX_BODY` bytes with HTTP 413,
  before the application reads it: by its ``Content-Length`` at once, and a chunked body
  (no ``Content-Length``) as soon as what arrived passes the limit. The body is never held
  past the limit, so a 10 MB upload costs the server 1 MiB of memory at most.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..model import MAX_GRACE_PERIOD, MAX_QUOTA

MAX_BODY = 1024 * 1024
"""Bytes a request body may have: a job's command and environment fit many times over."""

DRAIN_MAX = 16 * 1024 * 1024
"""Bytes of a refused body read and dropped before the 413, so that the client, still
sending, reads the answer rather than a connection reset; past them the connection closes."""


class Strict(BaseModel):
    """A request body read as sent: the types exactly, and no field the model lacks."""

    model_config = ConfigDict(extra="forbid", strict=True)


Quota = Annotated[int, Field(ge=0, le=MAX_QUOTA)]
"""A project's deserved GPUs: bounded, so that 1e20 is a 422 rather than an overflow."""

Seconds = Annotated[float, Field(ge=0, le=MAX_GRACE_PERIOD, allow_inf_nan=False)]


def one_line(exc: RequestValidationError) -> str:
    """The first problem of a refused request: ``gpus: Input should be a valid integer``."""
    errors = exc.errors()
    if not errors:
        return "the request is not valid"
    # an unknown field first: a misspelt name ("gpu") explains the missing one ("gpus")
    first = next((e for e in errors if e.get("type") == "extra_forbidden"), errors[0])
    if first.get("type") == "json_invalid":
        return "the request body is not valid JSON"
    # ("body", "gpus") -> "gpus"; ("query", "tail") -> "tail"; the whole body -> "body"
    loc = [str(part) for part in first.get("loc", ())]
    where = ".".join(loc[1:] if len(loc) > 1 else loc) or "request"
    reason = " ".join(str(first.get("msg", "invalid")).split())
    more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
    return f"{where}: {reason}{more}"


async def validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return JSONResponse({"detail": one_line(exc)}, status_code=422)


class BodyLimit:
    """ASGI middleware: request bodies over ``limit`` bytes are answered 413 unread."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = self._content_length(scope)
        if declared is not None and declared > self.limit:
            await self._refuse(receive, send)
            return
        # Read the whole body here (as the app would: every route that takes one parses
        # it whole), counting; past the limit, answer without reading the rest.
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":       # the client went away
                await self.app(scope, _replay([], message, receive), send)
                return
            chunk: bytes = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                if message.get("more_body", False):
                    await self._refuse(receive, send)
                else:
                    await self._refuse(None, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        await self.app(scope, _replay(chunks, None, receive), send)

    @staticmethod
    def _content_length(scope: Scope) -> int | None:
        for key, value in scope.get("headers", ()):
            if key == b"content-length":
                try:
                    return int(value)
                except ValueError:
                    return None
        return None

    async def _refuse(self, receive: Receive | None, send: Send) -> None:
        """Answer 413, after reading and dropping what ``receive`` still has of the body
        (up to :data:`DRAIN_MAX`); once a response is sent, the server reads no more."""
        dropped = 0
        while receive is not None and dropped < DRAIN_MAX:
            message = await receive()
            dropped += len(message.get("body", b""))
            if message["type"] != "http.request" or not message.get("more_body", False):
                break
        body = (b'{"detail":"the request body is over %d bytes (%d KiB), the most the '
                b'control plane takes"}' % (self.limit, self.limit // 1024))
        # Connection: close, since the rest of the body may be left unread on the connection
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


def _replay(chunks: list[bytes], pending: Message | None, receive: Receive) -> Receive:
    """A receive that gives the body read so far as one message, then ``pending`` (a
    disconnect already received), then whatever the connection says next."""
    queue: list[Message] = []
    if pending is None:
        queue.append({"type": "http.request", "body": b"".join(chunks), "more_body": False})
    else:
        queue.append(pending)

    async def replayed() -> Message:
        if queue:
            return queue.pop(0)
        return await receive()

    return replayed

