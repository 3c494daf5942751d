"""Exact Hamming range search over packed codes, with additions and removals in place.

:class:`HammingIndex` returns every stored code within ``max_distance`` of a query, with its
exact distance, and nothing else. It keeps two segments:

- the *main* segment: codes sorted by id, indexed by multi-index hashing tables
  (:mod:`hashmatch.index.mih`) once it is large enough, otherwise scanned flat;
- the *delta* segment: codes added since the main segment was built, scanned flat.

Removal clears a row's live flag; re-adding an id removes the old row first. When the delta
grows past a limit, a compaction merges it into a new main segment, in a background thread for
large indexes; removals made meanwhile are replayed onto the result, so search results never
depend on whether compaction has run. Searches read one immutable snapshot reference and take
no lock; writers serialise on a lock. Distances are computed by FAISS's SIMD Hamming kernels.

"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace

import numpy as np

from hashmatch.index.checks import (
    SearchResult,
    check_codes,
    check_distance,
    check_ids,
    empty_result,
    pack_results,
)
from hashmatch.index.files import load_arrays, save_arrays
from hashmatch.index.kernels import distances, range_scan
from hashmatch.index.mih import Tables

#: Below this many rows a flat SIMD scan beats the tables (and costs no memory).
FLAT_ROWS = 32_768
#: Rows added since the last build before a compaction is started.
DELTA_LIMIT = 8_192
#: Compactions of main segments up to this size run inline (they take milliseconds).
INLINE_COMPACTION_ROWS = 262_144
#: From this many rows on, a flat scan asks FAISS for the hits only.
_RANGE_SCAN_ROWS = 65_536
#: Queries searched together: their probes and candidates are gathered in one pass.
_QUERY_CHUNK = 64
#: Cost of one table probe / one verified candidate, in codes of a flat SIMD scan (both are
#: cache misses; a flat scan streams). Measured with benchmarks/bench_index.py.
_PROBE_COST = 20.0
_CANDIDATE_COST = 20.0


@dataclass(frozen=True)
class _Segment:
    """Rows of one segment. ``alive`` flips True -> False in place (removal); nothing else
    changes once published, except that the delta appends rows beyond ``count``."""

    codes: np.ndarray
    ids: np.ndarray
    alive: np.ndarray
    count: int

    @classmethod
    def empty(cls, nbytes: int, capacity: int = 0) -> _Segment:
        return cls(
            np.zeros((capacity, nbytes), np.uint8),
            np.zeros(capacity, np.int64),
            np.zeros(capacity, bool),
            0,
        )


@dataclass(frozen=True)
class _State:
    main: _Segment  # ids strictly increasing
    tables: Tables | None
    delta: _Segment
    live: int


class HammingIndex:
    """Exact range search over ``bits``-bit codes (a multiple of 64), keyed by int64 ids."""

    def __init__(self, bits: int, *, delta_limit: int = DELTA_LIMIT) -> None:
        if bits <= 0 or bits % 64:
            raise ValueError(f"bits must be a positive multiple of 64, got {bits}")
        self.bits = bits
        self.code_size = bits // 8
        self._delta_limit = delta_limit
        self._lock = threading.Lock()
        self._compacting: threading.Thread | None = None
        self._removed_while_compacting: list[np.ndarray] = []
        empty = _Segment.empty(self.code_size)
        self._state = _State(empty, None, empty, 0)

    # --- reading ----------------------------------------------------------------------------

    def __len__(self) -> int:
        return self._state.live

    @property
    def nbytes(self) -> int:
        """Bytes held by the index's arrays (codes, ids, flags, tables, delta)."""
        state = self._state
        segments = (state.main, state.delta)
        held = sum(s.codes.nbytes + s.ids.nbytes + s.alive.nbytes for s in segments)
        return held + (state.tables.nbytes if state.tables is not None else 0)

    def search(self, queries: np.ndarray, max_distance: int) -> SearchResult:
        """Every stored code within ``max_distance`` (inclusive) of each query.

        Returns ``(lims, distances, ids)``: the results of query ``i`` are
        ``ids[lims[i]:lims[i+1]]`` at ``distances[lims[i]:lims[i+1]]``, closest first.
        """
        queries = check_codes(queries, self.code_size, "queries")
        radius = check_distance(max_distance, self.bits)
        state = self._state
        if state.live == 0:
            return empty_result(queries.shape[0])
        tables = state.tables
        use_tables = tables is not None and self._tables_pay_off(tables, radius)
        per_query: list[tuple[np.ndarray, np.ndarray]] = []
        for start in range(0, queries.shape[0], _QUERY_CHUNK):
            chunk = queries[start : start + _QUERY_CHUNK]
            if use_tables and tables is not None:
                per_query.extend(self._search_tables(state.main, tables, chunk, radius))
            else:
                per_query.extend(self._search_flat(state.main, q, radius) for q in chunk)
        if state.delta.count:
            for i, query in enumerate(queries):
                delta_ids, delta_dists = self._search_flat(state.delta, query, radius)
                if delta_ids.size:
                    main_ids, main_dists = per_query[i]
                    per_query[i] = (
                        np.concatenate([main_ids, delta_ids]),
                        np.concatenate([main_dists, delta_dists]),
                    )
        return pack_results(per_query)

    @staticmethod
    def _tables_pay_off(tables: Tables, radius: int) -> bool:
        return tables.cost(radius, _PROBE_COST, _CANDIDATE_COST) < tables.rows

    @staticmethod
    def _search_tables(
        main: _Segment, tables: Tables, queries: np.ndarray, radius: int
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        values = [int.from_bytes(query.tobytes(), "big") for query in queries]
        rows, bounds = tables.candidates(values, radius)
        dists = np.empty(rows.size, dtype=np.int32)
        candidate_codes = np.take(main.codes, rows, axis=0)
        for i, query in enumerate(queries):
            lo, hi = int(bounds[i]), int(bounds[i + 1])
            dists[lo:hi] = distances(query, candidate_codes[lo:hi])
        hit = np.flatnonzero(dists <= radius)
        hit = hit[main.alive[rows[hit]]]
        if hit.size == 0:  # the common case: the upload matches nothing
            return [(np.empty(0, np.int64), np.empty(0, np.int32))] * len(values)
        owner = np.searchsorted(bounds, hit, side="right") - 1
        # A row found by several tables counts once: unique over (query, row).
        _, first = np.unique(owner * main.count + rows[hit], return_index=True)
        owner, found_rows, found_dists = owner[first], rows[hit][first], dists[hit][first]
        splits = np.searchsorted(owner, np.arange(1, len(values)))
        return [
            (main.ids[r], d)
            for r, d in zip(
                np.split(found_rows, splits), np.split(found_dists, splits), strict=True
            )
        ]

    @staticmethod
    def _search_flat(
        segment: _Segment, query: np.ndarray, radius: int
    ) -> tuple[np.ndarray, np.ndarray]:
        if segment.count == 0:
            return np.empty(0, np.int64), np.empty(0, np.int32)
        if segment.count < _RANGE_SCAN_ROWS:
            dists = distances(query, segment.codes[: segment.count])
            rows = np.flatnonzero((dists <= radius) & segment.alive[: segment.count])
            return segment.ids[rows], dists[rows]
        rows, dists = range_scan(query, segment.codes[: segment.count], radius)
        keep = segment.alive[rows]
        return segment.ids[rows[keep]], dists[keep]

    # --- writing ----------------------------------------------------------------------------

    def add(self, ids: np.ndarray, codes: np.ndarray) -> None:
        """Add codes under ids; an id already present is replaced."""
        codes = check_codes(codes, self.code_size)
        ids = check_ids(ids, codes.shape[0])
        if ids.size == 0:
            return
        if ids.size > 1 and not bool(np.all(ids[1:] > ids[:-1])):
            # Within one call the last occurrence of an id wins.
            _, last = np.unique(ids[::-1], return_index=True)
            keep = np.sort(ids.size - 1 - last)
            ids, codes = ids[keep], np.take(codes, keep, axis=0)
        with self._lock:
            removed = self._remove_locked(ids)
            state = self._state
            delta = self._append(state.delta, ids, codes)
            self._state = replace(state, delta=delta, live=state.live - removed + ids.size)
            if delta.count >= self._delta_limit and self._compacting is None:
                self._start_compaction()

    def remove(self, ids: np.ndarray) -> int:
        """Remove ids (absent ones are ignored); returns how many were present."""
        ids = check_ids(ids)
        if ids.size == 0:
            return 0
        with self._lock:
            removed = self._remove_locked(np.unique(ids))
            self._state = replace(self._state, live=self._state.live - removed)
            return removed

    def _remove_locked(self, ids: np.ndarray) -> int:
        state = self._state
        removed = 0
        main = state.main
        if main.count:
            rows = np.minimum(np.searchsorted(main.ids[: main.count], ids), main.count - 1)
            rows = rows[(main.ids[rows] == ids) & main.alive[rows]]
            main.alive[rows] = False
            removed += rows.size
        delta = state.delta
        if delta.count:
            rows = np.flatnonzero(
                delta.alive[: delta.count] & np.isin(delta.ids[: delta.count], ids)
            )
            delta.alive[rows] = False
            removed += rows.size
        if self._compacting is not None:
            self._removed_while_compacting.append(ids.copy())
        return removed

    def _append(self, delta: _Segment, ids: np.ndarray, codes: np.ndarray) -> _Segment:
        needed = delta.count + ids.size
        if needed > delta.ids.size:
            capacity = max(needed, 2 * delta.ids.size, 1024)
            grown = _Segment.empty(self.code_size, capacity)
            grown.codes[: delta.count] = delta.codes[: delta.count]
            grown.ids[: delta.count] = delta.ids[: delta.count]
            grown.alive[: delta.count] = delta.alive[: delta.count]
            delta = replace(grown, count=delta.count)
        # Rows past ``count`` are invisible to searches until the new count is published.
        delta.codes[delta.count : needed] = codes
        delta.ids[delta.count : needed] = ids
        delta.alive[delta.count : needed] = True
        return replace(delta, count=needed)

    # --- compaction -------------------------------------------------------------------------

    def compact(self) -> None:
        """Merge the delta into the main segment now and wait for it."""
        with self._lock:
            state = self._state
            stale = state.delta.count > 0 or state.live < state.main.count
            if self._compacting is None and stale:
                self._start_compaction(inline=True)
            thread = self._compacting
        if thread is not None:
            thread.join()

    def wait_for_compaction(self) -> None:
        thread = self._compacting
        if thread is not None:
            thread.join()

    def _start_compaction(self, inline: bool = False) -> None:
        """Called with the lock held. Which rows are live is read here, under the lock: the
        flags keep changing while a background merge runs, and those later removals are
        replayed onto its result instead."""
        snapshot = self._state
        main, delta = snapshot.main, snapshot.delta
        # A copy (a memcpy, fast even at 10M rows) that the merge may scan at leisure.
        live_flags = (main.alive[: main.count].copy(), delta.alive[: delta.count].copy())
        self._removed_while_compacting = []
        if inline or snapshot.main.count <= INLINE_COMPACTION_ROWS:
            self._compacting = None
            self._install(self._merge(snapshot, live_flags), snapshot)
            return
        thread = threading.Thread(
            target=self._compact_in_background,
            args=(snapshot, live_flags),
            name="hashmatch-compaction",
            daemon=True,
        )
        self._compacting = thread
        thread.start()

    def _compact_in_background(
        self, snapshot: _State, live_flags: tuple[np.ndarray, np.ndarray]
    ) -> None:
        merged = self._merge(snapshot, live_flags)
        with self._lock:
            self._install(merged, snapshot)
            self._compacting = None

    @staticmethod
    def _merge(
        snapshot: _State, live_flags: tuple[np.ndarray, np.ndarray]
    ) -> tuple[_Segment, Tables | None]:
        main, delta = snapshot.main, snapshot.delta
        main_rows, delta_rows = (np.flatnonzero(flags) for flags in live_flags)
        ids = np.concatenate([main.ids[main_rows], delta.ids[delta_rows]])
        codes = np.concatenate(
            [np.take(main.codes, main_rows, axis=0), np.take(delta.codes, delta_rows, axis=0)]
        )
        if ids.size > 1 and not bool(np.all(ids[1:] > ids[:-1])):
            order = np.argsort(ids, kind="stable")
            ids, codes = ids[order], np.take(codes, order, axis=0)
        merged = _Segment(codes, ids, np.ones(ids.size, bool), ids.size)
        tables = Tables.build(merged.codes) if merged.count >= FLAT_ROWS else None
        return merged, tables

    def _install(self, merged: tuple[_Segment, Tables | None], snapshot: _State) -> None:
        """Publish a merged main segment, carrying over what changed since ``snapshot``."""
        main, tables = merged
        for ids in self._removed_while_compacting:
            rows = np.minimum(np.searchsorted(main.ids, ids), max(main.count - 1, 0))
            if main.count:
                main.alive[rows[main.ids[rows] == ids]] = False
        self._removed_while_compacting = []
        current = self._state.delta
        carried = np.arange(snapshot.delta.count, current.count)
        carried = carried[current.alive[carried]]
        delta = self._append(
            _Segment.empty(self.code_size), current.ids[carried], current.codes[carried]
        )
        live = int(main.alive.sum()) + delta.count
        self._state = _State(main, tables, delta, live)

    # --- persistence ------------------------------------------------------------------------

    def save(self, path: str) -> None:
        """Write the index to ``path`` atomically (main segment, tables, delta)."""
        self.wait_for_compaction()
        with self._lock:
            state = self._state
            main_rows = np.flatnonzero(state.main.alive[: state.main.count])
            delta_rows = np.flatnonzero(state.delta.alive[: state.delta.count])
            arrays: dict[str, np.ndarray] = {
                "main_codes": state.main.codes,
                "main_ids": state.main.ids,
                "main_alive": state.main.alive,
                "delta_codes": state.delta.codes[delta_rows],
                "delta_ids": state.delta.ids[delta_rows],
            }
            if state.tables is not None:
                arrays["perm"] = state.tables.perm
                arrays["offsets"] = state.tables.offsets
            meta = {
                "kind": "hamming",
                "bits": self.bits,
                "live": int(main_rows.size + delta_rows.size),
                "layout": None
                if state.tables is None
                else {
                    "starts": list(state.tables.layout.starts),
                    "widths": list(state.tables.layout.widths),
                },
            }
        save_arrays(path, meta, arrays)

    @classmethod
    def load(cls, path: str) -> HammingIndex:
        meta, arrays = load_arrays(path, kind="hamming")
        index = cls(int(meta["bits"]))
        main = _Segment(
            arrays["main_codes"],
            arrays["main_ids"],
            arrays["main_alive"],
            arrays["main_ids"].size,
        )
        tables = None
        if meta["layout"] is not None:
            tables = Tables.from_arrays(
                index.bits, meta["layout"], main.count, arrays["perm"], arrays["offsets"]
            )
        index._state = _State(main, tables, _Segment.empty(index.code_size), int(main.alive.sum()))
        if arrays["delta_ids"].size:
            index.add(arrays["delta_ids"], arrays["delta_codes"])
        return index
