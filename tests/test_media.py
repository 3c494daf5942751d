"""Tests for :mod:`hashmatch.media`: hostile bytes, limits, and decoding fidelity.

Every input is a real file built here with Pillow, numpy, zipfile, zlib or by hand; nothing is
mocked. The hostile corpus must be rejected with the right error class and a message naming what
was seen; valid but extreme files must decode quickly to their first displayed frame.
"""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import threading
import time
import tracemalloc
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from PIL import GifImagePlugin, Image, WebPImagePlugin

from conftest import natural_image
from hashmatch.config import Settings
from hashmatch.errors import (
    Busy,
    ConfigError,
    CorruptMedia,
    EmptyMedia,
    MediaError,
    MediaTooLarge,
    TooManyPixels,
    UnsupportedMedia,
)
from hashmatch.media import (
    DEFAULT_LIMITS,
    HASH_SIDE,
    DecodeBudget,
    DecodedImage,
    MediaLimits,
    decode,
    identify,
)
from hashmatch.signals import PDQ

FloatArray = npt.NDArray[np.float64]


# --- builders --------------------------------------------------------------------------------


@cache
def _natural_array(width: int, height: int) -> npt.NDArray[np.uint8]:
    """A smooth, natural-ish RGB picture with no symmetry: gradients, a rectangle and a disc."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    sx, sy = x / (width - 1), y / (height - 1)
    red = 255.0 * sx
    green = 255.0 * sy
    blue = 128.0 + 100.0 * np.sin(sx * 20.0) * np.cos(sy * 11.0)
    pixels = np.stack([red, green, blue], axis=-1)
    pixels[(sy > 0.17) & (sy < 0.42) & (sx > 0.19) & (sx < 0.5)] = (220, 40, 30)
    disc = ((sx - 0.75) * width) ** 2 + ((sy - 0.67) * height) ** 2
    pixels[disc < (0.15 * min(width, height)) ** 2] = (20, 60, 200)
    result: npt.NDArray[np.uint8] = np.clip(np.rint(pixels), 0, 255).astype(np.uint8)
    result.setflags(write=False)
    return result


def _natural(width: int, height: int) -> Image.Image:
    return Image.fromarray(_natural_array(width, height))


def _encode(image: Image.Image, image_format: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, image_format, **params)
    return buffer.getvalue()


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload)
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR (with a valid CRC) claims ``width`` x ``height`` RGB, with a tiny IDAT."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + _png_chunk(b"IEND", b"")
    )


def _png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """(type, payload) of every chunk of a PNG."""
    chunks: list[tuple[bytes, bytes]] = []
    pos = 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        chunks.append((data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]))
        pos += 12 + length
    return chunks


def _png_insert_before_idat(data: bytes, chunk: bytes) -> bytes:
    idat = data.index(b"IDAT") - 4
    return data[:idat] + chunk + data[idat:]


def _jpeg_segment(marker: int, payload: bytes) -> bytes:
    assert len(payload) <= 65533
    return struct.pack(">BBH", 0xFF, marker, len(payload) + 2) + payload


def _exif_orientation(orientation: int) -> bytes:
    """An EXIF block, ``Exif\\0\\0`` and a TIFF header included, giving only the orientation."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


def _luma(decoded: DecodedImage) -> FloatArray:
    return np.asarray(decoded.image.convert("L"), dtype=np.float64)


def _rgb(image: Image.Image) -> FloatArray:
    return np.asarray(image.convert("RGB"), dtype=np.float64)


def _mad(first: FloatArray, second: FloatArray) -> float:
    assert first.shape == second.shape, (first.shape, second.shape)
    return float(np.abs(first - second).mean())


def _coarse(luma: FloatArray) -> FloatArray:
    """Luma box-averaged down to 64 px wide: what survives dithering."""
    image = Image.fromarray(np.clip(np.rint(luma), 0, 255).astype(np.uint8), mode="L")
    height = max(1, round(64 * image.height / image.width))
    small = image.resize((64, height), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.float64)


def _fits_hash_side(decoded: DecodedImage) -> None:
    assert decoded.image.mode in ("RGB", "L")
    assert max(decoded.image.size) <= HASH_SIDE


# --- 1. the hostile corpus --------------------------------------------------------------------


