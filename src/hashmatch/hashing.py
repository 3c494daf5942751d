"""Hash algorithms: what each is, how to compute it from a decoded image, text <-> bytes.

``pdq`` is Meta's 256-bit perceptual hash (with a 0-100 quality), ``phash`` imagehash's 64-bit
DCT hash, ``md5`` and ``sha256`` digests of the submitted bytes. One decode serves every
perceptual algorithm requested; exact digests need no decode at all.
"""

from __future__ import annotations

import hashlib
import string
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

import numpy as np
import pdqhash
from PIL import Image

from hashmatch.errors import HashFormatError, UnknownAlgorithm
from hashmatch.media import (
    DEFAULT_LIMITS,
    DecodeBudget,
    DecodedImage,
    MediaLimits,
    as_rgb_array,
    check_size,
    decode,
)
from hashmatch.reframe import trimmed_pictures


class Algorithm(StrEnum):
    PDQ = "pdq"
    PHASH = "phash"
    MD5 = "md5"
    SHA256 = "sha256"

    @property
    def bits(self) -> int:
        return _BITS[self]

    @property
    def nbytes(self) -> int:
        return _BITS[self] // 8

    @property
    def perceptual(self) -> bool:
        return self in (Algorithm.PDQ, Algorithm.PHASH)


_BITS: Final = {Algorithm.PDQ: 256, Algorithm.PHASH: 64, Algorithm.MD5: 128, Algorithm.SHA256: 256}

#: Meta's cut-off: PDQ hashes of quality below this come from near-flat images and match
#: unrelated near-flat images; they are computed and reported, flagged as low quality.
PDQ_MIN_QUALITY: Final = 50

DEFAULT_ALGORITHMS: Final = (Algorithm.PDQ, Algorithm.MD5)

_HEX_DIGITS: Final = frozenset(string.hexdigits.lower())


def parse_algorithm(name: str) -> Algorithm:
    try:
        return Algorithm(name.strip().lower())
    except ValueError:
        known = ", ".join(a.value for a in Algorithm)
        raise UnknownAlgorithm(f"unknown algorithm {name!r}; known: {known}") from None


def parse_algorithms(names: str | Iterable[str]) -> tuple[Algorithm, ...]:
    """``"pdq,md5"`` or ``["pdq", "md5"]`` -> algorithms in the given order, without repeats."""
    items = names.split(",") if isinstance(names, str) else list(names)
    parsed = [parse_algorithm(item) for item in items if item.strip()]
    if not parsed:
        raise UnknownAlgorithm("no algorithm given")
    return tuple(dict.fromkeys(parsed))


@dataclass(frozen=True, slots=True)
class Hash:
    """One hash value. ``value`` holds the packed bits, most significant bit first."""

    algorithm: Algorithm
    value: bytes
    quality: int | None = None

    def __post_init__(self) -> None:
        if len(self.value) != self.algorithm.nbytes:
            raise HashFormatError(
                f"{self.algorithm} hash must be {self.algorithm.nbytes} bytes, "
                f"got {len(self.value)}"
            )

    @property
    def hex(self) -> str:
        return self.value.hex()

    @property
    def low_quality(self) -> bool:
        return self.quality is not None and self.quality < PDQ_MIN_QUALITY

    @classmethod
    def from_hex(cls, algorithm: Algorithm | str, text: str, quality: int | None = None) -> Hash:
        """Parse lowercase or uppercase hex, validating length and alphabet."""
        algo = algorithm if isinstance(algorithm, Algorithm) else parse_algorithm(algorithm)
        cleaned = text.strip().lower()
        expected = algo.nbytes * 2
        if len(cleaned) != expected:
            raise HashFormatError(f"{algo} hash must be {expected} hex digits, got {len(cleaned)}")
        try:
            value = bytes.fromhex(cleaned)
        except ValueError:
            value = b""
        # fromhex also skips spaces, which then shows as a short value.
        if len(value) != algo.nbytes:
            bad = sorted(set(cleaned) - _HEX_DIGITS)
            raise HashFormatError(f"{algo} hash has non-hex characters: {''.join(bad)!r}")
        return cls(algo, value, quality)

    def distance(self, other: Hash) -> int:
        """Hamming distance; only defined between hashes of one algorithm."""
        if other.algorithm is not self.algorithm:
            raise HashFormatError(f"cannot compare {self.algorithm} with {other.algorithm}")
        return (int.from_bytes(self.value, "big") ^ int.from_bytes(other.value, "big")).bit_count()

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"


