"""The FastAPI application factory: the services, the routes and the operations endpoints."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
from fastapi import FastAPI
from fastapi.responses import JSONResponse, PlainTextResponse, RedirectResponse

from hashmatch import __version__
from hashmatch.api import exchange, lists, matching, outcomes, shares, webhooks
from hashmatch.api.asgi import RouteTable
from hashmatch.api.auth import KeyGate
from hashmatch.api.bodylimit import BodyLimit
from hashmatch.api.deps import Services, ServicesDep
from hashmatch.api.errors import RETRY_AFTER_UNAVAILABLE, error_body, install_error_handlers
from hashmatch.api.keycache import KeyCache
from hashmatch.api.metrics import Metrics, MetricsMiddleware
from hashmatch.api.ratelimit import TokenBuckets
from hashmatch.api.videos import VIDEO_DECODERS
from hashmatch.config import Settings
from hashmatch.console.app import create_console
from hashmatch.console.pages import ROUTERS as CONSOLE_ROUTERS
from hashmatch.exchange.fetcher import start_fetcher
from hashmatch.matching.follower import Follower
from hashmatch.matching.probes import ProbeGuard, ProbeRules
from hashmatch.media import DecodeBudget
from hashmatch.store import Store, database_url

log = logging.getLogger(__name__)


def create_app(
    settings: Settings, *, load_in_background: bool = True, migrate: bool = True
) -> FastAPI:
    """The service. ``migrate=False`` when the caller has migrated the database already
    (``hashmatch serve --workers N`` does, once, before it starts the workers)."""
    metrics = Metrics()
    services = Services(
        settings=settings,
        rate_limits=TokenBuckets(settings.rate_limit, settings.rate_burst),
        probes=ProbeGuard(ProbeRules(workers=settings.workers)),
        # Decoding is CPU-bound (one at a time per core) and memory-bound (a shared budget).
        decoders=anyio.CapacityLimiter(os.cpu_count() or 1),
        decode_budget=DecodeBudget(settings.decode_memory),
        video_decoders=anyio.CapacityLimiter(VIDEO_DECODERS),
        metrics=metrics,
    )
    metrics.watch(lambda: services.follower if services.ready else None)
    metrics.watch_exchange(lambda: services.store)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        store = Store.open(
            database_url(settings.data_dir, settings.database_url),
            migrate=migrate,
            bounds=settings.threshold_bounds,
            instance=settings.instance_name,
        )
        follower = Follower(store, settings.data_dir / "snapshots", settings.threshold_bounds)
        services.store, services.follower, services.keys = store, follower, KeyCache(store)
        background = outcomes.Background.start(store, settings)
        services.recorder = background.recorder
        fetcher = start_fetcher(store, settings) if settings.exchange_fetcher else None

        def load() -> None:
            follower.load()
            follower.start()
            services.ready = True

        loader = threading.Thread(target=load, name="hashmatch-loader", daemon=True)
        loader.start()
        if not load_in_background:
            loader.join()
        try:
            yield
        finally:
            follower.stop()
            if services.ready:
                try:
                    follower.save_snapshot()
                except OSError:
                    log.exception("could not write a snapshot at shutdown")
            services.ready = False
            background.stop()  # writes the last match counts, releases the webhook lease
            if fetcher is not None:
                fetcher.stop()  # releases the fetcher lease: another worker takes over at once
            store.close()

    app = FastAPI(
        title="hashmatch",
        version=__version__,
        summary="Perceptual-hash matching of known abusive images.",
        lifespan=lifespan,
    )
    app.state.services = services
    install_error_handlers(app)
    routers = (
        matching.router,
        lists.router,
        shares.router,
        outcomes.router,
        webhooks.router,
        exchange.router,
    )
    for router in routers:
        app.include_router(router)
    console = create_console(services)
    app.mount("/console", console)
    # The routers' own routes: FastAPI keeps an included router as one route of its own, which
    # the table would not see into (and the console's caps would not apply).
    routes = RouteTable(
        (route for router in routers for route in router.routes),
        {"/console": (route for router in CONSOLE_ROUTERS for route in router.routes)},
    )
    # Outermost last: metrics see every request, refused ones too; the key is checked before
    # the body cap, and both before anything reads the body.
    app.add_middleware(BodyLimit, routes=routes)
    app.add_middleware(KeyGate)
    app.add_middleware(MetricsMiddleware, metrics=metrics, routes=routes)

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/console/", 307)  # people who open the address find the console

    @app.get("/healthz", tags=["operations"], summary="Liveness: the process answers")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/readyz",
        tags=["operations"],
        summary="Readiness: indexes loaded and following a reachable database",
    )
    async def readyz(services: ServicesDep) -> Any:
        follower = services.follower
        if follower is None or not services.ready:
            return JSONResponse(error_body("not_ready", "the index is still loading"), 503)
        problem = follower.problem()
        if problem is not None:
            return JSONResponse(
                error_body("database_unavailable", problem),
                503,
                headers={"Retry-After": str(RETRY_AFTER_UNAVAILABLE)},
            )
        return {"status": "ready", "cursor": follower.cursor}

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics")
    async def prometheus() -> PlainTextResponse:
        body, content_type = metrics.render()
        return PlainTextResponse(body, media_type=content_type)

    return app
