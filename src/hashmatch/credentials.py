"""Passwords and second factors, as values: Argon2id hashes and RFC 6238 time-based codes.

Pure functions over strings and times; the store keeps the results and the console and the
CLI call these. Argon2id at argon2-cffi's defaults (RFC 9106's second recommended option: 64
MiB, 3 passes) costs ~50 ms a guess on one core, which with the lockout in
:mod:`hashmatch.store.users` puts online guessing out of reach.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import struct
import time
from typing import Final
from urllib.parse import quote

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from hashmatch.errors import InvalidField

MIN_PASSWORD_CHARS: Final = 12
MAX_PASSWORD_CHARS: Final = 1024
TOTP_PERIOD: Final = 30
TOTP_DIGITS: Final = 6
#: Codes one step either side of now are accepted: phone clocks drift.
TOTP_WINDOW: Final = 1

_hasher = PasswordHasher()
#: Verified against when the login is unknown, so that an unknown login costs what a wrong
#: password costs and timing does not tell which logins exist.
_DUMMY_HASH: Final = _hasher.hash("hashmatch: no such login")


def password_rule(password: str) -> str:
    """``password`` if it may be set, else :class:`InvalidField` saying why."""
    if not isinstance(password, str):
        raise InvalidField("password", "must be a string")
    if len(password) < MIN_PASSWORD_CHARS:
        raise InvalidField("password", f"must be at least {MIN_PASSWORD_CHARS} characters")
    if len(password) > MAX_PASSWORD_CHARS:
        raise InvalidField("password", f"must be at most {MAX_PASSWORD_CHARS} characters")
    return password


def hash_password(password: str) -> str:
    return _hasher.hash(password_rule(password))


def verify_password(stored: str | None, password: str) -> bool:
    """Whether ``password`` is the one ``stored`` was made from (``None``: an unknown login,
    checked against a dummy hash all the same)."""
    if len(password) > MAX_PASSWORD_CHARS:
        return False
    try:
        return _hasher.verify(stored or _DUMMY_HASH, password) and stored is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(stored: str) -> bool:
    """Whether ``stored`` was made with weaker parameters than today's."""
    try:
        return _hasher.check_needs_rehash(stored)
    except InvalidHashError:
        return True


def new_password() -> str:
    """A password to hand to a new person once (about 120 bits)."""
    return secrets.token_urlsafe(15)


def new_totp_secret() -> str:
    """A base32 secret of 160 bits, as authenticator apps expect."""
    return base64.b32encode(secrets.token_bytes(20)).decode("ascii")


def _secret_bytes(secret: str) -> bytes:
    cleaned = secret.replace(" ", "").upper()
    return base64.b32decode(cleaned + "=" * (-len(cleaned) % 8))


def totp_code(secret: str, step: int, digits: int = TOTP_DIGITS) -> str:
    """The code for time step ``step`` (RFC 4226's HOTP of the step, SHA-1)."""
    digest = hmac.new(_secret_bytes(secret), struct.pack(">Q", step), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    value = struct.unpack(">I", digest[offset : offset + 4])[0] & 0x7FFFFFFF
    return str(value % 10**digits).zfill(digits)


def totp_step(now: float | None = None) -> int:
    return int((time.time() if now is None else now) // TOTP_PERIOD)


def totp_match(secret: str, code: str, now: float | None = None) -> int | None:
    """The time step ``code`` is valid for (within the window around ``now``), or None."""
    code = code.strip().replace(" ", "")
    if len(code) != TOTP_DIGITS or not code.isascii() or not code.isdigit():
        return None
    current = totp_step(now)
    for step in range(max(0, current - TOTP_WINDOW), current + TOTP_WINDOW + 1):
        if hmac.compare_digest(totp_code(secret, step), code):
            return step
    return None


def totp_uri(secret: str, login: str, issuer: str) -> str:
    """The ``otpauth://`` address an authenticator app reads (as a QR code or typed)."""
    label = quote(f"{issuer}:{login}")
    return f"otpauth://totp/{label}?secret={secret}&issuer={quote(issuer)}&period={TOTP_PERIOD}"
