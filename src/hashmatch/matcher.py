"""The live matching state: one exact index per algorithm plus entry metadata, kept in sync
with the database's change log.

A query never touches the database: hashes go to the in-memory indexes, and what a hit needs
(list, reference, labels) is held beside them. A follower thread tails the change log from the
cursor the state reflects and applies additions and withdrawals in place, so a change made
through any replica is matched everywhere within a poll interval. Snapshots (the indexes, the
metadata and their cursor) let a restart load fast and replay only the tail.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np

from hashmatch.entry_table import EntryMeta, EntryTable
from hashmatch.errors import StoreUnavailable
from hashmatch.hashing import VARIANT_PENALTY, Algorithm, Hash, is_variant
from hashmatch.index import ExactIndex, HammingIndex
from hashmatch.policy import DEFAULT_BOUNDS, ThresholdBounds
from hashmatch.store import ChangeListener, EntryRow, ListInfo, Store

log = logging.getLogger(__name__)

SNAPSHOT_VERSION: Final = 2
DEFAULT_POLL_SECONDS: Final = 0.2
#: Longest wait between retries while the database is unreachable.
MAX_BACKOFF_SECONDS: Final = 5.0
#: A follower that has not read the change log for this long is reported not ready.
STALE_SECONDS: Final = 30.0


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
    algorithm: Algorithm
    distance: int
    #: The threshold this hit was judged against: the list's (within the instance's bound),
    #: tightened by ``max_distance`` and the variant penalty. Digests: 0.
    threshold: int


def _new_index(algorithm: Algorithm) -> HammingIndex | ExactIndex:
    return HammingIndex(algorithm.bits) if algorithm.perceptual else ExactIndex(algorithm.bits)


class Matcher:
    def __init__(
        self,
        store: Store,
        snapshot_dir: Path | None = None,
        bounds: ThresholdBounds = DEFAULT_BOUNDS,
    ) -> None:
        self.store = store
        self.snapshot_dir = snapshot_dir
        self.bounds = bounds
        self.cursor = 0
        self._indexes = {algorithm: _new_index(algorithm) for algorithm in Algorithm}
        self._entries = EntryTable()
        self._lists: dict[int, ListInfo] = {}
        self._lists_by_name: dict[str, ListInfo] = {}
        self._apply_lock = threading.Lock()
        self._stop = threading.Event()
        self._follower: threading.Thread | None = None
        self._listener: ChangeListener | None = None
        self._problem: str | None = None
        self.last_refresh = 0.0

    # --- loading ----------------------------------------------------------------------------

    def load(self) -> None:
        """Fill the state from the latest snapshot (if any), then catch up with the log."""
        with self._apply_lock:
            loaded = self._load_snapshot()
            if not loaded:
                self._load_from_database()
        self.refresh()
        if not loaded and self.snapshot_dir is not None:
            self.save_snapshot()  # the next start loads this instead of the whole database

    def _load_from_database(self) -> None:
        cursor = self.store.latest_cursor()
        self._reload_lists()
        batches: dict[str, tuple[list[int], list[bytes]]] = {a.value: ([], []) for a in Algorithm}
        metadata = []
        for entry_id, list_id, algorithm_name, value, reference, labels in self.store.live_rows(
            upto_cursor=cursor
        ):
            ids, codes = batches[algorithm_name]
            ids.append(entry_id)
            codes.append(value)
            metadata.append((entry_id, list_id, reference, labels))
        self._entries = EntryTable.build(metadata)
        for name, (ids, codes) in batches.items():
            algorithm = Algorithm(name)
            if ids:
                self._indexes[algorithm].add(*_arrays(algorithm, ids, codes))
            index = self._indexes[algorithm]
            if isinstance(index, HammingIndex):
                index.compact()
        self.cursor = cursor

    def _reload_lists(self) -> None:
        infos = self.store.lists()
        self._lists = {info.id: info for info in infos}
        self._lists_by_name = {info.name: info for info in infos}

    # --- following the change log -----------------------------------------------------------

    def refresh(self) -> int:
        """Apply every change committed after our cursor; returns how many were applied."""
        applied = 0
        with self._apply_lock:
            while True:
                changes = self.store.changes_after(self.cursor, limit=1000)
                if not changes:
                    break
                for change in changes:
                    if change.kind == "add":
                        self._add(self.store.entries_added_by(change.cursor))
                    elif change.kind == "withdraw":
                        self._withdraw(self.store.entries_withdrawn_by(change.cursor))
                    else:
                        self._reload_lists()
                    self.cursor = change.cursor
                    applied += 1
        self.last_refresh = time.monotonic()
        return applied

    def _add(self, rows: Sequence[EntryRow]) -> None:
        if not rows:
            return
        if any(row.list_id not in self._lists for row in rows):
            self._reload_lists()
        for algorithm in Algorithm:
            chosen = [row for row in rows if row.hash.algorithm is algorithm]
            if chosen:
                ids = [row.id for row in chosen]
                codes = [row.hash.value for row in chosen]
                self._indexes[algorithm].add(*_arrays(algorithm, ids, codes))
                for row in chosen:
                    self._entries.add(row.id, EntryMeta(row.list_id, row.reference, row.labels))

    def _withdraw(self, entry_ids: Sequence[int]) -> None:
        if not entry_ids:
            return
        ids = np.asarray(entry_ids, dtype=np.int64)
        for index in self._indexes.values():
            index.remove(ids)
        for entry_id in entry_ids:
            self._entries.discard(entry_id)

    def start(self, poll_seconds: float = DEFAULT_POLL_SECONDS) -> None:
        """Follow the change log in a background thread."""
        if self._follower is not None:
            return
        self._stop.clear()
        self._follower = threading.Thread(
            target=self._follow, args=(poll_seconds,), name="hashmatch-follower", daemon=True
        )
        self._follower.start()

    def stop(self) -> None:
        self._stop.set()
        if self._listener is not None:
            self._listener.wake()
        if self._follower is not None:
            self._follower.join(timeout=10)
            self._follower = None

    def _follow(self, poll_seconds: float) -> None:
        listener = self._listener = self.store.change_listener()
        delay = poll_seconds
        try:
            while not self._stop.is_set():
                listener.wait(delay)
                if self._stop.is_set():
                    break
                try:
                    self.refresh()
                except Exception as exc:
                    # Once per state change, not every poll: the log must stay readable
                    # through an outage, and matching goes on from memory meanwhile.
                    problem = getattr(exc, "message", None) or type(exc).__name__
                    if self._problem is None:
                        log.warning(
                            "cannot follow the change log (%s); matching goes on from memory, "
                            "retrying with backoff",
                            problem,
                            exc_info=not isinstance(exc, StoreUnavailable),
                        )
                    self._problem = problem
                    delay = min(MAX_BACKOFF_SECONDS, delay * 2)
                    continue
                if self._problem is not None:
                    log.warning("following the change log again, at cursor %d", self.cursor)
                self._problem = None
                delay = poll_seconds
        finally:
            self._listener = None
            listener.close()

    def follower_problem(self) -> str | None:
        """Why this replica is not following the change log, or None when it is."""
        if self._problem is not None:
            return self._problem
        if self._follower is not None and time.monotonic() - self.last_refresh > STALE_SECONDS:
            return f"change log not read for over {STALE_SECONDS:.0f} s"
        return None

    # --- matching ---------------------------------------------------------------------------

    def lists(self) -> list[ListInfo]:
        return list(self._lists_by_name.values())

    def list_map(self) -> dict[int, ListInfo]:
        """The lists as this replica has them now, by id (the verdict reads trust from it)."""
        return self._lists

    def get_list(self, name: str) -> ListInfo | None:
        return self._lists_by_name.get(name)

    def size(self, algorithm: Algorithm) -> int:
        return len(self._indexes[algorithm])

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
        every perceptual threshold by that many bits (see :meth:`match_queries`). Disabled
        lists and withdrawn entries never match.
        """
        allowed = None if lists is None else frozenset(lists)
        results: list[list[Match]] = [[] for _ in hashes]
        for algorithm in Algorithm:
            positions = [i for i, h in enumerate(hashes) if h.algorithm is algorithm]
            if not positions:
                continue
            radius = self._search_radius(algorithm, allowed, max_distance)
            if radius is not None and algorithm.perceptual:
                radius -= penalty
            if radius is None or radius < 0:
                continue
            queries = np.frombuffer(
                b"".join(hashes[i].value for i in positions), dtype=np.uint8
            ).reshape(len(positions), algorithm.nbytes)
            lims, distances, ids = self._indexes[algorithm].search(queries, radius)
            for slot, position in enumerate(positions):
                for k in range(int(lims[slot]), int(lims[slot + 1])):
                    found = self._hit(
                        int(ids[k]), int(distances[k]), algorithm, allowed, max_distance, penalty
                    )
                    if found is not None:
                        results[position].append(found)
        return results

    def match_queries(
        self,
        queries: Sequence[tuple[Hash, str | None]],
        *,
        lists: Iterable[str] | None = None,
        max_distance: int | None = None,
    ) -> list[list[Match]]:
        """Matches of each hash of a query (:func:`hashing.query_hashes`): hashes of the
        image as submitted within each list's threshold, those of its other variants within
        the threshold less :data:`hashing.VARIANT_PENALTY`."""
        lists = None if lists is None else frozenset(lists)
        results: list[list[Match]] = [[] for _ in queries]
        for penalised in (False, True):
            positions = [
                i for i, (_, variant) in enumerate(queries) if is_variant(variant) == penalised
            ]
            if not positions:
                continue
            found = self.match(
                [queries[i][0] for i in positions],
                lists=lists,
                max_distance=max_distance,
                penalty=VARIANT_PENALTY if penalised else 0,
            )
            for position, matches in zip(positions, found, strict=True):
                results[position] = matches
        return results

    def _threshold(self, info: ListInfo, algorithm: Algorithm, max_distance: int | None) -> int:
        if not algorithm.perceptual:
            return 0
        threshold = self.bounds.clamp(algorithm, info.thresholds.get(algorithm.value, 0))
        return threshold if max_distance is None else min(threshold, max_distance)

    def _search_radius(
        self, algorithm: Algorithm, allowed: frozenset[str] | None, max_distance: int | None
    ) -> int | None:
        thresholds = [
            self._threshold(info, algorithm, max_distance)
            for info in self._lists.values()
            if info.enabled and (allowed is None or info.name in allowed)
        ]
        return max(thresholds) if thresholds else None

    def _hit(
        self,
        entry_id: int,
        distance: int,
        algorithm: Algorithm,
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
        threshold = self._threshold(info, algorithm, max_distance)
        if algorithm.perceptual:
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
            algorithm,
            distance,
            threshold,
        )

    # --- snapshots --------------------------------------------------------------------------

    def save_snapshot(self) -> Path | None:
        """Write the indexes, metadata and cursor; returns the snapshot folder."""
        if self.snapshot_dir is None:
            return None
        with self._apply_lock:
            folder = self.snapshot_dir / f"snapshot-{self.cursor:012d}"
            if (folder / "manifest.json").is_file():
                return folder  # this cursor is saved already; the state cannot differ
            # Several workers may snapshot the same cursor at once: each stages its own copy.
            staging = self.snapshot_dir / f".staging-{self.cursor:012d}-{os.getpid()}"
            staging.mkdir(parents=True, exist_ok=True)
            for algorithm, index in self._indexes.items():
                index.save(str(staging / f"{algorithm.value}.index"))
            self._entries.save(str(staging / "entries.table"))
            manifest = {"version": SNAPSHOT_VERSION, "cursor": self.cursor}
            (staging / "manifest.json").write_text(json.dumps(manifest))
            try:
                staging.replace(folder)
            except OSError:  # another worker got there first with the same state
                _remove_tree(staging)
        for old in sorted(self.snapshot_dir.glob("snapshot-*"))[:-2]:
            _remove_tree(old)
        return folder

    def _load_snapshot(self) -> bool:
        if self.snapshot_dir is None or not self.snapshot_dir.is_dir():
            return False
        for folder in sorted(self.snapshot_dir.glob("snapshot-*"), reverse=True):
            try:
                manifest = json.loads((folder / "manifest.json").read_text())
                if manifest.get("version") != SNAPSHOT_VERSION:
                    continue
                indexes: dict[Algorithm, HammingIndex | ExactIndex] = {}
                for algorithm in Algorithm:
                    path = str(folder / f"{algorithm.value}.index")
                    loader = HammingIndex if algorithm.perceptual else ExactIndex
                    indexes[algorithm] = loader.load(path)
                entries = EntryTable.load(str(folder / "entries.table"))
            except (OSError, ValueError, KeyError) as exc:
                log.warning("ignoring unreadable snapshot %s: %s", folder.name, exc)
                continue
            self._indexes, self._entries = indexes, entries
            self.cursor = int(manifest["cursor"])
            self._reload_lists()
            return True
        return False


def _arrays(
    algorithm: Algorithm, ids: list[int], codes: list[bytes]
) -> tuple[np.ndarray, np.ndarray]:
    packed = np.frombuffer(b"".join(codes), dtype=np.uint8).reshape(len(ids), algorithm.nbytes)
    return np.asarray(ids, dtype=np.int64), packed.copy()


def _remove_tree(folder: Path) -> None:
    for child in folder.iterdir():
        child.unlink(missing_ok=True)
    folder.rmdir()
