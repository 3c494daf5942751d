"""``vpdq``: Meta's video hash, PDQ of a video's sampled frames, with their text and packed forms.

A video's hash is a bag of frame hashes (:class:`FrameHash`: frame number, time, PDQ, quality),
computed as Meta's vPDQ reference computes them (sampling and RGB conversion in
:mod:`hashmatch.media.video`, full PDQ of each kept frame here). Frames travel in three forms:

- Meta's text form (:func:`format_frames`, :func:`parse_frames`), one frame a line:
  ``frame_number,quality,pdq_hex,timestamp`` with the time to 3 decimals, as the reference's
  ``vpdq-hash-video`` writes it and its expected files hold it;
- python-threatexchange's JSON (:func:`parse_threatexchange`), read only;
- a packed form for storage and the exchange (:func:`pack_frames`): fixed-size little-endian
  records behind a version byte, whose SHA-256 (:func:`frames_digest`) is the entry's identity.

Times are kept to the millisecond in every form, as Meta's text form keeps them, so that a video
hashed here, written, read back and packed again has the same digest.
"""

from __future__ import annotations

import gc
import hashlib
import json
import math
import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from operator import attrgetter
from typing import Any, BinaryIO, Final

import numpy as np

from hashmatch.errors import HashFormatError
from hashmatch.media.prefetch import prefetched
from hashmatch.media.video import (
    DEFAULT_VIDEO_LIMITS,
    VideoFrame,
    VideoInfo,
    VideoLimits,
    sample_frames,
)
from hashmatch.signals.pdq import _bits
from hashmatch.signals.types import IndexKind, SignalType, Source

#: Meta's cut-off: frames of lower quality are near-flat and dropped before matching.
QUALITY_CUTOFF: Final = 50

#: Most frames one video may carry in any form (27 hours at one hash a second).
MAX_FRAMES: Final = 100_000

#: Frames smaller than this on a side get a zero hash of quality 0, as in Meta's reference
#: (``MIN_HASHABLE_DIM``): PDQ's filters need a few pixels to work on.
MIN_HASHABLE_SIDE: Final = 5

#: Version byte of the packed form.
PACK_VERSION: Final = 1

#: One packed frame: frame number, time in milliseconds, quality, PDQ (41 bytes, no padding).
RECORD: Final = np.dtype(
    [("number", "<u4"), ("timestamp_ms", "<u4"), ("quality", "u1"), ("pdq", "V32")]
)

_PDQ_BYTES: Final = 32
_U32: Final = 2**32
_ZERO_PDQ: Final = bytes(_PDQ_BYTES)
_HEX64: Final = re.compile(r"[0-9a-fA-F]{64}")
_DIGITS: Final = re.compile(r"[0-9]+")


@dataclass(frozen=True, slots=True)
class FrameHash:
    """One hashed frame. ``pdq`` is the 32-byte PDQ, most significant bit first (as
    :attr:`hashmatch.signals.Hash.value`); ``timestamp`` is in seconds."""

    number: int
    timestamp: float
    pdq: bytes
    quality: int

    @property
    def hex(self) -> str:
        return self.pdq.hex()


@dataclass(frozen=True)
class VideoHash:
    """A video's frame hashes in frame order, and what its headers declared."""

    frames: tuple[FrameHash, ...]
    info: VideoInfo | None = None


class Vpdq(SignalType):
    """Videos: an entry is a bag of PDQ frame hashes, identified by :func:`frames_digest`
    (its :class:`Hash` value, 32 bytes); frames match within a PDQ distance threshold.
    Not registered here."""

    name, bits = "vpdq", 256
    index_kind, source = IndexKind.FRAMES, Source.VIDEO
    #: A frame matches a frame within 31 bits (Meta's vPDQ default, as PDQ's); at most PDQ's
    #: bound.
    default_threshold, max_threshold = 31, 51


# --- hashing ------------------------------------------------------------------------------


def hash_frames(frames: Iterable[VideoFrame]) -> Iterator[FrameHash]:
    """PDQ and quality of each frame, as Meta's reference hashes a frame's RGB pixels: at full
    resolution, about 20 ms a 720p frame. At one hash a second that adds 12-27% CPU to decoding
    30 fps H.264 (the chair and pattern samples), 55-60% to a video as cheap to decode as the
    doorknob sample (775 frames a second on one core)."""
    for frame in frames:
        rgb = frame.rgb
        if min(rgb.shape[:2]) < MIN_HASHABLE_SIDE:
            pdq, quality = _ZERO_PDQ, 0
        else:
            bits, quality = _bits(rgb)
            pdq = np.packbits(bits).tobytes()
        yield FrameHash(frame.number, _millisecond(frame.timestamp), pdq, quality)


