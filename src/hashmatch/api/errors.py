"""Domain errors -> HTTP responses, in one table.

Every error body has the shape ``{"error": {"code": "...", "message": "..."}}``.
"""

from __future__ import annotations

import logging
import traceback
from typing import Final

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from hashmatch.api.ratelimit import RateLimited, retry_after_header
from hashmatch.errors import (
    BadRequest,
    Busy,
    Conflict,
    CorruptMedia,
    DecodeTimeout,
    EmptyMedia,
    Forbidden,
    HashFormatError,
    HashmatchError,
    ImportRejected,
    InvalidFrameRate,
    InvalidList,
    MediaTooLarge,
    NotFound,
    NotReady,
    PayloadTooLarge,
    StoreUnavailable,
    TooManyFrames,
    TooManyPixels,
    Unauthorized,
    UnsupportedContentType,
    UnsupportedMedia,
    VideoTooLong,
)
from hashmatch.fields import printable

#: Checked in order; the first matching type gives the status.
HTTP_STATUS: Final[tuple[tuple[type[HashmatchError], int], ...]] = (
    (Unauthorized, 401),
    (RateLimited, 429),
    (Forbidden, 403),
    (NotFound, 404),
    (Conflict, 409),
    (PayloadTooLarge, 413),
    (UnsupportedContentType, 415),
    (NotReady, 503),
    (StoreUnavailable, 503),
    (Busy, 503),
    (InvalidList, 422),
    (ImportRejected, 422),
    (BadRequest, 400),
    (MediaTooLarge, 413),
    (TooManyPixels, 413),
    # A video over a limit: its duration, its frame count, or the wall clock of its decoding
    # (the content costs too much to decode here; retrying the same bytes cannot help).
    (VideoTooLong, 413),
    (TooManyFrames, 413),
    (DecodeTimeout, 413),
    (InvalidFrameRate, 422),
    (UnsupportedMedia, 415),
    (EmptyMedia, 422),
    (CorruptMedia, 422),
    (HashFormatError, 422),
    (HashmatchError, 400),
)


log = logging.getLogger(__name__)

#: Seconds a client should wait before retrying a 503.
RETRY_AFTER_UNAVAILABLE: Final = 5


def status_for(error: HashmatchError) -> int:
    for error_type, status in HTTP_STATUS:
        if isinstance(error, error_type):
            return status
    return 400


def error_body(code: str, message: str) -> dict[str, dict[str, str]]:
    # Messages may quote what the client sent (a field name, a value): always encodable.
    return {"error": {"code": code, "message": printable(message)}}


def error_response(exc: HashmatchError) -> JSONResponse:
    """The response of a domain error: its status, envelope and retry headers."""
    headers = None
    if isinstance(exc, Unauthorized):
        headers = {"WWW-Authenticate": "Bearer"}
    elif isinstance(exc, RateLimited):
        headers = {"Retry-After": retry_after_header(exc)}
    elif isinstance(exc, NotReady | StoreUnavailable | Busy):
        headers = {"Retry-After": str(RETRY_AFTER_UNAVAILABLE)}
    return JSONResponse(
        error_body(exc.code, exc.message), status_code=status_for(exc), headers=headers
    )


async def _domain_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HashmatchError)
    return error_response(exc)


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError | ValidationError)
    problems = []
    for error in list(exc.errors())[:20]:
        where = ".".join(str(part) for part in error.get("loc", ()) if part != "body")
        problems.append(f"{where or 'body'}: {error.get('msg', 'invalid')}")
    return JSONResponse(error_body("invalid_request", "; ".join(problems)), status_code=422)


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}.get(
        exc.status_code, "http_error"
    )
    return JSONResponse(error_body(code, str(exc.detail)), status_code=exc.status_code)


async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
    # Where it failed, never what it was given: a request's values (hashes, withdrawal
    # reasons) can reach an exception's message, a database error's above all.
    where = "".join(traceback.format_tb(exc.__traceback__))
    log.error("unexpected error: %s\n%s", type(exc).__name__, where)
    return JSONResponse(error_body("internal_error", "internal error"), status_code=500)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(HashmatchError, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    # Bodies a route validates itself (e.g. JSON read under a byte cap).
    app.add_exception_handler(ValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
