"""Prometheus metrics: requests and latency by route, index sizes, change-log position."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hashmatch.api.asgi import HttpMiddleware, RouteTable
from hashmatch.errors import HashmatchError
from hashmatch.signals import all_signals

if TYPE_CHECKING:
    from hashmatch.matching.follower import Follower
    from hashmatch.store import Store


class ReplicaCollector(Collector):
    """Figures read at scrape time from the replica (index sizes, the change-log cursor), so
    that they are never stale and cost nothing between scrapes."""

    def __init__(self, follower: Callable[[], Follower | None]) -> None:
        self._follower = follower

    def collect(self) -> Iterator[Metric]:
        follower = self._follower()
        if follower is None:
            return
        sizes = GaugeMetricFamily(
            "hashmatch_index_entries", "live entries per algorithm", labels=["algorithm"]
        )
        for signal in all_signals():
            sizes.add_metric([signal.name], follower.state.size(signal))
        yield sizes
        yield GaugeMetricFamily(
            "hashmatch_video_frames",
            "distinct frames of listed videos, held in the PDQ index beside images",
            follower.state.videos.frame_count(),
        )
        yield GaugeMetricFamily(
            "hashmatch_change_cursor", "change-log cursor the index reflects", follower.cursor
        )


class ExchangeCollector(Collector):
    """Each peer's state, read from the database at scrape time: the same from every worker
    and replica (only one of them fetches)."""

    def __init__(self, store: Callable[[], Store | None]) -> None:
        self._store = store

    def collect(self) -> Iterator[Metric]:
        store = self._store()
        if store is None:
            return
        try:
            peers = store.peers.all()
        except HashmatchError:
            return  # the database is away: /readyz says so; the scrape still answers
        failures = GaugeMetricFamily(
            "hashmatch_exchange_failures", "failed fetches in a row, per peer", labels=["peer"]
        )
        success = GaugeMetricFamily(
            "hashmatch_exchange_last_success_timestamp_seconds",
            "when a page of the peer's feed was last applied",
            labels=["peer"],
        )
        paused = GaugeMetricFamily("hashmatch_exchange_paused", "1 if paused", labels=["peer"])
        for peer in peers:
            failures.add_metric([peer.name], peer.failures)
            paused.add_metric([peer.name], int(peer.paused))
            if peer.last_success_at is not None:
                stamp = peer.last_success_at
                stamp = stamp if stamp.tzinfo is not None else stamp.replace(tzinfo=dt.UTC)
                success.add_metric([peer.name], stamp.timestamp())
        yield failures
        yield success
        yield paused


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "hashmatch_requests_total",
            "HTTP requests",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "hashmatch_request_seconds",
            "HTTP request latency",
            ["route", "method"],
            buckets=(0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=self.registry,
        )

    def watch(self, follower: Callable[[], Follower | None]) -> None:
        self.registry.register(ReplicaCollector(follower))

    def watch_exchange(self, store: Callable[[], Store | None]) -> None:
        self.registry.register(ExchangeCollector(store))

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class MetricsMiddleware(HttpMiddleware):
    """Observes each HTTP request's latency and status under its route template."""

    def __init__(self, app: ASGIApp, metrics: Metrics, routes: RouteTable) -> None:
        super().__init__(app)
        self._metrics = metrics
        self._routes = routes

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        start = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self._app(scope, receive, send_status)
        finally:
            # The route template, never the path: paths may carry client-chosen names.
            # A request refused before routing (by the key gate, say) still has its template.
            route = scope.get("route") or self._routes.find(scope)
            name = getattr(route, "path", "unmatched")
            method = scope["method"]
            self._metrics.latency.labels(name, method).observe(time.perf_counter() - start)
            self._metrics.requests.labels(name, method, str(status)).inc()