def hash_video(
    data: bytes | BinaryIO,
    *,
    seconds_per_hash: float | Sequence[float] = 1.0,
    limits: VideoLimits = DEFAULT_VIDEO_LIMITS,
    side: int | None = None,
) -> VideoHash:
    """The vPDQ of a video's bytes: a frame every ``seconds_per_hash`` (0: every frame),
    downsampled to ``side`` x ``side`` first when ``side`` is given. Raises a
    :class:`MediaError` on a video that cannot be decoded within ``limits``."""
    info, frames = sample_frames(data, seconds_per_hash, limits, side=side)
    # Decoding runs ahead in its own thread while frames are hashed here: both release the
    # GIL, so the two overlap on a second core (bench_video.py, speed part, measures it).
    return VideoHash(tuple(hash_frames(prefetched(frames))), info)


def _millisecond(seconds: float) -> float:
    """``seconds`` rounded as ``printf("%.3f")`` rounds it (the decimal value of the double,
    not a half-even rounding of ``seconds * 1000``)."""
    return float(f"{seconds:.3f}")


# --- Meta's text form ---------------------------------------------------------------------


def format_frames(frames: Sequence[FrameHash]) -> str:
    """Meta's text form, byte for byte as its reference writes it."""
    return "".join(f"{f.number},{f.quality},{f.pdq.hex()},{f.timestamp:.3f}\n" for f in frames)


def parse_frames(text: str) -> tuple[FrameHash, ...]:
    """Meta's text form (``frame_number,quality,pdq_hex,timestamp`` a line; blank lines are
    ignored). Raises :class:`HashFormatError` naming the first bad line."""
    frames: list[FrameHash] = []
    last = -1
    for index, raw in enumerate(text.split("\n"), start=1):
        line = raw.strip()
        if not line:
            continue
        fields = line.split(",")
        if len(fields) != 4:
            raise HashFormatError(
                f"line {index}: expected 4 fields (frame_number,quality,pdq_hex,timestamp), "
                f"got {len(fields)}"
            )
        if len(frames) >= MAX_FRAMES:
            raise HashFormatError(f"line {index}: more than {MAX_FRAMES} frames in one video")
        try:
            number = _frame_number(fields[0])
            frame = FrameHash(number, _timestamp(fields[3]), _pdq(fields[2]), _quality(fields[1]))
        except ValueError as exc:
            raise HashFormatError(f"line {index}: {exc}") from None
        if number <= last:
            raise HashFormatError(
                f"line {index}: frame number {number} after {last}: frame numbers must increase"
            )
        last = number
        frames.append(frame)
    return tuple(frames)


def _frame_number(text: str) -> int:
    text = text.strip()
    if not _DIGITS.fullmatch(text):
        raise ValueError(f"frame number must be a non-negative integer, got {text[:20]!r}")
    number = int(text)
    if number >= _U32:
        raise ValueError(f"frame number {text[:20]} is too large")
    return number


def _quality(value: object) -> int:
    if isinstance(value, str):
        text = value.strip()
        if not _DIGITS.fullmatch(text):
            raise ValueError(f"quality must be an integer 0-100, got {text[:20]!r}")
        value = int(text)
    if type(value) is not int or not 0 <= value <= 100:
        raise ValueError(f"quality must be an integer 0-100, got {str(value)[:20]!r}")
    return value


def _pdq(text: str) -> bytes:
    text = text.strip()
    if not _HEX64.fullmatch(text):
        raise ValueError(f"pdq hash must be 64 hex digits, got {text[:70]!r}")
    return bytes.fromhex(text)


def _timestamp(value: object) -> float:
    if isinstance(value, str):
        text = value.strip()
        if "_" in text:
            raise ValueError(f"timestamp must be a number of seconds, got {text[:20]!r}")
        try:
            seconds = float(text)
        except ValueError:
            raise ValueError(f"timestamp must be a number of seconds, got {text[:20]!r}") from None
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise ValueError(f"timestamp must be a number of seconds, got {str(value)[:20]!r}")
    if not math.isfinite(seconds):
        raise ValueError(f"timestamp must be finite, got {seconds}")
    if seconds < 0:
        raise ValueError(f"timestamp must not be negative, got {seconds:g}")
    if seconds * 1000 >= _U32:
        raise ValueError(f"timestamp {seconds:g} s is too large")
    return _millisecond(seconds)


