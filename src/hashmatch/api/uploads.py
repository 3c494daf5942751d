"""Request bodies read under a byte cap, in memory or as a stream, never onto disk.

Starlette's form parser spools files over 1 MB to a temporary file: submitted media must never
be written anywhere, so bodies are read here, chunk by chunk, and multipart bodies are split
with python-multipart's callback parser. Images and videos are held (each under its own cap,
chosen from the first bytes: an image cap for images, a larger one for videos); a
hash-set file may be hundreds of megabytes, so it is handed to the importer as a stream that a
worker thread reads while the event loop receives it: memory stays at a chunk and a batch.
The routes' ``max_body_size`` caps every body again while it is received.
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Callable
from typing import Final

import anyio.from_thread
from fastapi import Request
from python_multipart.multipart import MultipartParser, parse_options_header

from hashmatch.errors import BadRequest, HashmatchError, PayloadTooLarge, UnsupportedContentType

#: Bytes read before an upload is told to be a video or an image (its cap is chosen then).
SNIFF_BYTES: Final = 64 * 1024
MEDIA_TYPES = ("image/", "video/", "application/mp4", "application/octet-stream")
#: RFC 2046: a boundary is 1 to 70 characters.
MAX_BOUNDARY: Final = 70


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"body of {declared} bytes is over the limit of {limit}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def media_type(request: Request) -> tuple[str, dict[bytes, bytes]]:
    kind, options = parse_options_header(request.headers.get("content-type", ""))
    return kind.decode("latin-1").lower(), options


async def read_media(
    request: Request, image_limit: int, video_limit: int, is_video: Callable[[bytes], bool]
) -> bytes:
    """The image or video of a request: multipart field ``file``, or the raw body of an image
    or video type. Which it is, is told from its first bytes (never from the type), and its
    own cap applies from then on: an image over the image cap is refused while it arrives."""
    kind, options = media_type(request)
    larger = max(image_limit, video_limit)
    if kind == "multipart/form-data":
        # Multipart framing adds a little to the file itself.
        framed = _capped(request, larger + 64 * 1024)
        chunks = MultipartField(_boundary(options), b"file", larger).parse(framed)
    elif kind.startswith(MEDIA_TYPES) or not kind:
        chunks = _capped(request, larger + 64 * 1024)
    else:
        raise UnsupportedContentType(
            "send an image or a video as multipart field 'file' or as the body with an image or "
            f"video content type, not {kind!r}"
        )
    return await collect_media(chunks, image_limit, video_limit, is_video)


async def collect_media(
    chunks: AsyncIterator[bytes],
    image_limit: int,
    video_limit: int,
    is_video: Callable[[bytes], bool],
) -> bytes:
    """An image or a video arriving as ``chunks``, held in memory under the cap of what its
    first bytes say it is (refused while it arrives once over that cap)."""
    larger = max(image_limit, video_limit)
    data = bytearray()
    limit: int | None = None
    async for chunk in chunks:
        data += chunk
        if limit is None and len(data) >= SNIFF_BYTES:
            limit = _limit(bytes(data[:SNIFF_BYTES]), image_limit, video_limit, is_video)
        if len(data) > (larger if limit is None else limit):
            raise PayloadTooLarge(f"upload is over the limit of {limit or larger} bytes")
    if limit is None:
        limit = _limit(bytes(data), image_limit, video_limit, is_video)
    if len(data) > limit:
        raise PayloadTooLarge(f"upload is over the limit of {limit} bytes")
    return bytes(data)


def _limit(
    head: bytes, image_limit: int, video_limit: int, is_video: Callable[[bytes], bool]
) -> int:
    try:
        video = is_video(head)
    except HashmatchError:
        video = False  # refused by what it is: decoding says so, under the smaller cap
    return video_limit if video else image_limit


def file_stream(request: Request, limit: int) -> io.BufferedReader:
    """The body (or its multipart field ``file``) as a blocking binary stream, to be read in
    a worker thread started by the event loop (``run_in_threadpool``)."""
    kind, options = media_type(request)
    chunks = _capped(request, limit)
    if kind == "multipart/form-data":
        chunks = MultipartField(_boundary(options), b"file", limit).parse(chunks)
    return io.BufferedReader(_ThreadReader(chunks), buffer_size=1 << 16)


def _boundary(options: dict[bytes, bytes]) -> bytes:
    boundary = options.get(b"boundary")
    if not boundary:
        raise BadRequest("multipart body without a boundary")
    if len(boundary) > MAX_BOUNDARY:
        raise BadRequest(f"multipart boundary longer than {MAX_BOUNDARY} characters (RFC 2046)")
    return boundary


async def _capped(request: Request, limit: int) -> AsyncIterator[bytes]:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"body of {declared} bytes is over the limit of {limit}")
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"body is over the limit of {limit} bytes")
        if chunk:
            yield chunk


#: Bytes of one part's headers a multipart body may send (a name, a filename, a type).
MAX_PART_HEADER_BYTES: Final = 16 * 1024


class PartHeaders:
    """python-multipart callbacks that collect each part's ``Content-Disposition`` (its field
    name and filename), capping the bytes of a part's headers. Subclasses read
    :meth:`_disposition_params` when a part's headers end."""

    def __init__(self) -> None:
        self._header_field = bytearray()
        self._header_value = bytearray()
        self._header_bytes = 0
        self._disposition = b""

    def _part_begin(self) -> None:
        self._disposition = b""
        self._header_bytes = 0

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._count_header(end - start)
        self._header_field.extend(data[start:end])

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._count_header(end - start)
        self._header_value.extend(data[start:end])

    def _count_header(self, size: int) -> None:
        self._header_bytes += size
        if self._header_bytes > MAX_PART_HEADER_BYTES:
            raise BadRequest("malformed multipart body: a part's headers are too long")

    def _header_end(self) -> None:
        if bytes(self._header_field).lower() == b"content-disposition":
            self._disposition = bytes(self._header_value)
        self._header_field.clear()
        self._header_value.clear()

    def _disposition_params(self) -> dict[bytes, bytes]:
        _, params = parse_options_header(self._disposition)
        return params


