"""vPDQ against Meta's reference: its sample videos and the hashes its own tests expect
(``tests/data/vpdq-conformance``, copied from facebook/ThreatExchange, BSD).

Every frame hashed: the same frames, numbered and timed alike, and on the frames both sides rate
of quality >= 50, at most 1 bit apart on average and 8 on any frame (Meta's rule for other
implementations is < 31 a frame). At one hash a second: python-threatexchange's 21 hashes of
``chair-20-sd-bar.mp4``, matched as a bag both ways within 31 bits.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest

from hashmatch.signals.vpdq import QUALITY_CUTOFF, FrameHash, hash_video, parse_frames

DATA = Path(__file__).resolve().parent / "data" / "vpdq-conformance"
VIDEOS = ("chair-20-sd-bar", "doorknob-hd-no-bar")


@functools.cache
def computed(name: str, seconds_per_hash: float, side: int | None) -> tuple[FrameHash, ...]:
    data = (DATA / "videos" / f"{name}.mp4").read_bytes()
    return hash_video(data, seconds_per_hash=seconds_per_hash, side=side).frames


def expected(name: str, side: int | None) -> tuple[FrameHash, ...]:
    suffix = "" if side is None else f"-{side}x{side}"
    return parse_frames((DATA / "expected" / f"{name}{suffix}.txt").read_text())


def distance(a: bytes, b: bytes) -> int:
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).bit_count()


@pytest.mark.parametrize("side", [None, 128], ids=["full-size", "128x128"])
@pytest.mark.parametrize("name", VIDEOS)
def test_every_frame_matches_meta_reference(name: str, side: int | None) -> None:
    ours, theirs = computed(name, 0, side), expected(name, side)
    assert [f.number for f in ours] == [f.number for f in theirs]
    assert [f.timestamp for f in ours] == [f.timestamp for f in theirs]
    distances = [
        distance(a.pdq, b.pdq)
        for a, b in zip(ours, theirs, strict=True)
        if a.quality >= QUALITY_CUTOFF and b.quality >= QUALITY_CUTOFF
    ]
    assert len(distances) >= len(theirs) // 3  # doorknob: half its frames are near-flat
    mean, worst = float(np.mean(distances)), max(distances)
    print(f"{name} {side or 'full'}: mean {mean:.3f} bits, max {worst}, {len(distances)} frames")
    assert mean <= 1 and worst <= 8
    qualities = np.array([a.quality - b.quality for a, b in zip(ours, theirs, strict=True)])
    assert np.abs(qualities).max() <= 10


def test_full_size_frames_equal_the_reference_bit_for_bit() -> None:
    """What the colour conversion buys (see hashmatch.media.video): with PyAV 18, not one bit
    differs on these two videos; a little slack for another FFmpeg's rounding."""
    for name in VIDEOS:
        ours, theirs = computed(name, 0, None), expected(name, None)
        pairs = zip(ours, theirs, strict=True)
        equal = sum((a.pdq, a.quality) == (b.pdq, b.quality) for a, b in pairs)
        assert equal >= 0.99 * len(theirs)


def test_one_hash_a_second_is_every_frame_hash_of_the_sampled_frames() -> None:
    every = {f.number: f for f in computed("doorknob-hd-no-bar", 0, None)}
    sampled = computed("doorknob-hd-no-bar", 1.0, None)
    assert [f.number for f in sampled] == [0, 30, 60, 90]
    assert [f.timestamp for f in sampled] == [0.0, 1.0, 2.0, 3.0]
    assert all(f == every[f.number] for f in sampled)


def test_python_threatexchange_hashes_at_one_a_second() -> None:
    theirs = [
        bytes.fromhex(line)
        for line in (DATA / "expected" / "chair-20-sd-bar.1fps.txt").read_text().split()
    ]
    ours = computed("chair-20-sd-bar", 1.0, None)
    assert len(ours) == len(theirs) == 21
    assert [f.number for f in ours] == list(range(0, 601, 30))
    kept = [f.pdq for f in ours if f.quality >= QUALITY_CUTOFF]
    assert len(kept) == 21
    query = sum(any(distance(a, b) <= 31 for b in theirs) for a in kept) / len(kept)
    compared = sum(any(distance(b, a) <= 31 for a in kept) for b in theirs) / len(theirs)
    assert (query, compared) == (1.0, 1.0)
    assert max(distance(a, b) for a, b in zip(kept, theirs, strict=True)) <= 8
