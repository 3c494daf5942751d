"""The FastAPI application factory: the store, the live matcher, routes and operations."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse

from hashmatch import __version__
from hashmatch.api import lists, matching, shares
from hashmatch.api.auth import KeyCache, KeyGate
from hashmatch.api.bodylimit import BodyLimit, RouteTable
from hashmatch.api.errors import RETRY_AFTER_UNAVAILABLE, error_body, install_error_handlers
from hashmatch.api.metrics import Metrics, MetricsMiddleware
from hashmatch.api.ratelimit import TokenBuckets
from hashmatch.config import Settings
from hashmatch.matcher import Matcher
from hashmatch.media import DecodeBudget
from hashmatch.probes import ProbeGuard, ProbeRules
from hashmatch.store import Store, database_url

log = logging.getLogger(__name__)


def create_app(
    settings: Settings, *, load_in_background: bool = True, migrate: bool = True
) -> FastAPI:
    """The service. ``migrate=False`` when the caller has migrated the database already
    (``hashmatch serve --workers N`` does, once, before it starts the workers)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = Store.open(
            database_url(settings.data_dir, settings.database_url),
            migrate=migrate,
            bounds=settings.threshold_bounds,
        )
        matcher = Matcher(store, settings.data_dir / "snapshots", settings.threshold_bounds)
        app.state.store = store
        app.state.keys = KeyCache(store)
        app.state.matcher = matcher
        app.state.ready = False

        def load() -> None:
            matcher.load()
            matcher.start()
            app.state.ready = True

        loader = threading.Thread(target=load, name="hashmatch-loader", daemon=True)
        loader.start()
        if not load_in_background:
            loader.join()
        try:
            yield
        finally:
            matcher.stop()
            if app.state.ready:
                try:
                    matcher.save_snapshot()
                except OSError:
                    log.exception("could not write a snapshot at shutdown")
            store.close()

    app = FastAPI(
        title="hashmatch",
        version=__version__,
        summary="Perceptual-hash matching of known abusive images.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.ready = False
    app.state.rate_limits = TokenBuckets(settings.rate_limit, settings.rate_burst)
    app.state.probes = ProbeGuard(ProbeRules(workers=settings.workers))
    # Decoding is CPU-bound (one at a time per core) and memory-bound (a shared budget).
    app.state.decoders = anyio.CapacityLimiter(os.cpu_count() or 1)
    app.state.decode_budget = DecodeBudget(settings.decode_memory)
    install_error_handlers(app)
    metrics = Metrics()
    app.state.metrics = metrics
    routers = (matching.router, lists.router, shares.router)
    for router in routers:
        app.include_router(router)
    routes = RouteTable(route for router in routers for route in router.routes)
    # Outermost last: metrics see every request, refused ones too; the key is checked before
    # the body cap, and both before anything reads the body.
    app.add_middleware(BodyLimit, routes=routes)
    app.add_middleware(KeyGate)
    app.add_middleware(MetricsMiddleware, metrics=metrics, routes=routes)

    @app.get("/healthz", tags=["operations"], summary="Liveness: the process answers")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/readyz",
        tags=["operations"],
        summary="Readiness: indexes loaded and following a reachable database",
    )
    async def readyz(request: Request) -> Any:
        matcher: Matcher | None = getattr(request.app.state, "matcher", None)
        if matcher is None or not getattr(request.app.state, "ready", False):
            return JSONResponse(error_body("not_ready", "the index is still loading"), 503)
        problem = matcher.follower_problem()
        if problem is not None:
            return JSONResponse(
                error_body("database_unavailable", problem),
                503,
                headers={"Retry-After": str(RETRY_AFTER_UNAVAILABLE)},
            )
        return {"status": "ready", "cursor": matcher.cursor}

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics")
    async def prometheus(request: Request) -> PlainTextResponse:
        body, content_type = metrics.render(getattr(request.app.state, "matcher", None))
        return PlainTextResponse(body, media_type=content_type)

    return app
