"""``pdq``: Meta's 256-bit perceptual hash, with a 0-100 quality.

Computed as Meta's reference prepares images (``thumbnail((512, 512))``, done by
:mod:`hashmatch.media`), so hashes equal the reference's. A submitted image is looked up in
all 8 rotations and flips, and so is the first picture found inside a frame.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import numpy as np
import pdqhash
from PIL import Image

from hashmatch.media import as_rgb_array
from hashmatch.signals.types import Hash, IndexKind, Query, SignalType, Source, Turn, Variant

#: Meta's cut-off: PDQ hashes of quality below this come from near-flat images and match
#: unrelated near-flat images; they are computed and reported, flagged as low quality.
MIN_QUALITY: Final = 50

#: The four turns that must be hashed from their own pixels, as numpy views of the original.
_PIXEL_TURNS: Final = (
    (Turn.ORIGINAL, (slice(None), slice(None))),
    (Turn.FLIP_HORIZONTAL, (slice(None), slice(None, None, -1))),
    (Turn.FLIP_VERTICAL, (slice(None, None, -1), slice(None))),
    (Turn.ROTATE_180, (slice(None, None, -1), slice(None, None, -1))),
)

#: The other four are transposes of those: PDQ commutes exactly with transposition (each
#: axis's filter window and sampling grid depend only on that axis's length), so the
#: transposed image's hash is the transposed bit matrix. Rotating by 90 degrees
#: counter-clockwise is transposing the horizontal flip.
_TRANSPOSED_TURNS: Final = (
    (Turn.TRANSPOSE, Turn.ORIGINAL),
    (Turn.ROTATE_90, Turn.FLIP_HORIZONTAL),
    (Turn.ROTATE_270, Turn.FLIP_VERTICAL),
    (Turn.TRANSVERSE, Turn.ROTATE_180),
)


class Pdq(SignalType):
    name, bits = "pdq", 256
    index_kind, source = IndexKind.HAMMING, Source.PIXELS
    #: Thresholds measured by ``benchmarks/bench_robustness.py`` on real photographs. Default:
    #: precision stays at 99.99% on every transform up to 77 bits, and the extrapolated tail of
    #: distances between distinct photos reaches one in 10^12 pairs at 45; 31 (Meta's
    #: recommendation) keeps two decades of that margin for uploads that are not photographs.
    #: Bound: where the same tail (ten times as many false pairs every 6 bits) predicts one
    #: false match per 10,000 queries against a 10-million-entry list, 10^-11 a pair.
    default_threshold, max_threshold = 31, 51

    def turns(self, image: Image.Image) -> dict[Turn, Hash]:
        """PDQ of all 8 dihedral transforms, as if each transformed image had been hashed.

        PDQ's own DCT-domain shortcut (``compute_dihedral``) lands up to ~18 bits away from the
        hash of an actually flipped image, because its box filters and sampling grid are not
        mirror-symmetric; so the flips are hashed from flipped pixels (within a bit or two of
        what a flipped upload produces) and only the exact transposes come from the bit matrix.
        """
        rgb = as_rgb_array(image)
        computed = {turn: _bits(rgb[view]) for turn, view in _PIXEL_TURNS}
        for turn, source in _TRANSPOSED_TURNS:
            bits, quality = computed[source]
            computed[turn] = (np.ascontiguousarray(bits.T), quality)
        return {turn: self._hash(*computed[turn]) for turn in Turn}

    def query(self, image: Image.Image, pictures: Sequence[Image.Image]) -> list[Query]:
        """The image in its 8 rotations and flips; the first picture inside a frame in its 8
        too (a mirrored repost is often letterboxed as well); further candidates as they are."""
        queries = [Query(value, Variant(turn)) for turn, value in self.turns(image).items()]
        for position, picture in enumerate(pictures):
            if position == 0:
                queries += [
                    Query(value, Variant(turn, trimmed=True))
                    for turn, value in self.turns(picture).items()
                ]
            else:
                queries.append(Query(self.hash_image(picture), Variant(trimmed=True)))
        return queries

    def hash_image(self, image: Image.Image) -> Hash:
        """PDQ of an RGB or L image as it is (no thumbnail: decoding has prepared it)."""
        return self._hash(*_bits(as_rgb_array(image)))

    def is_low_quality(self, quality: int | None) -> bool:
        return quality is not None and quality < MIN_QUALITY

    def _hash(self, bits: np.ndarray, quality: int) -> Hash:
        return Hash(self, np.packbits(bits).tobytes(), quality)


def _bits(rgb: np.ndarray) -> tuple[np.ndarray, int]:
    """PDQ's 256 bits as a 16x16 uint8 matrix (row-major, as the hash is laid out) + quality."""
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"PDQ needs uint8 RGB pixels (h, w, 3), got {rgb.dtype} {rgb.shape}")
    bits, quality = pdqhash.compute(rgb)
    return np.asarray(bits, dtype=np.uint8).reshape(16, 16), int(quality)


PDQ: Final = Pdq()
