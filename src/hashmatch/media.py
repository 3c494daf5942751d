"""Untrusted bytes in, a safe decoded image out. Every input limit lives here.

The order matters for safety: the byte cap is checked before anything is parsed, the format is
identified from its magic bytes (not from a file name or a client's content type) and only
allowlisted formats reach Pillow, and two caps are checked from the header before a single pixel
is decoded, so a decompression bomb never allocates. The pixel cap bounds the image's size; the
decode-bytes cap bounds what decoding it costs, because a pixel's cost varies sixteenfold, from
one byte for a greyscale PNG to four for a float TIFF and sixteen for a WebP (the decoder's
canvases), and a progressive JPEG buffers every DCT coefficient of the full image however small
it is decoded. The estimate counts Pillow's raster in its real per-pixel storage, every
full-size copy the steps below make from it, and the decoder's own full-size buffers.

Decoding follows Meta's PDQ reference preparation (``Image.thumbnail((512, 512))``), so PDQ
hashes equal the reference's bit for bit, except that JPEGs of 1024 px or more on the short side
are decoded luma-only at a smaller DCT scale: several times cheaper, and within a bit or two of
the reference (``benchmarks/bench_hashing.py`` measures both). On top of the reference, EXIF
orientation is applied, palette and bilevel images are expanded before resampling (the
reference resamples palette indices with nearest neighbour) and high-bit-depth and float modes
are scaled to 8 bits instead of clipped, after being shrunk in their own mode so that no
full-size copy is made of them.
"""

from __future__ import annotations

import contextlib
import io
import re
import threading
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Final, cast

import numpy as np
from PIL import Image, ImageFile, JpegImagePlugin, PngImagePlugin, TiffImagePlugin

from hashmatch.errors import (
    Busy,
    CorruptMedia,
    EmptyMedia,
    HashmatchError,
    MediaTooLarge,
    TooManyPixels,
    UnsupportedMedia,
)

#: Formats we decode, by Pillow's plugin name.
ALLOWED_FORMATS: Final = ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF")

#: Long side of the image handed to the hashers: Meta's PDQ reference thumbnails to 512.
HASH_SIDE: Final = 512

# Pillow refuses a PNG text chunk that inflates past 1 MB, and real photos with long editing
# histories in XMP exceed that. 32 MB a chunk, within Pillow's 64 MB for all text chunks of an
# image, still bounds a text-chunk bomb.
PngImagePlugin.MAX_TEXT_CHUNK = max(PngImagePlugin.MAX_TEXT_CHUNK, 32 * 1024 * 1024)


@dataclass(frozen=True)
class MediaLimits:
    max_bytes: int = 50_000_000
    max_pixels: int = 100_000_000
    #: Peak bytes one decode may allocate, as estimated from the header by :func:`_decode_cost`:
    #: enough for a 12-megapixel WebP (libwebp keeps two canvases) or a 40-megapixel JPEG-less
    #: RGB photo. A service shares a :class:`DecodeBudget` among its decodes as well.
    max_decode_bytes: int = 192 * 1024 * 1024

    def __post_init__(self) -> None:
        if min(self.max_bytes, self.max_pixels, self.max_decode_bytes) <= 0:
            raise ValueError("media limits must be positive")


DEFAULT_LIMITS: Final = MediaLimits()


class DecodeBudget:
    """Memory shared by every decode of a process: each decode holds its estimated bytes
    while it runs, and waits (up to ``wait_seconds``) for others to give theirs back. One
    large image at a time, many small ones side by side, and never more than ``total``."""

    def __init__(self, total: int, wait_seconds: float = 30.0) -> None:
        if total <= 0:
            raise ValueError("a decode budget must be positive")
        self.total = total
        self._wait_seconds = wait_seconds
        self._used = 0
        self._condition = threading.Condition()

    @contextlib.contextmanager
    def reserve(self, nbytes: int) -> Iterator[None]:
        if nbytes > self.total:
            raise TooManyPixels(
                f"decoding needs about {nbytes} bytes, over this service's decode memory of "
                f"{self.total} bytes"
            )
        with self._condition:
            if not self._condition.wait_for(
                lambda: self._used + nbytes <= self.total, timeout=self._wait_seconds
            ):
                raise Busy("every decoder is busy with large images; retry shortly")
            self._used += nbytes
        try:
            yield
        finally:
            with self._condition:
                self._used -= nbytes
                self._condition.notify_all()


