"""Untrusted bytes in, a safe decoded image out. Every input limit lives here.

- :mod:`.identify`: the format, from magic bytes; only allowlisted formats reach Pillow.
- :mod:`.limits`: the byte, pixel and decode-memory caps, and the memory budget decodes share.
- :mod:`.cost`: what a decode will take, estimated from the header before any pixel is decoded.
- :mod:`.decode`: the decode itself, as Meta's PDQ reference prepares images.
- :mod:`.modes`: 8-bit RGB or L at the hash side, without full-size float copies.
- :mod:`.reframe`: the picture inside a frame (bars, padding, a screenshot's canvas).
"""

from hashmatch.media.decode import DecodedImage, as_rgb_array, decode
from hashmatch.media.identify import ALLOWED_FORMATS, identify
from hashmatch.media.limits import (
    DEFAULT_LIMITS,
    HASH_SIDE,
    DecodeBudget,
    MediaLimits,
    check_size,
)

__all__ = [
    "ALLOWED_FORMATS",
    "DEFAULT_LIMITS",
    "HASH_SIDE",
    "DecodeBudget",
    "DecodedImage",
    "MediaLimits",
    "as_rgb_array",
    "check_size",
    "decode",
    "identify",
]
