"""Lists and the organisations that own them and are offered them.

Every change is one transaction with its change-log row (replicas reload the list) and its
audit row (the old and new values). Sharing is by consent: ``shared_with`` is the set of offers,
and :meth:`Lists.answer_offer` is the receiving organisation's yes or no.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any, Final

from sqlalchemy import Connection, delete, insert, select, update

from hashmatch import fields
from hashmatch.errors import Conflict, InvalidField, NotFound, ReadOnlyMirror
from hashmatch.exchange import tlp as tlp_labels
from hashmatch.matching.policy import DEFAULT_BOUNDS, ThresholdBounds, is_tightened
from hashmatch.store.audit import AuditLog
from hashmatch.store.changes import ChangeLog
from hashmatch.store.database import Database, new_id, utcnow
from hashmatch.store.records import EDITABLE_FIELDS, ListInfo
from hashmatch.store.schema import list_shares, lists, organisations

LIST_KINDS: Final = ("block", "allow")
#: Fields of a list its owner may change, and the rule each value must meet.
_LIST_TEXT_FIELDS: Final = {
    "source": fields.MAX_SOURCE_CHARS,
    "jurisdiction": fields.MAX_JURISDICTION_CHARS,
}


class Lists:
    def __init__(
        self,
        database: Database,
        changes: ChangeLog,
        audit: AuditLog,
        bounds: ThresholdBounds = DEFAULT_BOUNDS,
    ) -> None:
        self._database = database
        self._changes = changes
        self._audit = audit
        self.bounds = bounds

    def organisation_id(self, name: str, connection: Connection | None = None) -> int:
        name = fields.organisation(name)
        if connection is None:
            with self._database.write_transaction() as conn:
                return self.organisation_id(name, conn)
        found = connection.execute(
            select(organisations.c.id).where(organisations.c.name == name)
        ).scalar()
        if found is not None:
            return int(found)
        result = connection.execute(insert(organisations).values(name=name, created_at=utcnow()))
        return new_id(result)

    def create(
        self,
        name: str,
        *,
        owner: str,
        category: str,
        actor: str,
        kind: str = "block",
        source: str = "",
        jurisdiction: str = "",
        description: str = "",
        thresholds: dict[str, int] | None = None,
        shared_with: Sequence[str] = (),
        tlp: str | None = None,
    ) -> ListInfo:
        name = fields.list_name(name)
        owner = fields.organisation(owner, "owner")
        if kind not in LIST_KINDS:
            raise InvalidField("kind", f"must be one of {', '.join(LIST_KINDS)}, got {kind!r}")
        values = {
            "category": fields.category(category),
            "description": _description(description),
            "source": fields.text(source, "source", fields.MAX_SOURCE_CHARS).strip(),
            "jurisdiction": fields.text(
                jurisdiction, "jurisdiction", fields.MAX_JURISDICTION_CHARS
            ).strip(),
            "thresholds": {**self.bounds.defaults(), **self.bounds.check(thresholds or {})},
            "tlp": (tlp_labels.DEFAULT_TLP if tlp is None else tlp_labels.parse(tlp)).value,
        }
        offers = _offers(shared_with, owner)
        now = utcnow()
        row = {**values, "name": name, "kind": kind, "enabled": True, "created_at": now}
        with self._database.write_transaction() as conn:
            row["owner_id"] = self.organisation_id(owner, conn)
            try:
                inserted = conn.execute(insert(lists).values(row).values(updated_at=now))
                list_id = new_id(inserted)
            except Conflict:
                raise Conflict(f"a list named {name!r} already exists") from None
            self._offer(conn, list_id, offers, actor, now)
            cursor = self._changes.record(conn, "list", list_id, 0)
            details = {"new": {**values, "kind": kind, "shared_with": list(offers)}}
            self._audit.record(
                conn, actor, "list.create", name, {"cursor": cursor}, details=details
            )
        return self.get(name)

    def update(self, name: str, *, actor: str, **changes: Any) -> ListInfo:
        """Change what its owner may change; the audit row keeps the old and new values.
        ``shared_with`` replaces the set of offers: organisations left out lose the list
        (accepted or not), new ones get an offer, the others keep their answer."""
        unknown = set(changes) - set(EDITABLE_FIELDS)
        if unknown:
            raise InvalidField(sorted(unknown)[0], "cannot be changed")
        current = self.get(name)
        if current.is_mirror:
            return self._update_mirror(current, actor, changes)
        values: dict[str, Any] = {}
        for key, value in changes.items():
            if value is None or key == "shared_with":
                continue
            if key == "tlp":
                values[key] = tlp_labels.parse(value).value
            elif key == "enabled":
                if not isinstance(value, bool):
                    raise InvalidField("enabled", "must be true or false")
                values[key] = value
            elif key == "thresholds":
                values[key] = {**current.thresholds, **self.bounds.check(value)}
            elif key == "category":
                values[key] = fields.category(value)
            elif key == "description":
                values[key] = _description(value)
            else:
                values[key] = fields.text(value, key, _LIST_TEXT_FIELDS[key]).strip()
        offers = None
        if changes.get("shared_with") is not None:
            offers = _offers(changes["shared_with"], current.owner)
        return self._apply_update(current, actor, values, offers)

    def _update_mirror(self, current: ListInfo, actor: str, changes: dict[str, Any]) -> ListInfo:
        """A mirror changes from its origin; locally it may be disabled, its thresholds
        tightened below the origin's, its label made stricter, and (if its label allows) it
        may be offered to local organisations."""
        origin = dict(current.origin or {})
        values: dict[str, Any] = {}
        offers = None
        for key, value in changes.items():
            if value is None:
                continue
            if key == "enabled":
                if not isinstance(value, bool):
                    raise InvalidField("enabled", "must be true or false")
                origin["local_enabled"] = value
                values[key] = value and bool(origin.get("enabled", True))
                values["origin"] = origin
            elif key == "thresholds":
                local = {**origin.get("local_thresholds", {}), **self.bounds.check(value)}
                origin["local_thresholds"] = local
                values["thresholds"] = mirror_thresholds(origin, local)
                values["origin"] = origin
            elif key == "tlp":
                label = tlp_labels.parse(value)
                if label.strictness < tlp_labels.parse(origin.get("tlp", "RED")).strictness:
                    raise ReadOnlyMirror(
                        f"list {current.name!r} is a mirror labelled {origin.get('tlp')}: its "
                        "label can only be made stricter"
                    )
                origin["local_tlp"] = label.value
                values["tlp"] = label.value
                values["origin"] = origin
            elif key == "shared_with":
                offers = _offers(value, current.owner)
            else:
                raise ReadOnlyMirror(
                    f"list {current.name!r} mirrors {origin.get('peer')!r}: its {key} changes "
                    "only at its origin"
                )
        if offers and not tlp_labels.parse(values.get("tlp", current.tlp)).offerable:
            raise ReadOnlyMirror(
                f"list {current.name!r} is labelled {current.tlp}: it is matched only for "
                f"{current.owner!r} and cannot be offered to anyone"
            )
        return self._apply_update(current, actor, values, offers)

    def _apply_update(
        self,
        current: ListInfo,
        actor: str,
        values: dict[str, Any],
        offers: tuple[str, ...] | None,
    ) -> ListInfo:
        name = current.name
        now = utcnow()
        with self._database.write_transaction() as conn:
            if values:
                conn.execute(
                    update(lists).where(lists.c.id == current.id).values(**values, updated_at=now)
                )
            if offers is not None:
                gone = [org for org in current.shared_with if org not in offers]
                if gone:
                    conn.execute(
                        delete(list_shares).where(
                            list_shares.c.list_id == current.id,
                            list_shares.c.organisation_id.in_(
                                select(organisations.c.id).where(organisations.c.name.in_(gone))
                            ),
                        )
                    )
                fresh = [org for org in offers if org not in current.shared_with]
                self._offer(conn, current.id, fresh, actor, now)
            cursor = self._changes.record(conn, "list", current.id, 0)
            old = current.editable()
            new = {**old, **{k: v for k, v in values.items() if k in old}}
            if offers is not None:
                new["shared_with"] = sorted(offers)
            changed = sorted(k for k in new if new[k] != old[k])
            details = {"old": {k: old[k] for k in changed}, "new": {k: new[k] for k in changed}}
            self._audit.record(
                conn, actor, "list.update", name, {"cursor": cursor}, details=details
            )
        return self.get(name)

    def _offer(
        self, conn: Connection, list_id: int, offers: Sequence[str], actor: str, now: dt.datetime
    ) -> None:
        for organisation in offers:
            org_id = self.organisation_id(organisation, conn)
            conn.execute(
                insert(list_shares).values(
                    list_id=list_id,
                    organisation_id=org_id,
                    offered_at=now,
                    offered_by=actor,
                    trusted=False,
                )
            )

    def answer_offer(
        self,
        name: str,
        organisation: str,
        *,
        actor: str,
        accept: bool,
        trust: bool = False,
    ) -> ListInfo:
        """``organisation`` accepts the offer of list ``name`` (optionally trusting it, if it
        is an allow-list, to suppress hits of its own block lists), or leaves it."""
        organisation = fields.organisation(organisation)
        info = self.get(name)
        if organisation not in info.shared_with:
            raise NotFound(f"list {name!r} is not offered to {organisation!r}")
        if trust and (not accept or info.kind != "allow"):
            raise InvalidField("trust", "only an accepted allow-list can be trusted")
        old = {
            "accepted": organisation in info.accepted_by,
            "trusted": organisation in info.trusted_by,
        }
        new = {"accepted": accept, "trusted": trust}
        with self._database.write_transaction() as conn:
            org_id = self.organisation_id(organisation, conn)
            cursor = self._changes.record(conn, "list", info.id, 0)
            conn.execute(
                update(list_shares)
                .where(list_shares.c.list_id == info.id, list_shares.c.organisation_id == org_id)
                .values(
                    accepted_at=utcnow() if accept else None,
                    accepted_by=actor if accept else None,
                    trusted=trust,
                    # A peer feed sends the list whole from the acceptance on.
                    accepted_change=cursor if accept else None,
                )
            )
            action = "share.accept" if accept else "share.leave"
            self._audit.record(
                conn,
                actor,
                action,
                name,
                {"cursor": cursor, "organisation": organisation},
                details={"old": old, "new": new},
            )
        return self.get(name)

    def get(self, name: str) -> ListInfo:
        if not isinstance(name, str) or not fields.is_list_name(name):
            raise NotFound(f"no list named {name[:128]!r}")
        for info in self.all(names=[name]):
            return info
        raise NotFound(f"no list named {name!r}")

    def all(self, names: Sequence[str] | None = None) -> list[ListInfo]:
        query = (
            select(lists, organisations.c.name.label("owner"))
            .join(organisations, organisations.c.id == lists.c.owner_id)
            .order_by(lists.c.name)
        )
        if names is not None:
            query = query.where(lists.c.name.in_(names))
        shares: dict[int, list[tuple[str, bool, bool]]] = {}
        with self._database.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
            for list_id, org, accepted_at, trusted in conn.execute(
                select(
                    list_shares.c.list_id,
                    organisations.c.name,
                    list_shares.c.accepted_at,
                    list_shares.c.trusted,
                ).join(organisations, organisations.c.id == list_shares.c.organisation_id)
            ):
                shares.setdefault(int(list_id), []).append(
                    (str(org), accepted_at is not None, bool(trusted))
                )
        infos = []
        for r in rows:
            offered = sorted(shares.get(int(r["id"]), []))
            infos.append(
                ListInfo(
                    id=int(r["id"]),
                    name=r["name"],
                    owner=r["owner"],
                    kind=r["kind"],
                    category=r["category"],
                    source=r["source"],
                    jurisdiction=r["jurisdiction"],
                    description=r["description"],
                    enabled=bool(r["enabled"]),
                    thresholds=dict(r["thresholds"]),
                    tlp=r["tlp"],
                    origin=dict(r["origin"]) if r["origin"] is not None else None,
                    shared_with=tuple(org for org, _, _ in offered),
                    accepted_by=tuple(org for org, accepted, _ in offered if accepted),
                    trusted_by=tuple(org for org, accepted, t in offered if accepted and t),
                    created_at=r["created_at"],
                    updated_at=r["updated_at"],
                )
            )
        return infos


def mirror_thresholds(origin: dict[str, Any], local: dict[str, int]) -> dict[str, int]:
    """A mirror's thresholds: the origin's, tightened where the local operator set stricter
    ones (a lower distance, a higher video percentage)."""
    thresholds = dict(origin.get("thresholds", {}))
    for name, value in local.items():
        current = thresholds.get(name, value)
        thresholds[name] = value if is_tightened(name, value, current) else current
    return thresholds


def _description(value: object) -> str:
    return fields.text(value, "description", fields.MAX_DESCRIPTION_CHARS, multiline=True).strip()


def _offers(organisations_: object, owner: str) -> tuple[str, ...]:
    if isinstance(organisations_, str) or not isinstance(organisations_, Sequence):
        raise InvalidField("shared_with", "must be a list of organisation names")
    offers = fields.organisations(organisations_, "shared_with")
    if owner in offers:
        raise InvalidField("shared_with", f"{owner!r} owns the list; it cannot be offered it")
    return offers
