"""Domain errors -> HTTP responses, in one table.

Every error body has the shape ``{"error": {"code": "...", "message": "..."}}``.
"""

from __future__ import annotations

from typing import Final

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from hashmatch.errors import (
    CorruptMedia,
    EmptyMedia,
    HashFormatError,
    HashmatchError,
    MediaTooLarge,
    TooManyPixels,
    UnsupportedMedia,
)

#: Checked in order; the first matching type gives the status.
HTTP_STATUS: Final[tuple[tuple[type[HashmatchError], int], ...]] = (
    (MediaTooLarge, 413),
    (TooManyPixels, 413),
    (UnsupportedMedia, 415),
    (EmptyMedia, 422),
    (CorruptMedia, 422),
    (HashFormatError, 422),
    (HashmatchError, 400),
)


def status_for(error: HashmatchError) -> int:
    for error_type, status in HTTP_STATUS:
        if isinstance(error, error_type):
            return status
    return 400


def error_body(code: str, message: str) -> dict[str, dict[str, str]]:
    return {"error": {"code": code, "message": message}}


async def _domain_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HashmatchError)
    return JSONResponse(error_body(exc.code, exc.message), status_code=status_for(exc))


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(HashmatchError, _domain_error)