# --- python-threatexchange's JSON ---------------------------------------------------------


def parse_threatexchange(text: str) -> tuple[FrameHash, ...]:
    """python-threatexchange's VPDQ signal string, in either of the forms it has used.

    Found in facebook/ThreatExchange, ``python-threatexchange/threatexchange/extensions/vpdq``:

    - ``vpdq_util.vpdq_to_json`` (``VPDQSignal``'s current form): a JSON list of strings
      ``"pdq_hex,quality,timestamp"``, the time written with ``f"{t:.3}"`` (three significant
      digits: ``"0.0333"``, ``"1.0"``, ``"2e+01"``), and no frame numbers. Frames are numbered
      here by their position in the list (0, 1, 2, ...), and times are as the form gives them.
    - the older ``vpdq_to_json`` / ``OLD_json_to_vpdq`` form (``test_hash.txt``): a JSON
      object keyed by frame number, each ``{"quality": int, "hash": {"w": [16 words]},
      "timestamp": float}``, the hash as PDQ's 16 words of 16 bits, least significant word
      first (its hex is the words in reverse order, four digits each). A ``hash`` given as a
      hex string is read too.

    An empty string is no frames, as ``json_to_vpdq`` reads it. Raises
    :class:`HashFormatError` naming the bad item.
    """
    try:
        value = json.loads(text or "[]")
    except (ValueError, RecursionError) as exc:
        raise HashFormatError(f"not JSON: {str(exc)[:100]}") from None
    if isinstance(value, list):
        items = list(enumerate(value))
        parse = _threatexchange_string
    elif isinstance(value, dict):
        items = [(_key_number(key), item) for key, item in value.items()]
        items.sort(key=lambda pair: pair[0])
        parse = _threatexchange_object
    else:
        raise HashFormatError("expected a JSON list (or object) of vPDQ frames")
    if len(items) > MAX_FRAMES:
        raise HashFormatError(f"more than {MAX_FRAMES} frames in one video")
    frames: list[FrameHash] = []
    for position, (number, item) in enumerate(items):
        if frames and number <= frames[-1].number:
            raise HashFormatError(f"frame {number}: frame numbers must not repeat")
        try:
            frames.append(parse(number, item))
        except ValueError as exc:
            raise HashFormatError(f"frame {number} (item {position + 1}): {exc}") from None
    return tuple(frames)


def _key_number(key: str) -> int:
    try:
        return _frame_number(key)
    except ValueError as exc:
        raise HashFormatError(f"frame key {key[:20]!r}: {exc}") from None


def _threatexchange_string(number: int, item: Any) -> FrameHash:
    if not isinstance(item, str):
        raise ValueError("expected a string 'pdq_hex,quality,timestamp'")
    fields = item.split(",")
    if len(fields) != 3:
        raise ValueError(f"expected 3 fields (pdq_hex,quality,timestamp), got {len(fields)}")
    return FrameHash(number, _timestamp(fields[2]), _pdq(fields[0]), _quality(fields[1]))


def _threatexchange_object(number: int, item: Any) -> FrameHash:
    if not isinstance(item, dict) or not {"quality", "hash", "timestamp"} <= item.keys():
        raise ValueError("expected an object with quality, hash and timestamp")
    code = item["hash"]
    if isinstance(code, dict):
        code = code.get("w")
    if isinstance(code, str):
        pdq = _pdq(code)
    elif (
        isinstance(code, list)
        and len(code) == 16
        and all(type(word) is int and 0 <= word < 2**16 for word in code)
    ):
        pdq = b"".join(word.to_bytes(2, "big") for word in reversed(code))
    else:
        raise ValueError('hash must be {"w": [16 integers 0-65535]} or 64 hex digits')
    return FrameHash(number, _timestamp(item["timestamp"]), pdq, _quality(item["quality"]))


# --- packed form --------------------------------------------------------------------------


_NUMBER, _TIMESTAMP, _QUALITY, _PDQ = map(attrgetter, ("number", "timestamp", "quality", "pdq"))


