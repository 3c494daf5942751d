"""Untrusted bytes in, a safe decoded image out.

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
import warnings
from dataclasses import dataclass
from typing import Final

import numpy as np
from PIL import Image, PngImagePlugin

from hashmatch.errors import (
    CorruptMedia,
    HashmatchError,
    TooManyPixels,
)
from hashmatch.media.cost import decode_cost
from hashmatch.media.identify import identify
from hashmatch.media.limits import (
    DEFAULT_LIMITS,
    HASH_SIDE,
    DecodeBudget,
    MediaLimits,
    check_size,
)
from hashmatch.media.modes import expand_mode, expanded_mode, shrink

# Pillow refuses a PNG text chunk that inflates past 1 MB, and real photos with long editing
# histories in XMP exceed that. 32 MB a chunk, within Pillow's 64 MB for all text chunks of an
# image, still bounds a text-chunk bomb.
PngImagePlugin.MAX_TEXT_CHUNK = max(PngImagePlugin.MAX_TEXT_CHUNK, 32 * 1024 * 1024)


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
    expanded = expanded_mode(image)
    cost = decode_cost(image, expanded, image_format, data, (width, height))
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
    image = expand_mode(image, expanded)
    image = shrink(image, sixteen_bit=stored_mode.startswith("I;16"))
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
