"""Reading an uploaded image into memory, capped, never onto disk.

Starlette's form parser spools files over 1 MB to a temporary file: submitted media must never
be written anywhere, so bodies are read here, chunk by chunk up to the byte cap, and multipart
bodies are split with python-multipart's callback parser into memory.
"""

from __future__ import annotations

from fastapi import Request
from python_multipart.multipart import MultipartParser, parse_options_header

from hashmatch.errors import BadRequest, PayloadTooLarge, UnsupportedContentType

IMAGE_TYPES = ("image/", "application/octet-stream")


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


async def read_image(request: Request, limit: int) -> bytes:
    """The image of a request: multipart field ``file``, or the raw body of an image type."""
    content_type = request.headers.get("content-type", "")
    kind, options = parse_options_header(content_type)
    kind_text = kind.decode().lower()
    # Multipart framing adds a little to the image itself.
    body = await read_body(request, limit + 64 * 1024)
    if kind_text == "multipart/form-data":
        boundary = options.get(b"boundary")
        if not boundary:
            raise BadRequest("multipart body without a boundary")
        return _multipart_file(body, boundary, limit)
    if kind_text.startswith(IMAGE_TYPES) or not kind_text:
        if len(body) > limit:
            raise PayloadTooLarge(f"image is over the limit of {limit} bytes")
        return body
    raise UnsupportedContentType(
        f"send an image as multipart field 'file' or as the body with an image content type, "
        f"not {kind_text!r}"
    )


def _multipart_file(body: bytes, boundary: bytes, limit: int) -> bytes:
    parts: list[tuple[bytes, bytearray]] = []
    header_field = bytearray()
    header_value = bytearray()
    disposition = b""

    def on_part_begin() -> None:
        nonlocal disposition
        disposition = b""

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header_field.extend(data[start:end])

    def on_header_value(data: bytes, start: int, end: int) -> None:
        header_value.extend(data[start:end])

    def on_header_end() -> None:
        nonlocal disposition
        if bytes(header_field).lower() == b"content-disposition":
            disposition = bytes(header_value)
        header_field.clear()
        header_value.clear()

    def on_headers_finished() -> None:
        _, params = parse_options_header(disposition)
        parts.append((params.get(b"name", b""), bytearray()))

    def on_part_data(data: bytes, start: int, end: int) -> None:
        parts[-1][1].extend(data[start:end])
        if len(parts[-1][1]) > limit:
            raise PayloadTooLarge(f"image is over the limit of {limit} bytes")

    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": on_part_begin,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_headers_finished": on_headers_finished,
            "on_part_data": on_part_data,
        },
    )
    try:
        parser.write(body)
        parser.finalize()
    except PayloadTooLarge:
        raise
    except Exception as exc:
        raise BadRequest(f"malformed multipart body: {exc}") from None
    for name, data in parts:
        if name == b"file":
            return bytes(data)
    raise BadRequest("multipart body has no 'file' field")
