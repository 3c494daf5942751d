"""Hashes of submitted media: every registered signal type over one decode.

:func:`hash_bytes` is the agencies' side (``hashmatch hash``): the hashes asked for, as they
are. :func:`query_hashes` is the service's side: everything to look up for one submitted
image, each hash with the variant it was taken from.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from hashmatch.media import (
    DEFAULT_LIMITS,
    DecodeBudget,
    DecodedImage,
    MediaLimits,
    check_size,
    decode,
)
from hashmatch.media.reframe import trimmed_pictures
from hashmatch.signals.registry import all_signals
from hashmatch.signals.types import Hash, Query, SignalType, Source

#: Bits by which a match through any variant other than the image as submitted must beat the
#: list's threshold. Every variant is one more chance for an unrelated image to come close:
#: an image's ~10 query hashes make a false match about 10 times as likely as one hash does.
#: On real photographs the tail of distances between distinct images falls by a factor of 10
#: every ~6 bits (``benchmarks/bench_robustness.py``, ``tail_fit``), so 6 bits less for the
#: variants keeps the whole query as safe as one hash at the list's threshold. Flips and turns
#: of a listed image land within a few bits, so this costs them nothing.
VARIANT_PENALTY: Final = 6


def hash_bytes(
    data: bytes,
    algorithms: Sequence[SignalType],
    limits: MediaLimits = DEFAULT_LIMITS,
) -> list[Hash]:
    """Every requested hash of one file's bytes, decoding at most once.

    Signal types computed from pixels decode (and so validate) the image; digests alone do not.
    """
    decoded = None
    if any(a.source is Source.PIXELS for a in algorithms):
        decoded = decode(data, limits)  # checks the size too
    else:
        check_size(len(data), limits)
    return [
        a.hash_bytes(data)
        if decoded is None or a.source is Source.BYTES
        else a.hash_image(decoded.image)
        for a in algorithms
    ]


def query_hashes(
    data: bytes, limits: MediaLimits = DEFAULT_LIMITS, budget: DecodeBudget | None = None
) -> tuple[DecodedImage, list[Query]]:
    """What to look up for one submitted image, from one decode: each registered signal
    type's query of the image (and of the picture inside its frame, if it has one: letterbox,
    padding, a screenshot's canvas), and the digests of the bytes."""
    decoded = decode(data, limits, budget)
    pictures = trimmed_pictures(decoded.image)
    queries: list[Query] = []
    for signal in all_signals():
        if signal.source is Source.PIXELS:
            queries += signal.query(decoded.image, pictures)
        elif signal.source is Source.BYTES:
            queries.append(Query(signal.hash_bytes(data)))
    return decoded, queries
