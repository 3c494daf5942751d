"""Domain errors.

Every error the cores raise is a :class:`HashmatchError` with a stable machine-readable
``code``, given where the class is declared (``class EmptyMedia(MediaError, code=...)``). The
edges translate types, each in one table: HTTP status in ``hashmatch.api.errors`` and process
exit status in ``hashmatch.cli``.
"""

from __future__ import annotations

from typing import Any, ClassVar


class HashmatchError(Exception):
    """Base of every error hashmatch raises on purpose."""

    code: ClassVar[str] = "error"

    def __init_subclass__(cls, code: str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if code is not None:
            cls.code = code

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


# --- media: what was submitted cannot be hashed -------------------------------------------


class MediaError(HashmatchError, code="media_error"):
    """The submitted bytes are not an image we will decode."""


class EmptyMedia(MediaError, code="empty_media"): ...


class MediaTooLarge(MediaError, code="media_too_large"): ...


class TooManyPixels(MediaError, code="too_many_pixels"):
    """Over the pixel cap, or over the memory its decode would take."""


class CorruptMedia(MediaError, code="corrupt_media"):
    """Recognised and allowed, but truncated or corrupt: never hashed from half an image."""


class Busy(MediaError, code="busy"):
    """The service's decode memory is taken by other images: retry shortly (HTTP 503)."""


class VideoTooLong(MediaError, code="video_too_long"):
    """A video whose declared or decoded duration is over the limit (HTTP 413)."""


class TooManyFrames(MediaError, code="too_many_frames"):
    """A video that declares or decodes more frames than the limit (HTTP 413)."""


class DecodeTimeout(MediaError, code="decode_timeout"):
    """Decoding a video took longer than its wall-clock limit: stopped, nothing hashed."""


class InvalidFrameRate(CorruptMedia, code="invalid_frame_rate"):
    """A video stream whose frame rate is zero, negative, not a number or absurd: frames
    cannot be placed in time, so they are not sampled."""


class UnsupportedMedia(MediaError, code="unsupported_media"):
    """Recognised as a format we refuse (SVG, PDF, ZIP, ...) or not recognised at all."""

    def __init__(self, message: str, detected: str = "unknown") -> None:
        super().__init__(message)
        self.detected = detected


# --- hashes and files --------------------------------------------------------------------


class HashFormatError(HashmatchError, code="invalid_hash"):
    """A hash in text form is malformed or names an unknown algorithm."""


class UnknownAlgorithm(HashFormatError, code="unknown_algorithm"): ...


class UnreadableFile(HashmatchError, code="unreadable_file"):
    """A local file the CLI was asked to hash could not be read."""


class ConfigError(HashmatchError, code="invalid_config"): ...


# --- the store ---------------------------------------------------------------------------


class StoreError(HashmatchError, code="store_error"): ...


class NotFound(StoreError, code="not_found"): ...


class NothingMatched(NotFound, code="nothing_matched"):
    """A withdrawal or revival named references or hashes that match no entry."""


class Conflict(StoreError, code="conflict"): ...


class ReadOnlyMirror(Conflict, code="read_only_mirror"):
    """A mirror of a peer's list changes only from its origin (locally: enabled, stricter
    thresholds or label)."""


class InvalidList(StoreError, code="invalid_list"): ...


class InvalidField(InvalidList, code="invalid_field"):
    """A value breaks its field's rule (:mod:`hashmatch.fields`); ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class ImportRejected(StoreError, code="import_rejected"):
    """A strict import met bad rows: nothing was written."""

    def __init__(self, message: str, report: Any = None) -> None:
        super().__init__(message)
        self.report = report


class StoreUnavailable(StoreError, code="database_unavailable"):
    """The database cannot be reached: try again later (HTTP 503 with Retry-After)."""


# --- callers and requests ----------------------------------------------------------------


class Unauthorized(HashmatchError, code="unauthorized"):
    """No key, or a key that is unknown or revoked."""


class Forbidden(HashmatchError, code="forbidden"):
    """The key's roles do not allow this."""


class KeySuspended(Forbidden, code="key_suspended"):
    """The key was suspended (for probing another organisation's hashes, say) until the
    operator reinstates it."""


class PayloadTooLarge(HashmatchError, code="payload_too_large"): ...


class UnsupportedContentType(HashmatchError, code="unsupported_content_type"): ...


class BadRequest(HashmatchError, code="bad_request"): ...


class NotReady(HashmatchError, code="not_ready"): ...


# --- the exchange between instances --------------------------------------------------------


class PeerError(HashmatchError, code="peer_error"):
    """A peer instance could not be reached or answered in error: retried with back-off."""


class PeerRefused(PeerError, code="peer_refused"):
    """A peer sent a page this instance refuses (malformed, oversized, unknown algorithm,
    a threshold above the local bound, ...): nothing of it was applied."""


# --- outcome reports ---------------------------------------------------------------------


class InvalidMatchId(HashmatchError, code="invalid_match_id"):
    """Not a match id this instance issued to the caller's organisation: forged, damaged, or
    another organisation's (the two are never told apart)."""


class InvalidOutcome(HashmatchError, code="invalid_outcome"):
    """An outcome report item breaks a rule (its kind, its time, its attached hash)."""
