"""Indexes of packed codes: exact Hamming range search and exact digest lookup.

- :mod:`.hamming`: :class:`HammingIndex`, every stored code within a distance, with its exact
  distance (multi-index hashing tables in :mod:`.mih` for large segments, SIMD scans below)
- :mod:`.exact`: :class:`ExactIndex`, digests by equality
- :mod:`.checks`: argument checks and the result shape both share
- :mod:`.files`: the on-disk form (aligned raw arrays with a JSON header)
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from hashmatch.index.checks import SearchResult
from hashmatch.index.exact import ExactIndex
from hashmatch.index.hamming import HammingIndex


class CodeIndex(Protocol):
    """What the matcher needs of an index, whatever kind it is."""

    bits: int

    def __len__(self) -> int: ...

    @property
    def nbytes(self) -> int: ...

    def add(self, ids: np.ndarray, codes: np.ndarray) -> None: ...

    def remove(self, ids: np.ndarray) -> int: ...

    def search(self, queries: np.ndarray, max_distance: int) -> SearchResult: ...

    def compact(self) -> None: ...

    def save(self, path: str) -> None: ...


__all__ = ["CodeIndex", "ExactIndex", "HammingIndex", "SearchResult"]
