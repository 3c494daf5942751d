"""The live matching state of one replica: an exact index per signal type, what each entry
reports (list, reference, labels) and the lists as they are now.

A query never touches the database: hashes go to the in-memory indexes, and what a hit needs is
held beside them. :class:`~hashmatch.matching.follower.Follower` keeps the state in step with
the change log; :mod:`~hashmatch.matching.snapshots` saves and loads it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from hashmatch.index import CodeIndex, ExactIndex, HammingIndex
from hashmatch.matching.entry_table import EntryMeta, EntryTable
from hashmatch.matching.frames import (
    VideoTable,
    distinct_frames,
    frame_ids,
    is_frame,
    split_frame_id,
)
from hashmatch.matching.policy import DEFAULT_BOUNDS, ThresholdBounds
from hashmatch.signals import PDQ, VARIANT_PENALTY, Hash, Query, SignalType
from hashmatch.signals.registry import indexed_signals
from hashmatch.signals.vpdq import unpack_frames
from hashmatch.store import EntryRow, ListInfo
from hashmatch.store.entries import LiveRow


@dataclass(frozen=True, slots=True)
class VideoScore:
    """How much of two videos matched, as vPDQ scores it, and where."""

    #: Distinct query frames (over the quality cut) with a match in the listed video, and of
    #: how many; the same from the listed video's side.
    query_frames: int
    query_kept: int
    listed_frames: int
    listed_kept: int
    #: Matched stretches, ``(start, end)`` in seconds, of the query and of the listed video.
    query_ranges: tuple[tuple[float, float], ...] = ()
    listed_ranges: tuple[tuple[float, float], ...] = ()
    #: Seconds of each side (with a frame over the quality cut) holding a matched frame, and
    #: of how many: what the lists' rules judge (:mod:`.video`).
    query_seconds: int = 0
    query_seconds_kept: int = 0
    listed_seconds: int = 0
    listed_seconds_kept: int = 0

    @property
    def query_percent(self) -> float:
        return _percent(self.query_frames, self.query_kept)

    @property
    def listed_percent(self) -> float:
        return _percent(self.listed_frames, self.listed_kept)

    @property
    def query_coverage(self) -> float:
        return _percent(self.query_seconds, self.query_seconds_kept)

    @property
    def listed_coverage(self) -> float:
        return _percent(self.listed_seconds, self.listed_seconds_kept)


def _percent(part: int, whole: int) -> float:
    return 100.0 * part / whole if whole else 0.0


@dataclass(frozen=True, slots=True)
class Match:
    """One entry within its list's threshold of one query hash."""

    list: str
    list_id: int
    owner: str
    kind: str
    category: str
    entry_id: int
    reference: str | None
    labels: tuple[str, ...]
    algorithm: SignalType
    distance: int
    #: The threshold this hit was judged against: the list's (within the instance's bound),
    #: tightened by ``max_distance`` and the variant penalty. Digests: 0.
    threshold: int
    #: For a mirror's entry: where it comes from (instance, list, its id there, ...).
    origin: dict[str, Any] | None = None
    #: A listed video found by an image (or by one frame): when the matching frame shows in it.
    listed_time: float | None = None
    #: A listed image found by a query video's frame: when that frame shows in the query.
    query_time: float | None = None
    #: A listed video found by a query video: both sides' vPDQ scores and matched stretches.
    video: VideoScore | None = None


