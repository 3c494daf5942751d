"""Every request body is capped before anything parses it.

Each route may declare its cap in its OpenAPI extension ``x-max-body-bytes`` (so clients can
read it from ``/openapi.json``); every other route gets :data:`DEFAULT_MAX_BODY`. A declared
``Content-Length`` over the cap is refused before the body is read; a body without one (chunked)
is counted while it arrives and refused at the first byte over. Either way the answer is the
service's own 413 envelope, whatever the route was doing with the body when it ran out.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from fastapi.routing import APIRoute
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hashmatch.api.errors import error_response
from hashmatch.errors import PayloadTooLarge

DEFAULT_MAX_BODY: Final = 64 * 1024
EXTENSION: Final = "x-max-body-bytes"


def body_limit(limit: int) -> dict[str, int]:
    """``openapi_extra`` for a route that takes bodies up to ``limit`` bytes."""
    return {EXTENSION: limit}


class RouteTable:
    """The API's routes, to find the one a request is meant for before the app routes it
    (to cap its body, or to count a refused request under its template)."""

    def __init__(self, routes: Iterable[BaseRoute]) -> None:
        self._routes = [route for route in routes if isinstance(route, APIRoute)]

    def find(self, scope: Scope) -> APIRoute | None:
        path, method = scope.get("path", ""), scope.get("method", "")
        for route in self._routes:
            if route.path_regex.match(path) and method in (route.methods or ()):
                return route
        return None

    def body_limit(self, scope: Scope) -> int:
        route = self.find(scope)
        extra = (route.openapi_extra if route is not None else None) or {}
        return int(extra.get(EXTENSION, DEFAULT_MAX_BODY))


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            text = value.decode("latin-1").strip()
            return int(text) if text.isdigit() else None
    return None


class BodyLimit:
    def __init__(self, app: ASGIApp, routes: RouteTable) -> None:
        self._app = app
        self._routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        limit = self._routes.body_limit(scope)
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