@dataclass(frozen=True)
class DecodedImage:
    """An image as displayed (orientation applied, first frame), reduced for hashing.

    ``image`` is 8-bit RGB, or L (luma) for JPEGs decoded without chroma, with its long side
    at most :data:`HASH_SIDE`; ``width`` and ``height`` are the full displayed dimensions.
    """

    image: Image.Image
    format: str
    width: int
    height: int


def as_rgb_array(image: Image.Image) -> np.ndarray:
    """Pixels of an RGB or L image as a read-only uint8 array of shape (height, width, 3).

    Luma comes back as a zero-copy view repeating the one channel three times.
    """
    pixels = np.asarray(image)
    if pixels.ndim == 2:
        return np.broadcast_to(pixels[:, :, np.newaxis], (*pixels.shape, 3))
    return pixels


# --- format identification -------------------------------------------------------------------

_ISO_BMFF_BRANDS: Final = {
    b"heic": "HEIC",
    b"heix": "HEIC",
    b"hevc": "HEIC",
    b"hevx": "HEIC",
    b"heim": "HEIC",
    b"heis": "HEIC",
    b"mif1": "HEIF",
    b"msf1": "HEIF",
    b"avif": "AVIF",
    b"avis": "AVIF",
    b"crx ": "Canon CR3 raw",
    b"jxl ": "JPEG XL",
}

# (prefix, offset, name): checked in order; the first match names what the bytes are.
_REJECTED_SIGNATURES: Final[tuple[tuple[bytes, int, str], ...]] = (
    (b"%PDF", 0, "PDF"),
    (b"%!PS", 0, "PostScript/EPS"),
    (b"\xc5\xd0\xd3\xc6", 0, "EPS"),
    (b"8BPS", 0, "Photoshop PSD"),
    (b"\x00\x00\x01\x00", 0, "ICO"),
    (b"\x00\x00\x02\x00", 0, "CUR"),
    (b"PK\x03\x04", 0, "ZIP archive"),
    (b"PK\x05\x06", 0, "ZIP archive"),
    (b"\x1f\x8b", 0, "gzip archive"),
    (b"7z\xbc\xaf\x27\x1c", 0, "7-Zip archive"),
    (b"Rar!", 0, "RAR archive"),
    (b"BZh", 0, "bzip2 archive"),
    (b"\xfd7zXZ\x00", 0, "xz archive"),
    (b"\x7fELF", 0, "ELF executable"),
    (b"MZ", 0, "Windows executable"),
    (b"#!", 0, "script"),
    (b"\xff\x0a", 0, "JPEG XL"),
    (b"\x00\x00\x00\x0cJXL ", 0, "JPEG XL"),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", 0, "JPEG 2000"),
    (b"\xffO\xffQ", 0, "JPEG 2000"),
    (b"\x1aE\xdf\xa3", 0, "Matroska/WebM video"),
    (b"FLV", 0, "Flash video"),
    (b"OggS", 0, "Ogg media"),
    (b"ID3", 0, "MP3 audio"),
    (b"qoif", 0, "QOI"),
    (b"DDS ", 0, "DDS texture"),
    (b"gimp xcf", 0, "GIMP XCF"),
    (b"\x76\x2f\x31\x01", 0, "OpenEXR"),
    (b"#?RADIANCE", 0, "Radiance HDR"),
    (b"SQLite format 3\x00", 0, "SQLite database"),
)


def identify(data: bytes) -> str:
    """The allowlisted Pillow format name of ``data``, from its magic bytes.

    Raises :class:`UnsupportedMedia` naming what the bytes look like otherwise.
    """
    if not data:
        raise EmptyMedia("empty file: 0 bytes")
    head = data[:64]
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[:2] == b"BM" and len(head) >= 26:
        return "BMP"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "TIFF"
    raise UnsupportedMedia(*_describe_rejected(data))