class MatchState:
    def __init__(
        self,
        bounds: ThresholdBounds = DEFAULT_BOUNDS,
        indexes: Mapping[SignalType, CodeIndex] | None = None,
        entries: EntryTable | None = None,
        videos: VideoTable | None = None,
    ) -> None:
        self.bounds = bounds
        given = dict(indexes or {})
        # Every registered signal type with an index of its own has one, a new one empty;
        # videos' frames live in the PDQ index.
        self._indexes = {
            signal: given.get(signal) or _new_index(signal) for signal in indexed_signals()
        }
        self._entries = entries if entries is not None else EntryTable()
        self._videos = videos if videos is not None else VideoTable()
        self._lists: dict[int, ListInfo] = {}
        self._lists_by_name: dict[str, ListInfo] = {}

    @classmethod
    def build(cls, rows: Iterable[LiveRow], bounds: ThresholdBounds = DEFAULT_BOUNDS) -> MatchState:
        """From live entries as plain columns (id, list id, algorithm, hash, reference,
        labels as JSON text, origin id, a video's frames): a full load without an object per
        row."""
        batches: dict[str, tuple[list[int], list[bytes]]] = {
            s.name: ([], []) for s in indexed_signals()
        }
        metadata = []
        state = cls(bounds)
        frame_batches: list[tuple[np.ndarray, np.ndarray]] = []
        for entry_id, list_id, algorithm_name, value, reference, labels, origin_id, frames in rows:
            metadata.append((entry_id, list_id, reference, labels, origin_id))
            if frames is not None:
                frame_batches.append(state._add_video(entry_id, frames))
                continue
            ids, codes = batches[algorithm_name]
            ids.append(entry_id)
            codes.append(value)
        state._entries = EntryTable.build(metadata)
        for signal, index in state._indexes.items():
            ids, codes = batches[signal.name]
            if ids:
                index.add(*_arrays(signal, ids, codes))
            if signal is PDQ and frame_batches:
                index.add(*_frame_arrays(frame_batches))
            index.compact()
        return state

    def _add_video(self, entry_id: int, packed: bytes) -> tuple[np.ndarray, np.ndarray]:
        """Hold a listed video's frame table; returns its frames' ids and codes for the PDQ
        index."""
        video, codes = distinct_frames(unpack_frames(packed))
        self._videos.add(entry_id, video)
        return frame_ids(entry_id, video.kept), codes

    # --- what it holds ----------------------------------------------------------------------

    @property
    def indexes(self) -> Mapping[SignalType, CodeIndex]:
        return self._indexes

    @property
    def entries(self) -> EntryTable:
        return self._entries

    @property
    def videos(self) -> VideoTable:
        return self._videos

    def lists(self) -> list[ListInfo]:
        return list(self._lists_by_name.values())

    def list_map(self) -> dict[int, ListInfo]:
        """The lists as this replica has them now, by id (the verdict reads trust from it)."""
        return self._lists

    def get_list(self, name: str) -> ListInfo | None:
        return self._lists_by_name.get(name)

    def live_counts(self) -> dict[int, int]:
        """Live entries per list id, as this replica matches them."""
        return self._entries.counts_by_list()

    def size(self, algorithm: SignalType) -> int:
        """Hashes held for ``algorithm``: for videos, listed videos (their frames are
        counted in the PDQ index)."""
        index = self._indexes.get(algorithm)
        return len(self._videos) if index is None else len(index)

    # --- changes ----------------------------------------------------------------------------

    def set_lists(self, infos: Iterable[ListInfo]) -> None:
        infos = list(infos)
        self._lists = {info.id: info for info in infos}
        self._lists_by_name = {info.name: info for info in infos}

    def knows_lists(self, list_ids: Iterable[int]) -> bool:
        return all(list_id in self._lists for list_id in list_ids)

    def add(self, rows: Sequence[EntryRow]) -> None:
        videos = [row for row in rows if row.frames is not None]
        if videos:
            batches = [self._add_video(row.id, row.frames) for row in videos if row.frames]
            self._indexes[PDQ].add(*_frame_arrays(batches))
            for row in videos:
                meta = EntryMeta(row.list_id, row.reference, row.labels, row.origin_id)
                self._entries.add(row.id, meta)
        for signal, index in self._indexes.items():
            chosen = [row for row in rows if row.hash.algorithm is signal and row.frames is None]
            if chosen:
                ids = [row.id for row in chosen]
                codes = [row.hash.value for row in chosen]
                index.add(*_arrays(signal, ids, codes))
                for row in chosen:
                    meta = EntryMeta(row.list_id, row.reference, row.labels, row.origin_id)
                    self._entries.add(row.id, meta)

    def withdraw(self, entry_ids: Sequence[int]) -> None:
        if not entry_ids:
            return
        ids = np.asarray(entry_ids, dtype=np.int64)
        for index in self._indexes.values():
            index.remove(ids)
        for entry_id in entry_ids:
            video = self._videos.pop(entry_id)
            if video is not None:
                self._indexes[PDQ].remove(frame_ids(entry_id, video.kept))
            self._entries.discard(entry_id)

    # --- matching ---------------------------------------------------------------------------

    def match(
        self,
        hashes: Sequence[Hash],
        *,
        lists: Iterable[str] | None = None,
        max_distance: int | None = None,
        penalty: int = 0,
    ) -> list[list[Match]]:
        """Matches of each hash, closest first, within each list's own threshold.

        Thresholds are capped by the instance's bounds; ``max_distance`` can only tighten
        them; ``lists`` restricts the lists searched (``None``: all); ``penalty`` tightens
        every distance threshold by that many bits (see :meth:`match_queries`). Disabled
        lists and withdrawn entries never match.
        """
        allowed = None if lists is None else frozenset(lists)
        results: list[list[Match]] = [[] for _ in hashes]
        for signal, index in self._indexes.items():
            positions = [i for i, h in enumerate(hashes) if h.algorithm is signal]
            if not positions:
                continue
            radius = self._search_radius(signal, allowed, max_distance)
            if radius is not None and signal.perceptual:
                radius -= penalty
            if radius is None or radius < 0:
                continue
            queries = np.frombuffer(
                b"".join(hashes[i].value for i in positions), dtype=np.uint8
            ).reshape(len(positions), signal.nbytes)
            lims, distances, ids = index.search(queries, radius)
            for slot, position in enumerate(positions):
                for k in range(int(lims[slot]), int(lims[slot + 1])):
                    found = self._hit(
                        int(ids[k]), int(distances[k]), signal, allowed, max_distance, penalty
                    )
                    if found is not None:
                        results[position].append(found)
        return results

    def match_queries(
        self,
        queries: Sequence[Query],
        *,
        lists: Iterable[str] | None = None,
        max_distance: int | None = None,
    ) -> list[list[Match]]:
        """Matches of each hash of a query (:func:`hashmatch.signals.query_hashes`): hashes of
        the image as submitted within each list's threshold, those of its other variants within
        the threshold less :data:`hashmatch.signals.VARIANT_PENALTY`."""
        lists = None if lists is None else frozenset(lists)
        results: list[list[Match]] = [[] for _ in queries]
        for penalised in (False, True):
            positions = [i for i, query in enumerate(queries) if query.penalised == penalised]
            if not positions:
                continue
            found = self.match(
                [queries[i].hash for i in positions],
                lists=lists,
                max_distance=max_distance,
                penalty=VARIANT_PENALTY if penalised else 0,
            )
            for position, matches in zip(positions, found, strict=True):
                results[position] = matches
        return results

    def threshold(self, info: ListInfo, signal: SignalType, max_distance: int | None) -> int:
        """The distance at which ``info`` matches ``signal``: its own (a video's frame
        distance defaults to the signal's, for lists made before videos), within the
        instance's bound, tightened by ``max_distance``."""
        if not signal.perceptual:
            return 0
        fallback = 0 if signal.indexed else signal.default_threshold
        threshold = self.bounds.clamp(signal, info.thresholds.get(signal.name, fallback))
        return threshold if max_distance is None else min(threshold, max_distance)

    def _search_radius(
        self, signal: SignalType, allowed: frozenset[str] | None, max_distance: int | None
    ) -> int | None:
        thresholds = [
            self.threshold(info, signal, max_distance)
            for info in self._lists.values()
            if info.enabled and (allowed is None or info.name in allowed)
        ]
        return max(thresholds) if thresholds else None

    def _hit(
        self,
        entry_id: int,
        distance: int,
        signal: SignalType,
        allowed: frozenset[str] | None,
        max_distance: int | None,
        penalty: int,
    ) -> Match | None:
        listed_time = None
        if is_frame(entry_id):
            entry_id, position = split_frame_id(entry_id)
            video = self._videos.get(entry_id)
            if video is None:
                return None
            listed_time = video.time_of(position)
        meta = self._entries.get(entry_id)
        info = self._lists.get(meta.list_id) if meta is not None else None
        if meta is None or info is None or not info.enabled:
            return None
        if allowed is not None and info.name not in allowed:
            return None
        threshold = self.threshold(info, signal, max_distance)
        if signal.perceptual:
            threshold -= penalty
        if distance > threshold:
            return None
        return entry_match(info, meta, entry_id, signal, distance, threshold, listed_time)


