"""A folder of hash-set files as an exchange source: the second :class:`Source`.

Some partners cannot run an instance: they drop files. Each ``NAME.csv``, ``NAME.jsonl`` or
``NAME.tx`` in the folder is the whole current content of list ``NAME`` (the formats
``hashmatch hash`` writes and ``lists import`` reads); an optional ``NAME.json`` beside it
describes the list (``category``, ``jurisdiction``, ``source``, ``description``, ``kind``,
``tlp``). A file changed is a list sent whole again; a file removed is a list unshared.

Files carry no entry ids, so an entry's id is derived from its hash (63 bits of BLAKE2b):
the same hash keeps its id across versions of the file, which is what lets a new version
withdraw exactly the hashes it no longer holds. A file with any bad line is refused whole, with
its name and line, until it is fixed: never half a file.

A video's row carries its packed frames (as the hash-set reader gives them) and is checked as a
peer's page is (:func:`~hashmatch.exchange.wire.check_frames`: they decode and hash to the
row's hash); pages stop at the same frame budget as a peer's feed
(:data:`~hashmatch.exchange.wire.MAX_PAGE_FRAME_BYTES`), so one transaction never holds an
unbounded amount of video.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from hashmatch import fields
from hashmatch.errors import InvalidField, PeerError, PeerRefused
from hashmatch.exchange import tlp as tlp_labels
from hashmatch.exchange.wire import (
    MAX_PAGE_FRAME_BYTES,
    AddedEntry,
    Event,
    FeedCursor,
    ListMeta,
    Page,
    carries_frames,
    check_frames,
    entry_digest,
    list_meta,
)
from hashmatch.hashsets.read import RowError, read_hash_set
from hashmatch.matching.policy import ThresholdBounds

SUFFIXES: Final = (".csv", ".jsonl", ".tx")
#: How often a waiting fetch looks at the folder again.
POLL_SECONDS: Final = 0.5


def entry_id(algorithm: str, value: bytes) -> int:
    digest = hashlib.blake2b(algorithm.encode() + b":" + value, digest_size=8).digest()
    return (int.from_bytes(digest, "big") >> 1) or 1


@dataclass(frozen=True)
class _List:
    meta: ListMeta
    entries: list[AddedEntry]  # by id


class FolderSource:
    """``folder`` as a peer named ``name``: its files are its lists."""

    def __init__(
        self,
        name: str,
        folder: Path,
        *,
        bounds: ThresholdBounds,
        frame_bytes: int = MAX_PAGE_FRAME_BYTES,
    ) -> None:
        self.name = name
        self._folder = folder
        self._bounds = bounds
        self._frame_bytes = frame_bytes
        self._cached: tuple[int, list[_List]] | None = None

    def close(self) -> None:
        self._cached = None

    def _generation(self) -> int:
        """A number that grows whenever a file is added, removed or rewritten."""
        try:
            stamps = [self._folder.stat().st_mtime_ns]
            stamps += [p.stat().st_mtime_ns for p in self._folder.iterdir() if p.is_file()]
        except OSError as exc:
            raise PeerError(f"cannot read the folder: {exc.strerror or exc}") from None
        return max(stamps) // 1000

    def _state(self, generation: int) -> list[_List]:
        if self._cached is not None and self._cached[0] == generation:
            return self._cached[1]
        found = []
        for path in sorted(self._folder.iterdir()):
            if path.suffix in SUFFIXES and path.is_file() and not path.name.startswith("."):
                found.append(self._read(path))
        self._cached = (generation, found)
        return found

    def _read(self, path: Path) -> _List:
        try:
            name = fields.list_name(path.stem, "file name")
        except InvalidField as exc:
            raise PeerRefused(f"{path.name}: {exc.message}") from None
        described = _description(path.with_suffix(".json"))
        keys = ("kind", "category", "source", "jurisdiction", "description", "tlp")
        raw = {
            "kind": "block",
            "category": "other",
            "tlp": tlp_labels.DEFAULT_TLP.value,
            **{k: described[k] for k in keys if k in described},
            "name": name,
            "owner": self.name,
            "origin_instance": self.name,
            "enabled": True,
            "thresholds": described.get("thresholds", {}),
        }
        meta = list_meta(raw, path.with_suffix(".json").name, self._bounds)
        meta = dataclasses.replace(meta, thresholds={**self._bounds.defaults(), **meta.thresholds})
        at = dt.datetime.fromtimestamp(int(path.stat().st_mtime), dt.UTC)
        entries: dict[int, AddedEntry] = {}
        with path.open("rb") as stream:
            for row in read_hash_set(stream):
                if isinstance(row, RowError):
                    raise PeerRefused(f"{path.name} line {row.line}: {row.reason}")
                where = f"{path.name} line {row.line}"
                frames = row.frames
                if carries_frames(row.hash.algorithm):
                    if frames is None:
                        raise PeerRefused(f"{where}: a {row.hash.algorithm.name} row needs frames")
                    check_frames(row.hash, frames, where)
                elif frames is not None:
                    raise PeerRefused(f"{where}: only a video row carries frames")
                key = entry_id(row.hash.algorithm.name, row.hash.value)
                entries[key] = AddedEntry(key, row.hash, row.reference, row.labels, at, frames)
        return _List(meta, [entries[k] for k in sorted(entries)])

    def fetch(self, checkpoint: str, limit: int, wait: float) -> Page:
        since = FeedCursor.parse(checkpoint)
        deadline = time.monotonic() + wait
        generation = self._generation()
        while since.change >= generation and since.entry < 0 and time.monotonic() < deadline:
            time.sleep(min(POLL_SECONDS, max(0.0, deadline - time.monotonic())))
            generation = self._generation()
        lists = self._state(generation)
        page = Page(self.name, since, since, False, frozenset(x.meta.name for x in lists), [])
        if since.change >= generation and since.entry < 0:
            return page  # nothing new
        # Every list is sent whole, in one sequence of positions across the lists, paged.
        start = since.entry if since.change == generation else -1
        position = -1
        room = limit
        budget = _FrameBudget(self._frame_bytes)
        for item in lists:
            first = position + 1
            position = first + len(item.entries)  # the list's own position, then its rows
            if position <= start:
                continue
            if first > start:
                page.events.append(Event("list", item.meta.name, meta=item.meta, snapshot=True))
            skip = max(0, start - first)
            chunk = budget.take(item.entries[skip : skip + room], first_of_page=room == limit)
            if chunk:
                page.events.append(Event("add", item.meta.name, added=list(chunk)))
                room -= len(chunk)
            if skip + len(chunk) < len(item.entries):
                page.cursor = FeedCursor(generation, first + skip + len(chunk))
                page.more = True
                return page
            page.events.append(Event("snapshot_end", item.meta.name))
        page.cursor = FeedCursor(generation, -1)
        return page

    def send_outcomes(self, items: list[dict[str, Any]]) -> None:
        """A folder has nobody to tell: outcomes stay with this instance's owner of the
        mirror."""

    def digest(self, list_name: str) -> dict[str, Any]:
        for item in self._state(self._generation()):
            if item.meta.name == list_name:
                rows = [(e.origin_id, e.hash.algorithm.name, e.hash.value) for e in item.entries]
                return {"count": len(rows), "digest": f"{entry_digest(rows):032x}"}
        raise PeerRefused(f"no file for list {list_name!r}")


class _FrameBudget:
    """The packed frames a page may still take."""

    def __init__(self, limit: int) -> None:
        self._left = limit

    def take(self, entries: list[AddedEntry], *, first_of_page: bool) -> list[AddedEntry]:
        """The leading ``entries`` that fit (at least one if they begin the page)."""
        for count, entry in enumerate(entries):
            size = len(entry.frames or b"")
            if size > self._left and not (first_of_page and count == 0):
                return entries[:count]
            self._left -= size
        return entries


def _description(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        described = json.loads(path.read_bytes()[: 1 << 20])
    except (OSError, ValueError) as exc:
        raise PeerRefused(f"{path.name}: not a JSON object ({exc})") from None
    if not isinstance(described, dict):
        raise PeerRefused(f"{path.name}: not a JSON object")
    return described