def _describe_rejected(data: bytes) -> tuple[str, str]:
    detected = _rejected_name(data)
    if detected is None:
        return "unrecognised data: not an image in any supported format", "unknown"
    return f"{detected} is not a supported image format", detected


def _rejected_name(data: bytes) -> str | None:
    head = data[:64]
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        return _ISO_BMFF_BRANDS.get(brand, "MP4/QuickTime video")
    if head[:4] == b"RIFF":
        kind = head[8:12]
        return {b"AVI ": "AVI video", b"WAVE": "WAV audio"}.get(kind, "RIFF container")
    for signature, offset, name in _REJECTED_SIGNATURES:
        if head[offset : offset + len(signature)] == signature:
            return name
    text = data[:2048].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith((b"<?xml", b"<svg", b"<!doctype svg")) and b"<svg" in text:
        return "SVG"
    if text.startswith((b"<!doctype html", b"<html")):
        return "HTML"
    if text.startswith(b"<?xml"):
        return "XML"
    if head and all(32 <= b < 127 or b in b"\t\r\n" for b in head):
        return "text"
    return None


# --- decoding --------------------------------------------------------------------------------


def check_size(nbytes: int, limits: MediaLimits) -> None:
    """Reject a payload by its size alone, before reading or parsing it."""
    if nbytes == 0:
        raise EmptyMedia("empty file: 0 bytes")
    if nbytes > limits.max_bytes:
        raise MediaTooLarge(f"{nbytes} bytes is over the limit of {limits.max_bytes} bytes")


def decode(
    data: bytes, limits: MediaLimits = DEFAULT_LIMITS, budget: DecodeBudget | None = None
) -> DecodedImage:
    """Decode untrusted ``data`` into a :class:`DecodedImage`, or raise a :class:`MediaError`.
    With a ``budget``, the pixels are decoded only once their estimated memory is reserved."""
    check_size(len(data), limits)
    image_format = identify(data)
    with warnings.catch_warnings():
        # Our own pixel cap replaces Pillow's decompression-bomb threshold, and Pillow's
        # complaints about hostile metadata are not the caller's to see: errors are raised.
        warnings.simplefilter("ignore")
        try:
            return _decode_checked(data, image_format, limits, budget)
        except HashmatchError:
            raise
        except Image.DecompressionBombError as exc:
            raise TooManyPixels(f"{image_format}: {exc}") from None
        except MemoryError:
            raise TooManyPixels(f"{image_format}: not enough memory to decode") from None
        except Exception as exc:
            raise CorruptMedia(f"{image_format} could not be decoded: {_reason(exc)}") from None


_OBJECT_REPR = re.compile(r"\s*<[\w.]+ object at 0x[0-9a-f]+>")


def _reason(exc: BaseException) -> str:
    """The parser's complaint, stable from run to run (no object addresses), kept short."""
    text = _OBJECT_REPR.sub("", str(exc)).strip() or type(exc).__name__
    return text[:200]


def _decode_checked(
    data: bytes, image_format: str, limits: MediaLimits, budget: DecodeBudget | None
) -> DecodedImage:
    image: Image.Image = Image.open(io.BytesIO(data), formats=[image_format])
    width, height = image.size
    if width <= 0 or height <= 0:
        raise CorruptMedia(f"{image_format} header gives an empty size {width}x{height}")
    if width * height > limits.max_pixels:
        raise TooManyPixels(
            f"{image_format} of {width}x{height} = {width * height} pixels is over the limit "
            f"of {limits.max_pixels} pixels"
        )
    stored_mode = image.mode
    if image_format == "JPEG":
        _draft_jpeg(image)
    # Chosen from the header, with the cost: a PNG's tRNS chunk after its pixels must not turn an
    # RGB expansion into a costlier RGBA one once the cost has been checked.
    expanded = _expanded_mode(image)
    cost = _decode_cost(image, expanded, image_format, data, (width, height))
    if cost > limits.max_decode_bytes:
        drafted = (image.mode, image.size) != (stored_mode, (width, height))
        decoded_as = " (decoded as {} at {}x{})".format(image.mode, *image.size) if drafted else ""
        raise TooManyPixels(
            f"{image_format} of {width}x{height} in mode {stored_mode}{decoded_as} needs about "
            f"{cost} bytes to decode, over the limit of {limits.max_decode_bytes} bytes"
        )
    with budget.reserve(cost) if budget is not None else contextlib.nullcontext():
        return _decode_pixels(image, image_format, expanded, stored_mode, (width, height))


