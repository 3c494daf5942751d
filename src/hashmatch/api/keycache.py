"""API keys as each replica remembers them for a few seconds, so that a request costs no
database read; and what it does when the database cannot be asked."""

from __future__ import annotations

import hashlib
import threading
import time
from typing import Final

from cachetools import LRUCache, TTLCache

from hashmatch.errors import StoreUnavailable
from hashmatch.store import KeyInfo, Store

#: A revoked or suspended key stops working within this many seconds on every replica.
KEY_CACHE_SECONDS: Final = 5.0
#: Keys remembered at once (a bound on what a flood of made-up keys can fill).
MAX_KEYS: Final = 10_000


class KeyCache:
    def __init__(self, store: Store, ttl: float = KEY_CACHE_SECONDS) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._fresh: TTLCache[bytes, KeyInfo | None] = TTLCache(MAX_KEYS, ttl)
        # The last answer for each key, fresh or not: served while the store is unreachable.
        self._last: LRUCache[bytes, KeyInfo | None] = LRUCache(MAX_KEYS)
        self._suspended: dict[int, float] = {}  # key id -> when (wall clock)

    def cached(self, secret: str) -> tuple[bool, KeyInfo | None]:
        """``(True, info)`` when the cache still knows the key, without touching the store."""
        digest = _digest(secret)
        with self._lock:
            if digest in self._fresh:
                return True, self._fresh[digest]
        return False, None

    def lookup(self, secret: str) -> KeyInfo | None:
        """The key as the store has it now (after :meth:`cached` missed), remembered; the
        last known answer if the store is unreachable and the key was known."""
        digest = _digest(secret)
        try:
            info = self._store.keys.authenticate(secret)
        except StoreUnavailable:
            with self._lock:
                if digest not in self._last:
                    raise
                return self._last[digest]
        with self._lock:
            self._fresh[digest] = info
            self._last[digest] = info
        return info

    def forget(self, key_id: int) -> None:
        """Drop what this replica remembers of a key (just revoked here): its next request is
        checked against the store. Other replicas follow within :data:`KEY_CACHE_SECONDS`."""
        with self._lock:
            for cache in (self._fresh, self._last):
                for digest in [d for d, info in cache.items() if info and info.id == key_id]:
                    del cache[digest]

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


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()
