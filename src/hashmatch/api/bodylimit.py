"""Every request body is capped before anything parses it.

Each route may declare its cap in its OpenAPI extension ``x-max-body-bytes`` (so clients can
read it from ``/openapi.json``); every other route gets :data:`DEFAULT_MAX_BODY`. A declared
``Content-Length`` over the cap is refused before the body is read; a body without one (chunked)
is counted while it arrives and refused at the first byte over. Either way the answer is the
service's own 413 envelope, whatever the route was doing with the body when it ran out.
"""

from __future__ import annotations

from typing import Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hashmatch.api.asgi import HttpMiddleware, RouteTable
from hashmatch.api.errors import error_response
from hashmatch.errors import PayloadTooLarge

DEFAULT_MAX_BODY: Final = 64 * 1024
EXTENSION: Final = "x-max-body-bytes"


def body_limit(limit: int) -> dict[str, int]:
    """``openapi_extra`` for a route that takes bodies up to ``limit`` bytes."""
    return {EXTENSION: limit}


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            text = value.decode("latin-1").strip()
            return int(text) if text.isdigit() else None
    return None


class BodyLimit(HttpMiddleware):
    def __init__(self, app: ASGIApp, routes: RouteTable) -> None:
        super().__init__(app)
        self._routes = routes

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = self._routes.body_limit(scope, EXTENSION, DEFAULT_MAX_BODY)
        declared = _declared_length(scope)
        if declared is not None and declared > limit:
            error = PayloadTooLarge(f"body of {declared} bytes is over the limit of {limit}")
            await error_response(error)(scope, receive, send)
            return
        received = 0
        over = False
        replaced = False

        async def counted_receive() -> Message:
            nonlocal received, over
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    over = True
                    raise PayloadTooLarge(f"body is over the limit of {limit} bytes")
            return message

        async def checked_send(message: Message) -> None:
            nonlocal replaced
            if replaced:
                return
            if over and message["type"] == "http.response.start" and message["status"] != 413:
                # Whatever the route made of the cut-off body (a parse error, say), the truth
                # is that it was too large.
                replaced = True
                error = PayloadTooLarge(f"body is over the limit of {limit} bytes")
                await error_response(error)(scope, receive, send)
                return
            await send(message)

        await self._app(scope, counted_receive, checked_send)
