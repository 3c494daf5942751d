"""Match ids: compact tokens that authenticate themselves, so nothing is written at match time.

A match id carries the entry, its list and the second of the match, and a truncated
HMAC-SHA256 of those and of the matching organisation under a secret of this instance (kept in
the ``instance`` table, shared by every worker and replica). A platform reports an outcome by
sending the id back; :meth:`MatchTokens.verify` recovers the match from the id alone, and
refuses an id that was forged, damaged, or issued to another organisation (the MAC covers the
organisation, so one platform cannot report on another's matches, and the two failures are
indistinguishable to the caller).

Layout before base64url (no padding): version (1 byte), entry id (8), list id (8), seconds
since the epoch (4, unsigned: good until 2106), MAC (16). 37 bytes, 50 characters.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import struct
from dataclasses import dataclass
from typing import Final

from hashmatch.errors import InvalidMatchId

VERSION: Final = 1
MAC_BYTES: Final = 16
_PAYLOAD: Final = struct.Struct(">BQQI")
_BLOCK: Final = 64  # SHA-256's block size
_URLSAFE: Final = bytes.maketrans(b"+/", b"-_")
TOKEN_BYTES: Final = _PAYLOAD.size + MAC_BYTES
#: Characters of a token in text (base64url of 37 bytes, unpadded).
TOKEN_CHARS: Final = (TOKEN_BYTES * 4 + 2) // 3
#: The issuer of matches made by the operator (the CLI without ``--org``): no API key has it.
OPERATOR: Final = ""


def _encode(raw: bytes) -> str:
    """base64url without padding (37 bytes: 50 characters and two '=' dropped)."""
    return binascii.b2a_base64(raw, newline=False).translate(_URLSAFE).decode("ascii")[:TOKEN_CHARS]


@dataclass(frozen=True, slots=True)
class MatchClaim:
    """What a verified match id says."""

    match_id: str
    entry_id: int
    list_id: int
    matched_at: dt.datetime  # UTC, whole seconds


class MatchTokens:
    """Issue and verify match ids with one instance secret."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("a match-token key needs at least 16 bytes")
        # HMAC (RFC 2104) with its two keyed states computed once: each token copies them,
        # which costs a fraction of ``hmac.new`` or even of ``HMAC.copy``.
        if len(key) > _BLOCK:
            key = hashlib.sha256(key).digest()
        key = key.ljust(_BLOCK, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))
        self._organisations: dict[str, bytes] = {}

    def _org(self, organisation: str) -> bytes:
        encoded = self._organisations.get(organisation)
        if encoded is None:
            encoded = organisation.encode()
            if len(self._organisations) < 10_000:
                self._organisations[organisation] = encoded
        return encoded

    def _sign(self, payload: bytes, organisation: str) -> bytes:
        inner = self._inner.copy()
        # The payload has a fixed length, so payload + organisation is unambiguous.
        inner.update(payload + self._org(organisation))
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()[:MAC_BYTES]

    def issue(self, entry_id: int, list_id: int, organisation: str, at: int) -> str:
        """The id of ``organisation``'s match of ``entry_id`` (in ``list_id``) at second ``at``."""
        payload = _PAYLOAD.pack(VERSION, entry_id, list_id, at)
        return _encode(payload + self._sign(payload, organisation))

    def verify(self, token: object, organisation: str) -> MatchClaim:
        """The match ``token`` names, if this instance issued it to ``organisation``."""
        if not isinstance(token, str) or len(token) != TOKEN_CHARS:
            raise InvalidMatchId("not a match id")
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (binascii.Error, ValueError):
            raise InvalidMatchId("not a match id") from None
        if len(raw) != TOKEN_BYTES or raw[0] != VERSION:
            raise InvalidMatchId("not a match id")
        payload, mac = raw[: _PAYLOAD.size], raw[_PAYLOAD.size :]
        if not hmac.compare_digest(mac, self._sign(payload, organisation)):
            raise InvalidMatchId("not a match id issued to this organisation by this instance")
        _, entry_id, list_id, at = _PAYLOAD.unpack(payload)
        # Canonical form only: base64 decoding ignores some trailing bits, and two spellings
        # of one match must not become two reports.
        if _encode(raw) != token:
            raise InvalidMatchId("not a match id")
        return MatchClaim(token, entry_id, list_id, dt.datetime.fromtimestamp(at, dt.UTC))
