"""What every index checks at the top of every call (array dtype and shape, as the FAISS
Python wrappers do), and the result shape they share: FAISS's ``(lims, distances, ids)``."""

from __future__ import annotations

import numpy as np

SearchResult = tuple[np.ndarray, np.ndarray, np.ndarray]


def check_codes(codes: object, nbytes: int, name: str = "codes") -> np.ndarray:
    if not isinstance(codes, np.ndarray):
        raise ValueError(f"{name} must be a numpy array, got {type(codes).__name__}")
    if codes.dtype != np.uint8:
        raise ValueError(f"{name} must have dtype uint8, got {codes.dtype}")
    if codes.ndim != 2 or codes.shape[1] != nbytes:
        raise ValueError(f"{name} must have shape (n, {nbytes}), got {codes.shape}")
    if not codes.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous (use np.ascontiguousarray)")
    return codes


def check_ids(ids: object, count: int | None = None) -> np.ndarray:
    if not isinstance(ids, np.ndarray):
        raise ValueError(f"ids must be a numpy array, got {type(ids).__name__}")
    if ids.dtype != np.int64:
        raise ValueError(f"ids must have dtype int64, got {ids.dtype}")
    if ids.ndim != 1:
        raise ValueError(f"ids must have shape (n,), got {ids.shape}")
    if count is not None and ids.shape[0] != count:
        raise ValueError(f"ids has {ids.shape[0]} entries but codes has {count} rows")
    return ids


def check_distance(max_distance: object, bits: int) -> int:
    if isinstance(max_distance, bool) or not isinstance(max_distance, int | np.integer):
        raise ValueError(f"max_distance must be an integer, got {type(max_distance).__name__}")
    if not 0 <= int(max_distance) <= bits:
        raise ValueError(f"max_distance must be between 0 and {bits}, got {max_distance}")
    return int(max_distance)


def empty_result(queries: int) -> SearchResult:
    return np.zeros(queries + 1, np.int64), np.empty(0, np.int32), np.empty(0, np.int64)


def pack_results(per_query: list[tuple[np.ndarray, np.ndarray]]) -> SearchResult:
    """[(ids, distances)] per query -> FAISS's (lims, distances, ids), each sorted by distance."""
    lims = np.zeros(len(per_query) + 1, dtype=np.int64)
    np.cumsum([ids.size for ids, _ in per_query], out=lims[1:])
    if lims[-1] == 0:
        return lims, np.empty(0, np.int32), np.empty(0, np.int64)
    ids_out, dist_out = [], []
    for ids, dists in per_query:
        order = np.lexsort((ids, dists))
        ids_out.append(ids[order])
        dist_out.append(dists[order])
    return lims, np.concatenate(dist_out).astype(np.int32), np.concatenate(ids_out)