def parse_hash(text: str, default_algorithm: Algorithm | None = None) -> Hash:
    """``"pdq:<hex>"`` / ``"pdq <hex>"``, or bare hex when ``default_algorithm`` is given."""
    stripped = text.strip()
    for separator in (":", " ", "\t"):
        name, found, value = stripped.partition(separator)
        if found:
            return Hash.from_hex(parse_algorithm(name), value)
    if default_algorithm is None:
        raise HashFormatError("hash must be written ALGORITHM:HEX, e.g. pdq:<64 hex digits>")
    return Hash.from_hex(default_algorithm, stripped)


# --- perceptual hashes over a decoded image ---------------------------------------------------


class Variant(StrEnum):
    """The 8 dihedral transforms of an image, named by what was done to the original."""

    ORIGINAL = "original"
    ROTATE_90 = "rotate90"
    ROTATE_180 = "rotate180"
    ROTATE_270 = "rotate270"
    FLIP_VERTICAL = "flip_vertical"
    FLIP_HORIZONTAL = "flip_horizontal"
    TRANSPOSE = "transpose"
    TRANSVERSE = "transverse"


def _pdq_bits(rgb: np.ndarray) -> tuple[np.ndarray, int]:
    """PDQ's 256 bits as a 16x16 uint8 matrix (row-major, as the hash is laid out) + quality."""
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"PDQ needs uint8 RGB pixels (h, w, 3), got {rgb.dtype} {rgb.shape}")
    bits, quality = pdqhash.compute(rgb)
    return np.asarray(bits, dtype=np.uint8).reshape(16, 16), int(quality)


def _pdq_hash(bits: np.ndarray, quality: int) -> Hash:
    return Hash(Algorithm.PDQ, np.packbits(bits).tobytes(), quality)


def pdq_of_image(image: Image.Image) -> Hash:
    """PDQ of an RGB or L image as it is (no thumbnail: :func:`decode` has prepared it)."""
    return _pdq_hash(*_pdq_bits(as_rgb_array(image)))


def pdq(image: DecodedImage) -> Hash:
    return pdq_of_image(image.image)


#: The four variants that must be hashed from their own pixels, as numpy views of the original.
_PIXEL_VARIANTS: Final = (
    (Variant.ORIGINAL, (slice(None), slice(None))),
    (Variant.FLIP_HORIZONTAL, (slice(None), slice(None, None, -1))),
    (Variant.FLIP_VERTICAL, (slice(None, None, -1), slice(None))),
    (Variant.ROTATE_180, (slice(None, None, -1), slice(None, None, -1))),
)

#: The other four are transposes of those: PDQ commutes exactly with transposition (each
#: axis's filter window and sampling grid depend only on that axis's length), so the
#: transposed image's hash is the transposed bit matrix. Rotating by 90 degrees
#: counter-clockwise is transposing the horizontal flip.
_TRANSPOSED_VARIANTS: Final = (
    (Variant.TRANSPOSE, Variant.ORIGINAL),
    (Variant.ROTATE_90, Variant.FLIP_HORIZONTAL),
    (Variant.ROTATE_270, Variant.FLIP_VERTICAL),
    (Variant.TRANSVERSE, Variant.ROTATE_180),
)


def pdq_variants(image: DecodedImage) -> dict[Variant, Hash]:
    """PDQ of all 8 dihedral transforms of a decoded image (see :func:`pdq_variants_of`)."""
    return pdq_variants_of(image.image)


def pdq_variants_of(image: Image.Image) -> dict[Variant, Hash]:
    """PDQ of all 8 dihedral transforms, as if each transformed image had been hashed.

    PDQ's own DCT-domain shortcut (``compute_dihedral``) lands up to ~18 bits away from the
    hash of an actually flipped image, because its box filters and sampling grid are not
    mirror-symmetric; so the flips are hashed from flipped pixels (within a bit or two of what
    a flipped upload produces) and only the exact transposes are taken from the bit matrix.
    """
    rgb = as_rgb_array(image)
    computed = {variant: _pdq_bits(rgb[view]) for variant, view in _PIXEL_VARIANTS}
    for variant, source in _TRANSPOSED_VARIANTS:
        bits, quality = computed[source]
        computed[variant] = (np.ascontiguousarray(bits.T), quality)
    return {variant: _pdq_hash(*computed[variant]) for variant in Variant}


