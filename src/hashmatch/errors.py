"""Domain errors.

Every error the cores raise is a :class:`HashmatchError` with a stable machine-readable
``code``. The edges translate codes, not exception types: HTTP status in
``hashmatch.api.errors`` and process exit status in ``hashmatch.cli``, each in one table.
"""

from __future__ import annotations

from typing import Any


class HashmatchError(Exception):
    """Base of every error hashmatch raises on purpose."""

    code = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


class MediaError(HashmatchError):
    """The submitted bytes are not an image we will decode."""

    code = "media_error"


class EmptyMedia(MediaError):
    code = "empty_media"


class MediaTooLarge(MediaError):
    code = "media_too_large"


class UnsupportedMedia(MediaError):
    """Recognised as a format we refuse (SVG, PDF, ZIP, ...) or not recognised at all."""

    code = "unsupported_media"

    def __init__(self, message: str, detected: str = "unknown") -> None:
        super().__init__(message)
        self.detected = detected


class TooManyPixels(MediaError):
    code = "too_many_pixels"


class CorruptMedia(MediaError):
    """Recognised and allowed, but truncated or corrupt: never hashed from half an image."""

    code = "corrupt_media"


class HashFormatError(HashmatchError):
    """A hash in text form is malformed or names an unknown algorithm."""

    code = "invalid_hash"


class UnknownAlgorithm(HashFormatError):
    code = "unknown_algorithm"


class ConfigError(HashmatchError):
    code = "invalid_config"


class UnreadableFile(HashmatchError):
    """A local file the CLI was asked to hash could not be read."""

    code = "unreadable_file"


class StoreError(HashmatchError):
    code = "store_error"


class NotFound(StoreError):
    code = "not_found"


class Conflict(StoreError):
    code = "conflict"


class InvalidList(StoreError):
    code = "invalid_list"


class InvalidField(InvalidList):
    """A value breaks its field's rule (:mod:`hashmatch.fields`); ``field`` names it."""

    code = "invalid_field"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class StoreUnavailable(StoreError):
    """The database cannot be reached: try again later (HTTP 503 with Retry-After)."""

    code = "database_unavailable"


class ImportRejected(StoreError):
    """A strict import met bad rows: nothing was written."""

    code = "import_rejected"

    def __init__(self, message: str, report: Any = None) -> None:
        super().__init__(message)
        self.report = report


class Unauthorized(HashmatchError):
    """No key, or a key that is unknown or revoked."""

    code = "unauthorized"


class Forbidden(HashmatchError):
    """The key's roles do not allow this."""

    code = "forbidden"


class KeySuspended(Forbidden):
    """The key was suspended (e.g. for probing another organisation's hashes) until the
    operator reinstates it."""

    code = "key_suspended"


class NothingMatched(NotFound):
    """A withdrawal or revival named references or hashes that match no entry."""

    code = "nothing_matched"


class PayloadTooLarge(HashmatchError):
    code = "payload_too_large"


class UnsupportedContentType(HashmatchError):
    code = "unsupported_content_type"


class NotReady(HashmatchError):
    code = "not_ready"


class Busy(MediaError):
    """The service's decode memory is taken by other images: retry shortly (HTTP 503)."""

    code = "busy"


class BadRequest(HashmatchError):
    code = "bad_request"
