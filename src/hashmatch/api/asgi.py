"""ASGI pieces the API's middleware shares: the route table (which route a request is meant
for, before the app has routed it) and the HTTP-only middleware shape."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from fastapi.routing import APIRoute
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send


class RouteTable:
    """The API's routes, to find the one a request is meant for before the app routes it
    (to cap its body, or to count a refused request under its template). ``mounts``: the
    routes of apps mounted under a path prefix (the console's)."""

    def __init__(
        self, routes: Iterable[BaseRoute], mounts: Mapping[str, Iterable[BaseRoute]] | None = None
    ) -> None:
        self._routes = [route for route in routes if isinstance(route, APIRoute)]
        self._mounts = {
            prefix: [route for route in mounted if isinstance(route, APIRoute)]
            for prefix, mounted in (mounts or {}).items()
        }

    def find(self, scope: Scope) -> APIRoute | None:
        path, method = scope.get("path", ""), scope.get("method", "")
        routes = self._routes
        for prefix, mounted in self._mounts.items():
            if path.startswith(prefix + "/"):
                path, routes = path[len(prefix) :], mounted
                break
        for route in routes:
            if route.path_regex.match(path) and method in (route.methods or ()):
                return route
        return None

    def body_limit(self, scope: Scope, extension: str, default: int) -> int:
        route = self.find(scope)
        extra = (route.openapi_extra if route is not None else None) or {}
        return int(extra.get(extension, default))


class HttpMiddleware:
    """Pure ASGI middleware (``BaseHTTPMiddleware`` costs a task and a stream per request)
    that handles HTTP requests in :meth:`http` and passes everything else through."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self.http(scope, receive, send)
        else:
            await self._app(scope, receive, send)

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._app(scope, receive, send)
