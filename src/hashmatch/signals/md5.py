"""``md5``: the digest of a file's bytes, matched exactly (known copies, byte for byte)."""

from __future__ import annotations

import hashlib
from typing import Final

from hashmatch.signals.types import Digest

MD5: Final = Digest("md5", 128, lambda data: hashlib.md5(data, usedforsecurity=False).digest())