def _decode_pixels(
    image: Image.Image,
    image_format: str,
    expanded: str,
    stored_mode: str,
    size: tuple[int, int],
) -> DecodedImage:
    width, height = size
    image.load()
    # Only now: a PNG may carry its EXIF after the pixel data, and reading it earlier would
    # decode the pixels inside the EXIF lookup, where a decoding error must not be mistaken
    # for a broken EXIF block. It is read from the file's own image, before a conversion
    # drops the metadata it came with.
    orientation = _orientation(image)
    # Rebinding ``image`` frees the decoded raster as soon as its expanded copy exists.
    image = _expand_mode(image, expanded)
    image = _shrink(image, sixteen_bit=stored_mode.startswith("I;16"))
    transpose = _ORIENTATION_TRANSPOSE.get(orientation)
    if transpose is not None:
        image = image.transpose(transpose)
        if orientation >= 5:
            width, height = height, width
    if image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    return DecodedImage(image, image_format, width, height)


def _draft_jpeg(image: Image.Image) -> None:
    """Let libjpeg decode at a reduced DCT scale, luma only when the scale is reduced.

    The reference's ``thumbnail`` drafts to at least 1024 px; drafting to at least 512 px decodes
    a quarter of the pixels or fewer and lands on the same hashes. Both hashes read luma alone,
    so a JPEG large enough to be scaled is decoded without its chroma: smaller JPEGs, Meta's
    conformance images among them, keep the reference's exact RGB path.
    """
    luma_only = image.mode == "RGB" and min(image.size) >= 2 * HASH_SIDE
    image.draft("L" if luma_only else None, (HASH_SIDE, HASH_SIDE))


_EXIF_ORIENTATION: Final = 0x0112
_ORIENTATION_TRANSPOSE: Final = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _orientation(image: Image.Image) -> int:
    """EXIF orientation 1-8; 1 (as stored) when absent or unreadable."""
    try:
        value = image.getexif().get(_EXIF_ORIENTATION)
    except Exception:
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


# --- what a decode costs ---------------------------------------------------------------------

#: Bytes a pixel of each mode takes in Pillow's memory, not in the file: Pillow pads every
#: multi-band mode to four bytes. Modes not listed count four.
_PIXEL_BYTES: Final = {
    "1": 1,
    "L": 1,
    "P": 1,
    "I;16": 2,
    "I;16B": 2,
    "I;16L": 2,
    "I;16N": 2,
    "I": 4,
    "F": 4,
    "LA": 4,
    "PA": 4,
    "RGB": 4,
    "RGBA": 4,
    "RGBX": 4,
    "CMYK": 4,
    "YCbCr": 4,
    "LAB": 4,
    "HSV": 4,
}

#: Pillow resamples these modes premultiplied, from a full-size premultiplied copy.
_PREMULTIPLIED: Final = ("LA", "RGBA")

#: libwebp's animation decoder, Pillow's only WebP decoder, keeps two full canvases of 4 bytes a
#: pixel and hands the frame over as a third copy; with Pillow's raster a WebP costs 16 bytes a
#: pixel (measured: 192 MB for a 4000x3000 photo).
_WEBP_DECODER_PIXEL_BYTES: Final = 12

#: A few rows of raw samples that the row-by-row decoders buffer (two rows of the widest raw
#: pixel, 16-bit RGBA): nothing for a photo, but a 30-million-pixel-wide PNG is a bomb too.
_ROW_BUFFER_PIXEL_BYTES: Final = 16


def _pixel_bytes(mode: str) -> int:
    return _PIXEL_BYTES.get(mode, 4)