def entry_match(
    info: ListInfo,
    meta: EntryMeta,
    entry_id: int,
    signal: SignalType,
    distance: int,
    threshold: int,
    listed_time: float | None = None,
) -> Match:
    """A hit on entry ``entry_id`` of list ``info``, as every search reports it."""
    return Match(
        info.name,
        info.id,
        info.owner,
        info.kind,
        info.category,
        entry_id,
        meta.reference,
        meta.labels,
        signal,
        distance,
        threshold,
        None if info.origin is None else origin_of(info, meta),
        listed_time,
    )


def origin_of(info: ListInfo, meta: EntryMeta) -> dict[str, Any]:
    """What a match on a mirror says of where the entry comes from."""
    origin = info.origin or {}
    return {
        "instance": origin.get("origin_instance"),
        "peer": origin.get("peer"),
        "list": origin.get("list"),
        "owner": origin.get("owner"),
        "category": origin.get("category"),
        "jurisdiction": origin.get("jurisdiction"),
        "entry_id": meta.origin_id,
    }


def _new_index(signal: SignalType) -> CodeIndex:
    return HammingIndex(signal.bits) if signal.perceptual else ExactIndex(signal.bits)


def _frame_arrays(batches: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    ids = np.concatenate([ids for ids, _ in batches]) if batches else np.empty(0, np.int64)
    codes = [codes for _, codes in batches]
    return ids, np.concatenate(codes) if codes else np.empty((0, PDQ.nbytes), np.uint8)


def _arrays(
    signal: SignalType, ids: list[int], codes: list[bytes]
) -> tuple[np.ndarray, np.ndarray]:
    packed = np.frombuffer(b"".join(codes), dtype=np.uint8).reshape(len(ids), signal.nbytes)
    return np.asarray(ids, dtype=np.int64), packed.copy()
