"""The FastAPI application factory."""

from __future__ import annotations

from fastapi import FastAPI

from hashmatch import __version__
from hashmatch.api.errors import install_error_handlers
from hashmatch.config import Settings


def create_app(settings: Settings) -> FastAPI:
    app = FastAPI(
        title="hashmatch",
        version=__version__,
        summary="Perceptual-hash matching of known abusive images.",
    )
    app.state.settings = settings
    install_error_handlers(app)

    @app.get("/healthz", tags=["operations"], summary="Liveness: the process answers")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
