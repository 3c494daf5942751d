"""``sha256``: the digest of a file's bytes, matched exactly."""

from __future__ import annotations

import hashlib
from typing import Final

from hashmatch.signals.types import Digest

SHA256: Final = Digest("sha256", 256, lambda data: hashlib.sha256(data).digest())
