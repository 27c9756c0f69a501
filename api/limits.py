"""Request size limits enforced before any route runs: a declared Content-Length over the
limit is answered 413 at once, a streamed body as soon as it crosses it."""

from __future__ import annotations

import re

from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hurricane.api.body import SafeJSONResponse
from hurricane.settings import get_settings

_TABLE = re.compile(r"^/v1/devices/[^/]+/table/?$")


def body_limit(method: str, path: str) -> int:
    """The most bytes a request may carry: a latency table's limit for a table import, the
    spec limit for everything else (no other body is larger; most routes take none)."""
    s = get_settings()
    if method == "PUT" and _TABLE.match(path):
        return s.max_table_bytes
    return s.max_spec_bytes


class BodyLimit:
    """Pure ASGI (no buffering): counts what the app reads and refuses the rest with 413."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = body_limit(scope["method"], scope["path"])
        declared = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if declared is not None:
            text = declared.decode("latin-1")
            bad = not (text.isascii() and text.isdigit()) or len(text) > 18
            if bad or int(text) > limit:
                status = 400 if bad else 413
                msg = ("Content-Length is not a number of bytes" if bad else
                       f"the request body is {int(text)} bytes; the limit is {limit} bytes")
                await SafeJSONResponse({"detail": msg}, status_code=status)(scope, receive, send)
                return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:  # raised inside the route: answered by the HTTP error handler
                    raise HTTPException(413, f"the request body exceeds the limit of {limit} "
                                        "bytes")
            return message

        await self.app(scope, counted, send)
