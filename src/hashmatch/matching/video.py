"""A query video against the live state: listed videos scored as vPDQ scores them, and listed
images found in the video's frames.

vPDQ compares two videos as bags of frames: identical hashes count once, frames under the
quality cut are left out, and a frame matches when any frame of the other video is within the
frame distance. Two percentages follow: of the query's distinct frames, how many found a frame
of the listed video ("query %"), and of the listed video's, how many were found ("listed %").
Each list sets the two it requires (:data:`.policy.VIDEO_PERCENTS`) and its frame distance (its
``vpdq`` threshold). The listed video's frames are in the PDQ index beside the images
(:mod:`.frames`), so one search of the query's distinct frames answers both:

- a hit on a listed video's frame counts towards that video's score;
- a hit on a listed image is the image shown inside the video: it matches within the list's
  PDQ threshold less :data:`~hashmatch.signals.VARIANT_PENALTY` (each of the query's frames is
  one more chance for an unrelated image to come close, as each variant of an image is), and
  reports the time of the frame that found it.

Both feed the same verdict as image hits (allow-lists, bands, match ids).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Final

import numpy as np

from hashmatch.matching.frames import is_frame, split_frame_id
from hashmatch.matching.policy import VIDEO_PERCENTS
from hashmatch.matching.state import Match, MatchState, VideoScore, entry_match
from hashmatch.matching.verdict import Hit
from hashmatch.signals import PDQ, VARIANT_PENALTY, Hash, SignalType, get
from hashmatch.signals.vpdq import QUALITY_CUTOFF, FrameHash
from hashmatch.store import ListInfo

#: A listed video found inside a longer upload by its share of frames alone needs at least
#: this many of its frames found: a video of one or two distinct frames is an image, and is
#: held to the two percentages like a copy.
MIN_CONTAINED_FRAMES: Final = 3
#: Matched frames further apart than this many sampling steps start a new matched stretch.
RANGE_GAP_STEPS: Final = 1.5


@dataclass(frozen=True)
class QueryFrames:
    """A query video's distinct frames over the quality cut, each with every time it shows."""

    codes: np.ndarray  # (n, 32) uint8
    times: tuple[tuple[float, ...], ...]
    #: Seconds between sampled frames (the median gap), for joining matched frames into ranges.
    step: float
    sampled: int  # frames given, before de-duplication and the quality cut

    @classmethod
    def of(cls, frames: Sequence[FrameHash]) -> QueryFrames:
        positions: dict[bytes, int] = {}
        times: list[list[float]] = []
        for frame in frames:
            if frame.quality < QUALITY_CUTOFF:
                continue
            position = positions.setdefault(frame.pdq, len(positions))
            if position == len(times):
                times.append([])
            times[position].append(frame.timestamp)
        codes = np.frombuffer(b"".join(positions), dtype=np.uint8).reshape(len(positions), 32)
        return cls(
            codes.copy(),
            tuple(tuple(t) for t in times),
            _step([frame.timestamp for frame in frames]),
            len(frames),
        )

    def __len__(self) -> int:
        return len(self.times)

    def hashes(self) -> list[Hash]:
        return [Hash(PDQ, row.tobytes()) for row in self.codes]

    def seconds(self, positions: Iterable[int] | None = None) -> int:
        """Distinct whole seconds in which any of the distinct frames shows (``None``: any)."""
        chosen = range(len(self.times)) if positions is None else positions
        return len({math.floor(t) for position in chosen for t in self.times[position]})


@dataclass
class _Tally:
    """One listed video's hits by one query."""

    info: ListInfo
    query: set[int] = field(default_factory=set)
    listed: set[int] = field(default_factory=set)
    best: Match | None = None


@dataclass
class VideoSearch:
    """What one query video found: hits for the verdict, and per distinct query frame its
    frame-level matches (for the probe guard)."""

    hits: list[Hit]
    frame_hashes: list[Hash]
    frame_matches: list[list[Match]]


