"""Bearer keys -> the caller, checked before a byte of the request body is read.

:class:`KeyGate` is ASGI middleware in front of every ``/v1`` route: it authenticates the key
and spends its rate-limit token from the headers alone, so a request without a valid key is
refused (401) before the application reads or parses its body, whatever its size. Routes read
the caller with the :func:`caller` dependency and check roles with :func:`require`.

Keys are cached for a few seconds per replica. While the database is unreachable a key seen
before keeps working from the cache (matching goes on from memory); an unknown key is then a
503, not a 401: it cannot be checked.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Final

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from hashmatch.api.errors import error_response
from hashmatch.api.ratelimit import TokenBuckets
from hashmatch.errors import (
    Forbidden,
    HashmatchError,
    KeySuspended,
    NotReady,
    StoreUnavailable,
    Unauthorized,
)
from hashmatch.keys import KeyInfo, Role, authenticate
from hashmatch.store import Store

#: A revoked or suspended key stops working within this many seconds on every replica.
KEY_CACHE_SECONDS: Final = 5.0
#: Where the gate leaves the caller for the routes.
SCOPE_KEY: Final = "hashmatch.key"


class KeyCache:
    def __init__(self, store: Store, ttl: float = KEY_CACHE_SECONDS) -> None:
        self._store = store
        self._ttl = ttl
        self._lock = threading.Lock()
        self._entries: dict[bytes, tuple[float, KeyInfo | None]] = {}
        self._suspended: dict[int, float] = {}  # key id -> when (wall clock)

    def cached(self, secret: str) -> tuple[bool, KeyInfo | None]:
        """``(True, info)`` when the cache still knows the key, without touching the store."""
        digest = hashlib.sha256(secret.encode()).digest()
        with self._lock:
            cached = self._entries.get(digest)
        if cached is not None and cached[0] > time.monotonic():
            return True, cached[1]
        return False, None

    def lookup(self, secret: str) -> KeyInfo | None:
        """The key as the store has it now (after :meth:`cached` missed), remembered; the
        last known answer if the store is unreachable and the key was known."""
        digest = hashlib.sha256(secret.encode()).digest()
        now = time.monotonic()
        try:
            info = authenticate(self._store, secret)
        except StoreUnavailable:
            with self._lock:
                stale = self._entries.get(digest)
            if stale is None:
                raise
            return stale[1]
        with self._lock:
            if len(self._entries) > 10_000:
                self._entries.clear()
            self._entries[digest] = (now + self._ttl, info)
        return info

    def suspend(self, key_id: int) -> None:
        """Stop a key in this replica at once, before the store's record reaches the cache
        (or if the store cannot record it), until the operator reinstates it."""
        with self._lock:
            self._suspended[key_id] = time.time()

    def is_suspended(self, info: KeyInfo) -> bool:
        if info.suspended_at is not None:
            return True
        with self._lock:
            since = self._suspended.get(info.id)
            if since is None:
                return False
            if info.reinstated_at is not None and info.reinstated_at.timestamp() > since:
                del self._suspended[info.id]
                return False
            return True


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
    state = scope["app"].state
    cache: KeyCache | None = getattr(state, "keys", None)
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
        state.probes.forgive(info.organisation, info.reinstated_at.timestamp())
    buckets: TokenBuckets = state.rate_limits
    buckets.take(info.id)
    return info


class KeyGate:
    """Authenticate and rate-limit every ``/v1`` request before the app sees it."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v1/"):
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
