"""What a match reports about an entry (list, reference, labels), held compactly in memory.

Millions of entries as Python objects would cost hundreds of bytes each and seconds to load;
here they are columns: sorted ids, list ids, and references and labels as one UTF-8 blob each
with offsets. Entries added since the columns were built sit in a small dict until the next
:meth:`EntryTable.compact`. The columns save and load as raw arrays (``index_io``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from hashmatch.index.files import load_arrays, save_arrays


@dataclass(frozen=True, slots=True)
class EntryMeta:
    list_id: int
    reference: str | None
    labels: tuple[str, ...]
    #: A mirrored entry's id at its origin instance.
    origin_id: int | None = None


def _blob(texts: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    offsets = np.zeros(len(texts) + 1, dtype=np.int64)
    np.cumsum([len(t) for t in texts], out=offsets[1:])
    return np.frombuffer(b"".join(texts), dtype=np.uint8).copy(), offsets


class EntryTable:
    def __init__(self) -> None:
        self._ids = np.empty(0, np.int64)
        self._list_ids = np.empty(0, np.int64)
        self._origin_ids = np.empty(0, np.int64)  # -1: a local entry
        self._has_reference = np.empty(0, bool)
        self._references = (np.empty(0, np.uint8), np.zeros(1, np.int64))
        self._labels = (np.empty(0, np.uint8), np.zeros(1, np.int64))
        self._recent: dict[int, EntryMeta] = {}
        self._gone: set[int] = set()

    def __len__(self) -> int:
        return self._ids.size + len(self._recent) - len(self._gone)

    @classmethod
    def build(cls, rows: Iterable[tuple[int, int, str | None, str, int | None]]) -> EntryTable:
        """From ``(entry id, list id, reference, labels as JSON, origin id)`` rows, any
        order."""
        ids, list_ids, origin_ids, refs, labels, has_ref = [], [], [], [], [], []
        for entry_id, list_id, reference, labels_json, origin_id in rows:
            ids.append(entry_id)
            list_ids.append(list_id)
            origin_ids.append(-1 if origin_id is None else origin_id)
            has_ref.append(reference is not None)
            refs.append((reference or "").encode())
            labels.append(labels_json.encode() if labels_json not in ("[]", "") else b"")
        table = cls()
        order = np.argsort(np.asarray(ids, dtype=np.int64), kind="stable")
        table._ids = np.asarray(ids, dtype=np.int64)[order]
        table._list_ids = np.asarray(list_ids, dtype=np.int64)[order]
        table._origin_ids = np.asarray(origin_ids, dtype=np.int64)[order]
        table._has_reference = np.asarray(has_ref, dtype=bool)[order]
        table._references = _blob([refs[i] for i in order])
        table._labels = _blob([labels[i] for i in order])
        return table

    def add(self, entry_id: int, meta: EntryMeta) -> None:
        self._gone.discard(entry_id)
        self._recent[entry_id] = meta

    def discard(self, entry_id: int) -> None:
        if self._recent.pop(entry_id, None) is None and self._row(entry_id) is not None:
            self._gone.add(entry_id)

    def get(self, entry_id: int) -> EntryMeta | None:
        recent = self._recent.get(entry_id)
        if recent is not None:
            return recent
        if entry_id in self._gone:
            return None
        row = self._row(entry_id)
        if row is None:
            return None
        reference = _text(self._references, row) if self._has_reference[row] else None
        labels_json = _text(self._labels, row)
        labels = tuple(json.loads(labels_json)) if labels_json else ()
        origin_id = int(self._origin_ids[row])
        return EntryMeta(
            int(self._list_ids[row]), reference, labels, None if origin_id < 0 else origin_id
        )

    def counts_by_list(self) -> dict[int, int]:
        """Live entries per list id, without touching the database (the console's counts)."""
        lists, counts = np.unique(self._list_ids, return_counts=True)
        found = {int(list_id): int(count) for list_id, count in zip(lists, counts, strict=True)}
        # Copies: the follower's thread may add or withdraw meanwhile.
        for entry_id in tuple(self._gone):
            row = self._row(entry_id)
            if row is not None:
                found[int(self._list_ids[row])] -= 1
        for meta in tuple(self._recent.values()):
            found[meta.list_id] = found.get(meta.list_id, 0) + 1
        return found

    def _row(self, entry_id: int) -> int | None:
        row = int(np.searchsorted(self._ids, entry_id))
        if row < self._ids.size and self._ids[row] == entry_id:
            return row
        return None

    def compact(self) -> EntryTable:
        """A table with the recent entries folded into the columns and the gone ones out."""
        rows = []
        for row in range(self._ids.size):
            entry_id = int(self._ids[row])
            if entry_id in self._gone or entry_id in self._recent:
                continue
            rows.append(
                (
                    entry_id,
                    int(self._list_ids[row]),
                    _text(self._references, row) if self._has_reference[row] else None,
                    _text(self._labels, row),
                    _origin(int(self._origin_ids[row])),
                )
            )
        for entry_id, meta in self._recent.items():
            labels = json.dumps(list(meta.labels))
            rows.append((entry_id, meta.list_id, meta.reference, labels, meta.origin_id))
        return EntryTable.build(rows)

    def save(self, path: str) -> None:
        table = self.compact() if self._recent or self._gone else self
        arrays = {
            "ids": table._ids,
            "list_ids": table._list_ids,
            "origin_ids": table._origin_ids,
            "has_reference": table._has_reference,
            "references": table._references[0],
            "reference_offsets": table._references[1],
            "labels": table._labels[0],
            "label_offsets": table._labels[1],
        }
        save_arrays(path, {"kind": "entries"}, arrays)

    @classmethod
    def load(cls, path: str) -> EntryTable:
        _, arrays = load_arrays(path, kind="entries")
        table = cls()
        table._ids = arrays["ids"]
        table._list_ids = arrays["list_ids"]
        # Tables saved before mirrors existed have no origin ids: every entry is local.
        table._origin_ids = arrays.get("origin_ids", np.full(table._ids.size, -1, np.int64))
        table._has_reference = arrays["has_reference"]
        table._references = (arrays["references"], arrays["reference_offsets"])
        table._labels = (arrays["labels"], arrays["label_offsets"])
        columns = (table._ids, table._list_ids, table._origin_ids, table._has_reference)
        sizes = {a.size for a in columns}
        if len(sizes) != 1 or table._references[1].size != table._ids.size + 1:
            raise ValueError(f"{path}: inconsistent entry table")
        return table


def _origin(value: int) -> int | None:
    return None if value < 0 else value


def _text(blob: tuple[np.ndarray, np.ndarray], row: int) -> str:
    data, offsets = blob
    return bytes(data[offsets[row] : offsets[row + 1]]).decode()
