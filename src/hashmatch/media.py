"""Untrusted bytes in, a safe decoded image out. Every input limit lives here.

The order matters for safety: the byte cap is checked before anything is parsed, the format is
identified from its magic bytes (not from a file name or a client's content type) and only
allowlisted formats reach Pillow, and the pixel cap is checked from the header before a single
pixel is decoded, so a decompression bomb never allocates.

Decoding follows Meta's PDQ reference preparation (``Image.thumbnail((512, 512))``), so PDQ
hashes equal the reference's bit for bit, except that JPEGs of 1024 px or more on the short side
are decoded luma-only at a smaller DCT scale: several times cheaper, and within a bit or two of
the reference (``benchmarks/bench_hashing.py`` measures both). On top of the reference, EXIF
orientation is applied, palette and bilevel images are expanded before resampling (the
reference resamples palette indices with nearest neighbour) and high-bit-depth modes are scaled
to 8 bits instead of clipped.
"""

from __future__ import annotations

import io
import re
import warnings
from dataclasses import dataclass
from typing import Final

import numpy as np
from PIL import Image, PngImagePlugin

from hashmatch.errors import (
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

    def __post_init__(self) -> None:
        if self.max_bytes <= 0 or self.max_pixels <= 0:
            raise ValueError("media limits must be positive")


DEFAULT_LIMITS: Final = MediaLimits()


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


def decode(data: bytes, limits: MediaLimits = DEFAULT_LIMITS) -> DecodedImage:
    """Decode untrusted ``data`` into a :class:`DecodedImage`, or raise a :class:`MediaError`."""
    check_size(len(data), limits)
    image_format = identify(data)
    with warnings.catch_warnings():
        # Our own pixel cap replaces Pillow's decompression-bomb threshold, and Pillow's
        # complaints about hostile metadata are not the caller's to see: errors are raised.
        warnings.simplefilter("ignore")
        try:
            return _decode_checked(data, image_format, limits)
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


def _decode_checked(data: bytes, image_format: str, limits: MediaLimits) -> DecodedImage:
    image: Image.Image = Image.open(io.BytesIO(data), formats=[image_format])
    width, height = image.size
    if width <= 0 or height <= 0:
        raise CorruptMedia(f"{image_format} header gives an empty size {width}x{height}")
    if width * height > limits.max_pixels:
        raise TooManyPixels(
            f"{image_format} of {width}x{height} = {width * height} pixels is over the limit "
            f"of {limits.max_pixels} pixels"
        )
    if image_format == "JPEG":
        _draft_jpeg(image)
    image = _expand_mode(image)
    image.thumbnail((HASH_SIDE, HASH_SIDE))
    image.load()
    # Only now: a PNG may carry its EXIF after the pixel data, and reading it earlier would
    # decode the pixels inside the EXIF lookup, where a decoding error must not be mistaken
    # for a broken EXIF block.
    orientation = _orientation(image)
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


def _expand_mode(image: Image.Image) -> Image.Image:
    """Bring modes that resample badly to ones that resample well, before the thumbnail."""
    mode = image.mode
    if mode == "1":
        return image.convert("L")
    if mode == "P":
        return image.convert("RGBA" if "transparency" in image.info else "RGB")
    if mode == "PA":
        return image.convert("RGBA")
    if mode == "F":
        return _float_to_l(np.asarray(image, dtype=np.float32))
    if mode == "I" or mode.startswith("I;16"):
        return _int_to_l(np.asarray(image), sixteen_bit=mode.startswith("I;16"))
    return image


def _int_to_l(pixels: np.ndarray, *, sixteen_bit: bool) -> Image.Image:
    values = pixels.astype(np.float64)
    top = float(values.max(initial=0.0))
    if sixteen_bit or top > 255:
        scale = 255.0 / 65535.0 if top <= 65535 else 255.0 / top
        values = values * scale
    return Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8), mode="L")


def _float_to_l(pixels: np.ndarray) -> Image.Image:
    values = np.nan_to_num(pixels.astype(np.float64), nan=0.0, posinf=255.0, neginf=0.0)
    if float(values.max(initial=0.0)) <= 1.0:
        values = values * 255.0
    return Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8), mode="L")
