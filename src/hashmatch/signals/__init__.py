"""Signal types: the kinds of hash hashmatch computes, stores and matches.

Each built-in signal type is one module below, registered here in one line; see
:mod:`hashmatch.signals.types` for what a signal type declares and
:mod:`hashmatch.signals.registry` for adding one.
"""

from __future__ import annotations

from typing import Final

from hashmatch.signals.md5 import MD5
from hashmatch.signals.pdq import PDQ
from hashmatch.signals.phash import PHASH
from hashmatch.signals.query import VARIANT_PENALTY, hash_bytes, query_hashes
from hashmatch.signals.registry import (
    all_signals,
    get,
    hamming_signals,
    parse_many,
    register,
    registered,
    unregister,
)
from hashmatch.signals.sha256 import SHA256
from hashmatch.signals.types import (
    ORIGINAL,
    TRIMMED,
    Hash,
    IndexKind,
    Query,
    SignalType,
    Source,
    Turn,
    Variant,
)
from hashmatch.signals.vpdq import Vpdq

#: Videos: a bag of PDQ frame hashes (Meta's vPDQ), its frames in the PDQ index.
VPDQ: Final = Vpdq()

for _builtin in (PDQ, PHASH, MD5, SHA256, VPDQ):
    register(_builtin)

#: What ``hashmatch hash`` computes unless told otherwise.
DEFAULT_SIGNALS: Final = (PDQ, MD5)


def parse_hash(text: str, default_algorithm: SignalType | None = None) -> Hash:
    """``"pdq:<hex>"`` / ``"pdq <hex>"``, or the bare text form when ``default_algorithm`` is
    given."""
    from hashmatch.errors import HashFormatError

    stripped = text.strip()
    for separator in (":", " ", "\t"):
        name, found, value = stripped.partition(separator)
        if found:
            return Hash.from_hex(get(name), value)
    if default_algorithm is None:
        raise HashFormatError("hash must be written ALGORITHM:HEX, e.g. pdq:<64 hex digits>")
    return Hash.from_hex(default_algorithm, stripped)


__all__ = [
    "DEFAULT_SIGNALS",
    "MD5",
    "ORIGINAL",
    "PDQ",
    "PHASH",
    "SHA256",
    "TRIMMED",
    "VARIANT_PENALTY",
    "VPDQ",
    "Hash",
    "IndexKind",
    "Query",
    "SignalType",
    "Source",
    "Turn",
    "Variant",
    "all_signals",
    "get",
    "hamming_signals",
    "hash_bytes",
    "parse_hash",
    "parse_many",
    "query_hashes",
    "register",
    "registered",
    "unregister",
]
