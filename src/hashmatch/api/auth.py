"""Bearer keys -> the caller, checked before a byte of the request body is read.

:class:`KeyGate` is ASGI middleware in front of every ``/v1`` route: it authenticates the key
and spends its rate-limit token from the headers alone, so a request without a valid key is
refused (401) before the application reads or parses its body, whatever its size. Routes read
the caller with the :func:`caller` dependency and check roles with :func:`require`.

Keys are cached for a few seconds per replica (:mod:`.keycache`). While the database is
unreachable a key seen before keeps working (matching goes on from memory); an unknown key is
then a 503, not a 401: it cannot be checked.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Final

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool
from starlette.types import Receive, Scope, Send

from hashmatch.api.asgi import HttpMiddleware
from hashmatch.api.deps import services_of
from hashmatch.api.errors import error_response
from hashmatch.errors import Forbidden, HashmatchError, KeySuspended, NotReady, Unauthorized
from hashmatch.store import KeyInfo, Role

#: Where the gate leaves the caller for the routes.
SCOPE_KEY: Final = "hashmatch.key"


async def _authenticate(scope: Scope) -> KeyInfo:
    header = ""
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            header = value.decode("latin-1")
            break
    scheme, _, secret = header.partition(" ")
    secret = secret.strip()
    if scheme.lower() != "bearer" or not secret:
        raise Unauthorized("send an API key: 'Authorization: Bearer <key>'")
    services = services_of(scope["app"])
    cache = services.keys
    if cache is None:
        raise NotReady("the service is starting")
    known, info = cache.cached(secret)
    if not known:
        info = await run_in_threadpool(cache.lookup, secret)
    if info is None:
        raise Unauthorized("unknown or revoked API key")
    if cache.is_suspended(info):
        raise KeySuspended(
            "this key is suspended until the operator reinstates it"
            + (f": {info.suspended_reason}" if info.suspended_reason else "")
        )
    if info.reinstated_at is not None:
        # The operator reviewed the organisation's probe: this replica's memory of it goes.
        services.probes.forgive(info.organisation, info.reinstated_at.timestamp())
    services.rate_limits.take(info.id)
    return info


class KeyGate(HttpMiddleware):
    """Authenticate and rate-limit every ``/v1`` request before the app sees it."""

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not scope["path"].startswith("/v1/"):
            await self._app(scope, receive, send)
            return
        try:
            key = await _authenticate(scope)
        except HashmatchError as exc:
            await error_response(exc)(scope, receive, send)
            return
        scope[SCOPE_KEY] = key
        await self._app(scope, receive, send)


async def caller(request: Request) -> KeyInfo:
    key: KeyInfo | None = request.scope.get(SCOPE_KEY)
    if key is None:  # a /v1 route always passes the gate; anything else has no caller
        raise Unauthorized("send an API key: 'Authorization: Bearer <key>'")
    return key


def require(role: Role) -> Callable[[KeyInfo], Awaitable[KeyInfo]]:
    async def check(key: Annotated[KeyInfo, Depends(caller)]) -> KeyInfo:
        if not key.allows(role):
            raise Forbidden(f"this key lacks the {role.value!r} role")
        return key

    return check


Caller = Annotated[KeyInfo, Depends(caller)]
Contributor = Annotated[KeyInfo, Depends(require(Role.CONTRIBUTE))]
Matching = Annotated[KeyInfo, Depends(require(Role.MATCH))]
Admin = Annotated[KeyInfo, Depends(require(Role.ADMIN))]
