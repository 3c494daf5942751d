"""The peer feed, publisher side: entry-level deltas of the lists an organisation receives.

An organisation receives a list over the exchange once it has accepted the list's offer (with a
key of role ``exchange``). The feed walks the change log from the caller's cursor and turns each
change of a received list into events: a list change into the list's current metadata, an
import or revival into the entries it added (those since withdrawn are left out), a withdrawal
into the ids it withdrew with their reason class. At the change that recorded the acceptance it
sends the list whole instead (``snapshot``: every live entry now), so a subscriber never needs
the history before it, and a list left and accepted again is sent whole again.

A video entry carries its packed frames (see :mod:`hashmatch.exchange.wire`), so pages are
bounded by bytes as well as by entries: a change's entries stop at the one whose frames would
take the page past its frame budget (never its first entry), and the cursor says exactly which
entry was last, as when the entry budget runs out.

Everything is idempotent on the subscriber's side (entries by their id here), so a page sent
twice, or an entry sent in a snapshot and again by a later change, changes nothing.

Mirrors are re-exported only if their TLP label allows it (GREEN, CLEAR), and never to the
instance they come from.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from sqlalchemy import ColumnElement, Connection, Text, and_, cast, func, or_, select

from hashmatch import signals
from hashmatch.exchange import tlp as tlp_labels
from hashmatch.exchange.wire import (
    MAX_PAGE_FRAME_BYTES,
    FeedCursor,
    encode_frames,
    entry_digest,
    meta_dict,
)
from hashmatch.store.database import Database
from hashmatch.store.entries import LOOKUP_CHUNK
from hashmatch.store.lists import Lists
from hashmatch.store.records import ListInfo
from hashmatch.store.schema import changes, entries, list_shares, organisations

#: Change rows read per query while filling a page.
_CHANGE_BATCH: Final = 500


@dataclass(frozen=True)
class Received:
    """A list an organisation receives over the exchange, and from which change."""

    info: ListInfo
    accepted_change: int
    origin_instance: str


@dataclass
class FeedPage:
    instance: str
    since: FeedCursor
    cursor: FeedCursor
    more: bool
    lists: list[str]
    events: list[dict[str, Any]] = field(default_factory=list)
    entries: int = 0
    #: Packed frames of the video entries it carries.
    frame_bytes: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "instance": self.instance,
            "from": str(self.since),
            "cursor": str(self.cursor),
            "more": self.more,
            "lists": self.lists,
            "events": self.events,
        }


class Feed:
    def __init__(self, database: Database, lists: Lists, instance: str) -> None:
        self._database = database
        self._lists = lists
        self.instance = instance

    def received(self, organisation: str, subscriber_instance: str | None = None) -> list[Received]:
        """The lists ``organisation`` receives: accepted, exportable, not from the caller."""
        with self._database.engine.connect() as conn:
            rows = conn.execute(
                select(list_shares.c.list_id, list_shares.c.accepted_change)
                .join(organisations, organisations.c.id == list_shares.c.organisation_id)
                .where(
                    organisations.c.name == organisation,
                    list_shares.c.accepted_at.is_not(None),
                )
            ).all()
        accepted = {int(list_id): int(change or 0) for list_id, change in rows}
        found = []
        for info in self._lists.all():
            if info.id not in accepted:
                continue
            origin_instance = self.instance
            if info.origin is not None:
                if not tlp_labels.parse(info.tlp).re_exportable:
                    continue
                origin_instance = str(info.origin.get("origin_instance", ""))
            if subscriber_instance is not None and origin_instance == subscriber_instance:
                continue
            found.append(Received(info, accepted[info.id], origin_instance))
        return found

    def page(
        self,
        organisation: str,
        cursor: FeedCursor,
        limit: int,
        subscriber_instance: str | None = None,
        *,
        frame_bytes: int = MAX_PAGE_FRAME_BYTES,
    ) -> FeedPage:
        """The events after ``cursor``: at most ``limit`` entries, and no more packed video
        frames than ``frame_bytes`` unless a single entry has more."""
        # Read before the lists: a list accepted meanwhile has its acceptance after ``latest``,
        # so the cursor never passes the change that sends it whole.
        latest = self._latest()
        received = {r.info.id: r for r in self.received(organisation, subscriber_instance)}
        names = sorted(wire_name(r.info) for r in received.values())
        page = FeedPage(self.instance, cursor, cursor, False, names)
        if not received:
            page.cursor = max(cursor, FeedCursor(latest + 1, -1))
            return page
        with self._database.engine.connect() as conn:
            for change in self._changes(conn, received, cursor.change):
                start = cursor.entry if change.cursor == cursor.change else -1
                done = _Writer(page, received[change.list_id], change.cursor, limit, frame_bytes)
                complete = done.write(conn, change.kind, start)
                if not complete:
                    page.more = True
                    return page
                page.cursor = FeedCursor(change.cursor + 1, -1)
                if page.entries >= limit or page.frame_bytes >= frame_bytes:
                    page.more = True
                    return page
        page.cursor = max(page.cursor, FeedCursor(latest + 1, -1))
        return page

    def _latest(self) -> int:
        with self._database.engine.connect() as conn:
            latest = conn.execute(select(changes.c.cursor).order_by(changes.c.cursor.desc()))
            row = latest.first()
            return int(row[0]) if row is not None else 0

    @staticmethod
    def _changes(conn: Connection, received: dict[int, Received], start: int) -> Iterator[Any]:
        wanted = or_(
            *(
                and_(changes.c.list_id == list_id, changes.c.cursor >= r.accepted_change)
                for list_id, r in received.items()
            )
        )
        position = start
        while True:
            batch = conn.execute(
                select(changes.c.cursor, changes.c.kind, changes.c.list_id)
                .where(changes.c.cursor >= position, wanted)
                .order_by(changes.c.cursor)
                .limit(_CHANGE_BATCH)
            ).all()
            yield from batch
            if len(batch) < _CHANGE_BATCH:
                return
            position = int(batch[-1].cursor) + 1

    def digest(self, organisation: str, name: str) -> dict[str, Any] | None:
        """Count and order-independent digest of a received list's live entries (``verify``)."""
        for r in self.received(organisation):
            if wire_name(r.info) == name:
                with self._database.engine.connect() as conn:
                    rows = conn.execute(
                        select(entries.c.id, entries.c.algorithm, entries.c.hash).where(
                            entries.c.list_id == r.info.id, entries.c.withdrawn_at.is_(None)
                        )
                    ).all()
                items = [(int(i), str(a), bytes(h)) for i, a, h in rows]
                return {"list": name, "count": len(items), "digest": f"{entry_digest(items):032x}"}
        return None


