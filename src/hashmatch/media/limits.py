"""Every input limit of media decoding: bytes, pixels, and the memory a decode may take,
alone (:class:`MediaLimits`) and together with the decodes running beside it
(:class:`DecodeBudget`)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from hashmatch.errors import (
    Busy,
    EmptyMedia,
    MediaTooLarge,
    TooManyPixels,
)

#: Long side of the image handed to the hashers: Meta's PDQ reference thumbnails to 512.
HASH_SIDE: Final = 512


@dataclass(frozen=True)
class MediaLimits:
    max_bytes: int = 50_000_000
    max_pixels: int = 100_000_000
    #: Peak bytes one decode may allocate, as estimated from the header (:mod:`.cost`): enough
    #: for a 12-megapixel WebP (libwebp keeps two canvases) or a 40-megapixel RGB PNG. A
    #: service shares a :class:`DecodeBudget` among its decodes as well.
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


def check_size(nbytes: int, limits: MediaLimits) -> None:
    """Reject a payload by its size alone, before reading or parsing it."""
    if nbytes == 0:
        raise EmptyMedia("empty file: 0 bytes")
    if nbytes > limits.max_bytes:
        raise MediaTooLarge(f"{nbytes} bytes is over the limit of {limits.max_bytes} bytes")
