"""The webhook sender: one per database, posting queued withdrawal notices until a 2xx.

Every worker process starts a :class:`WebhookSender`, but only the holder of the ``webhooks``
lease (:meth:`hashmatch.store.Webhooks.take_lease`) sends; the others wait to take over when
its lease lapses. A notice's body is JSON, signed with the platform's secret::

    X-Hashmatch-Signature: sha256=<hex HMAC-SHA256 of the body>
    X-Hashmatch-Timestamp: <unix seconds, also in the body as sent_at>

A failed attempt (no answer, or not a 2xx) is retried with exponential backoff and jitter, up
to the configured number of attempts, then marked failed (``hashmatch webhooks ls``). A
delivery may arrive twice (a 2xx lost on the way back): receivers dedupe by ``delivery_id``.

Targets are checked when called, not only when registered: a name may resolve elsewhere
later. Unless the operator allows private targets, an address that is loopback, private,
link-local or otherwise not global is refused, and redirects are never followed.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import hmac
import ipaddress
import json
import logging
import os
import random
import socket
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

from hashmatch.errors import HashmatchError, StoreUnavailable
from hashmatch.store import Store
from hashmatch.store.database import utcnow
from hashmatch.store.webhooks import Delivery

log = logging.getLogger(__name__)

LEASE: Final = "webhooks"
SIGNATURE_HEADER: Final = "X-Hashmatch-Signature"
TIMESTAMP_HEADER: Final = "X-Hashmatch-Timestamp"
MAX_BACKOFF_SECONDS: Final = 6 * 3600.0


class TargetRefused(HashmatchError, code="webhook_target_refused"):
    """A webhook URL resolves to an address this instance will not call."""


@dataclass(frozen=True)
class SenderSettings:
    max_attempts: int = 10
    retry_seconds: float = 30.0  # the first retry's delay; doubled each time, with jitter
    poll_seconds: float = 1.0
    lease_seconds: float = 30.0
    timeout_seconds: float = 10.0
    allow_private_targets: bool = False


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def check_target(url: str, allow_private: bool) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TargetRefused("not an http(s) URL")
    if allow_private:
        return
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or 443, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise TargetRefused(f"cannot resolve the host: {exc}") from None
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not address.is_global:
            raise TargetRefused(f"the host resolves to a non-public address ({address})")


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *_: Any, **__: Any) -> None:
        return None  # a 3xx is an answer, and not a 2xx: retried later, never followed


_OPENER: Final = urllib.request.build_opener(_NoRedirects())


def backoff(attempts: int, base: float) -> float:
    """Seconds before the next try after ``attempts`` failed ones: doubling, capped, with
    jitter so that notices failing together do not retry together."""
    delay = min(base * 2 ** max(attempts - 1, 0), MAX_BACKOFF_SECONDS)
    return float(delay * random.uniform(0.5, 1.0))


class WebhookSender:
    def __init__(
        self, store: Store, settings: SenderSettings | None = None, holder: str | None = None
    ) -> None:
        self._store = store
        self.settings = settings or SenderSettings()
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lease_until = 0.0

    def holds_lease(self) -> bool:
        """Take or renew the lease when a third of it has run; true while this sender has it."""
        now = time.monotonic()
        if now < self._lease_until - self.settings.lease_seconds * 2 / 3:
            return True
        seconds = self.settings.lease_seconds
        if self._store.webhooks.take_lease(LEASE, self.holder, seconds):
            self._lease_until = now + seconds
            return True
        self._lease_until = 0.0
        return False

    def run_once(self) -> int:
        """Send what is due if this sender holds the lease; the number delivered."""
        if not self.holds_lease():
            return 0
        delivered = 0
        for delivery in self._store.webhooks.due():
            if self._stop.is_set() or not self.holds_lease():
                break
            delivered += self._send(delivery)
        return delivered

    def _send(self, delivery: Delivery) -> int:
        sent_at = int(time.time())
        body = json.dumps(
            {**delivery.payload, "delivery_id": delivery.id, "sent_at": sent_at},
            separators=(",", ":"),
            sort_keys=True,
        ).encode()
        status: int | None = None
        error: str | None = None
        try:
            check_target(delivery.url, self.settings.allow_private_targets)
            request = urllib.request.Request(  # noqa: S310 - scheme checked above
                delivery.url,
                data=body,
                method="POST",
                headers={
                    "Content-Type": "application/json",
                    "User-Agent": "hashmatch-webhooks",
                    SIGNATURE_HEADER: signature(delivery.secret, body),
                    TIMESTAMP_HEADER: str(sent_at),
                },
            )
            with _OPENER.open(request, timeout=self.settings.timeout_seconds) as response:
                status = int(response.status)
        except urllib.error.HTTPError as exc:
            status, error = exc.code, f"HTTP {exc.code}"
        except (TargetRefused, OSError, ValueError) as exc:
            error = str(exc) or type(exc).__name__
        if error is None and not 200 <= (status or 0) < 300:
            error = f"HTTP {status}"
        attempts = delivery.attempts + 1
        retry_at = None
        if error is not None and attempts < self.settings.max_attempts:
            wait = backoff(attempts, self.settings.retry_seconds)
            retry_at = utcnow() + dt.timedelta(seconds=wait)
        if error is not None:
            log.warning(
                "webhook delivery %d to %r failed (attempt %d): %s",
                delivery.id,
                delivery.organisation,
                attempts,
                error,
            )
        self._store.webhooks.attempted(delivery.id, status=status, error=error, retry_at=retry_at)
        return 1 if error is None else 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="hashmatch-webhooks", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except StoreUnavailable:
                self._lease_until = 0.0
            except Exception:
                log.exception("webhook sender failed; retrying")
            self._stop.wait(self.settings.poll_seconds)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.settings.timeout_seconds + 5)
        if self._lease_until:
            with contextlib.suppress(StoreUnavailable):  # else it lapses on its own
                self._store.webhooks.release_lease(LEASE, self.holder)
            self._lease_until = 0.0