def phash_of_image(image: Image.Image) -> Hash:
    """imagehash's ``phash`` (8x8 DCT bits of a 32x32 greyscale reduction)."""
    import imagehash  # imported here: it pulls in scipy, which plain pdq/md5 runs never need

    bits = imagehash.phash(image).hash
    return Hash(Algorithm.PHASH, np.packbits(np.asarray(bits, dtype=np.uint8)).tobytes())


def phash(image: DecodedImage) -> Hash:
    return phash_of_image(image.image)


def digest(algorithm: Algorithm, data: bytes) -> Hash:
    if algorithm is Algorithm.MD5:
        return Hash(algorithm, hashlib.md5(data, usedforsecurity=False).digest())
    if algorithm is Algorithm.SHA256:
        return Hash(algorithm, hashlib.sha256(data).digest())
    raise UnknownAlgorithm(f"{algorithm} is not a digest of the bytes")


def hash_image(image: DecodedImage, algorithm: Algorithm) -> Hash:
    if algorithm is Algorithm.PDQ:
        return pdq(image)
    if algorithm is Algorithm.PHASH:
        return phash(image)
    raise UnknownAlgorithm(f"{algorithm} is not computed from pixels")


def hash_bytes(
    data: bytes,
    algorithms: Sequence[Algorithm] = DEFAULT_ALGORITHMS,
    limits: MediaLimits = DEFAULT_LIMITS,
) -> list[Hash]:
    """Every requested hash of one file's bytes, decoding at most once.

    Perceptual algorithms decode (and so validate) the image; digests alone do not decode.
    """
    if any(a.perceptual for a in algorithms):
        decoded = decode(data, limits)  # checks the size too
    else:
        check_size(len(data), limits)
        decoded = None
    hashes: list[Hash] = []
    for algorithm in algorithms:
        if algorithm.perceptual:
            assert decoded is not None
            hashes.append(hash_image(decoded, algorithm))
        else:
            hashes.append(digest(algorithm, data))
    return hashes


#: The variant name of hashes taken from the picture inside a frame (see :mod:`reframe`).
TRIMMED: Final = "trimmed"

#: Bits by which a match through any variant other than the image as submitted must beat the
#: list's threshold. Every variant is one more chance for an unrelated image to come close:
#: an image's ~10 query hashes make a false match about 10 times as likely as one hash does.
#: On real photographs the tail of distances between distinct images falls by a factor of 10
#: every ~6 bits (``benchmarks/bench_robustness.py``, ``tail_fit``), so 6 bits less for the
#: variants keeps the whole query as safe as one hash at the list's threshold. Flips and turns
#: of a listed image land within a few bits, so this costs them nothing.
VARIANT_PENALTY: Final = 6


def trimmed_variant(variant: Variant) -> str:
    """``trimmed``, or ``trimmed+flip_horizontal`` and so on for a turn of the picture."""
    return TRIMMED if variant is Variant.ORIGINAL else f"{TRIMMED}+{variant.value}"


def is_variant(variant: str | None) -> bool:
    """Whether a query hash was taken from a transformed image (not the upload as it is)."""
    return variant is not None and variant != Variant.ORIGINAL.value


def query_hashes(
    data: bytes, limits: MediaLimits = DEFAULT_LIMITS, budget: DecodeBudget | None = None
) -> tuple[DecodedImage, list[tuple[Hash, str | None]]]:
    """What to look up for one submitted image, from one decode, each hash with the name of
    the variant it was taken from: PDQ of all 8 rotations and flips, pHash, and the two digests
    (no variant). When the image has a frame (letterbox, padding, a screenshot canvas), the
    picture inside is queried too: PDQ of its 8 rotations and flips (a mirrored repost is
    often letterboxed as well) and pHash; further candidate boxes only as they are."""
    decoded = decode(data, limits, budget)
    queries: list[tuple[Hash, str | None]] = [
        (value, variant.value) for variant, value in pdq_variants(decoded).items()
    ]
    queries.append((phash(decoded), Variant.ORIGINAL.value))
    for position, picture in enumerate(trimmed_pictures(decoded.image)):
        if position == 0:
            queries += [
                (value, trimmed_variant(variant))
                for variant, value in pdq_variants_of(picture).items()
            ]
        else:
            queries.append((pdq_of_image(picture), TRIMMED))
        queries.append((phash_of_image(picture), TRIMMED))
    queries += [(digest(a, data), None) for a in (Algorithm.MD5, Algorithm.SHA256)]
    return decoded, queries
