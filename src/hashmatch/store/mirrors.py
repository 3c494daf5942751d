"""Mirrors of peers' lists: a page of a peer's feed applied in one transaction.

Applying a page and advancing the peer's cursor commit together, and only if the page answers
the cursor the peer row holds now, so a crash at any point resumes from the last page applied,
and a page applied twice is impossible. Within a page everything is idempotent besides: entries
are keyed by their id at the origin (``origin_id``), so an entry sent in a snapshot and again by
a later change is added once, and a withdrawal of an entry the mirror never had changes nothing.

A snapshot (a list sent whole, from the change that recorded its acceptance) arrives in origin
id order, so each page of it says exactly which ids in its range are live at the origin: live
mirror entries in that range that it does not carry are withdrawn. That is what repairs a
mirror that missed something (``verify`` starts a resync when the digests differ).

Mirrors are read-only locally (:class:`~hashmatch.errors.ReadOnlyMirror`); the operator may
disable one, tighten its thresholds or make its label stricter (:meth:`Lists.update`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, func, insert, select, update

from hashmatch import fields
from hashmatch.errors import PeerRefused
from hashmatch.exchange import tlp as tlp_labels
from hashmatch.exchange.wire import AddedEntry, Event, FeedCursor, ListMeta, Page
from hashmatch.store.audit import AuditLog
from hashmatch.store.bulk import insert_mirrored
from hashmatch.store.changes import ChangeLog
from hashmatch.store.database import Database, new_id, utcnow
from hashmatch.store.entries import LOOKUP_CHUNK
from hashmatch.store.lists import Lists, mirror_thresholds
from hashmatch.store.peers import PeerInfo
from hashmatch.store.records import ListInfo
from hashmatch.store.schema import entries, list_shares, lists, peers

ACTOR_PREFIX = "peer:"


@dataclass
class _Mirror:
    """One mirror as this page changes it."""

    id: int
    name: str
    origin: dict[str, Any]
    info: ListInfo | None = None  # as it was before this page (None: created by it)
    add_change: int | None = None
    withdraw_change: int | None = None
    added: int = 0
    withdrawn: int = 0
    seen: set[int] = field(default_factory=set)


@dataclass
class ApplyReport:
    applied: bool
    cursor: str
    added: int = 0
    withdrawn: int = 0
    lists: list[str] = field(default_factory=list)


class Mirrors:
    #: Called in the page's transaction for each mirror it withdrew entries from, with the
    #: withdrawal's change (the store queues webhook notices to platforms that acted on them).
    on_withdrawn: Callable[[Connection, ListInfo, int], object] | None = None

    def __init__(
        self, database: Database, lists_: Lists, changes: ChangeLog, audit: AuditLog
    ) -> None:
        self._database = database
        self._lists = lists_
        self._changes = changes
        self._audit = audit

    def of_peer(self, peer: str) -> list[ListInfo]:
        return [
            i for i in self._lists.all() if i.origin is not None and i.origin.get("peer") == peer
        ]

    def apply(self, peer: PeerInfo, page: Page) -> ApplyReport:
        """Apply ``page`` (asked from ``peer.cursor``) and advance the cursor, atomically."""
        existing = {info.name: info for info in self.of_peer(peer.name)}
        wanted = None if peer.lists is None else frozenset(peer.lists)
        actor = ACTOR_PREFIX + peer.name
        report = ApplyReport(False, str(page.cursor))
        with self._database.write_transaction() as conn:
            current = conn.execute(
                select(peers.c.cursor, peers.c.paused).where(peers.c.id == peer.id)
            ).first()
            if current is None or current.paused or FeedCursor.parse(current.cursor) != page.since:
                return report  # another fetcher moved on, or the peer was paused or removed
            touched: dict[str, _Mirror] = {}
            for info in existing.values():
                origin_list = str(info.origin.get("list")) if info.origin else ""
                if (
                    origin_list not in page.lists
                    and (info.origin or {}).get("state") != "unshared"
                    and (wanted is None or origin_list in wanted)
                ):
                    self._unshare(conn, self._touch(touched, info), actor)
            for event in page.events:
                if wanted is not None and event.list_name not in wanted:
                    continue
                name = fields.mirror_name(peer.name, event.list_name)
                known = existing.get(name)
                if name in touched or known is not None:
                    mirror = touched[name] if known is None else self._touch(touched, known)
                elif event.meta is None:
                    raise PeerRefused(f"entries of list {event.list_name!r} before its description")
                else:
                    mirror = self._create(conn, peer, name, event.meta, page.instance)
                    touched[name] = mirror
                self._event(conn, mirror, event, page.instance)
            for mirror in touched.values():
                self._finish(conn, mirror, actor)
                report.added += mirror.added
                report.withdrawn += mirror.withdrawn
                report.lists.append(mirror.name)
            now = utcnow()
            values: dict[str, Any] = {
                "cursor": str(page.cursor),
                "remote_instance": page.instance,
                "last_attempt_at": now,
                "last_success_at": now,
                "last_error": None,
                "failures": 0,
                "next_attempt_at": None,
            }
            if page.events:
                values["last_change_at"] = now
            conn.execute(update(peers).where(peers.c.id == peer.id).values(**values))
        report.applied = True
        return report

    # --- one mirror -------------------------------------------------------------------------

    @staticmethod
    def _touch(touched: dict[str, _Mirror], info: ListInfo) -> _Mirror:
        if info.name not in touched:
            touched[info.name] = _Mirror(info.id, info.name, dict(info.origin or {}), info)
        return touched[info.name]

    def _create(
        self, conn: Connection, peer: PeerInfo, name: str, meta: ListMeta, instance: str
    ) -> _Mirror:
        now = utcnow()
        origin = _origin({}, peer.name, meta, instance)
        result = conn.execute(
            insert(lists).values(
                name=name,
                owner_id=self._lists.organisation_id(peer.organisation, conn),
                **_columns(meta, origin),
                created_at=now,
                updated_at=now,
            )
        )
        mirror = _Mirror(new_id(result), name, origin)
        self._changes.record(conn, "list", mirror.id)
        self._audit.record(
            conn, ACTOR_PREFIX + peer.name, "mirror.create", name, {}, details={"new": origin}
        )
        return mirror

    def _event(self, conn: Connection, mirror: _Mirror, event: Event, instance: str) -> None:
        if event.kind == "list" and event.meta is not None:
            self._describe(conn, mirror, event.meta, instance, event.snapshot)
        elif event.kind == "add":
            self._add(conn, mirror, event.added)
        elif event.kind == "withdraw":
            by_class: dict[str, list[int]] = {}
            for origin_id, reason_class in event.withdrawn:
                by_class.setdefault(reason_class, []).append(origin_id)
            for reason_class, ids in by_class.items():
                mirror.withdrawn += self._withdraw(conn, mirror, ids, reason_class)
        elif event.kind == "snapshot_end":
            if mirror.origin.get("snapshot_sweep", True):
                self._sweep(conn, mirror, end=True)
            mirror.origin.pop("snapshot_after", None)
            mirror.origin.pop("snapshot_sweep", None)

    def _describe(
        self, conn: Connection, mirror: _Mirror, meta: ListMeta, instance: str, snapshot: bool
    ) -> None:
        origin = _origin(mirror.origin, str(mirror.origin.get("peer")), meta, instance)
        if snapshot:
            origin["snapshot_after"] = 0
            origin["state"] = "live"
            # A mirror with no entry at all has nothing to revive or sweep: skip that work.
            origin["snapshot_sweep"] = _has_entries(conn, mirror.id)
        mirror.origin = origin
        values = _columns(meta, origin)
        conn.execute(
            update(lists).where(lists.c.id == mirror.id).values(**values, updated_at=utcnow())
        )
        if not tlp_labels.parse(values["tlp"]).offerable:
            conn.execute(list_shares.delete().where(list_shares.c.list_id == mirror.id))
        self._changes.record(conn, "list", mirror.id)

    def _changes_of(self, conn: Connection, mirror: _Mirror) -> tuple[int, int]:
        # Both at once, the add first: an entry added and withdrawn in one page is withdrawn
        # by a later change than the one that added it, as replicas expect.
        if mirror.add_change is None or mirror.withdraw_change is None:
            mirror.add_change = self._changes.record(conn, "add", mirror.id)
            mirror.withdraw_change = self._changes.record(conn, "withdraw", mirror.id)
        return mirror.add_change, mirror.withdraw_change

    def _add(self, conn: Connection, mirror: _Mirror, added: list[AddedEntry]) -> None:
        if not added:
            return
        add_change, _ = self._changes_of(conn, mirror)
        rows = [
            (
                e.hash.algorithm.name,
                e.hash.value,
                e.reference,
                e.labels,
                e.added_at,
                e.origin_id,
                e.frames,
            )
            for e in added
        ]
        by = ACTOR_PREFIX + str(mirror.origin.get("peer"))
        insert_mirrored(conn, rows, mirror.id, add_change, by)
        ids = [e.origin_id for e in added]
        if "snapshot_after" in mirror.origin and not mirror.origin.get("snapshot_sweep", True):
            mirror.origin["snapshot_after"] = max(ids)
        elif "snapshot_after" in mirror.origin:
            mirror.seen.update(ids)
            # The origin says these are live now: a tombstone of one here comes back.
            for start in range(0, len(ids), LOOKUP_CHUNK):
                conn.execute(
                    update(entries)
                    .where(
                        entries.c.list_id == mirror.id,
                        entries.c.origin_id.in_(ids[start : start + LOOKUP_CHUNK]),
                        entries.c.withdrawn_at.is_not(None),
                    )
                    .values(
                        withdrawn_at=None,
                        withdrawn_by=None,
                        withdrawal_reason=None,
                        withdrawal_class=None,
                        withdrawn_change=None,
                        added_change=add_change,
                    )
                )
            self._sweep(conn, mirror, end=False)

    def _withdraw(
        self, conn: Connection, mirror: _Mirror, ids: list[int], reason_class: str
    ) -> int:
        _, withdraw_change = self._changes_of(conn, mirror)
        count = 0
        for start in range(0, len(ids), LOOKUP_CHUNK):
            count += conn.execute(
                update(entries)
                .where(
                    entries.c.list_id == mirror.id,
                    entries.c.origin_id.in_(ids[start : start + LOOKUP_CHUNK]),
                    entries.c.withdrawn_at.is_(None),
                )
                .values(**_withdrawn(mirror, withdraw_change, reason_class))
            ).rowcount
        return count

    def _sweep(self, conn: Connection, mirror: _Mirror, *, end: bool) -> None:
        """Withdraw live entries the snapshot passed over: those with an origin id up to the
        highest it has sent (all beyond, at its end) that it did not carry."""
        after = int(mirror.origin.get("snapshot_after", 0))
        top = max(mirror.seen, default=after)
        condition = (
            (entries.c.list_id == mirror.id)
            & entries.c.withdrawn_at.is_(None)
            & (entries.c.origin_id > after)
        )
        if not end:
            condition = condition & (entries.c.origin_id <= top)
        stale = [
            int(r[0])
            for r in conn.execute(select(entries.c.origin_id).where(condition))
            if int(r[0]) not in mirror.seen
        ]
        if stale:
            mirror.withdrawn += self._withdraw(conn, mirror, stale, "other")
        mirror.origin["snapshot_after"] = top
        mirror.seen.clear()

    def _unshare(self, conn: Connection, mirror: _Mirror, actor: str) -> None:
        live = conn.execute(
            select(entries.c.origin_id).where(
                entries.c.list_id == mirror.id, entries.c.withdrawn_at.is_(None)
            )
        ).all()
        ids = [int(r[0]) for r in live if r[0] is not None]
        if ids:
            mirror.withdrawn += self._withdraw(conn, mirror, ids, "other")
        mirror.origin["state"] = "unshared"
        mirror.origin.pop("snapshot_after", None)
        mirror.origin.pop("snapshot_sweep", None)
        conn.execute(
            update(lists).where(lists.c.id == mirror.id).values(enabled=False, origin=mirror.origin)
        )
        self._changes.record(conn, "list", mirror.id)
        self._audit.record(conn, actor, "mirror.unshared", mirror.name, {"withdrawn": len(ids)})

    def _finish(self, conn: Connection, mirror: _Mirror, actor: str) -> None:
        conn.execute(update(lists).where(lists.c.id == mirror.id).values(origin=mirror.origin))
        if mirror.add_change is not None and mirror.withdraw_change is not None:
            mirror.added = int(
                conn.execute(
                    select(func.count())
                    .select_from(entries)
                    .where(entries.c.added_change == mirror.add_change)
                ).scalar_one()
            )
            self._changes.set_count(conn, mirror.add_change, mirror.added)
            self._changes.set_count(conn, mirror.withdraw_change, mirror.withdrawn)
            if mirror.withdrawn and mirror.info is not None and self.on_withdrawn is not None:
                self.on_withdrawn(conn, mirror.info, mirror.withdraw_change)
        if mirror.added or mirror.withdrawn:
            counts = {"added": mirror.added, "withdrawn": mirror.withdrawn}
            self._audit.record(conn, actor, "mirror.apply", mirror.name, counts)


def _has_entries(conn: Connection, list_id: int) -> bool:
    found = conn.execute(select(entries.c.id).where(entries.c.list_id == list_id).limit(1))
    return found.first() is not None


def _withdrawn(mirror: _Mirror, change: int, reason_class: str) -> dict[str, Any]:
    return {
        "withdrawn_at": utcnow(),
        "withdrawn_by": ACTOR_PREFIX + str(mirror.origin.get("peer")),
        "withdrawal_reason": f"withdrawn at the origin ({reason_class})",
        "withdrawal_class": reason_class,
        "withdrawn_change": change,
    }


def _origin(previous: dict[str, Any], peer: str, meta: ListMeta, instance: str) -> dict[str, Any]:
    """A mirror's ``origin``: where it comes from, as every match reports it, and what the
    local operator set (``local_*``), which the origin's changes never undo."""
    origin = dict(previous)
    origin.update(
        peer=peer,
        instance=instance,
        origin_instance=meta.origin_instance,
        list=meta.name,
        owner=meta.owner,
        category=meta.category,
        jurisdiction=meta.jurisdiction,
        source=meta.source,
        tlp=meta.tlp.value,
        thresholds=meta.thresholds,
        enabled=meta.enabled,
    )
    origin.setdefault("state", "live")
    return origin


def _columns(meta: ListMeta, origin: dict[str, Any]) -> dict[str, Any]:
    local_tlp = origin.get("local_tlp")
    label = (
        meta.tlp
        if local_tlp is None
        else tlp_labels.stricter(meta.tlp, tlp_labels.parse(local_tlp))
    )
    return {
        "kind": meta.kind,
        "category": meta.category,
        "source": meta.source,
        "jurisdiction": meta.jurisdiction,
        "description": meta.description,
        "enabled": meta.enabled
        and bool(origin.get("local_enabled", True))
        and origin.get("state") != "unshared",
        "thresholds": mirror_thresholds(origin, origin.get("local_thresholds", {})),
        "tlp": label.value,
        "origin": origin,
    }
