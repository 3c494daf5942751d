"""Listed videos in the matcher: their frames in the PDQ index, and what a frame hit needs.

A video entry's distinct frames (identical PDQ hashes once, frames under vPDQ's quality cut
left out) go into the same PDQ index as images, each under a *frame id* that carries its entry
id and its position among the entry's distinct frames. One search then answers images and
videos alike: a query image finds a listed video's frame, and a query video's frames find
listed images. What a hit reports (the entry's list and reference) is the entry table's; when
in the video the frame comes, and how many distinct frames the video has (the denominator of
vPDQ's "listed %"), is this module's :class:`VideoTable`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np

from hashmatch.index.files import load_arrays, save_arrays
from hashmatch.signals.vpdq import QUALITY_CUTOFF, FrameHash

#: Frame ids have this bit set; entry ids (database ids) never reach it.
FRAME_FLAG: Final = 1 << 62
#: Low bits of a frame id: the frame's position among its entry's distinct frames.
POSITION_BITS: Final = 20
MAX_DISTINCT_FRAMES: Final = 1 << POSITION_BITS
_POSITION_MASK: Final = MAX_DISTINCT_FRAMES - 1


def frame_ids(entry_id: int, count: int) -> np.ndarray:
    """The ids of an entry's ``count`` distinct frames."""
    base = FRAME_FLAG | (entry_id << POSITION_BITS)
    return base + np.arange(count, dtype=np.int64)


def is_frame(index_id: int) -> bool:
    return bool(index_id & FRAME_FLAG)


def split_frame_id(index_id: int) -> tuple[int, int]:
    """A frame id -> (entry id, position among the entry's distinct frames)."""
    return (index_id & ~FRAME_FLAG) >> POSITION_BITS, index_id & _POSITION_MASK


@dataclass(frozen=True)
class ListedVideo:
    """One listed video as the matcher needs it: per frame (in order) its time in
    milliseconds and which distinct frame it is (-1: under the quality cut)."""

    times_ms: np.ndarray  # int64
    distinct: np.ndarray  # int32
    kept: int  # distinct frames at or over the quality cut

    def time_of(self, position: int) -> float:
        """When distinct frame ``position`` first shows, in seconds."""
        rows = np.flatnonzero(self.distinct == position)
        return float(self.times_ms[rows[0]]) / 1000 if rows.size else 0.0

    def seconds(self, positions: Iterable[int] | None = None) -> int:
        """Distinct whole seconds in which any of the distinct frames shows (``None``: any
        frame over the quality cut)."""
        if positions is None:
            rows = self.distinct >= 0
        else:
            rows = np.isin(self.distinct, np.fromiter(positions, dtype=np.int32))
        return int(np.unique(self.times_ms[rows] // 1000).size)

    def times_of(self, positions: Iterable[int]) -> np.ndarray:
        """Every time (seconds, sorted) at which any of the distinct frames shows."""
        wanted = np.fromiter(positions, dtype=np.int32)
        rows = np.isin(self.distinct, wanted)
        return np.sort(self.times_ms[rows]).astype(np.float64) / 1000


def distinct_frames(frames: Sequence[FrameHash]) -> tuple[ListedVideo, np.ndarray]:
    """A video's frames -> its :class:`ListedVideo` and the codes of its distinct frames
    ((kept, 32) uint8, in order of first appearance), as vPDQ compares videos: identical
    hashes once, frames of quality under :data:`QUALITY_CUTOFF` left out."""
    positions: dict[bytes, int] = {}
    distinct = np.full(len(frames), -1, dtype=np.int32)
    times = np.empty(len(frames), dtype=np.int64)
    for row, frame in enumerate(frames):
        times[row] = round(frame.timestamp * 1000)
        if frame.quality >= QUALITY_CUTOFF:
            distinct[row] = positions.setdefault(frame.pdq, len(positions))
    if len(positions) > MAX_DISTINCT_FRAMES:
        raise ValueError(f"a video has at most {MAX_DISTINCT_FRAMES} distinct frames")
    codes = np.frombuffer(b"".join(positions), dtype=np.uint8).reshape(len(positions), 32)
    return ListedVideo(times, distinct, len(positions)), codes.copy()


class VideoTable:
    """The listed videos of a replica, by entry id."""

    def __init__(self, videos: dict[int, ListedVideo] | None = None) -> None:
        self._videos: dict[int, ListedVideo] = dict(videos or {})
        self._frames = sum(video.kept for video in self._videos.values())

    def __len__(self) -> int:
        return len(self._videos)

    def __contains__(self, entry_id: object) -> bool:
        return entry_id in self._videos

    def get(self, entry_id: int) -> ListedVideo | None:
        return self._videos.get(entry_id)

    def add(self, entry_id: int, video: ListedVideo) -> None:
        self.pop(entry_id)
        self._videos[entry_id] = video
        self._frames += video.kept

    def pop(self, entry_id: int) -> ListedVideo | None:
        video = self._videos.pop(entry_id, None)
        if video is not None:
            self._frames -= video.kept
        return video

    def frame_count(self) -> int:
        """Distinct frames held in the PDQ index for all listed videos."""
        return self._frames

    def save(self, path: str) -> None:
        ids = np.fromiter(self._videos, dtype=np.int64, count=len(self._videos))
        videos = [self._videos[int(i)] for i in ids]
        offsets = np.zeros(len(videos) + 1, dtype=np.int64)
        np.cumsum([v.times_ms.size for v in videos], out=offsets[1:])
        empty64, empty32 = np.empty(0, np.int64), np.empty(0, np.int32)
        arrays = {
            "ids": ids,
            "offsets": offsets,
            "kept": np.asarray([v.kept for v in videos], dtype=np.int64),
            "times_ms": np.concatenate([v.times_ms for v in videos]) if videos else empty64,
            "distinct": np.concatenate([v.distinct for v in videos]) if videos else empty32,
        }
        save_arrays(path, {"kind": "videos"}, arrays)

    @classmethod
    def load(cls, path: str) -> VideoTable:
        _, arrays = load_arrays(path, kind="videos")
        ids, offsets, kept = arrays["ids"], arrays["offsets"], arrays["kept"]
        times, distinct = arrays["times_ms"], arrays["distinct"]
        if offsets.size != ids.size + 1 or kept.size != ids.size or times.size != distinct.size:
            raise ValueError(f"{path}: inconsistent video table")
        videos = {
            int(entry_id): ListedVideo(
                times[offsets[i] : offsets[i + 1]],
                distinct[offsets[i] : offsets[i + 1]],
                int(kept[i]),
            )
            for i, entry_id in enumerate(ids)
        }
        return cls(videos)
