"""Bearer keys -> the caller (organisation and roles), with a short in-memory cache."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Final

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from hashmatch.api.ratelimit import TokenBuckets
from hashmatch.errors import Forbidden, Unauthorized
from hashmatch.keys import KeyInfo, Role, authenticate
from hashmatch.store import Store

#: A revoked key stops working within this many seconds on every replica.
KEY_CACHE_SECONDS: Final = 5.0


class KeyCache:
    def __init__(self, store: Store, ttl: float = KEY_CACHE_SECONDS) -> None:
        self._store = store
        self._ttl = ttl
        self._lock = threading.Lock()
        self._entries: dict[bytes, tuple[float, KeyInfo | None]] = {}

    def cached(self, secret: str) -> tuple[bool, KeyInfo | None]:
        """``(True, info)`` when the cache still knows the key, without touching the store."""
        digest = hashlib.sha256(secret.encode()).digest()
        with self._lock:
            cached = self._entries.get(digest)
        if cached is not None and cached[0] > time.monotonic():
            return True, cached[1]
        return False, None

    def lookup(self, secret: str) -> KeyInfo | None:
        """The key as the store has it now (after :meth:`cached` missed), remembered."""
        digest = hashlib.sha256(secret.encode()).digest()
        now = time.monotonic()
        info = authenticate(self._store, secret)
        with self._lock:
            if len(self._entries) > 10_000:
                self._entries.clear()
            self._entries[digest] = (now + self._ttl, info)
        return info


async def caller(request: Request) -> KeyInfo:
    # Async, so that a request costs no thread hop: the store is read only on a cache miss,
    # and then off the event loop.
    header = request.headers.get("authorization", "")
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise Unauthorized("send an API key: 'Authorization: Bearer <key>'")
    cache: KeyCache = request.app.state.keys
    secret = secret.strip()
    known, info = cache.cached(secret)
    if not known:
        info = await run_in_threadpool(cache.lookup, secret)
    if info is None:
        raise Unauthorized("unknown or revoked API key")
    buckets: TokenBuckets = request.app.state.rate_limits
    buckets.take(info.id)
    return info


def require(role: Role) -> Callable[[KeyInfo], Awaitable[KeyInfo]]:
    async def check(key: Annotated[KeyInfo, Depends(caller)]) -> KeyInfo:
        if not key.allows(role):
            raise Forbidden(f"this key lacks the {role.value!r} role")
        return key

    return check
