"""The console as an ASGI app of its own, mounted at ``/console`` in the service.

Its own because its answers are pages, not the API's JSON: errors render an error page (with
the status the API would give them), a missing session redirects to the sign-in page, and every
response carries the headers that keep pages from being framed, sniffed or made to run
anything but the console's own script.
"""

from __future__ import annotations

import logging
import time
import traceback
from pathlib import Path
from typing import Final
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Message, Receive, Scope, Send

from hashmatch.api.asgi import HttpMiddleware
from hashmatch.api.deps import Services
from hashmatch.api.errors import status_for
from hashmatch.console import web
from hashmatch.errors import HashmatchError

log = logging.getLogger(__name__)

STATIC: Final = Path(__file__).parent / "static"

#: Nothing runs but the console's own script and styles; no page may be framed; forms post
#: only to the console.
CONTENT_SECURITY_POLICY: Final = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    )
)
SECURITY_HEADERS: Final = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), interest-cohort=()"),
)


class SecurityHeaders(HttpMiddleware):
    """The headers above on every response; pages (not static files) are never cached. Each
    response also says how long the server took to start it (``Server-Timing``), which the
    console's benchmark reads."""

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        static = scope.get("path", "").startswith(web.PREFIX + "/static/")
        started = time.perf_counter()

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (name, value)
                    for name, value in message.get("headers", [])
                    if name not in {n for n, _ in SECURITY_HEADERS}
                ]
                headers.extend(SECURITY_HEADERS)
                if not static:
                    headers.append((b"cache-control", b"no-store"))
                elapsed = (time.perf_counter() - started) * 1000
                headers.append((b"server-timing", f"app;dur={elapsed:.1f}".encode()))
                message["headers"] = headers
            await send(message)

        await self._app(scope, receive, with_headers)


def _login_redirect(request: Request) -> Response:
    target = request.url.path
    if request.url.query:
        target += "?" + request.url.query
    if request.method != "GET":
        target = web.url("/")
    return RedirectResponse(web.url("/login") + "?next=" + quote(target, safe=""), 303)


async def _domain_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HashmatchError)
    if isinstance(exc, web.LoginRequired):
        return _login_redirect(request)
    if isinstance(exc, web.PasswordChangeRequired):
        return RedirectResponse(web.url("/account/password"), 303)
    return web.render(
        request,
        "error.html",
        {"code": exc.code, "message": exc.message},
        status=status_for(exc),
    )


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    fields = ", ".join(
        ".".join(str(p) for p in error.get("loc", ())) for error in list(exc.errors())[:5]
    )
    return web.render(
        request, "error.html", {"code": "invalid_request", "message": fields}, status=422
    )


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return web.render(
        request, "error.html", {"code": code, "message": str(exc.detail)}, status=exc.status_code
    )


async def _unexpected(request: Request, exc: Exception) -> Response:
    where = "".join(traceback.format_tb(exc.__traceback__))
    log.error("unexpected error in the console: %s\n%s", type(exc).__name__, where)
    return web.render(request, "error.html", {"code": "internal_error", "message": ""}, status=500)


def create_console(services: Services) -> FastAPI:
    from hashmatch.console.pages import ROUTERS

    console = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    console.state.services = services
    console.add_exception_handler(HashmatchError, _domain_error)
    console.add_exception_handler(RequestValidationError, _validation_error)
    console.add_exception_handler(StarletteHTTPException, _http_error)
    console.add_exception_handler(Exception, _unexpected)
    for router in ROUTERS:
        console.include_router(router)
    console.mount("/static", StaticFiles(directory=STATIC), name="static")
    console.add_middleware(SecurityHeaders)
    return console
