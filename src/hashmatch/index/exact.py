"""Exact lookup of digests (md5, sha256) behind :class:`~hashmatch.index.hamming.HammingIndex`'s
interface: distance always 0."""

from __future__ import annotations

import threading

import numpy as np

from hashmatch.index.checks import (
    SearchResult,
    check_codes,
    check_distance,
    check_ids,
    pack_results,
)
from hashmatch.index.files import load_arrays, save_arrays


class ExactIndex:
    """Exact lookup of digests (md5, sha256) behind :class:`HammingIndex`'s interface.

    A dict from code bytes to the ids holding it; every result has distance 0.
    """

    def __init__(self, bits: int) -> None:
        if bits <= 0 or bits % 8:
            raise ValueError(f"bits must be a positive multiple of 8, got {bits}")
        self.bits = bits
        self.code_size = bits // 8
        self._lock = threading.Lock()
        self._ids_by_code: dict[bytes, frozenset[int]] = {}
        self._code_by_id: dict[int, bytes] = {}

    def __len__(self) -> int:
        return len(self._code_by_id)

    @property
    def nbytes(self) -> int:
        """Memory of the codes and ids held (the dicts' own overhead aside)."""
        return len(self._code_by_id) * (self.code_size + 8)

    def compact(self) -> None:
        """Nothing to fold: every addition lands in the dict at once."""

    def add(self, ids: np.ndarray, codes: np.ndarray) -> None:
        codes = check_codes(codes, self.code_size)
        ids = check_ids(ids, codes.shape[0])
        with self._lock:
            for id_, code in zip(ids.tolist(), codes, strict=True):
                self._discard(id_)
                key = code.tobytes()
                self._code_by_id[id_] = key
                # Copy-on-write so that a concurrent search iterating the old set is unaffected.
                self._ids_by_code[key] = self._ids_by_code.get(key, frozenset()) | {id_}

    def remove(self, ids: np.ndarray) -> int:
        ids = check_ids(ids)
        with self._lock:
            return sum(self._discard(id_) for id_ in set(ids.tolist()))

    def _discard(self, id_: int) -> bool:
        key = self._code_by_id.pop(id_, None)
        if key is None:
            return False
        remaining = self._ids_by_code[key] - {id_}
        if remaining:
            self._ids_by_code[key] = remaining
        else:
            del self._ids_by_code[key]
        return True

    def search(self, queries: np.ndarray, max_distance: int = 0) -> SearchResult:
        queries = check_codes(queries, self.code_size, "queries")
        check_distance(max_distance, self.bits)
        per_query = []
        for query in queries:
            found = np.fromiter(sorted(self._ids_by_code.get(query.tobytes(), ())), np.int64)
            per_query.append((found, np.zeros(found.size, np.int32)))
        return pack_results(per_query)

    def save(self, path: str) -> None:
        with self._lock:
            ids = np.fromiter(self._code_by_id, np.int64, len(self._code_by_id))
            codes = np.frombuffer(b"".join(self._code_by_id.values()), np.uint8)
        arrays: dict[str, np.ndarray] = {
            "ids": ids,
            "codes": codes.reshape(ids.size, self.code_size),
        }
        save_arrays(path, {"kind": "exact", "bits": self.bits}, arrays)

    @classmethod
    def load(cls, path: str) -> ExactIndex:
        meta, arrays = load_arrays(path, kind="exact")
        index = cls(int(meta["bits"]))
        index.add(arrays["ids"], np.ascontiguousarray(arrays["codes"]))
        return index