def _frames(conn: Connection, ids: list[int]) -> dict[int, bytes]:
    """The packed frames of the video entries ``ids`` (read apart from the page's rows, and
    only for those that fit: an entry is never deleted and its frames never change, so they
    are there)."""
    found: dict[int, bytes] = {}
    for start in range(0, len(ids), LOOKUP_CHUNK):
        chunk = ids[start : start + LOOKUP_CHUNK]
        query = select(entries.c.id, entries.c.frames).where(entries.c.id.in_(chunk))
        found.update((int(i), bytes(f)) for i, f in conn.execute(query) if f is not None)
    return found


@functools.lru_cache(maxsize=64)
def _formatter(algorithm: str) -> Callable[[bytes], str]:
    return signals.get(algorithm).format


@functools.lru_cache(maxsize=4096)
def _epoch(stored: str) -> int:
    # SQLite keeps naive UTC text, PostgreSQL renders with its offset: both parse here.
    moment = dt.datetime.fromisoformat(stored)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return int(moment.timestamp())


def _labels(stored: str | None) -> list[str]:
    if not stored or stored == "[]":
        return []
    found = json.loads(stored)
    return [str(label) for label in found] if isinstance(found, list) else []


def wire_name(info: ListInfo) -> str:
    """A list's name on the feed: a re-exported mirror's ``peer:list`` becomes ``peer.list``,
    a name the next instance can prefix with its own peer's."""
    return info.name.replace(":", ".")