def _truncated_jpeg() -> bytes:
    data = _encode(_natural(300, 200), "JPEG", quality=90)
    return data[: len(data) // 2]


def _zip_named_jpg() -> bytes:
    """A ZIP archive, as uploaded under the name ``holiday.jpg`` (decode never sees the name)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("holiday.jpg", _encode(_natural(64, 48), "JPEG"))
        archive.writestr("readme.txt", "not a picture\n")
    return buffer.getvalue()


def _svg() -> bytes:
    return (
        b'<?xml version="1.0" encoding="UTF-8"?>\n'
        b'<svg xmlns="http://www.w3.org/2000/svg" width="100" height="100">'
        b'<script>alert("x")</script><rect width="100" height="100" fill="red"/></svg>\n'
    )


def _svg_with_bom() -> bytes:
    return b"\xef\xbb\xbf \n\t<svg xmlns='http://www.w3.org/2000/svg'><circle r='4'/></svg>"


def _pdf() -> bytes:
    return (
        b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n"
        b"2 0 obj << /Type /Pages /Kids [] /Count 0 >> endobj\n"
        b"trailer << /Root 1 0 R >>\n%%EOF\n"
    )


def _random_bytes() -> bytes:
    return np.random.default_rng(20240229).bytes(4096)


def _heic() -> bytes:
    return b"\x00\x00\x00\x18ftypheic" + b"\x00\x00\x00\x00mif1heic" + b"\x00" * 64


def _psd() -> bytes:
    """A minimal Photoshop file: header, empty sections, raw 8-bit RGB 4x4 image data."""
    header = b"8BPS" + struct.pack(">H6xHIIHH", 1, 3, 4, 4, 8, 3)
    sections = struct.pack(">III", 0, 0, 0)
    return header + sections + struct.pack(">H", 0) + bytes(3 * 4 * 4)


def _ico() -> bytes:
    return _encode(_natural(32, 32), "ICO", sizes=[(32, 32)])


@dataclass(frozen=True)
class Hostile:
    name: str
    build: Callable[[], bytes]
    error: type[MediaError]
    #: ``UnsupportedMedia.detected``; None for the other errors, which carry no such field.
    detected: str | None
    #: Substrings the message must contain: it names what was seen.
    mentions: tuple[str, ...]


HOSTILE: tuple[Hostile, ...] = (
    Hostile("truncated-jpeg", _truncated_jpeg, CorruptMedia, None, ("JPEG", "truncated")),
    Hostile(
        "png-ihdr-30000x30000",
        lambda: _png_header_only(30000, 30000),
        TooManyPixels,
        None,
        ("PNG", "900000000"),
    ),
    Hostile("zip-renamed-jpg", _zip_named_jpg, UnsupportedMedia, "ZIP archive", ("ZIP",)),
    Hostile("svg", _svg, UnsupportedMedia, "SVG", ("SVG",)),
    Hostile("pdf", _pdf, UnsupportedMedia, "PDF", ("PDF",)),
    Hostile("empty", lambda: b"", EmptyMedia, None, ("0 bytes",)),
    Hostile("random-bytes", _random_bytes, UnsupportedMedia, "unknown", ("unrecognised",)),
    Hostile(
        "shell-script", lambda: b"#!/bin/sh\nrm -rf /\n", UnsupportedMedia, "script", ("script",)
    ),
    Hostile("heic", _heic, UnsupportedMedia, "HEIC", ("HEIC",)),
    Hostile("psd", _psd, UnsupportedMedia, "Photoshop PSD", ("Photoshop PSD",)),
    Hostile("ico", _ico, UnsupportedMedia, "ICO", ("ICO",)),
)


def _rejection(data: bytes, limits: MediaLimits | None = None) -> MediaError:
    with pytest.raises(MediaError) as caught:
        if limits is None:
            decode(data)
        else:
            decode(data, limits)
    return caught.value


@pytest.mark.parametrize("case", HOSTILE, ids=[case.name for case in HOSTILE])
def test_hostile_input_is_rejected_naming_what_it_is(case: Hostile) -> None:
    data = case.build()
    started = time.perf_counter()
    error = _rejection(data)
    assert time.perf_counter() - started < 1.0
    assert type(error) is case.error, f"{type(error).__name__}: {error}"
    assert error.code == case.error.code
    assert getattr(error, "detected", None) == case.detected
    for mention in case.mentions:
        assert mention in str(error), str(error)
    assert error.as_dict() == {"code": case.error.code, "message": str(error)}
    if case.error is UnsupportedMedia:
        # identify() alone refuses it the same way, before any parser sees it.
        with pytest.raises(UnsupportedMedia) as caught:
            identify(data)
        assert caught.value.detected == case.detected


def test_hostile_rejections_are_distinct() -> None:
    outcomes = []
    for case in HOSTILE:
        error = _rejection(case.build())
        outcomes.append((error.code, getattr(error, "detected", None)))
    assert len(set(outcomes)) == len(HOSTILE), outcomes
    # Each error class keeps its own code: the edges map codes, not classes.
    classes = (EmptyMedia, MediaTooLarge, UnsupportedMedia, TooManyPixels, CorruptMedia)
    assert len({cls.code for cls in classes}) == len(classes)
    assert all(issubclass(cls, MediaError) for cls in classes)


def test_svg_behind_bom_and_whitespace_is_named() -> None:
    error = _rejection(_svg_with_bom())
    assert isinstance(error, UnsupportedMedia)
    assert error.detected == "SVG"


def test_pixel_bomb_is_refused_from_its_header_without_allocating() -> None:
    data = _png_header_only(30000, 30000)
    tracemalloc.start()
    try:
        started = time.perf_counter()
        with pytest.raises(TooManyPixels):
            decode(data)
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert elapsed < 0.5
    assert peak < 50_000_000


# tracemalloc cannot see Pillow's pixel buffers (plain malloc in C), so the same refusal also runs
# in a child process whose address space is capped a little above what it already uses: any
# attempt to allocate the claimed pixels fails there, and the message must still be the
# header-based refusal rather than an out-of-memory fallback.
_ADDRESS_SPACE_CHILD = """
import json, resource, sys
from hashmatch.errors import MediaError
from hashmatch.media import decode

data = sys.stdin.buffer.read()
with open("/proc/self/status") as status:
    size = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmSize:"))
cap = size + 256 * 1024 * 1024
resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
try:
    decoded = decode(data)
except MediaError as exc:
    print(json.dumps({"code": exc.code, "message": str(exc)}))
else:
    print(json.dumps({"code": "decoded", "message": str(decoded.image.size)}))
"""


@pytest.mark.parametrize(
    ("width", "height", "code", "mention"),
    [
        # Beyond Pillow's own decompression-bomb error threshold.
        (30000, 30000, TooManyPixels.code, "900000000"),
        # Over our 100 Mpx cap but under Pillow's error threshold (it only warns): 330 MB of RGB.
        (11000, 10000, TooManyPixels.code, "110000000"),
    ],
)
def test_pixel_bomb_never_allocates_under_an_address_space_cap(
    width: int, height: int, code: str, mention: str
) -> None:
    result = _run_capped(_png_header_only(width, height))
    assert result["code"] == code, result
    assert mention in result["message"], result


def test_address_space_cap_still_decodes_a_normal_image() -> None:
    # The control for the test above: the cap leaves room for real, modest work.
    result = _run_capped(_encode(_natural(640, 480), "PNG"))
    assert result == {"code": "decoded", "message": "(512, 384)"}


def _run_child(code: str, data: bytes, timeout: float) -> dict[str, Any]:
    """Run ``code`` in a fresh interpreter with ``data`` on stdin; its JSON reply."""
    completed = subprocess.run(
        [sys.executable, "-c", code],
        input=data,
        capture_output=True,
        timeout=timeout,
        check=False,
        env={**os.environ, "OPENBLAS_NUM_THREADS": "1"},
    )
    assert completed.returncode == 0, completed.stderr.decode(errors="replace")
    result: dict[str, Any] = json.loads(completed.stdout)
    return result


def _run_capped(data: bytes) -> dict[str, Any]:
    return _run_child(_ADDRESS_SPACE_CHILD, data, timeout=60)


# --- 2. byte and pixel caps -------------------------------------------------------------------


def _png_of_about_5kb() -> bytes:
    noise = np.random.default_rng(5).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    data = _encode(Image.fromarray(noise), "PNG")
    assert 4000 <= len(data) <= 6000
    return data


def test_byte_cap_rejects_a_valid_png() -> None:
    data = _png_of_about_5kb()
    error = _rejection(data, MediaLimits(max_bytes=1000))
    assert type(error) is MediaTooLarge
    assert error.code == "media_too_large"
    assert str(len(data)) in str(error)
    assert "1000" in str(error)


def test_byte_cap_is_inclusive() -> None:
    data = _png_of_about_5kb()
    assert decode(data, MediaLimits(max_bytes=len(data))).width == 40
    with pytest.raises(MediaTooLarge):
        decode(data, MediaLimits(max_bytes=len(data) - 1))


def test_byte_cap_is_checked_before_the_bytes_are_identified() -> None:
    # Garbage over the cap is "too large", not "unsupported": nothing looked inside it.
    error = _rejection(_random_bytes(), MediaLimits(max_bytes=1000))
    assert type(error) is MediaTooLarge


def test_pixel_cap_rejects_a_small_image() -> None:
    data = _encode(_natural(20, 20), "PNG")
    error = _rejection(data, MediaLimits(max_pixels=100))
    assert type(error) is TooManyPixels
    assert error.code == "too_many_pixels"
    assert "20x20" in str(error)
    assert "400" in str(error)


def test_pixel_cap_is_inclusive() -> None:
    data = _encode(_natural(20, 20), "PNG")
    assert decode(data, MediaLimits(max_pixels=400)).height == 20
    with pytest.raises(TooManyPixels):
        decode(data, MediaLimits(max_pixels=399))


def test_pixel_cap_comes_from_the_header_before_any_pixel_is_decoded() -> None:
    # 2000x2000 is far below Pillow's bomb threshold and the IDAT is far too short for it:
    # decoding first would report a corrupt file, checking the header first reports the cap.
    data = _png_header_only(2000, 2000)
    error = _rejection(data, MediaLimits(max_pixels=1_000_000))
    assert type(error) is TooManyPixels
    assert type(_rejection(data)) is CorruptMedia


@pytest.mark.parametrize(
    ("max_bytes", "max_pixels", "max_decode_bytes"),
    [(0, 1, 1), (1, 0, 1), (-5, 10, 1), (1, 1, 0), (1, 1, -1)],
)
def test_limits_must_be_positive(max_bytes: int, max_pixels: int, max_decode_bytes: int) -> None:
    with pytest.raises(ValueError, match="positive"):
        MediaLimits(max_bytes=max_bytes, max_pixels=max_pixels, max_decode_bytes=max_decode_bytes)


def test_decode_bytes_cap_rejects_an_ordinary_photo_when_set_low() -> None:
    data = _encode(_natural(800, 600), "JPEG", quality=90)
    assert decode(data).width == 800  # the default cap takes it
    error = _rejection(data, MediaLimits(max_decode_bytes=1_000_000))
    assert type(error) is TooManyPixels
    assert error.code == "too_many_pixels"
    # 800x600 RGB is 1.92 MB in Pillow's memory (4 bytes a pixel), far under the pixel cap.
    for mention in ("JPEG", "800x600", "RGB", "1000000 bytes"):
        assert mention in str(error), str(error)
    assert decode(data, MediaLimits(max_decode_bytes=4_000_000)).width == 800


def test_decode_bytes_cap_comes_from_the_environment() -> None:
    assert Settings.from_env({}).media_limits.max_decode_bytes == 192 * 1024 * 1024
    assert MediaLimits().max_decode_bytes == 192 * 1024 * 1024
    limits = Settings.from_env({"HASHMATCH_MAX_DECODE_BYTES": "1000"}).media_limits
    assert limits.max_decode_bytes == 1000
    error = _rejection(_png_of_about_5kb(), limits)
    assert type(error) is TooManyPixels
    assert "1000 bytes" in str(error)
    with pytest.raises(ConfigError, match="HASHMATCH_MAX_DECODE_BYTES"):
        Settings.from_env({"HASHMATCH_MAX_DECODE_BYTES": "0"})


# --- 3. corrupt but allowlisted ---------------------------------------------------------------


def _png_with_flipped_idat_byte(compress_level: int, *, exif: bool) -> bytes:
    params: dict[str, object] = {"compress_level": compress_level}
    if exif:
        params["exif"] = _exif_orientation(1)
    data = _encode(_natural(160, 120), "PNG", **params)
    kinds = [kind for kind, _ in _png_chunks(data)]
    assert (b"eXIf" in kinds) is exif
    if exif:
        assert kinds.index(b"eXIf") < kinds.index(b"IDAT")
    start = data.index(b"IDAT") + 4
    (length,) = struct.unpack(">I", data[start - 8 : start - 4])
    corrupt = bytearray(data)
    corrupt[start + length // 2] ^= 0x01
    assert (
        zlib.crc32(corrupt[start - 4 : start + length])
        != struct.unpack(">I", corrupt[start + length : start + length + 4])[0]
    )
    return bytes(corrupt)


@pytest.mark.parametrize(
    "compress_level",
    [
        # Deflate-compressed pixels: the flip garbles the stream from that point on.
        6,
        # Stored (level 0) pixels: the flip changes one pixel value and nothing but the IDAT CRC
        # (and zlib's Adler-32) can tell.
        0,
    ],
)
@pytest.mark.parametrize(
    "exif",
    [
        # The common case: no EXIF, so looking for the orientation makes Pillow read the pixels
        # (a PNG may keep eXIf after IDAT).
        False,
        # EXIF before IDAT: the orientation is found without touching the pixels.
        True,
    ],
    ids=["no-exif", "exif-before-idat"],
)
def test_png_with_idat_crc_mismatch_is_corrupt(compress_level: int, exif: bool) -> None:
    error = _rejection(_png_with_flipped_idat_byte(compress_level, exif=exif))
    assert type(error) is CorruptMedia, error
    assert "PNG" in str(error)


def test_png_with_ihdr_crc_mismatch_is_corrupt() -> None:
    data = bytearray(_encode(_natural(64, 48), "PNG"))
    data[29] ^= 0xFF  # the last byte of the IHDR CRC
    error = _rejection(bytes(data))
    assert type(error) is CorruptMedia
    assert "PNG" in str(error)


def test_truncated_gif_is_corrupt() -> None:
    image = _natural(300, 200).convert("P", palette=Image.Palette.ADAPTIVE, colors=256)
    data = _encode(image, "GIF")
    error = _rejection(data[: len(data) // 2])
    assert type(error) is CorruptMedia
    assert "GIF" in str(error)


def test_jpeg_with_garbage_after_soi_is_corrupt() -> None:
    real = _encode(_natural(300, 200), "JPEG")
    garbage = np.random.default_rng(7).bytes(len(real) - 3)
    data = b"\xff\xd8\xff" + garbage
    assert identify(data) == "JPEG"
    error = _rejection(data)
    assert type(error) is CorruptMedia
    assert "JPEG" in str(error)


# --- 4. valid but extreme ---------------------------------------------------------------------


def _gif_table_and_image_data(data: bytes) -> tuple[int, bytes, int, bytes]:
    """Parts of a one-frame GIF from Pillow.

    Its colour-table size bits, its colour table, its image descriptor's interlace flag and its
    LZW image data.
    """
    flags = data[10]
    assert flags & 0x80, "Pillow wrote no global colour table"
    size_bits = flags & 0x07
    table_end = 13 + (3 << (size_bits + 1))
    table = data[13:table_end]
    pos = table_end
    while data[pos] == 0x21:  # an extension: introducer, label, then data sub-blocks
        pos += 2
        while data[pos]:
            pos += data[pos] + 1
        pos += 1
    assert data[pos] == 0x2C, "expected an image descriptor"
    assert not data[pos + 9] & 0x80, "unexpected local colour table"
    interlace = data[pos + 9] & 0x40
    start = pos + 10  # LZW minimum code size, then sub-blocks up to an empty one
    pos = start + 1
    while data[pos]:
        pos += data[pos] + 1
    return size_bits, table, interlace, data[start : pos + 1]


def _gif_frame(image: Image.Image) -> bytes:
    """Graphic control extension plus an image with its own local colour table."""
    size_bits, table, interlace, image_data = _gif_table_and_image_data(
        _encode(image, "GIF", optimize=False)
    )
    control = b"\x21\xf9\x04" + struct.pack("<BHB", 0x04, 2, 0) + b"\x00"
    width, height = image.size
    descriptor = b"\x2c" + struct.pack("<HHHHB", 0, 0, width, height, 0x80 | interlace | size_bits)
    return control + descriptor + table + image_data


def _animated_gif(first: Image.Image, rest: Image.Image, frames: int) -> bytes:
    width, height = first.size
    screen = b"GIF89a" + struct.pack("<HHBBB", width, height, 0, 0, 0)
    loop = b"\x21\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x00"
    other = _gif_frame(rest)
    return screen + loop + _gif_frame(first) + other * (frames - 1) + b"\x3b"


def test_gif_of_ten_thousand_frames_decodes_its_first_frame_quickly() -> None:
    first = _natural(64, 64).convert("P", palette=Image.Palette.ADAPTIVE, colors=256)
    rest = Image.new("RGB", (64, 64), (128, 128, 128)).convert(
        "P", palette=Image.Palette.ADAPTIVE, colors=2
    )
    data = _animated_gif(first, rest, 10_000)
    with Image.open(io.BytesIO(data)) as check:
        assert isinstance(check, GifImagePlugin.GifImageFile)
        assert check.n_frames == 10_000

    started = time.perf_counter()
    decoded = decode(data)
    elapsed = time.perf_counter() - started

    assert elapsed < 2.0
    assert decoded.format == "GIF"
    assert (decoded.width, decoded.height) == (64, 64)
    pixels = _rgb(decoded.image)
    assert _mad(pixels, _rgb(first)) < 1.0
    assert _mad(pixels, _rgb(rest)) > 30.0


def test_animated_webp_decodes_its_first_frame() -> None:
    first = _natural(128, 96)
    second = first.transpose(Image.Transpose.ROTATE_180)
    third = Image.new("RGB", (128, 96), (0, 255, 0))
    data = _encode(
        first, "WEBP", save_all=True, append_images=[second, third], lossless=True, duration=100
    )
    with Image.open(io.BytesIO(data)) as check:
        assert isinstance(check, WebPImagePlugin.WebPImageFile)
        assert check.n_frames == 3

    decoded = decode(data)

    assert decoded.format == "WEBP"
    assert (decoded.width, decoded.height) == (128, 96)
    pixels = _rgb(decoded.image)
    assert _mad(pixels, _rgb(first)) < 1.0
    assert _mad(pixels, _rgb(second)) > 30.0
    assert _mad(pixels, _rgb(third)) > 30.0


_TEN_MB = 10 * 1024 * 1024


def _jpeg_with_ten_mb_of_metadata() -> bytes:
    """A 256x192 JPEG whose EXIF (orientation 6) is followed by ~10 MB of APP1/APP2 payload.

    An APP segment holds at most 64 KB, so the payload is spread the way real files spread large
    metadata: continued ``Exif`` APP1 segments (which Pillow concatenates) and a multi-segment
    ``ICC_PROFILE`` in APP2.
    """
    rng = np.random.default_rng(11)
    body = _encode(_natural(256, 192), "JPEG", quality=90)
    segments = [_jpeg_segment(0xE1, _exif_orientation(6) + rng.bytes(65000))]
    exif_segments, icc_segments = 120, 40
    segments += [
        _jpeg_segment(0xE1, b"Exif\x00\x00" + rng.bytes(65520)) for _ in range(exif_segments)
    ]
    segments += [
        _jpeg_segment(0xE2, b"ICC_PROFILE\x00" + bytes([seq, icc_segments]) + rng.bytes(65500))
        for seq in range(1, icc_segments + 1)
    ]
    data = body[:2] + b"".join(segments) + body[2:]
    assert len(data) > _TEN_MB
    return data


def _png_with_large_chunk(kind: bytes) -> bytes:
    """A 256x192 PNG carrying a ~10 MB ``eXIf`` (orientation 6), ``tEXt`` or ``zTXt`` chunk."""
    rng = np.random.default_rng(12)
    body = _encode(_natural(256, 192), "PNG")
    if kind == b"eXIf":
        payload = _exif_orientation(6)[6:] + rng.bytes(_TEN_MB)
    elif kind == b"tEXt":
        payload = b"Comment\x00" + rng.integers(0x20, 0x7F, _TEN_MB, dtype=np.uint8).tobytes()
    else:
        text = rng.integers(0x20, 0x7F, _TEN_MB, dtype=np.uint8).tobytes()
        payload = b"Comment\x00\x00" + zlib.compress(text, 1)
        assert len(payload) > 8 * 1024 * 1024
    return _png_insert_before_idat(body, _png_chunk(kind, payload))


@pytest.mark.parametrize(
    ("build", "displayed"),
    [
        pytest.param(_jpeg_with_ten_mb_of_metadata, (192, 256), id="jpeg-app1-app2-10mb"),
        pytest.param(lambda: _png_with_large_chunk(b"eXIf"), (192, 256), id="png-exif-10mb"),
        pytest.param(lambda: _png_with_large_chunk(b"tEXt"), (256, 192), id="png-text-10mb"),
        pytest.param(lambda: _png_with_large_chunk(b"zTXt"), (256, 192), id="png-ztxt-10mb"),
    ],
)
def test_ten_mb_of_metadata_decodes_quickly_in_bounded_memory(
    build: Callable[[], bytes], displayed: tuple[int, int]
) -> None:
    data = build()
    tracemalloc.start()
    try:
        started = time.perf_counter()
        decoded = decode(data)
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert elapsed < 2.0
    assert peak < 500_000_000
    # The orientation sits in front of the payload, so finding it proves the metadata was read.
    assert (decoded.width, decoded.height) == displayed
    upright = _natural(256, 192)
    if displayed == (192, 256):
        upright = upright.transpose(Image.Transpose.ROTATE_270)
    assert _mad(_rgb(decoded.image), _rgb(upright)) < 4.0


# --- 5. EXIF orientation ----------------------------------------------------------------------


def _as_displayed(stored: npt.NDArray[np.uint8], orientation: int) -> npt.NDArray[np.uint8]:
    """What a viewer shows for stored pixels tagged with an EXIF orientation (TIFF 6.0 tag 274).

    Written from the spec's description of where the stored 0th row and 0th column end up,
    independently of Pillow's transpose table.
    """
    displayed = {
        1: stored,  # row 0 top, column 0 left
        2: stored[:, ::-1],  # row 0 top, column 0 right
        3: stored[::-1, ::-1],  # row 0 bottom, column 0 right
        4: stored[::-1, :],  # row 0 bottom, column 0 left
        5: stored.swapaxes(0, 1),  # row 0 left, column 0 top
        6: np.rot90(stored, k=-1),  # row 0 right, column 0 top
        7: stored[::-1, ::-1].swapaxes(0, 1),  # row 0 right, column 0 bottom
        8: np.rot90(stored, k=1),  # row 0 left, column 0 bottom
    }[orientation]
    return np.ascontiguousarray(displayed)


def _thumbnail(pixels: npt.NDArray[np.uint8]) -> FloatArray:
    image = Image.fromarray(pixels)
    image.thumbnail((HASH_SIDE, HASH_SIDE))
    return _rgb(image)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied(orientation: int) -> None:
    data = _encode(_natural(600, 400), "JPEG", quality=95, exif=_exif_orientation(orientation))
    with Image.open(io.BytesIO(data)) as raw:
        assert raw.getexif()[0x0112] == orientation
        stored = np.asarray(raw.convert("RGB"))

    decoded = decode(data)

    expected_size = (400, 600) if orientation >= 5 else (600, 400)
    assert (decoded.width, decoded.height) == expected_size
    assert decoded.image.size == ((341, 512) if orientation >= 5 else (512, 341))
    pixels = _rgb(decoded.image)
    assert _mad(pixels, _thumbnail(_as_displayed(stored, orientation))) < 2.0
    for other in range(1, 9):
        candidate = _thumbnail(_as_displayed(stored, other))
        if other != orientation and candidate.shape == pixels.shape:
            assert _mad(pixels, candidate) > 20.0, other


# --- 6. every Pillow mode ---------------------------------------------------------------------


def _with_alpha(image: Image.Image) -> Image.Image:
    width, height = image.size
    ramp = np.linspace(64, 255, width, dtype=np.float64)
    alpha = np.broadcast_to(np.rint(ramp).astype(np.uint8), (height, width))
    image = image.copy()
    image.putalpha(Image.fromarray(np.ascontiguousarray(alpha), mode="L"))
    return image


def _luma_array(image: Image.Image) -> npt.NDArray[np.uint8]:
    return np.asarray(image.convert("L"))


def _sixteen_bit(image: Image.Image, mode: str) -> Image.Image:
    values = _luma_array(image).astype(np.uint16) * 257  # 0..255 scaled to 0..65535
    dtype = ">u2" if mode.endswith("B") else "<u2"
    return Image.frombytes(mode, image.size, values.astype(dtype).tobytes())


def _int32(image: Image.Image, scale: int) -> Image.Image:
    values = _luma_array(image).astype("<i4") * scale
    return Image.frombytes("I", image.size, values.tobytes())


def _float(image: Image.Image) -> Image.Image:
    values = (_luma_array(image).astype(np.float64) / 255.0).astype("<f4")  # in [0, 1]
    return Image.frombytes("F", image.size, values.tobytes())


def _palette(image: Image.Image) -> Image.Image:
    return image.convert("P", palette=Image.Palette.ADAPTIVE, colors=256)


def _palette_with_transparency(image: Image.Image) -> Image.Image:
    paletted = _palette(image)
    paletted.info["transparency"] = 0
    return paletted


@dataclass(frozen=True)
class ModeCase:
    name: str
    #: The mode Pillow reports when it opens the file: proof the file carries the mode under test.
    opened: str
    build: Callable[[Image.Image], bytes]
    tolerance: float = 12.0


MODES: tuple[ModeCase, ...] = (
    # Floyd-Steinberg dither survives a 1.56x reduction as per-pixel noise, so "1" gets a wider
    # per-pixel tolerance; its box-averaged luma is held to the same bound as every other mode.
    ModeCase("1-png", "1", lambda im: _encode(im.convert("1"), "PNG"), tolerance=30.0),
    ModeCase("1-tiff", "1", lambda im: _encode(im.convert("1"), "TIFF"), tolerance=30.0),
    ModeCase("1-bmp", "1", lambda im: _encode(im.convert("1"), "BMP"), tolerance=30.0),
    ModeCase("L-png", "L", lambda im: _encode(im.convert("L"), "PNG")),
    ModeCase("L-jpeg", "L", lambda im: _encode(im.convert("L"), "JPEG", quality=95)),
    ModeCase("LA-png", "LA", lambda im: _encode(_with_alpha(im.convert("L")), "PNG")),
    ModeCase("P-png", "P", lambda im: _encode(_palette(im), "PNG")),
    ModeCase("P-gif", "P", lambda im: _encode(_palette(im), "GIF")),
    ModeCase("P-bmp", "P", lambda im: _encode(_palette(im), "BMP")),
    ModeCase("P-trns-png", "P", lambda im: _encode(_palette_with_transparency(im), "PNG")),
    # Pillow cannot write PA as PNG; TIFF carries it.
    ModeCase("PA-tiff", "PA", lambda im: _encode(_palette(im).convert("PA"), "TIFF")),
    ModeCase("RGB-png", "RGB", lambda im: _encode(im, "PNG")),
    ModeCase("RGB-tiff", "RGB", lambda im: _encode(im, "TIFF")),
    ModeCase("RGB-bmp", "RGB", lambda im: _encode(im, "BMP")),
    ModeCase("RGB-webp", "RGB", lambda im: _encode(im, "WEBP", lossless=True)),
    ModeCase("RGB-jpeg", "RGB", lambda im: _encode(im, "JPEG", quality=95)),
    ModeCase("RGBA-png", "RGBA", lambda im: _encode(_with_alpha(im), "PNG")),
    ModeCase("RGBA-tiff", "RGBA", lambda im: _encode(_with_alpha(im), "TIFF")),
    ModeCase("RGBA-webp", "RGBA", lambda im: _encode(_with_alpha(im), "WEBP", lossless=True)),
    ModeCase("CMYK-jpeg", "CMYK", lambda im: _encode(im.convert("CMYK"), "JPEG", quality=95)),
    ModeCase("CMYK-tiff", "CMYK", lambda im: _encode(im.convert("CMYK"), "TIFF")),
    ModeCase("YCbCr-tiff", "YCbCr", lambda im: _encode(im.convert("YCbCr"), "TIFF")),
    # A JPEG always stores YCbCr; Pillow hands it out as RGB.
    ModeCase("YCbCr-jpeg", "RGB", lambda im: _encode(im.convert("YCbCr"), "JPEG", quality=95)),
    ModeCase("LAB-tiff", "LAB", lambda im: _encode(im.convert("LAB"), "TIFF")),
    # No allowlisted format stores HSV: Pillow refuses to write it as PNG, TIFF, JPEG, BMP and
    # GIF. The closest is WebP, whose writer converts HSV to RGB, so the decoder only ever sees
    # RGB pixels that came from an HSV image.
    ModeCase("HSV-as-webp", "RGB", lambda im: _encode(im.convert("HSV"), "WEBP", lossless=True)),
    # Pillow cannot write mode I as PNG; TIFF stores it as 32-bit integers.
    ModeCase("I-8bit-range-tiff", "I", lambda im: _encode(_int32(im, 1), "TIFF")),
    ModeCase("I-16bit-range-tiff", "I", lambda im: _encode(_int32(im, 257), "TIFF")),
    ModeCase("I;16-png", "I;16", lambda im: _encode(_sixteen_bit(im, "I;16"), "PNG")),
    ModeCase("I;16-tiff", "I;16", lambda im: _encode(_sixteen_bit(im, "I;16"), "TIFF")),
    ModeCase("I;16B-tiff", "I;16B", lambda im: _encode(_sixteen_bit(im, "I;16B"), "TIFF")),
    ModeCase("F-tiff", "F", lambda im: _encode(_float(im), "TIFF")),
)


@pytest.fixture(scope="module")
def reference_luma() -> FloatArray:
    """Luma of the RGB original, decoded the same way as every mode under test."""
    return _luma(decode(_encode(_natural(800, 600), "PNG")))


@pytest.mark.parametrize("case", MODES, ids=[case.name for case in MODES])
def test_every_pillow_mode_decodes_close_to_the_rgb_original(
    case: ModeCase, reference_luma: FloatArray
) -> None:
    data = case.build(_natural(800, 600))
    with Image.open(io.BytesIO(data)) as raw:
        assert raw.mode == case.opened

    decoded = decode(data)

    _fits_hash_side(decoded)
    assert (decoded.width, decoded.height) == (800, 600)
    luma = _luma(decoded)
    assert _mad(luma, reference_luma) < case.tolerance
    assert _mad(_coarse(luma), _coarse(reference_luma)) < 4.0
    # Scaled to 8 bits, not clipped: a clipped 16-bit or float image would be (nearly) all
    # white or all black.
    assert 40.0 < luma.mean() < 215.0
    if case.opened == "1":
        # Expanded to grey before resampling, so the reduction averages the dither into greys.
        assert len(np.unique(luma)) > 64


@cache
def _photo_luma() -> FloatArray:
    """Luma of a 1600x1200 photo-like picture, in 0..255 but not rounded to 8 bits."""
    rgb = np.asarray(natural_image(1600, 1200, seed=5), dtype=np.float64)
    luma: FloatArray = rgb @ np.array([0.299, 0.587, 0.114])
    luma.setflags(write=False)
    return luma


@cache
def _photo_8_bit_reference() -> DecodedImage:
    luma = _photo_luma()
    return decode(_encode(Image.fromarray(np.clip(np.rint(luma), 0, 255).astype(np.uint8)), "PNG"))


def _high_bit_depth(luma: FloatArray, mode: str) -> Image.Image:
    """Luma in 0..255 (not rounded to 8 bits) as a ``mode`` image of the same picture."""
    if mode == "F":
        return Image.frombytes("F", (luma.shape[1], luma.shape[0]), (luma / 255.0).astype("<f4"))
    sixteen = np.rint(luma * 257.0)
    dtype = {"I;16": "<u2", "I;16B": ">u2", "I": "<i4"}[mode]
    return Image.frombytes(mode, (luma.shape[1], luma.shape[0]), sixteen.astype(dtype).tobytes())


@pytest.mark.parametrize(
    ("mode", "image_format", "params"),
    [
        ("I;16", "PNG", {}),
        ("I;16", "TIFF", {"compression": "tiff_deflate"}),
        # Pillow resamples no 16-bit layout but little-endian I;16: this one goes through "I".
        ("I;16B", "TIFF", {}),
        ("I", "TIFF", {"compression": "tiff_deflate"}),
        ("F", "TIFF", {"compression": "tiff_deflate"}),
    ],
)
def test_high_bit_depth_image_hashes_as_its_8_bit_version(
    mode: str, image_format: str, params: dict[str, object]
) -> None:
    # Shrunk in its own mode before it is scaled to 8 bits, a high-bit-depth picture must still
    # hash as the same picture stored with 8 bits. 1600x1200 takes the reduce() path.
    data = _encode(_high_bit_depth(_photo_luma(), mode), image_format, **params)
    with Image.open(io.BytesIO(data)) as raw:
        assert raw.mode == mode

    decoded = decode(data)

    _fits_hash_side(decoded)
    assert decoded.image.size == (512, 384)
    reference = _photo_8_bit_reference()
    assert _mad(_luma(decoded), _luma(reference)) < 1.0
    assert PDQ.hash_image(decoded.image).distance(PDQ.hash_image(reference.image)) <= 8


def _float_unit_with_holes() -> npt.NDArray[np.float32]:
    """Values in 0..1 with NaN and -inf scattered through: scaled by 255, holes black."""
    values = _luma_array(_natural(1600, 1200)).astype(np.float32) / 255.0
    values[::9, ::7] = np.nan
    values[4::9, 3::7] = -np.inf
    return values


def _float_wide_with_holes() -> npt.NDArray[np.float32]:
    """Values beyond 0..255, NaN and both infinities: clipped, not scaled; +inf white."""
    values = _luma_array(_natural(1600, 1200)).astype(np.float32) * 1.5 - 60.0
    values[::9, ::7] = np.nan
    values[4::9, 3::7] = np.inf
    values[6::9, 5::7] = -np.inf
    return values


def _int32_wide() -> npt.NDArray[np.int32]:
    """32-bit values from negative to past 16 bits: negatives black, scaled by their maximum."""
    return _luma_array(_natural(1600, 1200)).astype(np.int32) * 1000 - 30_000


@pytest.mark.parametrize(
    "build", [_float_unit_with_holes, _float_wide_with_holes, _int32_wide], ids=lambda b: b.__name__
)
def test_high_bit_depth_values_map_to_8_bits_as_if_before_the_reduction(
    build: Callable[[], npt.NDArray[np.float32] | npt.NDArray[np.int32]],
) -> None:
    # The pixels are mapped to 8 bits after the reduction now, so a NaN or an infinity must not
    # spread over its neighbours, nor a negative value darken them: the result must be what
    # mapping each pixel first, then reducing, gives.
    values = build()
    height, width = values.shape
    image = Image.frombytes("F" if values.dtype == np.float32 else "I", (width, height), values)
    data = _encode(image, "TIFF", compression="tiff_deflate")

    decoded = decode(data)

    finite = np.nan_to_num(values.astype(np.float64), nan=0.0, posinf=255.0, neginf=0.0)
    top = float(finite.max())
    if values.dtype == np.float32:
        scale = 255.0 if top <= 1.0 else 1.0
    else:
        scale = 255.0 / 65535.0 if top <= 65535 else 255.0 / top
    mapped = np.clip(np.rint(finite * scale), 0, 255).astype(np.uint8)
    expected = Image.fromarray(mapped)
    expected.thumbnail((HASH_SIDE, HASH_SIDE))
    luma = _luma(decoded)
    assert 20.0 < luma.mean() < 235.0
    assert _mad(luma, np.asarray(expected, dtype=np.float64)) < 1.0


# --- 7. reduced-size decode -------------------------------------------------------------------


@pytest.mark.parametrize(("width", "height"), [(4000, 3000), (3000, 4000)])
def test_large_jpeg_is_reduced_to_the_hash_side(width: int, height: int) -> None:
    original = _natural(800, 600) if width > height else _natural(600, 800)
    big = original.resize((width, height), Image.Resampling.BILINEAR)
    data = _encode(big, "JPEG", quality=90)

    started = time.perf_counter()
    decoded = decode(data)
    elapsed = time.perf_counter() - started

    assert (decoded.width, decoded.height) == (width, height)
    assert max(decoded.image.size) == HASH_SIDE
    expected_size = (512, 384) if width > height else (384, 512)
    assert decoded.image.size == expected_size
    _fits_hash_side(decoded)
    expected = big.convert("L").resize(expected_size, Image.Resampling.BOX)
    assert _mad(_luma(decoded), np.asarray(expected, dtype=np.float64)) < 4.0
    assert elapsed < 1.0


# --- 8. identify ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("image_format", "params"),
    [
        ("JPEG", {}),
        ("PNG", {}),
        ("GIF", {}),
        ("WEBP", {}),
        ("BMP", {}),
        ("TIFF", {}),
        ("TIFF", {"big_tiff": True}),
    ],
)
def test_identify_names_the_pillow_format(image_format: str, params: dict[str, object]) -> None:
    data = _encode(_natural(64, 48), image_format, **params)
    with Image.open(io.BytesIO(data)) as raw:
        assert raw.format == image_format

    assert identify(data) == image_format
    decoded = decode(data)
    assert decoded.format == image_format
    assert (decoded.width, decoded.height) == (64, 48)
    _fits_hash_side(decoded)


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data:UserWarning")
def test_allowlisted_magic_with_a_broken_body_is_corrupt_not_unsupported() -> None:
    # identify() trusts the magic bytes alone; the parser then finds the body is not that format.
    for magic, image_format in [
        (b"\x89PNG\r\n\x1a\n", "PNG"),
        (b"GIF89a", "GIF"),
        (b"RIFF\x00\x10\x00\x00WEBP", "WEBP"),
        (b"II*\x00", "TIFF"),
    ]:
        data = magic + np.random.default_rng(3).bytes(512)
        assert identify(data) == image_format
        error = _rejection(data)
        assert type(error) is CorruptMedia, (image_format, error)
        assert image_format in str(error)


def test_png_chunk_helper_round_trips() -> None:
    # Guards the hand-built PNGs above: valid CRCs, the chunk order Pillow expects.
    data = _png_header_only(7, 5)
    assert [kind for kind, _ in _png_chunks(data)] == [b"IHDR", b"IDAT", b"IEND"]
    with Image.open(io.BytesIO(data)) as image:
        assert image.size == (7, 5)


def test_corrupt_media_message_is_stable_and_names_no_object() -> None:
    data = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
    messages = set()
    for _ in range(2):
        with pytest.raises(CorruptMedia) as info:
            decode(data)
        messages.add(info.value.message)
    (message,) = messages
    assert message.startswith("PNG could not be decoded")
    assert " at 0x" not in message and "BytesIO" not in message


# --- 9. decoding cost: bombs are counted in bytes, not pixels --------------------------------

#: The default cap on what one decode may allocate.
_DECODE_CAP = MediaLimits().max_decode_bytes
_MB = 1024 * 1024


def _rle8_grey_bmp(width: int, height: int) -> bytes:
    """An all-black 8-bit grey RLE BMP, a few hundred bytes whatever its size.

    Pillow cannot write RLE BMPs, so it is built by hand: each "delta" escape, four bytes, skips
    up to 255 rows, which Pillow's RLE decoder fills with index 0.
    """
    palette = b"".join(bytes((i, i, i, 0)) for i in range(256))
    rle = bytearray()
    left = width * height
    while left > 0:
        rows = min(255, -(-left // width))
        rle += bytes((0, 2, 0, rows))
        left -= min(left, rows * width)
    rle += b"\x00\x01"  # end of bitmap
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 8, 1, len(rle), 2835, 2835, 256, 0)
    offset = 14 + len(info) + len(palette)
    file_header = b"BM" + struct.pack("<IHHI", offset + len(rle), 0, 0, offset)
    return file_header + info + palette + bytes(rle)


def _multiscan_jpeg(width: int, height: int) -> bytes:
    """A flat grey baseline (not progressive) 4:2:0 JPEG with each component in its own scan.

    Pillow cannot write one, so it is built by hand. Huffman tables of one symbol each (DC
    difference 0, end of block), both coded "0", make every 8x8 block two zero bits.
    """
    components = ((1, 2), (2, 1), (3, 1))  # (id, horizontal and vertical sampling factor)
    frame = struct.pack(">BHHB", 8, height, width, len(components))
    frame += b"".join(struct.pack(">BBB", ident, factor * 0x11, 0) for ident, factor in components)
    one_code = bytes([1] + [0] * 15)  # one code of length 1
    tables = b"\x00" + one_code + b"\x00" + b"\x10" + one_code + b"\x00"
    parts = [
        b"\xff\xd8",
        _jpeg_segment(0xDB, b"\x00" + bytes([1] * 64)),
        _jpeg_segment(0xC0, frame),
        _jpeg_segment(0xC4, tables),
    ]
    for ident, factor in components:
        blocks = -(-width * factor // 16) * -(-height * factor // 16)
        bits = 2 * blocks
        padding = bytes([(1 << (8 - bits % 8)) - 1]) if bits % 8 else b""
        scan = struct.pack(">BBBBBB", 1, ident, 0x00, 0, 63, 0)
        parts += [_jpeg_segment(0xDA, scan), bytes(bits // 8), padding]
    return b"".join([*parts, b"\xff\xd9"])


@dataclass(frozen=True)
class Bomb:
    name: str
    build: Callable[[], bytes]
    #: The mode and size Pillow opens it with; the refusal must name both.
    mode: str
    size: tuple[int, int]


# Each is under 1 MB and under the 100-megapixel cap: only its decoding cost gives it away. The
# comments give the peak-RSS growth decoding it cost before the decode-bytes cap (measured with a
# copy of the previous media.py, the same way as test_bomb_never_allocates below).
BOMBS: tuple[Bomb, ...] = (
    # 256 MB of RGB at Pillow's 4 bytes a pixel (253 MiB, 1.2 s).
    Bomb(
        "rgb-png",
        cache(lambda: _encode(Image.new("RGB", (8000, 8000), (90, 140, 200)), "PNG")),
        "RGB",
        (8000, 8000),
    ),
    # The reported bomb: 200 MB of raster, then float64 copies of it (2671 MiB, 4.7 s).
    Bomb(
        "grey16-png",
        cache(lambda: _encode(Image.new("I;16", (10000, 9999), 1234), "PNG")),
        "I;16",
        (10000, 9999),
    ),
    # Uncompressed it would be 400 MB; deflate brings it to 730 KB (3060 MiB, 7.9 s).
    Bomb(
        "float-tiff",
        cache(
            lambda: _encode(Image.new("F", (10000, 9999), 0.5), "TIFF", compression="tiff_deflate")
        ),
        "F",
        (10000, 9999),
    ),
    # 32-bit integers past 16 bits (3059 MiB, 4.5 s).
    Bomb(
        "int32-tiff",
        cache(
            lambda: _encode(
                Image.new("I", (10000, 9999), 70000), "TIFF", compression="tiff_deflate"
            )
        ),
        "I",
        (10000, 9999),
    ),
    # 42 MB of palette indices and 169 MB of RGB are each under the cap; the expansion before
    # resampling holds both at once (202 MiB).
    Bomb(
        "palette-png",
        cache(lambda: _encode(Image.new("P", (6500, 6500), 3), "PNG")),
        "P",
        (6500, 6500),
    ),
    # 120 MB of raster, but libwebp's canvases and the frame's copy make it 16 bytes a pixel:
    # 1.2 KB of file (462 MiB).
    Bomb(
        "webp",
        cache(lambda: _encode(Image.new("RGB", (5000, 6000), (10, 20, 30)), "WEBP", lossless=True)),
        "RGB",
        (5000, 6000),
    ),
    # Drafted to 1250x1250 luma, but progressive: libjpeg buffers every coefficient of the full
    # image, 3 bytes a pixel: 587 KB of file (289 MiB).
    Bomb(
        "progressive-jpeg",
        cache(
            lambda: _encode(
                Image.new("RGB", (10000, 10000), (10, 20, 30)), "JPEG", progressive=True
            )
        ),
        "RGB",
        (10000, 10000),
    ),
    # Not progressive either, but its first scan holds one component of three, so libjpeg
    # buffers the coefficients all the same: 586 KB of file (289 MiB).
    Bomb("multi-scan-jpeg", cache(lambda: _multiscan_jpeg(10000, 10000)), "RGB", (10000, 10000)),
    # 100 MB of grey raster; Pillow's RLE decoder builds it in a bytearray and copies that
    # (289 MiB, from 1.2 KB).
    Bomb("rle-bmp", cache(lambda: _rle8_grey_bmp(10000, 9999)), "L", (10000, 9999)),
    # 120 MB of raster, plus libtiff's buffer for the one strip the writer chose (204 MiB).
    Bomb(
        "one-strip-tiff",
        cache(
            lambda: _encode(
                Image.new("RGB", (5000, 6000), (1, 2, 3)),
                "TIFF",
                compression="tiff_deflate",
                strip_size=2**31 - 1,
            )
        ),
        "RGB",
        (5000, 6000),
    ),
)


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@pytest.mark.parametrize("bomb", BOMBS, ids=[bomb.name for bomb in BOMBS])
def test_bomb_is_refused_by_its_decoding_cost(bomb: Bomb) -> None:
    data = bomb.build()
    assert len(data) < 1_000_000
    with Image.open(io.BytesIO(data)) as raw:
        assert (raw.mode, raw.size) == (bomb.mode, bomb.size)
    width, height = bomb.size
    assert width * height <= MediaLimits().max_pixels

    started = time.perf_counter()
    error = _rejection(data)
    elapsed = time.perf_counter() - started

    assert type(error) is TooManyPixels, f"{type(error).__name__}: {error}"
    assert elapsed < 1.0
    message = str(error)
    for mention in (f"{width}x{height}", f"mode {bomb.mode}", f"limit of {_DECODE_CAP} bytes"):
        assert mention in message, message


# A child process decodes one image and reports how far its peak RSS rose above its RSS before
# the decode. Not from getrusage's ru_maxrss: a child starts with its parent's peak there (it is
# kept across exec), and pytest's peak, holding the bombs, hides all of the child's. The kernel's
# own high-water mark (VmHWM) is reset to the RSS now just before the decode; where it cannot be,
# it still holds the start-up's peak, which only makes the growth look larger. The child also
# reports the decoder's estimate, from the refusal a cap of 1 byte gives.
_PEAK_CHILD = """
import gc, json, re, sys
from hashmatch.errors import MediaError
from hashmatch.media import MediaLimits, decode

def status(field):
    with open("/proc/self/status") as lines:
        return next(int(line.split()[1]) * 1024 for line in lines if line.startswith(field))

data = sys.stdin.buffer.read()
estimate = None
try:
    decode(data, MediaLimits(max_decode_bytes=1))
except MediaError as exc:
    found = re.search(r"needs about (\\d+) bytes", str(exc))
    estimate = int(found.group(1)) if found else None
gc.collect()
try:
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")
except OSError:
    pass
before = status("VmRSS:")
try:
    decode(data)
    outcome = "decoded"
except MediaError as exc:
    outcome = exc.code
growth = status("VmHWM:") - before
print(json.dumps({"outcome": outcome, "growth": growth, "estimate": estimate}))
"""


def _decode_peak(data: bytes) -> dict[str, Any]:
    return _run_child(_PEAK_CHILD, data, timeout=120)


@pytest.mark.parametrize("bomb", BOMBS, ids=[bomb.name for bomb in BOMBS])
def test_bomb_never_allocates(bomb: Bomb) -> None:
    # Before the cap these grew the peak by 145 to 3060 MiB (see BOMBS); refused from the
    # header, they grow it by about nothing.
    result = _decode_peak(bomb.build())
    assert result["outcome"] == TooManyPixels.code, result
    assert isinstance(result["growth"], int)
    assert result["growth"] < 64 * _MB, result


def test_palette_expansion_is_chosen_from_the_header() -> None:
    # A tRNS chunk after the pixels, which Pillow reads as it finishes loading, must not turn the
    # RGB expansion the cost was checked for into a costlier RGBA one.
    paletted = _palette(_natural(800, 600))
    assert (np.asarray(paletted) == 0).any()
    data = _encode(paletted, "PNG")
    end = data.rindex(b"IEND") - 4
    late = data[:end] + _png_chunk(b"tRNS", b"\x00") + data[end:]
    with Image.open(io.BytesIO(late)) as raw:
        assert "transparency" not in raw.info
        raw.load()
        assert "transparency" in raw.info

    assert np.array_equal(_rgb(decode(late).image), _rgb(decode(data).image))


def _photo(width: int, height: int) -> Image.Image:
    return _natural(800, 600).resize((width, height), Image.Resampling.BILINEAR)


def _grey16_png(width: int, height: int) -> bytes:
    luma = _luma_array(_photo(width, height)).astype(np.uint16) * 257
    image = Image.frombytes("I;16", (width, height), luma.astype("<u2").tobytes())
    return _encode(image, "PNG", compress_level=1)


def _float_tiff(width: int, height: int, **params: object) -> bytes:
    values = _luma_array(_photo(width, height)).astype("<f4") / 255.0
    image = Image.frombytes("F", (width, height), values.tobytes())
    return _encode(image, "TIFF", compression="tiff_deflate", **params)


@dataclass(frozen=True)
class Legit:
    name: str
    build: Callable[[], bytes]
    #: Bound on the peak-RSS growth, in bytes, where the old decoder's full-size float64 copies
    #: broke it; None where only the estimate is checked.
    bound: int | None


LEGIT: tuple[Legit, ...] = (
    # Pillow's raster is 24 MB (2 bytes a pixel); 80 MB allows 2x that plus 32 MB. The decoder
    # before the cap grew the peak by 321 MiB (float64 copies); now it grows it by 26 MiB.
    Legit("grey16-png-4000x3000", lambda: _grey16_png(4000, 3000), 2 * 24_000_000 + 32 * _MB),
    # Raster 48 MB; 128 MB allows 2x plus 32 MB. Before: 377 MiB; now 54 MiB.
    Legit("float-tiff-4000x3000", lambda: _float_tiff(4000, 3000), 2 * 48_000_000 + 32 * _MB),
    # The rest pin the estimate's other terms: a premultiplied copy, a progressive JPEG's
    # coefficients, libwebp's canvases, libtiff's one strip, the RLE decoder's copies.
    Legit(
        "rgba-png", lambda: _encode(_with_alpha(_photo(3000, 2000)), "PNG", compress_level=1), None
    ),
    Legit(
        "progressive-jpeg-444",
        lambda: _encode(_photo(4000, 3000), "JPEG", progressive=True, subsampling=0),
        None,
    ),
    Legit("webp", lambda: _encode(_photo(2000, 1500), "WEBP", quality=80), None),
    Legit("one-strip-float-tiff", lambda: _float_tiff(3000, 2000, strip_size=2**31 - 1), None),
    Legit("rle-bmp", lambda: _rle8_grey_bmp(6000, 5000), None),
)


@pytest.mark.parametrize("legit", LEGIT, ids=[legit.name for legit in LEGIT])
def test_legitimate_image_decodes_within_its_estimate(legit: Legit) -> None:
    result = _decode_peak(legit.build())
    assert result["outcome"] == "decoded", result
    growth, estimate = result["growth"], result["estimate"]
    assert isinstance(growth, int) and isinstance(estimate, int), result
    assert estimate <= _DECODE_CAP
    # The cap only protects if the estimate is not below what decoding really takes; 8 MB
    # covers the interpreter's and the allocator's own noise.
    assert growth <= estimate + 8 * _MB, result
    if legit.bound is not None:
        assert growth < legit.bound, result


def test_a_decode_budget_is_shared_and_never_exceeded() -> None:
    budget = DecodeBudget(100, wait_seconds=0.2)
    with pytest.raises(TooManyPixels), budget.reserve(101):
        pass
    held = threading.Event()
    release = threading.Event()
    peak: list[int] = []

    def big() -> None:
        with budget.reserve(80):
            held.set()
            release.wait(5)

    worker = threading.Thread(target=big)
    worker.start()
    assert held.wait(5)
    with pytest.raises(Busy), budget.reserve(30):  # 80 + 30 > 100: waits, then gives up
        pass
    with budget.reserve(20):  # 80 + 20 fits beside it
        peak.append(20)
    release.set()
    worker.join()
    with budget.reserve(100):  # all of it, once the others are done
        peak.append(100)
    assert peak == [20, 100]
    # A decode holds its estimate only while it runs.
    data = _encode(_natural(400, 300), "PNG")
    small = DecodeBudget(1_000_000_000)
    assert decode(data, DEFAULT_LIMITS, small).width == 400 and small._used == 0
