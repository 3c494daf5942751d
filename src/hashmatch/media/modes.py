"""Bringing a decoded image to 8-bit RGB or L at the hash side: palette and bilevel images
expanded before resampling, 16-bit and float images shrunk in their own mode first, so that
no full-size float copy is ever made."""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, cast

import numpy as np
from PIL import Image

from hashmatch.media.limits import HASH_SIDE

#: Modes Pillow cannot resample at all; "I" holds them at 4 bytes a pixel.
_UNRESAMPLABLE_16_BIT: Final = ("I;16B", "I;16L", "I;16N")


def expanded_mode(image: Image.Image) -> str:
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


def expand_mode(image: Image.Image, expanded: str) -> Image.Image:
    """``image`` in the mode :func:`_expanded_mode` chose for it from its header."""
    return image if expanded == image.mode else image.convert(expanded)


def shrink(image: Image.Image, *, sixteen_bit: bool) -> Image.Image:
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