def _decode_cost(
    image: Image.Image,
    expanded: str,
    image_format: str,
    data: bytes,
    header_size: tuple[int, int],
) -> int:
    """Peak bytes decoding ``image`` to the hash side will allocate, from its header alone.

    ``image`` is opened (and a JPEG drafted) but not loaded: its size and mode are those Pillow
    will decode at; ``expanded`` is the mode it will be shrunk in. Deliberately a little
    pessimistic: decoder buffers are counted as if they outlived the decode, and the working
    copies of the shrink as if they came at its peak.
    """
    width, height = image.size
    return (
        _conversion_pixel_bytes(image.mode, expanded) * width * height
        + _shrink_bytes(expanded, image.size)
        + _ROW_BUFFER_PIXEL_BYTES * width
        + _decoder_bytes(image, image_format, data, header_size)
    )


def _conversion_pixel_bytes(mode: str, expanded: str) -> int:
    """Bytes a pixel at the fullest moment of the raster's life and its full-size copies.

    Mirrors :func:`_expand_mode` and :func:`_shrink`: the expanded copy lives beside the raster
    while it is made; a premultiplied copy lives beside the expanded image while it is resampled.
    High-bit-depth and float images are shrunk in place or in bands, with no full-size copy.
    """
    raster = _pixel_bytes(mode)
    peak = raster if expanded == mode else raster + _pixel_bytes(expanded)
    if expanded in _PREMULTIPLIED:
        peak = max(peak, 2 * _pixel_bytes(expanded))
    return peak


def _shrink_bytes(mode: str, size: tuple[int, int]) -> int:
    """Pillow's working copies while ``thumbnail`` shrinks an image of ``size`` in ``mode``.

    The ``reduce`` copy (2 to 4 times the hash side; I;16 has none) and the output of the first
    resampling pass, at the thumbnail's width and the reduced height: at most a few megabytes
    beside the raster, unless the raster is very wide.
    """
    width, height = size
    scale = HASH_SIDE / max(width, height)
    if scale >= 1:
        return 0
    out_width, out_height = max(1, round(width * scale)), max(1, round(height * scale))
    reduce_x = max(1, int(width / out_width / 2)) if mode != "I;16" else 1
    reduce_y = max(1, int(height / out_height / 2)) if mode != "I;16" else 1
    reduced_height = _ceil_div(height, reduce_y)
    reduced = _ceil_div(width, reduce_x) * reduced_height if reduce_x * reduce_y > 1 else 0
    return _pixel_bytes(mode) * (reduced + out_width * reduced_height)


def _decoder_bytes(
    image: Image.Image, image_format: str, data: bytes, header_size: tuple[int, int]
) -> int:
    """Full-size buffers a format's decoder allocates besides the raster it fills."""
    width, height = image.size
    if image_format == "WEBP":
        return _WEBP_DECODER_PIXEL_BYTES * width * height + len(data)
    if image_format == "JPEG" and isinstance(image, JpegImagePlugin.JpegImageFile):
        return _jpeg_coefficient_bytes(image, data, header_size)
    if image_format == "TIFF" and isinstance(image, TiffImagePlugin.TiffImageFile):
        return _tiff_block_bytes(image, data)
    if isinstance(image, ImageFile.ImageFile) and _codec(image) == "bmp_rle":
        # Pillow's RLE decoder builds the image in a bytearray, then copies it into bytes.
        return 2 * width * height
    return 0


def _codec(image: ImageFile.ImageFile) -> str | None:
    """The Pillow decoder that will read the pixels."""
    return image.tile[0].codec_name if image.tile else None


def _jpeg_coefficient_bytes(
    image: JpegImagePlugin.JpegImageFile, data: bytes, header_size: tuple[int, int]
) -> int:
    """libjpeg's buffer for every DCT coefficient of the full image, when it needs one.

    A progressive JPEG, or one whose first scan leaves out a component, is read in several
    scans, so libjpeg keeps 64 two-byte coefficients for each 8x8 block of each component at full
    resolution, however small the DCT scale it decodes at: 3 bytes a pixel for a 4:2:0 photo.
    """
    single_scan = _first_scan_components(data) >= len(image.layer)
    if single_scan and not image.info.get("progressive"):
        return 0
    width, height = header_size
    # Sampling factors of 0 are invalid (libjpeg refuses the file); 1 keeps the sums defined.
    sampling = [(max(h, 1), max(v, 1)) for _, h, v, _ in image.layer]
    max_h = max((h for h, _ in sampling), default=1)
    max_v = max((v for _, v in sampling), default=1)
    blocks = 0
    for h, v in sampling:
        # Blocks of the component, padded to whole MCUs as libjpeg allocates them.
        blocks_wide = _round_up(_ceil_div(width * h, max_h * 8), h)
        blocks_high = _round_up(_ceil_div(height * v, max_v * 8), v)
        blocks += blocks_wide * blocks_high
    return 64 * 2 * blocks


