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
from hashmatch.matching.policy import DEFAULT_BOUNDS, ThresholdBounds
from hashmatch.signals import VARIANT_PENALTY, Hash, Query, SignalType, all_signals
from hashmatch.store import EntryRow, ListInfo


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


class MatchState:
    def __init__(
        self,
        bounds: ThresholdBounds = DEFAULT_BOUNDS,
        indexes: Mapping[SignalType, CodeIndex] | None = None,
        entries: EntryTable | None = None,
    ) -> None:
        self.bounds = bounds
        given = dict(indexes or {})
        # Every registered signal type has an index, a new one empty.
        self._indexes = {
            signal: given.get(signal) or _new_index(signal) for signal in all_signals()
        }
        self._entries = entries if entries is not None else EntryTable()
        self._lists: dict[int, ListInfo] = {}
        self._lists_by_name: dict[str, ListInfo] = {}

    @classmethod
    def build(
        cls,
        rows: Iterable[tuple[int, int, str, bytes, str | None, str, int | None]],
        bounds: ThresholdBounds = DEFAULT_BOUNDS,
    ) -> MatchState:
        """From live entries as plain columns (id, list id, algorithm, hash, reference,
        labels as JSON text): a full load without an object per row."""
        batches: dict[str, tuple[list[int], list[bytes]]] = {
            s.name: ([], []) for s in all_signals()
        }
        metadata = []
        for entry_id, list_id, algorithm_name, value, reference, labels, origin_id in rows:
            ids, codes = batches[algorithm_name]
            ids.append(entry_id)
            codes.append(value)
            metadata.append((entry_id, list_id, reference, labels, origin_id))
        state = cls(bounds, entries=EntryTable.build(metadata))
        for signal, index in state._indexes.items():
            ids, codes = batches[signal.name]
            if ids:
                index.add(*_arrays(signal, ids, codes))
            index.compact()
        return state

    # --- what it holds ----------------------------------------------------------------------

    @property
    def indexes(self) -> Mapping[SignalType, CodeIndex]:
        return self._indexes

    @property
    def entries(self) -> EntryTable:
        return self._entries

    def lists(self) -> list[ListInfo]:
        return list(self._lists_by_name.values())

    def list_map(self) -> dict[int, ListInfo]:
        """The lists as this replica has them now, by id (the verdict reads trust from it)."""
        return self._lists

    def get_list(self, name: str) -> ListInfo | None:
        return self._lists_by_name.get(name)

    def size(self, algorithm: SignalType) -> int:
        return len(self._indexes[algorithm])

    # --- changes ----------------------------------------------------------------------------

    def set_lists(self, infos: Iterable[ListInfo]) -> None:
        infos = list(infos)
        self._lists = {info.id: info for info in infos}
        self._lists_by_name = {info.name: info for info in infos}

    def knows_lists(self, list_ids: Iterable[int]) -> bool:
        return all(list_id in self._lists for list_id in list_ids)

    def add(self, rows: Sequence[EntryRow]) -> None:
        for signal, index in self._indexes.items():
            chosen = [row for row in rows if row.hash.algorithm is signal]
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

    def _threshold(self, info: ListInfo, signal: SignalType, max_distance: int | None) -> int:
        if not signal.perceptual:
            return 0
        threshold = self.bounds.clamp(signal, info.thresholds.get(signal.name, 0))
        return threshold if max_distance is None else min(threshold, max_distance)

    def _search_radius(
        self, signal: SignalType, allowed: frozenset[str] | None, max_distance: int | None
    ) -> int | None:
        thresholds = [
            self._threshold(info, signal, max_distance)
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
        meta = self._entries.get(entry_id)
        info = self._lists.get(meta.list_id) if meta is not None else None
        if meta is None or info is None or not info.enabled:
            return None
        if allowed is not None and info.name not in allowed:
            return None
        threshold = self._threshold(info, signal, max_distance)
        if signal.perceptual:
            threshold -= penalty
        if distance > threshold:
            return None
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
            None if info.origin is None else _origin(info, meta),
        )


def _origin(info: ListInfo, meta: EntryMeta) -> dict[str, Any]:
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


def _arrays(
    signal: SignalType, ids: list[int], codes: list[bytes]
) -> tuple[np.ndarray, np.ndarray]:
    packed = np.frombuffer(b"".join(codes), dtype=np.uint8).reshape(len(ids), signal.nbytes)
    return np.asarray(ids, dtype=np.int64), packed.copy()
