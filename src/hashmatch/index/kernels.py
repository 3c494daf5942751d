"""FAISS's SIMD Hamming kernels over packed codes, for one query at a time.

FAISS's Python stubs do not declare these functions; the wrappers here take numpy arrays of
``uint8`` (query ``(nbytes,)``, codes ``(n, nbytes)``, both C-contiguous, as the index keeps
them) and return numpy arrays, so the rest of the index never touches raw pointers.
"""

from __future__ import annotations

import faiss
import numpy as np


def distances(query: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Hamming distance from one query (nbytes,) to every row of ``codes`` (n, nbytes)."""
    out = np.empty(codes.shape[0], dtype=np.int32)
    if codes.shape[0]:
        faiss.hammings(  # type: ignore[attr-defined]  # missing from faiss's stubs
            faiss.swig_ptr(query),
            faiss.swig_ptr(codes),
            1,
            codes.shape[0],
            codes.shape[1],
            faiss.swig_ptr(out),
        )
    return out


def range_scan(query: np.ndarray, codes: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ``codes`` within ``radius`` of ``query`` and their distances, by FAISS's scan
    (which returns only the hits, instead of a distance for every row)."""
    result = faiss.RangeSearchResult(1)
    faiss.hamming_range_search(  # type: ignore[attr-defined]  # missing from faiss's stubs
        faiss.swig_ptr(query),
        faiss.swig_ptr(codes),
        1,
        codes.shape[0],
        radius + 1,
        codes.shape[1],
        result,
    )
    found = int(faiss.rev_swig_ptr(result.lims, 2)[1])
    if found == 0:
        return np.empty(0, np.int64), np.empty(0, np.int32)
    rows = faiss.rev_swig_ptr(result.labels, found).astype(np.int64)
    dists = faiss.rev_swig_ptr(result.distances, found).astype(np.int32)
    return rows, dists
