"""What a signal type is, and the values that carry one: :class:`Hash` and :class:`Query`.

A signal type (``pdq``, ``phash``, ``md5``, ``sha256``, ...) is one module that declares
everything the rest of hashmatch needs to know about it: its name and code length, its text
form, how it is computed (from decoded pixels or from the raw bytes), how it is indexed
(Hamming distance or exact equality), its default and largest thresholds, and its quality
rule. The store, the formats, the matcher, the API and the CLI read these declarations through
the registry (:mod:`hashmatch.signals.registry`) and never name a signal type themselves.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from hashmatch.errors import HashFormatError

if TYPE_CHECKING:
    from PIL import Image

_HEX_DIGITS = frozenset(string.hexdigits.lower())


class IndexKind(StrEnum):
    HAMMING = "hamming"  # matched within a distance threshold
    EXACT = "exact"  # matched by equality (digests)
    #: A bag of PDQ frame hashes (a video): its frames go into the PDQ index under frame ids,
    #: and a threshold is the distance at which two frames match.
    FRAMES = "frames"


class Source(StrEnum):
    PIXELS = "pixels"  # computed from the decoded image
    BYTES = "bytes"  # computed from the submitted bytes, without decoding
    VIDEO = "video"  # computed from a video's decoded frames


@runtime_checkable
class SignalType(Protocol):
    """One kind of hash. Subclass it (the members below with bodies are defaults) or
    implement it structurally; register the instance in :mod:`hashmatch.signals.registry`."""

    name: str
    bits: int
    index_kind: IndexKind
    source: Source
    #: Thresholds of new lists, and the largest any list may use (Hamming signals; 0 else).
    default_threshold: int
    max_threshold: int

    def hash_image(self, image: Image.Image) -> Hash:
        """The hash of a decoded image (8-bit RGB or L, at most 512 px a side)."""
        raise TypeError(f"{self.name} is not computed from pixels")

    def hash_bytes(self, data: bytes) -> Hash:
        """The hash of a file's bytes."""
        raise TypeError(f"{self.name} is not computed from bytes")

    def query(self, image: Image.Image, pictures: Sequence[Image.Image]) -> list[Query]:
        """What to look up for a submitted image: the image as it is, and each picture found
        inside a frame (:mod:`hashmatch.media.reframe`) as ``trimmed``."""
        return [Query(self.hash_image(image), ORIGINAL)] + [
            Query(self.hash_image(picture), TRIMMED) for picture in pictures
        ]

    def is_low_quality(self, quality: int | None) -> bool:
        """Whether a hash of this quality deserves a human look before it is trusted."""
        return False

    def parse(self, text: str) -> bytes:
        """The text form (lowercase or uppercase hex by default) -> the packed code."""
        cleaned = text.strip().lower()
        expected = self.nbytes * 2
        if len(cleaned) != expected:
            raise HashFormatError(
                f"{self.name} hash must be {expected} hex digits, got {len(cleaned)}"
            )
        try:
            value = bytes.fromhex(cleaned)
        except ValueError:
            value = b""
        # fromhex also skips spaces, which then shows as a short value.
        if len(value) != self.nbytes:
            bad = sorted(set(cleaned) - _HEX_DIGITS)
            raise HashFormatError(f"{self.name} hash has non-hex characters: {''.join(bad)!r}")
        return value

    def format(self, value: bytes) -> str:
        return value.hex()

    @property
    def nbytes(self) -> int:
        return self.bits // 8

    @property
    def perceptual(self) -> bool:
        """Matched within a distance threshold (a hash, or a video's frames)."""
        return self.index_kind is not IndexKind.EXACT

    @property
    def indexed(self) -> bool:
        """Has an index of its own (a video's frames live in the PDQ index)."""
        return self.index_kind is not IndexKind.FRAMES

    def __reduce__(self) -> tuple[Any, ...]:
        # Sent to another process (parallel hashing), a signal type comes back as the one
        # registered there under its name: signal types are compared by identity.
        from hashmatch.signals.registry import get

        return (get, (self.name,))


@dataclass(frozen=True, slots=True)
class Hash:
    """One hash value. ``value`` holds the packed bits, most significant bit first."""

    algorithm: SignalType
    value: bytes
    quality: int | None = None

    def __post_init__(self) -> None:
        if len(self.value) != self.algorithm.nbytes:
            raise HashFormatError(
                f"{self.algorithm.name} hash must be {self.algorithm.nbytes} bytes, "
                f"got {len(self.value)}"
            )

    @property
    def hex(self) -> str:
        return self.algorithm.format(self.value)

    @property
    def low_quality(self) -> bool:
        return self.algorithm.is_low_quality(self.quality)

    @classmethod
    def from_hex(cls, algorithm: SignalType | str, text: str, quality: int | None = None) -> Hash:
        """Parse a hash's text form, validating length and alphabet."""
        if isinstance(algorithm, str):
            from hashmatch.signals.registry import get

            algorithm = get(algorithm)
        return cls(algorithm, algorithm.parse(text), quality)

    def distance(self, other: Hash) -> int:
        """Hamming distance; only defined between hashes of one algorithm."""
        if other.algorithm is not self.algorithm:
            raise HashFormatError(
                f"cannot compare {self.algorithm.name} with {other.algorithm.name}"
            )
        return (int.from_bytes(self.value, "big") ^ int.from_bytes(other.value, "big")).bit_count()

    def __str__(self) -> str:
        return f"{self.algorithm.name}:{self.hex}"


class Turn(StrEnum):
    """The 8 dihedral transforms of an image, named by what was done to the original."""

    ORIGINAL = "original"
    ROTATE_90 = "rotate90"
    ROTATE_180 = "rotate180"
    ROTATE_270 = "rotate270"
    FLIP_VERTICAL = "flip_vertical"
    FLIP_HORIZONTAL = "flip_horizontal"
    TRANSPOSE = "transpose"
    TRANSVERSE = "transverse"


@dataclass(frozen=True, slots=True)
class Variant:
    """Which transform of a submitted image a query hash was taken from: a turn of the image
    as it is, or of the picture cut out of its frame (``trimmed``)."""

    turn: Turn = Turn.ORIGINAL
    trimmed: bool = False

    @property
    def penalised(self) -> bool:
        """Taken from anything but the image as submitted: each such hash is one more chance
        for an unrelated image to come close (see :data:`.query.VARIANT_PENALTY`)."""
        return self.trimmed or self.turn is not Turn.ORIGINAL

    def __str__(self) -> str:
        if not self.trimmed:
            return self.turn.value
        return "trimmed" if self.turn is Turn.ORIGINAL else f"trimmed+{self.turn.value}"


ORIGINAL = Variant()
TRIMMED = Variant(trimmed=True)


@dataclass(frozen=True, slots=True)
class Query:
    """One hash to look up, and the variant of the submitted image it was taken from
    (``None`` for hashes given as they are, and for digests of the bytes)."""

    hash: Hash
    variant: Variant | None = None

    @property
    def penalised(self) -> bool:
        return self.variant is not None and self.variant.penalised

    @property
    def variant_name(self) -> str | None:
        return None if self.variant is None else str(self.variant)


class Digest(SignalType):
    """A digest of the submitted bytes, matched exactly: one instance per digest function."""

    index_kind = IndexKind.EXACT
    source = Source.BYTES
    default_threshold = 0
    max_threshold = 0

    def __init__(self, name: str, bits: int, function: Callable[[bytes], bytes]) -> None:
        self.name = name
        self.bits = bits
        self._function = function

    def hash_bytes(self, data: bytes) -> Hash:
        return Hash(self, self._function(data))