class MultipartField(PartHeaders):
    """The data of one named field of a multipart body, as the body arrives."""

    def __init__(self, boundary: bytes, name: bytes, limit: int) -> None:
        super().__init__()
        self._name = name
        self._limit = limit
        self._size = 0
        self._found = False
        self._ended = False
        self._in_field = False
        self._ready: list[bytes] = []
        self._parser = MultipartParser(
            boundary,
            {
                "on_part_begin": self._part_begin,
                "on_header_field": self._on_header_field,
                "on_header_value": self._on_header_value,
                "on_header_end": self._header_end,
                "on_headers_finished": self._headers_finished,
                "on_part_data": self._part_data,
                "on_end": self._end,
            },
        )

    async def parse(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        async for chunk in chunks:
            self._write(chunk)
            while self._ready:
                yield self._ready.pop(0)
        try:
            self._parser.finalize()
        except Exception as exc:
            raise BadRequest(f"malformed multipart body: {exc}") from None
        # python-multipart's finalize() does not check that the body was complete: a body cut
        # short must fail the upload (and roll back an import) rather than pass as a whole one.
        if not self._ended:
            raise BadRequest("malformed multipart body: it ends before its closing boundary")
        while self._ready:
            yield self._ready.pop(0)
        if not self._found:
            raise BadRequest(f"multipart body has no {self._name.decode()!r} field")

    def _write(self, chunk: bytes) -> None:
        try:
            self._parser.write(chunk)
        except PayloadTooLarge:
            raise
        except Exception as exc:
            raise BadRequest(f"malformed multipart body: {exc}") from None

    def _end(self) -> None:
        self._ended = True

    def _part_begin(self) -> None:
        super()._part_begin()
        self._in_field = False

    def _headers_finished(self) -> None:
        params = self._disposition_params()
        # The first part of that name only: a second one must not be appended to it.
        self._in_field = params.get(b"name", b"") == self._name and not self._found
        self._found = self._found or self._in_field

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if not self._in_field:
            return
        self._size += end - start
        if self._size > self._limit:
            raise PayloadTooLarge(f"file is over the limit of {self._limit} bytes")
        self._ready.append(bytes(data[start:end]))


class _ThreadReader(io.RawIOBase):
    """A blocking raw stream over an async chunk iterator: each refill runs on the event loop
    from the worker thread that reads."""

    def __init__(self, chunks: AsyncIterator[bytes]) -> None:
        self._chunks = chunks
        self._pending = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while not self._pending:
            chunk = anyio.from_thread.run(self._next)
            if chunk is None:
                return 0
            self._pending = memoryview(chunk)
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size

    async def _next(self) -> bytes | None:
        try:
            return await self._chunks.__anext__()
        except StopAsyncIteration:
            return None