def search_video(
    state: MatchState,
    query: QueryFrames,
    *,
    lists: Iterable[str] | None = None,
    max_distance: int | None = None,
) -> VideoSearch:
    """Listed videos whose vPDQ scores reach their lists' rule, and listed images found in
    the query's frames; ``lists`` and ``max_distance`` as for :meth:`MatchState.match`."""
    allowed = None if lists is None else frozenset(lists)
    vpdq = get("vpdq")
    chosen = [
        info
        for info in state.list_map().values()
        if info.enabled and (allowed is None or info.name in allowed)
    ]
    frame_matches: list[list[Match]] = [[] for _ in range(len(query))]
    if not chosen or not len(query):
        return VideoSearch([], query.hashes(), frame_matches)
    radius = max(
        max(
            state.threshold(info, PDQ, max_distance) - VARIANT_PENALTY,
            state.threshold(info, vpdq, max_distance),
        )
        for info in chosen
    )
    if radius < 0:
        return VideoSearch([], query.hashes(), frame_matches)
    lims, distances, ids = state.indexes[PDQ].search(query.codes, radius)
    tallies: dict[int, _Tally] = {}
    images: dict[int, Hit] = {}
    by_id = state.list_map()
    for position in range(len(query)):
        for k in range(int(lims[position]), int(lims[position + 1])):
            index_id, distance = int(ids[k]), int(distances[k])
            entry_id, listed_position = (
                split_frame_id(index_id) if is_frame(index_id) else (index_id, -1)
            )
            meta = state.entries.get(entry_id)
            info = by_id.get(meta.list_id) if meta is not None else None
            if meta is None or info is None or not info.enabled:
                continue
            if allowed is not None and info.name not in allowed:
                continue
            signal: SignalType = vpdq if listed_position >= 0 else PDQ
            threshold = state.threshold(info, signal, max_distance)
            if listed_position < 0:
                threshold -= VARIANT_PENALTY
            if distance > threshold:
                continue
            match = entry_match(info, meta, entry_id, signal, distance, threshold)
            # The guard keeps anchors per listed frame, not per video: frames of one video
            # are not near-duplicates of each other.
            frame_matches[position].append(replace(match, entry_id=index_id))
            if listed_position < 0:
                found = replace(match, query_time=query.times[position][0])
                current = images.get(entry_id)
                if current is None or distance < current.match.distance:
                    images[entry_id] = Hit(found, None, position)
                continue
            tally = tallies.setdefault(entry_id, _Tally(info))
            tally.query.add(position)
            tally.listed.add(listed_position)
            if tally.best is None or distance < tally.best.distance:
                tally.best = match
    hits = list(images.values())
    for entry_id, tally in tallies.items():
        scored = _scored(state, query, entry_id, tally)
        if scored is not None:
            hits.append(scored)
    return VideoSearch(hits, query.hashes(), frame_matches)


def _scored(state: MatchState, query: QueryFrames, entry_id: int, tally: _Tally) -> Hit | None:
    video = state.videos.get(entry_id)
    if video is None or tally.best is None:
        return None
    listed_times = np.sort(video.times_ms).astype(np.float64) / 1000
    score = VideoScore(
        query_frames=len(tally.query),
        query_kept=len(query),
        listed_frames=len(tally.listed),
        listed_kept=video.kept,
        query_ranges=ranges(
            sorted(t for position in tally.query for t in query.times[position]), query.step
        ),
        listed_ranges=ranges(video.times_of(tally.listed).tolist(), _step(listed_times)),
        query_seconds=query.seconds(tally.query),
        query_seconds_kept=query.seconds(),
        listed_seconds=video.seconds(tally.listed),
        listed_seconds_kept=video.seconds(),
    )
    if not meets_rule(tally.info, score):
        return None
    return Hit(replace(tally.best, video=score), None, 0)


def meets_rule(info: ListInfo, score: VideoScore) -> bool:
    """Whether ``score`` reaches the list's rule: its two percentages (a copy, a trimmed copy
    or a clip of the listed video), or else its containment share of the listed video, found
    inside a longer upload (a compilation), from at least :data:`MIN_CONTAINED_FRAMES` frames.

    The percentages are of *seconds* holding a matched frame, on each side. With both sides
    sampled once a second they are vPDQ's own percentages; they stay meaningful when a side is
    sampled more densely (a listing at ``1,0.1``, or a platform's frames at another rate),
    where shares of frames would not: a query sampled once a second can meet only about one
    frame in ten of a listing ten times as dense."""
    rule = {name: info.thresholds.get(name, default) for name, default in VIDEO_PERCENTS.items()}
    if score.query_frames == 0:
        return False
    if (
        score.query_coverage >= rule["vpdq_query_percent"]
        and score.listed_coverage >= rule["vpdq_listed_percent"]
    ):
        return True
    contained = rule["vpdq_contained_percent"]
    return (
        contained > 0
        and score.listed_frames >= MIN_CONTAINED_FRAMES
        and score.listed_coverage >= contained
    )


def ranges(times: Sequence[float], step: float) -> tuple[tuple[float, float], ...]:
    """Sorted frame times -> stretches ``(start, end)``: frames closer than
    :data:`RANGE_GAP_STEPS` sampling steps belong to one stretch."""
    if not times:
        return ()
    gap = max(step, 1e-3) * RANGE_GAP_STEPS
    found: list[tuple[float, float]] = []
    start = previous = times[0]
    for moment in times[1:]:
        if moment - previous > gap:
            found.append((round(start, 3), round(previous, 3)))
            start = moment
        previous = moment
    found.append((round(start, 3), round(previous, 3)))
    return tuple(found)


def _step(times: Sequence[float] | np.ndarray) -> float:
    ordered = np.unique(np.asarray(times, dtype=np.float64))
    if ordered.size < 2:
        return 1.0
    return float(np.median(np.diff(ordered)))
