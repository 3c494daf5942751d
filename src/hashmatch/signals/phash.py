"""``phash``: imagehash's 64-bit perceptual hash (8x8 DCT bits of a 32x32 greyscale
reduction). Its tail of distances between distinct photos is heavy; match large lists on PDQ."""

from __future__ import annotations

from typing import Final

import numpy as np
from PIL import Image

from hashmatch.signals.types import Hash, IndexKind, SignalType, Source


class PHash(SignalType):
    name, bits = "phash", 64
    index_kind, source = IndexKind.HAMMING, Source.PIXELS
    #: Default: precision falls below 99.99% above 7 bits on real photos (a 4 degree turn), so
    #: one under. Bound: distinct photos come as close as 14 bits and grow ten times as many
    #: every 3 bits, so no threshold keeps a list of millions precise; the bound is where the
    #: benchmark still measures 99.99% precision on every transform.
    default_threshold, max_threshold = 6, 7

    def hash_image(self, image: Image.Image) -> Hash:
        import imagehash  # here: it pulls in scipy, which pdq and md5 runs never need

        bits = imagehash.phash(image).hash
        return Hash(self, np.packbits(np.asarray(bits, dtype=np.uint8)).tobytes())


PHASH: Final = PHash()