def _ceil_div(numerator: int, denominator: int) -> int:
    return -(-numerator // denominator)


def _round_up(value: int, multiple: int) -> int:
    return _ceil_div(value, multiple) * multiple


_JPEG_STANDALONE_MARKERS: Final = frozenset({0x01, 0xD8, *range(0xD0, 0xD8)})


def _first_scan_components(data: bytes) -> int:
    """Components in a JPEG's first scan (its first SOS segment); 0 when there is none.

    Walks the marker segments as Pillow does when it opens the file: junk between segments and
    fill bytes are skipped.
    """
    pos = 2
    while pos + 4 < len(data):
        if data[pos] != 0xFF or data[pos + 1] == 0xFF:
            pos += 1
            continue
        marker = data[pos + 1]
        if marker == 0x00 or marker in _JPEG_STANDALONE_MARKERS:
            pos += 2
            continue
        if marker == 0xDA:
            return data[pos + 4]
        pos += 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
    return 0


_TIFF_YCBCR: Final = 6  # PhotometricInterpretation
_TIFF_JPEG_COMPRESSIONS: Final = (6, 7)  # old-style and new-style JPEG


def _tiff_block_bytes(image: TiffImagePlugin.TiffImageFile, data: bytes) -> int:
    """libtiff's buffer for one strip or tile, which it decodes whole before Pillow unpacks it.

    A writer chooses the strip or tile size: one strip the height of the image doubles the cost
    of decoding it. Pillow decodes JPEG-compressed and YCbCr TIFFs through libtiff's RGBA
    interface, at 4 bytes a pixel. The largest compressed strip or tile is read whole too.
    """
    if _codec(image) != "libtiff":
        return 0  # uncompressed: Pillow reads it row by row
    tags = image.tag_v2
    width, height = image.size
    bits = _tiff_ints(tags, TiffImagePlugin.BITSPERSAMPLE) or [1]
    samples = max([*_tiff_ints(tags, TiffImagePlugin.SAMPLESPERPIXEL), len(bits)])
    pixel_bits = max(bits) * samples
    jpeg = any(c in _TIFF_JPEG_COMPRESSIONS for c in _tiff_ints(tags, TiffImagePlugin.COMPRESSION))
    if jpeg or _TIFF_YCBCR in _tiff_ints(tags, TiffImagePlugin.PHOTOMETRIC_INTERPRETATION):
        pixel_bits = max(pixel_bits, 32)
    tile_width = _tiff_ints(tags, TiffImagePlugin.TILEWIDTH)[:1]
    tile_length = _tiff_ints(tags, TiffImagePlugin.TILELENGTH)[:1]
    if tile_width and tile_length:
        block = tile_width[0] * tile_length[0]
    else:
        block = min([*_tiff_ints(tags, TiffImagePlugin.ROWSPERSTRIP), height]) * width
    compressed = max(
        _tiff_ints(tags, TiffImagePlugin.STRIPBYTECOUNTS)
        + _tiff_ints(tags, TiffImagePlugin.TILEBYTECOUNTS),
        default=len(data),
    )
    return _ceil_div(block * pixel_bits, 8) + min(compressed, len(data))


def _tiff_ints(tags: TiffImagePlugin.ImageFileDirectory_v2, tag: int) -> list[int]:
    """A tag's integer values, none when it is absent or not integers (a hostile file's)."""
    value = tags.get(tag)
    values = value if isinstance(value, tuple) else (value,)
    return [v for v in values if isinstance(v, int) and v >= 0]


# --- shrinking to the hash side --------------------------------------------------------------

#: Modes Pillow cannot resample at all; "I" holds them at 4 bytes a pixel.
_UNRESAMPLABLE_16_BIT: Final = ("I;16B", "I;16L", "I;16N")


def _expanded_mode(image: Image.Image) -> str:
    """The mode to shrink ``image`` in: one that resamples well.

    Pillow resamples palette indices with nearest neighbour and keeps a bilevel image bilevel;
    it resamples little-endian I;16 but no other 16-bit layout.
    """
    mode = image.mode
    if mode == "1":
        return "L"
    if mode == "P":
        return "RGBA" if "transparency" in image.info else "RGB"
    if mode == "PA":
        return "RGBA"
    if mode in _UNRESAMPLABLE_16_BIT:
        return "I"
    return mode


def _expand_mode(image: Image.Image, expanded: str) -> Image.Image:
    """``image`` in the mode :func:`_expanded_mode` chose for it from its header."""
    return image if expanded == image.mode else image.convert(expanded)


def _shrink(image: Image.Image, *, sixteen_bit: bool) -> Image.Image:
    """``image`` with its long side at most :data:`HASH_SIDE`; high bit depths become 8-bit L."""
    if image.mode == "F":
        return _float_to_l(image)
    if image.mode in ("I", "I;16"):
        return _int_to_l(image, sixteen_bit=sixteen_bit)
    image.thumbnail((HASH_SIDE, HASH_SIDE))
    return image


def _int_to_l(image: Image.Image, *, sixteen_bit: bool) -> Image.Image:
    """Shrink an integer image in its own mode, then scale it to 8 bits.

    16-bit values are scaled by 255/65535; 32-bit ones only when they exceed 255, by 255/65535
    if they fit 16 bits and by their maximum otherwise. Negative values count as 0, as they
    would have had they been clipped before the reduction.
    """
    if image.mode == "I;16":
        top = 65535.0
        # Pillow resamples I;16 directly but cannot reduce() it, so no reducing gap.
        image.thumbnail((HASH_SIDE, HASH_SIDE), reducing_gap=None)
    else:
        low, high = _extrema(image)
        if low < 0:
            _clean_in_bands(image, lambda band: np.maximum(band, 0))
        top = max(high, 0.0)
        image.thumbnail((HASH_SIDE, HASH_SIDE))
    values = np.asarray(image, dtype=np.float64)
    if sixteen_bit or top > 255:
        values *= 255.0 / 65535.0 if top <= 65535 else 255.0 / top
    return Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8), mode="L")


