"""Multi-index hashing tables: exact Hamming range search over a fixed set of packed codes.

Norouzi, Punjani and Fleet's multi-index hashing: cut every code into ``m`` disjoint substrings
of ``b`` bits and index each substring in its own table. If two codes differ in at most ``t``
bits and substring ``i`` is searched with radius ``r_i``, every code within ``t`` is found as
long as ``sum(r_i + 1) > t`` (were every substring ``i`` at least ``r_i + 1`` bits away, the
codes would be more than ``t`` apart). The candidates the tables return are then verified
against the full codes, so the result is exact, never approximate.

A table is a counting sort of its substring keys: ``perm`` lists the rows in key order and
``offsets[key]`` where the key's rows start, so a probe is two array reads and its candidates
are a contiguous slice. All tables live in two concatenated arrays so that one query's probes
into every table are a handful of vectorised numpy operations. Substrings of ``b ~ log2(n) - 1``
bits keep about two rows per bucket; the layout is chosen from the row count at build time.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

#: Tables are sized for at least this many rows; below it a flat scan wins anyway.
MIN_SUBSTRING_BITS = 8
MAX_SUBSTRING_BITS = 21


@dataclass(frozen=True)
class Layout:
    """Which bits each table indexes: table ``i`` covers bits ``starts[i]`` to ``+ widths[i]``."""

    bits: int
    starts: tuple[int, ...]
    widths: tuple[int, ...]

    @classmethod
    def for_rows(cls, bits: int, rows: int) -> Layout:
        width = round(math.log2(max(rows, 2))) - 1
        width = max(MIN_SUBSTRING_BITS, min(MAX_SUBSTRING_BITS, width, bits // 2))
        count = bits // width
        return cls(bits, tuple(i * width for i in range(count)), (width,) * count)

    @property
    def tables(self) -> int:
        return len(self.widths)

    def radii(self, max_distance: int) -> tuple[int, ...]:
        """Per-table search radius with ``sum(r + 1) == max_distance + 1`` (-1: skip table)."""
        quotient, remainder = divmod(max_distance + 1, self.tables)
        return tuple(quotient if i < remainder else quotient - 1 for i in range(self.tables))


@lru_cache(maxsize=256)
def flip_masks(width: int, radius: int) -> np.ndarray:
    """Every ``width``-bit mask with at most ``radius`` bits set, fewest bits first."""
    masks = [0]
    for count in range(1, radius + 1):
        combos = itertools.combinations(range(width), count)
        masks.extend(sum(1 << bit for bit in combo) for combo in combos)
    return np.asarray(masks, dtype=np.int64)


def probe_count(width: int, radius: int) -> int:
    return sum(math.comb(width, k) for k in range(radius + 1)) if radius >= 0 else 0


def substring_keys(words: np.ndarray, start: int, width: int) -> np.ndarray:
    """Bits ``start .. start + width`` of every code, as a new uint64 array.

    ``words`` is :func:`as_words` of the codes: word ``j`` of every code in row ``j``, so bit 0
    is the most significant bit of row 0.
    """
    first, offset = divmod(start, 64)
    if offset + width <= 64:
        keys = words[first] >> np.uint64(64 - offset - width)
        keys &= np.uint64((1 << width) - 1)
        return np.asarray(keys, dtype=np.uint64)
    high_bits = 64 - offset
    low_bits = width - high_bits
    keys = words[first] & np.uint64((1 << high_bits) - 1)
    keys <<= np.uint64(low_bits)
    keys |= words[first + 1] >> np.uint64(64 - low_bits)
    return np.asarray(keys, dtype=np.uint64)


def as_words(codes: np.ndarray) -> np.ndarray:
    """uint8 codes (n, bits/8) -> their 64-bit words, column-major (bits/64, n) native uint64."""
    return np.ascontiguousarray(codes.view(">u8").T).astype(np.uint64)


@dataclass(frozen=True)
class ProbePlan:
    """Everything about one radius that does not depend on the query."""

    table_of_probe: np.ndarray  # (P,) which table each probe reads
    masks: np.ndarray  # (P,) bits flipped in the query's key
    bases: np.ndarray  # (P,) where that table's offsets start in the concatenated array
    probes: int


@dataclass
class Tables:
    """The tables over rows ``0 .. rows-1`` of one code array; immutable once built."""

    layout: Layout
    rows: int
    perm: np.ndarray  # (tables * rows,) uint32: rows in key order, table after table
    offsets: np.ndarray  # (sum(2**w + 1),) uint32: absolute starts into perm
    bases: np.ndarray  # (tables,) int64: start of each table's offsets
    _plans: dict[int, ProbePlan] = field(default_factory=dict, repr=False)
    _costs: dict[tuple[int, float, float], float] = field(default_factory=dict, repr=False)

    @classmethod
    def build(cls, codes: np.ndarray, layout: Layout | None = None) -> Tables:
        rows, nbytes = codes.shape
        layout = layout or Layout.for_rows(nbytes * 8, rows)
        words = as_words(codes)
        perm = np.empty(layout.tables * rows, dtype=np.uint32)
        offsets = np.empty(sum((1 << w) + 1 for w in layout.widths), dtype=np.uint32)
        bases = np.zeros(layout.tables, dtype=np.int64)
        row_numbers = np.arange(rows, dtype=np.uint64)
        low_half = 0 if np.little_endian else 1
        base = 0
        for table, (start, width) in enumerate(zip(layout.starts, layout.widths, strict=True)):
            keys = substring_keys(words, start, width)
            counts = np.bincount(keys.view(np.int64), minlength=1 << width)
            table_offsets = offsets[base : base + (1 << width) + 1]
            table_offsets[0] = table * rows
            np.cumsum(counts, out=table_offsets[1:], dtype=np.uint32)
            table_offsets[1:] += np.uint32(table * rows)
            # Sorting (key << 32 | row) in place is several times faster than a stable
            # argsort; the rows are then the low halves of the sorted words.
            keys <<= np.uint64(32)
            keys |= row_numbers
            keys.sort()
            perm[table * rows : (table + 1) * rows] = keys.view(np.uint32)[low_half::2]
            bases[table] = base
            base += (1 << width) + 1
        return cls(layout, rows, perm, offsets, bases)

    def plan(self, max_distance: int) -> ProbePlan:
        plan = self._plans.get(max_distance)
        if plan is None:
            tables, masks = [], []
            for table, radius in enumerate(self.layout.radii(max_distance)):
                if radius < 0:
                    continue
                table_masks = flip_masks(self.layout.widths[table], radius)
                masks.append(table_masks)
                tables.append(np.full(table_masks.size, table, dtype=np.int64))
            table_of_probe = np.concatenate(tables)
            plan = ProbePlan(
                table_of_probe,
                np.concatenate(masks),
                self.bases[table_of_probe],
                int(table_of_probe.size),
            )
            self._plans[max_distance] = plan
        return plan

    def expected_candidates(self, max_distance: int) -> float:
        radii = self.layout.radii(max_distance)
        return sum(
            probe_count(width, radius) * self.rows / (1 << width)
            for width, radius in zip(self.layout.widths, radii, strict=True)
        )

    def probe_cost(self, max_distance: int) -> int:
        radii = self.layout.radii(max_distance)
        return sum(probe_count(w, r) for w, r in zip(self.layout.widths, radii, strict=True))

    def cost(self, max_distance: int, probe_cost: float, candidate_cost: float) -> float:
        """Estimated work of one query, in units of one code of a flat scan."""
        key = (max_distance, probe_cost, candidate_cost)
        cached = self._costs.get(key)
        if cached is None:
            probes = self.probe_cost(max_distance)
            cached = probe_cost * probes + candidate_cost * self.expected_candidates(max_distance)
            self._costs[key] = cached
        return cached

    def query_keys(self, query_value: int) -> np.ndarray:
        """The query's key in every table, from the code as one big-endian integer."""
        bits = self.layout.bits
        return np.asarray(
            [
                (query_value >> (bits - start - width)) & ((1 << width) - 1)
                for start, width in zip(self.layout.starts, self.layout.widths, strict=True)
            ],
            dtype=np.int64,
        )

    def candidates(
        self, query_values: list[int], max_distance: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Rows that may lie within ``max_distance`` of each query: a superset of the answer.

        Returns ``(rows, bounds)``: the candidates of query ``i`` are ``rows[bounds[i]:
        bounds[i+1]]`` (uint32, with repeats when several tables find the same row).
        """
        plan = self.plan(max_distance)
        query_keys = np.stack([self.query_keys(value) for value in query_values])
        keys = query_keys[:, plan.table_of_probe] ^ plan.masks
        keys += plan.bases
        keys = keys.ravel()
        starts = self.offsets[keys].astype(np.int64)
        lengths = self.offsets[keys + 1].astype(np.int64)
        lengths -= starts
        bounds = np.zeros(len(query_values) + 1, dtype=np.int64)
        np.cumsum(lengths.reshape(len(query_values), plan.probes).sum(axis=1), out=bounds[1:])
        total = int(bounds[-1])
        if total == 0:
            return np.empty(0, dtype=np.uint32), bounds
        nonempty = lengths > 0
        starts, lengths = starts[nonempty], lengths[nonempty]
        ends = np.cumsum(lengths)
        positions = np.repeat(starts - (ends - lengths), lengths)
        positions += np.arange(total, dtype=np.int64)
        return np.take(self.perm, positions), bounds

    @property
    def nbytes(self) -> int:
        return int(self.perm.nbytes + self.offsets.nbytes)

    @classmethod
    def from_arrays(
        cls,
        bits: int,
        layout: dict[str, list[int]],
        rows: int,
        perm: np.ndarray,
        offsets: np.ndarray,
    ) -> Tables:
        """Tables as saved by an index file, checked for consistency with ``rows``."""
        restored = Layout(bits, tuple(layout["starts"]), tuple(layout["widths"]))
        expected_offsets = sum((1 << w) + 1 for w in restored.widths)
        if perm.shape != (restored.tables * rows,) or offsets.shape != (expected_offsets,):
            raise ValueError("index file: tables do not match the stored codes")
        bases = np.cumsum([0] + [(1 << w) + 1 for w in restored.widths[:-1]]).astype(np.int64)
        return cls(
            restored,
            rows,
            perm.astype(np.uint32, copy=False),
            offsets.astype(np.uint32, copy=False),
            bases,
        )