class _Writer:
    """Writes one change's events into a page, within the page's entry and frame budgets."""

    def __init__(
        self, page: FeedPage, received: Received, change: int, limit: int, frame_bytes: int
    ) -> None:
        self._page = page
        self._received = received
        self._change = change
        self._limit = limit
        self._frame_bytes = frame_bytes

    def write(self, conn: Connection, kind: str, start: int) -> bool:
        """Events of this change after entry id ``start``; False if the page filled first."""
        info = self._received.info
        snapshot = kind == "list" and self._change == self._received.accepted_change
        if start < 0:
            if kind == "list":
                self._list_event(snapshot)
            start = 0
            self._page.cursor = FeedCursor(self._change, 0)
        if kind == "list" and not snapshot:
            return True
        live = entries.c.withdrawn_at.is_(None)
        condition: ColumnElement[bool]
        if snapshot:
            condition = (entries.c.list_id == info.id) & live
        elif kind == "add":
            condition = (entries.c.added_change == self._change) & live
        else:
            condition = entries.c.withdrawn_change == self._change
        room = self._limit - self._page.entries
        if room <= 0 or (self._page.entries and self._page.frame_bytes >= self._frame_bytes):
            return False
        rows = conn.execute(
            select(
                entries.c.id,
                entries.c.algorithm,
                entries.c.hash,
                entries.c.reference,
                # As stored: parsed here once per distinct value, not once per row.
                cast(entries.c.labels, Text),
                cast(entries.c.added_at, Text),
                entries.c.withdrawal_class,
                # The frames' size only: their bytes are read for the entries that fit.
                func.length(entries.c.frames),
            )
            .where(condition, entries.c.id > start)
            .order_by(entries.c.id)
            .limit(room + 1)
        ).all()
        complete = len(rows) <= room
        rows = rows[:room]
        frames: dict[int, bytes] = {}
        if kind != "withdraw":
            fitting = self._fitting(rows)
            complete = complete and fitting == len(rows)
            rows = rows[:fitting]
            frames = _frames(conn, [int(r[0]) for r in rows if r[7] is not None])
        if kind == "withdraw":
            self._event(
                {"type": "withdraw", "list": wire_name(info)},
                [[int(r[0]), r[6] or "other"] for r in rows],
            )
        else:
            by_algorithm: dict[str, list[list[Any]]] = {}
            for entry_id, algorithm, value, reference, labels, added_at, _, _ in rows:
                item = [
                    entry_id,
                    _formatter(algorithm)(bytes(value)),
                    reference,
                    _labels(labels),
                    _epoch(added_at),
                ]
                packed = frames.get(entry_id)
                if packed is not None:
                    item.append(encode_frames(packed))
                by_algorithm.setdefault(algorithm, []).append(item)
            for algorithm, items in by_algorithm.items():
                self._event({"type": "add", "list": wire_name(info), "algorithm": algorithm}, items)
        if rows:
            self._page.cursor = FeedCursor(self._change, int(rows[-1][0]))
        if complete and snapshot:
            self._page.events.append({"type": "snapshot_end", "list": wire_name(info)})
        return complete

    def _fitting(self, rows: Sequence[Any]) -> int:
        """How many of ``rows`` (their frames' sizes last) fit the page's frame budget,
        counting them in; a page's first entry always fits."""
        taken = 0
        for row in rows:
            size = int(row[7] or 0)
            over = size and self._page.frame_bytes + size > self._frame_bytes
            if over and (self._page.entries or taken):
                break
            self._page.frame_bytes += size
            taken += 1
        return taken

    def _list_event(self, snapshot: bool) -> None:
        info = self._received.info
        values = {
            **info.as_dict(),
            "name": wire_name(info),
            "origin_instance": self._received.origin_instance,
        }
        if info.origin is not None:
            values["owner"] = str(info.origin.get("owner", info.owner))
        self._page.events.append(
            {
                "type": "list",
                "list": wire_name(info),
                "snapshot": snapshot,
                "meta": meta_dict(values),
            }
        )

    def _event(self, head: dict[str, Any], items: list[list[Any]]) -> None:
        if items:
            self._page.events.append({**head, "entries": items})
            self._page.entries += len(items)
