"""The subscriber: one fetcher per instance, reading every peer's feed into its mirrors.

Every worker of every replica may start a :class:`Fetcher`; only the holder of the
``exchange-fetcher`` lease (a database row, renewed every few seconds) fetches, so exactly one
runs however many serve, and another takes over within a lease's time when it dies. Each peer
has a thread: it long-polls the peer's feed, applies each page with its cursor in one
transaction (:meth:`~hashmatch.store.mirrors.Mirrors.apply`), and after a failure waits an
exponentially growing, jittered time (recorded in the peer's row, shown by ``exchange show``).
Every ``verify_every`` seconds it compares each mirror's count and digest with the origin's and
reads the feed again from the start when they differ.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import random
import secrets
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from hashmatch.config import Settings
from hashmatch.errors import HashmatchError, PeerError
from hashmatch.exchange.folder import FolderSource
from hashmatch.exchange.source import PeerFeed, Source
from hashmatch.exchange.wire import DEFAULT_PAGE_ENTRIES, Page, entry_digest
from hashmatch.matching.policy import ThresholdBounds
from hashmatch.store import Store
from hashmatch.store.database import utcnow
from hashmatch.store.peers import PeerInfo

log = logging.getLogger(__name__)
LEASE: Final = "exchange-fetcher"
#: How often the lease holder looks for peers added or resumed.
SUPERVISE_SECONDS: Final = 1.0


@dataclass(frozen=True)
class FetcherSettings:
    wait: float = 25.0  # long-poll wait per request
    lease_seconds: float = 15.0
    page_entries: int = DEFAULT_PAGE_ENTRIES
    verify_every: float = 3600.0
    max_backoff: float = 300.0
    outcomes_every: float = 60.0
    share_platforms: bool = False


class _Prefetch:
    """The next page of one peer, fetched in the background."""

    def __init__(self) -> None:
        self._pool: ThreadPoolExecutor | None = None
        self._pending: tuple[str, Future[Page]] | None = None

    def start(self, source: Source, cursor: str, limit: int) -> None:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="exchange-prefetch")
        self._pending = (cursor, self._pool.submit(source.fetch, cursor, limit, 0.0))

    def take(self, cursor: str) -> Page | None:
        """The prefetched page if it was asked from ``cursor`` (its failure raised here);
        None if there is none, or it answers another cursor (then it is dropped)."""
        pending, self._pending = self._pending, None
        if pending is None:
            return None
        asked, future = pending
        if asked != cursor:
            future.cancel()
            return None
        return future.result()

    def close(self) -> None:
        self._pending = None
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)


def backoff(failures: int, limit: float, rng: random.Random) -> float:
    """Seconds to wait after ``failures`` failures in a row: 1, 2, 4, ... up to ``limit``,
    each scaled by a random factor in [0.5, 1.5) so peers that failed together do not retry
    together."""
    return min(limit, 2.0 ** max(0, failures - 1)) * (0.5 + rng.random())


def local_digest(store: Store, mirror_id: int) -> dict[str, Any]:
    rows = store.entries.mirrored(mirror_id)
    return {"count": len(rows), "digest": f"{entry_digest(rows):032x}"}


class Fetcher:
    def __init__(
        self,
        store: Store,
        *,
        bounds: ThresholdBounds,
        own_instance: str,
        settings: FetcherSettings = FetcherSettings(),
        source_for: Callable[[PeerInfo, str], Source] | None = None,
    ) -> None:
        self._store = store
        self._bounds = bounds
        self._own_instance = own_instance
        self._settings = settings
        self._source_for = source_for or self._peer_feed
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self._stop = threading.Event()
        self._holding = threading.Event()
        self._threads: dict[str, threading.Thread] = {}
        self._main: threading.Thread | None = None
        self._rng = random.Random()

    # --- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        self._main = threading.Thread(target=self.run, name="hashmatch-exchange", daemon=True)
        self._main.start()

    def stop(self) -> None:
        self._stop.set()
        if self._main is not None:
            self._main.join(timeout=5)
        for thread in self._threads.values():
            thread.join(timeout=1)
        if self._holding.is_set():
            with contextlib.suppress(HashmatchError):
                self._store.leases.release(LEASE, self.holder)

    @property
    def active(self) -> bool:
        return self._holding.is_set()

    def run(self) -> None:
        """Hold the lease and keep a thread on each unpaused peer, until stopped. The lease is
        renewed every third of its time; a new or resumed peer is picked up within a second."""
        renew = self._settings.lease_seconds / 3
        renew_at = 0.0
        while not self._stop.is_set():
            if time.monotonic() >= renew_at:
                renew_at = time.monotonic() + renew
                try:
                    held = self._store.leases.take(LEASE, self.holder, self._settings.lease_seconds)
                except HashmatchError as exc:
                    log.warning("exchange: cannot take the fetcher lease: %s", exc)
                    held = False
                (self._holding.set if held else self._holding.clear)()
            if self._holding.is_set():
                try:
                    self._supervise()
                except HashmatchError as exc:
                    log.warning("exchange: cannot read the peers: %s", exc)
            self._stop.wait(min(renew, SUPERVISE_SECONDS))
        self._holding.clear()

    def _supervise(self) -> None:
        for peer in self._store.peers.all():
            thread = self._threads.get(peer.name)
            if peer.paused or (thread is not None and thread.is_alive()):
                continue
            thread = threading.Thread(
                target=self._follow, args=(peer.name,), name=f"exchange-{peer.name}", daemon=True
            )
            self._threads[peer.name] = thread
            thread.start()

    # --- one peer ---------------------------------------------------------------------------

    def _follow(self, name: str) -> None:
        source: Source | None = None
        ahead = _Prefetch()
        more = True
        while not self._stop.is_set() and self._holding.is_set():
            try:
                peer = self._store.peers.get(name)
            except HashmatchError:
                break  # removed (or the database is away: the supervisor restarts us)
            if peer.paused:
                break
            delay = _seconds_until(peer.next_attempt_at)
            if delay > 0:
                self._stop.wait(min(delay, 1.0))
                continue
            if source is None:
                source = self._source_for(peer, self._store.peers.secret(name))
            try:
                wait = 0.0 if more else self._settings.wait
                more = self.step(peer, source, wait=wait, ahead=ahead)
                if not more:
                    self._maybe_send_outcomes(peer, source)
                    self._maybe_verify(peer, source)
            except HashmatchError as exc:
                more = True
                self._failed(peer, exc)
            except Exception as exc:  # a bug must not stop the exchange: log it, back off
                log.exception("exchange %s: unexpected failure", peer.name)
                more = True
                self._failed(peer, PeerError(f"internal error ({type(exc).__name__})"))
        ahead.close()
        close = getattr(source, "close", None)
        if close is not None:
            close()

    def step(
        self,
        peer: PeerInfo,
        source: Source,
        *,
        wait: float = 0.0,
        ahead: _Prefetch | None = None,
    ) -> bool:
        """Fetch and apply one page; whether the peer has more at once. With ``ahead``, the
        next page is fetched while this one is applied (the peer's work and ours overlap); it
        is used only if it answers the cursor this page leaves, as every page must."""
        limit = self._settings.page_entries
        page = ahead.take(peer.cursor) if ahead is not None else None
        if page is None:
            page = source.fetch(peer.cursor, limit, wait)
        if ahead is not None and page.more:
            ahead.start(source, str(page.cursor), limit)
        report = self._store.mirrors.apply(peer, page)
        if report.applied and (report.added or report.withdrawn):
            log.info(
                "exchange %s: +%d -%d in %s",
                peer.name,
                report.added,
                report.withdrawn,
                ", ".join(report.lists),
            )
        return page.more

    def _failed(self, peer: PeerInfo, exc: HashmatchError) -> None:
        pause = backoff(peer.failures + 1, self._settings.max_backoff, self._rng)
        level = logging.INFO if isinstance(exc, PeerError) else logging.WARNING
        log.log(level, "exchange %s: %s; retrying in %.1f s", peer.name, exc.message, pause)
        try:
            self._store.peers.record_failure(
                peer.name, f"{exc.code}: {exc.message}", utcnow() + dt.timedelta(seconds=pause)
            )
        except HashmatchError:
            self._stop.wait(pause)

    def _maybe_send_outcomes(self, peer: PeerInfo, source: Source) -> None:
        last = peer.outcomes_sent_at
        if last is not None and -_seconds_until(last) < self._settings.outcomes_every:
            return
        send_outcomes(self._store, peer, source, platforms=self._settings.share_platforms)

    def _maybe_verify(self, peer: PeerInfo, source: Source) -> None:
        # From the peer's row, not this process's memory: the schedule survives restarts and
        # a change of fetcher.
        last = peer.verified_at or peer.created_at
        if -_seconds_until(last) >= self._settings.verify_every:
            verify_peer(self._store, peer, source)

    def _peer_feed(self, peer: PeerInfo, secret: str) -> Source:
        return source_for(peer, secret, own_instance=self._own_instance, bounds=self._bounds)


def source_for(
    peer: PeerInfo, secret: str, *, own_instance: str, bounds: ThresholdBounds
) -> Source:
    """The source a peer's address names: another hashmatch's feed, or a folder of files."""
    if peer.url.startswith("file://"):
        return FolderSource(peer.name, Path(urlsplit(peer.url).path), bounds=bounds)
    return PeerFeed(peer.name, peer.url, secret, own_instance=own_instance, bounds=bounds)


def send_outcomes(store: Store, peer: PeerInfo, source: Source, *, platforms: bool = False) -> int:
    """Send the origin the totals of its entries' matches and outcomes here, from the day
    before the last report on (totals replace, so overlapping days count once)."""
    started = utcnow()
    since = None
    if peer.outcomes_sent_at is not None:
        since = (peer.outcomes_sent_at - dt.timedelta(days=1)).date()
    mirrors = {
        m.id: str((m.origin or {}).get("list"))
        for m in store.mirrors.of_peer(peer.name)
        if (m.origin or {}).get("state") != "unshared"
    }
    items = store.remote_outcomes.collect(mirrors, since, platforms=platforms)
    if items:
        source.send_outcomes(items)
    store.peers.record_outcomes_sent(peer.name, started)
    return len(items)


def verify_peer(
    store: Store, peer: PeerInfo, source: Source, *, repair: bool = True
) -> dict[str, Any]:
    """Each live mirror's count and digest against the origin's; with ``repair``, a resync
    (the feed read again from the start) when any differs."""
    lists: dict[str, Any] = {}
    for mirror in store.mirrors.of_peer(peer.name):
        origin = mirror.origin or {}
        if origin.get("state") == "unshared":
            continue
        theirs = source.digest(str(origin.get("list")))
        ours = local_digest(store, mirror.id)
        lists[mirror.name] = {
            "origin_count": theirs["count"],
            "count": ours["count"],
            "equal": theirs["count"] == ours["count"] and theirs["digest"] == ours["digest"],
        }
    equal = all(item["equal"] for item in lists.values())
    report = {"equal": equal, "lists": lists, "resync": bool(repair and not equal)}
    store.peers.record_verify(peer.name, report)
    if repair and not equal:
        log.warning("exchange %s: mirrors differ from the origin; resyncing", peer.name)
        store.peers.resync(peer.name, actor="exchange-verify")
    return report


def _seconds_until(moment: dt.datetime | None) -> float:
    if moment is None:
        return 0.0
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return (moment - utcnow()).total_seconds()


def start_fetcher(store: Store, settings: Settings) -> Fetcher:
    """The fetcher of a serving process, started: it fetches only while it holds the lease."""
    fetcher = Fetcher(
        store,
        bounds=settings.threshold_bounds,
        own_instance=store.instance,
        settings=FetcherSettings(
            wait=settings.exchange_wait,
            verify_every=settings.exchange_verify_every,
            max_backoff=settings.exchange_max_backoff,
            outcomes_every=settings.exchange_outcomes_every,
            share_platforms=settings.exchange_share_platforms,
        ),
    )
    fetcher.start()
    return fetcher
