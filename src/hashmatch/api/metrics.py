"""Prometheus metrics: requests and latency by route, index sizes, change-log position."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.requests import Request
from starlette.responses import Response

from hashmatch.hashing import Algorithm


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
        self.index_size = Gauge(
            "hashmatch_index_entries",
            "live entries per algorithm",
            ["algorithm"],
            registry=self.registry,
        )
        self.cursor = Gauge(
            "hashmatch_change_cursor",
            "change-log cursor the index reflects",
            registry=self.registry,
        )

    async def middleware(
        self, request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        start = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        # The route template, never the path: paths may carry client-chosen names.
        name = getattr(route, "path", "unmatched")
        self.latency.labels(name, request.method).observe(time.perf_counter() - start)
        self.requests.labels(name, request.method, str(response.status_code)).inc()
        return response

    def render(self, matcher: Any) -> tuple[bytes, str]:
        if matcher is not None:
            for algorithm in Algorithm:
                self.index_size.labels(algorithm.value).set(matcher.size(algorithm))
            self.cursor.set(matcher.cursor)
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
