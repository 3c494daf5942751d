"""The console's multipart forms, read as they arrive: never Starlette's form parser, which
spools files to temporary files (an image tested here must never touch a disk, and a hash-set
file goes to the database chunk by chunk).

Forms that send a file put their CSRF token first: :meth:`MultipartForm.csrf` reads that field
and checks it before any of the file is looked at, :meth:`MultipartForm.file` then hands the
file field's bytes over as they arrive, and :meth:`MultipartForm.finish` reads the rest of the
body, which must end with its closing boundary.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Final

from fastapi import Request
from python_multipart.multipart import MultipartParser

from hashmatch.api.uploads import PartHeaders, _boundary, _capped, media_type
from hashmatch.console import web
from hashmatch.console.web import Staff
from hashmatch.errors import BadRequest, PayloadTooLarge, UnsupportedContentType

#: A text field (the CSRF token, another small field).
MAX_FIELD_BYTES: Final = 4 * 1024
#: What the framing of a form adds to its file: boundaries, headers, a token.
FRAMING_BYTES: Final = 64 * 1024


@dataclass(frozen=True)
class _Start:
    name: str
    filename: str | None


class _End:
    """The end of a part."""


_END: Final = _End()
Event = _Start | bytes | _End


class MultipartForm(PartHeaders):
    """One multipart body, part by part, under a byte cap (``limit``, the whole body)."""

    def __init__(self, request: Request, limit: int) -> None:
        kind, options = media_type(request)
        if kind != "multipart/form-data":
            raise UnsupportedContentType("this form is sent as multipart/form-data")
        super().__init__()
        self._request = request
        self._chunks = _capped(request, limit)
        self._events: deque[Event] = deque()
        self._ended = False
        self._finalized = False
        self._parser = MultipartParser(
            _boundary(options),
            {
                "on_part_begin": self._part_begin,
                "on_header_field": self._on_header_field,
                "on_header_value": self._on_header_value,
                "on_header_end": self._header_end,
                "on_headers_finished": self._headers_finished,
                "on_part_data": self._part_data,
                "on_part_end": self._part_end,
                "on_end": self._end,
            },
        )

    # --- what the routes call --------------------------------------------------------------

    async def csrf(self, staff: Staff) -> None:
        """Read the first field, which must be the session's CSRF token, and check it."""
        event = await self._next()
        value: str | None = None
        if isinstance(event, _Start) and event.name == "csrf" and event.filename is None:
            value = await self._text(MAX_FIELD_BYTES)
        web.check_csrf(self._request, staff.csrf, value)

    async def file(self, name: str, limit: int) -> tuple[str, AsyncIterator[bytes]]:
        """The file field ``name`` (fields before it are skipped): its file name, and its
        bytes as they arrive, refused once over ``limit``. Read them all before
        :meth:`finish`."""
        while True:
            event = await self._next()
            if event is None:
                raise BadRequest(f"the form has no {name!r} field")
            if isinstance(event, _Start):
                if event.name == name:
                    return event.filename or "", self._data(limit)
                await self._text(MAX_FIELD_BYTES)

    async def finish(self) -> None:
        """Read the rest of the body (other fields are ignored): it must be complete."""
        while await self._next() is not None:
            pass

    # --- reading events --------------------------------------------------------------------

    async def _next(self) -> Event | None:
        while not self._events:
            if self._finalized:
                return None
            chunk = await anext(self._chunks, None)
            if chunk is None:
                self._finalize()
                continue
            self._write(chunk)
        return self._events.popleft()

    async def _text(self, limit: int) -> str:
        value = bytearray()
        while True:
            event = await self._next()
            if event is None or isinstance(event, _Start):
                raise BadRequest("malformed multipart body: a part without its end")
            if isinstance(event, _End):
                return value.decode("utf-8", errors="replace")
            value += event
            if len(value) > limit:
                raise PayloadTooLarge(f"a form field is over the limit of {limit} bytes")

    async def _data(self, limit: int) -> AsyncIterator[bytes]:
        size = 0
        while True:
            event = await self._next()
            if event is None or isinstance(event, _Start):
                raise BadRequest("malformed multipart body: a part without its end")
            if isinstance(event, _End):
                return
            size += len(event)
            if size > limit:
                raise PayloadTooLarge(f"the file is over the limit of {limit} bytes")
            yield event

    def _write(self, chunk: bytes) -> None:
        try:
            self._parser.write(chunk)
        except (PayloadTooLarge, BadRequest):
            raise
        except Exception as exc:
            raise BadRequest(f"malformed multipart body: {exc}") from None

    def _finalize(self) -> None:
        self._finalized = True
        try:
            self._parser.finalize()
        except Exception as exc:
            raise BadRequest(f"malformed multipart body: {exc}") from None
        # python-multipart does not check that the body was complete.
        if not self._ended:
            raise BadRequest("malformed multipart body: it ends before its closing boundary")

    # --- the parser's callbacks ------------------------------------------------------------

    def _headers_finished(self) -> None:
        params = self._disposition_params()
        filename = params.get(b"filename")
        self._events.append(
            _Start(
                params.get(b"name", b"").decode("utf-8", errors="replace"),
                None if filename is None else filename.decode("utf-8", errors="replace"),
            )
        )

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if end > start:
            self._events.append(bytes(data[start:end]))

    def _part_end(self) -> None:
        self._events.append(_END)

    def _end(self) -> None:
        self._ended = True