def _float_to_l(image: Image.Image) -> Image.Image:
    """Shrink a float image in its own mode, then scale it to 8 bits.

    NaN counts as 0, +inf as 255 and -inf as 0; an image whose values are at most 1.0 is
    scaled by 255. Values are clipped to 0-255 before the reduction, so that one NaN or infinity
    cannot spread over its neighbours.
    """

    def clean(band: np.ndarray) -> np.ndarray:
        finite: np.ndarray = np.nan_to_num(band, nan=0.0, posinf=255.0, neginf=0.0)
        return np.clip(finite, 0.0, 255.0, out=finite)

    _clean_in_bands(image, clean)
    top = _extrema(image)[1]
    image.thumbnail((HASH_SIDE, HASH_SIDE))
    values = np.asarray(image, dtype=np.float64)
    if top <= 1.0:
        values *= 255.0
    return Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8), mode="L")


#: Rows are cleaned in bands of about this many bytes: small beside any image worth banding.
_BAND_BYTES: Final = 1 << 20


def _clean_in_bands(image: Image.Image, clean: Callable[[np.ndarray], np.ndarray]) -> None:
    """Replace the pixels of a loaded I or F image by ``clean`` of them, in place.

    A band of rows at a time, so the only copies are of one band: numpy would copy the whole
    image to see it, and the image may be a hundred megabytes.
    """
    width, height = image.size
    rows = max(1, _BAND_BYTES // (4 * width))
    for top in range(0, height, rows):
        box = (0, top, width, min(height, top + rows))
        pixels = np.asarray(image.crop(box))
        image.paste(Image.fromarray(clean(pixels).astype(pixels.dtype, copy=False)), box)


def _extrema(image: Image.Image) -> tuple[float, float]:
    """Lowest and highest value of a one-band image, read in place."""
    low, high = cast("tuple[float, float]", image.getextrema())
    return float(low), float(high)