def pack_frames(frames: Sequence[FrameHash]) -> bytes:
    """The packed form: a version byte, then one :data:`RECORD` a frame (41 bytes,
    little-endian: u32 frame number, u32 time in ms, u8 quality, 32-byte PDQ). Times are
    rounded to the millisecond, which leaves those of this module's frames as they are.

    Raises :class:`HashFormatError` on frames that do not fit it: more than
    :data:`MAX_FRAMES`, frame numbers not increasing or beyond 32 bits, a quality outside
    0-100, a PDQ not of 32 bytes, a time negative, not finite or beyond 32 bits of ms.
    """
    count = len(frames)
    if count > MAX_FRAMES:
        raise HashFormatError(f"{count} frames: a video has at most {MAX_FRAMES}")
    numbers = np.fromiter(map(_NUMBER, frames), dtype=np.int64, count=count)
    seconds = np.fromiter(map(_TIMESTAMP, frames), dtype=np.float64, count=count)
    qualities = np.fromiter(map(_QUALITY, frames), dtype=np.int64, count=count)
    codes = list(map(_PDQ, frames))
    if count:
        if numbers[0] < 0 or numbers[-1] >= _U32 or np.any(np.diff(numbers) <= 0):
            raise HashFormatError("frame numbers must increase, from 0 to 2**32 - 1")
        if np.any((qualities < 0) | (qualities > 100)):
            raise HashFormatError("quality must be 0-100")
        milliseconds = np.rint(seconds * 1000)
        if not np.all(np.isfinite(milliseconds) & (milliseconds >= 0) & (milliseconds < _U32)):
            raise HashFormatError("timestamps must be finite, >= 0 and under 2**32 ms")
        if set(map(len, codes)) != {_PDQ_BYTES}:
            raise HashFormatError(f"every PDQ hash must be {_PDQ_BYTES} bytes")
    records = np.empty(count, dtype=RECORD)
    if count:
        records["number"] = numbers
        records["timestamp_ms"] = milliseconds
        records["quality"] = qualities
        records["pdq"] = np.frombuffer(b"".join(codes), dtype="V32")
    return bytes((PACK_VERSION,)) + records.tobytes()


def unpack_records(blob: bytes) -> np.ndarray:
    """The packed form as a read-only structured array of :data:`RECORD` (no copy), validated
    as :func:`unpack_frames` validates it: the fast path for code that works on arrays."""
    if not blob:
        raise HashFormatError("packed frames are empty: no version byte")
    if blob[0] != PACK_VERSION:
        raise HashFormatError(f"packed frames have version {blob[0]}; expected {PACK_VERSION}")
    size = len(blob) - 1
    if size % RECORD.itemsize:
        raise HashFormatError(
            f"packed frames are {size} bytes after the version byte, not a multiple of "
            f"{RECORD.itemsize}"
        )
    count = size // RECORD.itemsize
    if count > MAX_FRAMES:
        raise HashFormatError(f"{count} packed frames: a video has at most {MAX_FRAMES}")
    records = np.frombuffer(blob, dtype=RECORD, offset=1)
    if count and np.any(records["quality"] > 100):
        raise HashFormatError("packed frames hold a quality above 100")
    if count > 1 and np.any(np.diff(records["number"].astype(np.int64)) <= 0):
        raise HashFormatError("packed frames' numbers do not increase")
    return records


def unpack_frames(blob: bytes) -> tuple[FrameHash, ...]:
    """The frames of :func:`pack_frames`'s form; raises :class:`HashFormatError` on a wrong
    version, a length that is not whole records, or values out of range."""
    records = unpack_records(blob)
    codes = records["pdq"].tobytes()
    pdqs = [codes[i : i + _PDQ_BYTES] for i in range(0, len(codes), _PDQ_BYTES)]
    with _collector_paused():
        return tuple(
            map(
                FrameHash,
                records["number"].tolist(),
                (records["timestamp_ms"] / 1000).tolist(),
                pdqs,
                records["quality"].tolist(),
            )
        )


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Creating 100,000 frames at once triggers the cyclic garbage collector a hundred times
    over objects that can hold no cycle: pausing it takes a third off unpacking."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def frames_digest(frames: Sequence[FrameHash]) -> bytes:
    """The entry's identity: SHA-256 of :func:`pack_frames` (32 bytes)."""
    return hashlib.sha256(pack_frames(frames)).digest()
