"""The audit log: who did what to which list or key, when, why, and the values before and
after. Rows are written in the same transaction as the change they record.

An organisation's staff read the rows that concern it (:meth:`AuditLog.search`): a row's
``target`` is a list's name, an organisation's name, a key's id or a peer's name, depending on
its ``action`` (the sets below say which), and its ``actor`` is one of the organisation's keys
(``key:<id>:<org>``) or people (``user:<login>:<org>``) when they acted. A row whose action is
in none of the sets is shown only to the organisation whose key or person wrote it: a name is
never matched against a namespace it was not written in (an organisation may be called what
another organisation's list is called, and a key's id may be an organisation's name).
"""

from __future__ import annotations

import datetime as dt
import heapq
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import (
    ColumnElement,
    Connection,
    Select,
    insert,
    literal_column,
    select,
    text,
    union_all,
)

from hashmatch import fields
from hashmatch.store.database import Database, utcnow
from hashmatch.store.schema import api_keys, audit, lists, organisations, peers, users

#: Actions whose target is a list's name.
LIST_ACTIONS: Final = frozenset(
    {
        "entries.import",
        "entries.withdraw",
        "entries.revive",
        "false_positive.resolve",
        "list.create",
        "list.update",
        "list.probed",
        "mirror.create",
        "mirror.apply",
        "mirror.unshared",
        "share.accept",
        "share.leave",
    }
)
#: Actions whose target is an organisation's name.
ORGANISATION_ACTIONS: Final = frozenset(
    {
        "audit.export",
        "key.create",
        "outcomes.report",
        "user.create",
        "user.disable",
        "user.enable",
        "user.locked",
        "user.password",
        "user.reset",
        "user.totp_enrol",
        "webhook.set",
    }
)
#: Actions whose target is an API key's id.
KEY_ACTIONS: Final = frozenset({"key.revoke", "key.suspend", "key.reinstate"})
#: Actions whose target is a peer's name. Peers can be removed and their name given to a
#: peer of another organisation: each row belongs to the peer added last before it.
PEER_ACTIONS: Final = frozenset(
    {"peer.add", "peer.pause", "peer.resume", "peer.resync", "peer.remove"}
)
#: Index seeks per statement (SQLite allows 500 terms in a compound SELECT).
_BRANCHES_PER_STATEMENT: Final = 100
MAX_PAGE: Final = 1000
#: The largest id a database holds (64-bit signed): a ``before_id`` past it bounds nothing.
MAX_ID: Final = 2**63 - 1


@dataclass(frozen=True)
class Scope:
    """What belongs to one organisation, as the audit log names it."""

    organisation: str
    actors: frozenset[str]
    lists: frozenset[str]
    keys: frozenset[str]
    #: Peer name -> the id ranges ``[first, last)`` of its incarnations owned here.
    peers: dict[str, tuple[tuple[int, int | None], ...]]

    def owns_row(self, row: dict[str, Any]) -> bool:
        """The same rule as the query, for one row (the CSV export re-checks each row)."""
        action, target = row["action"], row["target"]
        if row["actor"] in self.actors:
            return True
        if action in LIST_ACTIONS:
            return target in self.lists
        if action in ORGANISATION_ACTIONS:
            return bool(target == self.organisation)
        if action in KEY_ACTIONS:
            return target in self.keys
        if action in PEER_ACTIONS:
            return any(
                first <= row["id"] and (last is None or row["id"] < last)
                for first, last in self.peers.get(target, ())
            )
        return False


@dataclass(frozen=True)
class _Branch:
    """One index seek: the rows of one actor (ix_audit_actor_id) or of one target
    (ix_audit_target), newest first, of some actions only, within an id span."""

    column: str  # "actor" | "target"
    value: str
    actions: frozenset[str] | None = None
    target: str | None = None
    first: int | None = None
    last: int | None = None


@dataclass(frozen=True)
class _Filters:
    before_id: int | None
    action: str | None
    actor: str | None
    since: dt.datetime | None
    until: dt.datetime | None


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


def _utc(value: dt.datetime) -> dt.datetime:
    """``value`` in UTC, as the column holds it (SQLite keeps no offset: compare like with
    like)."""
    return _aware(value).astimezone(dt.UTC)


def _row(row: Any) -> dict[str, Any]:
    values = dict(row)
    values["at"] = _aware(values["at"]).astimezone(dt.UTC).isoformat() if values["at"] else None
    return values


def _branches(scope: Scope, filters: _Filters, list_name: str | None) -> list[_Branch]:
    """The seeks that together find the organisation's rows; those the filters rule out
    entirely are not made."""
    action, actor = filters.action, filters.actor

    def wanted(kind: frozenset[str]) -> bool:
        return action is None or action in kind

    branches: list[_Branch] = []
    # Rows its own keys and people wrote: all of them.
    own_actors = scope.actors if actor is None else scope.actors & {actor}
    for name in sorted(own_actors):
        if list_name is None:
            branches.append(_Branch("actor", name))
        elif wanted(LIST_ACTIONS):
            branches.append(_Branch("actor", name, LIST_ACTIONS, target=list_name))
    if actor is not None and actor in scope.actors:
        return branches  # every row of an own actor is in its branch already
    # Rows about what it owns, whoever wrote them.
    if list_name is not None:
        if list_name in scope.lists and wanted(LIST_ACTIONS):
            branches.append(_Branch("target", list_name, LIST_ACTIONS))
        return branches
    if wanted(LIST_ACTIONS):
        branches += [_Branch("target", name, LIST_ACTIONS) for name in sorted(scope.lists)]
    if wanted(ORGANISATION_ACTIONS):
        branches.append(_Branch("target", scope.organisation, ORGANISATION_ACTIONS))
    if wanted(KEY_ACTIONS):
        branches += [_Branch("target", key, KEY_ACTIONS) for key in sorted(scope.keys, key=int)]
    if wanted(PEER_ACTIONS):
        for name, spans in sorted(scope.peers.items()):
            branches += [
                _Branch("target", name, PEER_ACTIONS, first=first, last=last)
                for first, last in spans
            ]
    return branches


def _seek(branch: _Branch, filters: _Filters, limit: int, sqlite: bool) -> Select[Any]:
    """The newest ``limit`` ids of ``branch`` that pass ``filters``.

    The seek column's index holds each value's rows in id order (SQLite keeps the rowid in
    every index), so the seek reads them newest first and stops after ``limit``. On SQLite the
    other columns are compared through a unary ``+`` (SQLite's documented way to keep a term
    from choosing an index): without statistics it would otherwise seek on
    ix_audit_action_id, ix_audit_actor_id or ix_audit_at and filter every organisation's rows
    of an action, an actor or a day down to this branch's."""

    def column(name: str) -> ColumnElement[Any]:
        if not sqlite or name in (branch.column, "id"):
            return audit.c[name]
        return literal_column(f"+audit.{name}", audit.c[name].type)

    conditions: list[ColumnElement[bool]] = [column(branch.column) == branch.value]
    if branch.target is not None:
        conditions.append(column("target") == branch.target)
    if filters.action is not None:
        conditions.append(column("action") == filters.action)
    elif branch.actions is not None:
        conditions.append(column("action").in_(sorted(branch.actions)))
    if filters.actor is not None and branch.column != "actor":
        conditions.append(column("actor") == filters.actor)
    if branch.first is not None:
        conditions.append(audit.c.id >= branch.first)
    if branch.last is not None:
        conditions.append(audit.c.id < branch.last)
    if filters.before_id is not None:
        conditions.append(audit.c.id < filters.before_id)
    if filters.since is not None:
        conditions.append(column("at") >= _utc(filters.since))
    if filters.until is not None:
        conditions.append(column("at") < _utc(filters.until))
    return select(audit.c.id).where(*conditions).order_by(audit.c.id.desc()).limit(limit)


class AuditLog:
    def __init__(self, database: Database) -> None:
        self._database = database

    @staticmethod
    def record(
        conn: Connection,
        actor: str,
        action: str,
        target: str,
        counts: dict[str, Any],
        reason: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        conn.execute(
            insert(audit).values(
                at=utcnow(),
                actor=fields.text(actor, "actor", fields.MAX_ACTOR_CHARS),
                action=action,
                target=target,
                counts=counts,
                reason=reason,
                details=details,
            )
        )

    def log(self, target: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """The latest rows first; only those about ``target`` (a list's name) when given."""
        query = select(audit).order_by(audit.c.id.desc()).limit(limit)
        if target is not None:
            if not isinstance(target, str) or not fields.is_list_name(target):
                fields.list_name(target, "list")  # raises, saying what a name is
            query = query.where(audit.c.target == target)
        with self._database.engine.connect() as conn:
            return [
                {**dict(r), "at": r["at"].isoformat() if r["at"] else None}
                for r in conn.execute(query).mappings()
            ]

    # --- what an organisation's staff read ----------------------------------------------

    def note(
        self,
        actor: str,
        action: str,
        target: str,
        counts: dict[str, Any],
        details: dict[str, Any] | None = None,
    ) -> None:
        """Record an act that changes nothing else (a person exported the log, say)."""
        with self._database.write_transaction() as conn:
            self.record(conn, actor, action, target, counts, details=details)

    def scope(self, organisation: str, conn: Connection | None = None) -> Scope:
        """The organisation's lists, keys, people and peers, as audit rows name them."""
        if conn is None:
            with self._database.engine.connect() as own:
                return self.scope(organisation, own)
        org_id = conn.execute(
            select(organisations.c.id).where(organisations.c.name == organisation)
        ).scalar()
        if org_id is None:
            return Scope(organisation, frozenset(), frozenset(), frozenset(), {})
        names = conn.execute(select(lists.c.name).where(lists.c.owner_id == org_id)).scalars()
        key_ids = [
            int(k)
            for k in conn.execute(
                select(api_keys.c.id).where(api_keys.c.organisation_id == org_id)
            ).scalars()
        ]
        logins = conn.execute(select(users.c.login).where(users.c.organisation_id == org_id))
        actors = {f"key:{k}:{organisation}" for k in key_ids}
        actors.update(f"user:{login}:{organisation}" for login in logins.scalars())
        return Scope(
            organisation,
            frozenset(actors),
            frozenset(names),
            frozenset(str(k) for k in key_ids),
            self._peer_spans(conn, organisation, int(org_id)),
        )

    @staticmethod
    def _peer_spans(
        conn: Connection, organisation: str, org_id: int
    ) -> dict[str, tuple[tuple[int, int | None], ...]]:
        """Each peer name's incarnations owned by the organisation: from its ``peer.add`` row
        up to the next ``peer.add`` of the same name (ix_audit_action_id: a handful of rows)."""
        added: dict[str, list[tuple[int, object]]] = {}
        for row_id, target, details in conn.execute(
            select(audit.c.id, audit.c.target, audit.c.details)
            .where(audit.c.action == "peer.add")
            .order_by(audit.c.id)
        ):
            new = details.get("new") if isinstance(details, dict) else None
            owner = new.get("organisation") if isinstance(new, dict) else None
            added.setdefault(str(target), []).append((int(row_id), owner))
        current = set(
            conn.execute(select(peers.c.name).where(peers.c.organisation_id == org_id)).scalars()
        )
        spans: dict[str, tuple[tuple[int, int | None], ...]] = {}
        for name in set(added) | current:
            adds = added.get(name, [])
            owned = [
                (first, adds[i + 1][0] if i + 1 < len(adds) else None)
                for i, (first, owner) in enumerate(adds)
                if owner == organisation
            ]
            if name in current and not adds:
                owned = [(0, None)]  # its add row is gone: the whole history is its own
            if owned:
                spans[name] = tuple(owned)
        return spans

    def search(
        self,
        organisation: str,
        *,
        actor: str | None = None,
        action: str | None = None,
        list_name: str | None = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        before_id: int | None = None,
        limit: int = 50,
    ) -> list[dict[str, Any]]:
        """The rows that concern ``organisation`` (see the module's doc), newest first, at
        most ``limit``: those with an id below ``before_id`` (the next page), written by
        ``actor``, of ``action``, about the list ``list_name``, at or after ``since`` and
        before ``until``, for the filters given.

        A page is a set of bounded index seeks, one per thing the organisation owns (each of
        its lists, keys, people and peers, and its name): each reads that thing's rows newest
        first and stops at ``limit``; the newest ``limit`` ids of them all are the page."""
        limit = max(1, min(int(limit), MAX_PAGE))
        if before_id is not None:
            if int(before_id) <= 1:
                return []  # ids start at 1
            if int(before_id) > MAX_ID:
                before_id = None  # past every id there can be
        filters = _Filters(
            None if before_id is None else int(before_id), action, actor, since, until
        )
        with self._database.engine.connect() as conn:
            scope = self.scope(organisation, conn)
            ids = self._newest_ids(conn, _branches(scope, filters, list_name), filters, limit)
            if not ids:
                return []
            rows = conn.execute(
                select(audit).where(audit.c.id.in_(ids)).order_by(audit.c.id.desc())
            ).mappings()
            # The rule once more, row by row: a page never carries another's row.
            return [found for found in map(_row, rows) if scope.owns_row(found)]

    def _newest_ids(
        self, conn: Connection, branches: Sequence[_Branch], filters: _Filters, limit: int
    ) -> list[int]:
        """The newest ``limit`` distinct ids over every branch."""
        sqlite = self._database.dialect == "sqlite"
        found: set[int] = set()
        for start in range(0, len(branches), _BRANCHES_PER_STATEMENT):
            parts: list[Select[Any]] = [
                select(literal_column("id")).select_from(
                    _seek(branch, filters, limit, sqlite).subquery()
                )
                for branch in branches[start : start + _BRANCHES_PER_STATEMENT]
            ]
            if len(parts) == 1:
                query: Any = parts[0]
            else:
                merged = union_all(*parts).subquery()
                query = select(merged.c.id).distinct().order_by(merged.c.id.desc()).limit(limit)
            found.update(int(i) for i in conn.execute(query).scalars())
        return heapq.nlargest(limit, found)

    def actions(self) -> list[str]:
        """The distinct actions in the log, by a skip scan of ix_audit_action_id (one index
        seek per action, not a pass over every row)."""
        with self._database.engine.connect() as conn:
            return [str(x) for x in conn.execute(_DISTINCT_ACTIONS).scalars()]


#: A loose index scan, the same on SQLite and PostgreSQL.
_DISTINCT_ACTIONS: Final = text(
    "WITH RECURSIVE a(x) AS ("
    " SELECT (SELECT min(action) FROM audit)"
    " UNION ALL"
    " SELECT (SELECT min(action) FROM audit WHERE action > a.x) FROM a WHERE a.x IS NOT NULL"
    ") SELECT x FROM a WHERE x IS NOT NULL"
)


def search_all(
    log: AuditLog, organisation: str, *, batch: int = 500, **filters: Any
) -> Iterator[dict[str, Any]]:
    """Every row :meth:`AuditLog.search` finds, newest first, read in keyset batches of
    ``batch`` (a bounded query each, however many rows match)."""
    before: int | None = filters.pop("before_id", None)
    while True:
        rows = log.search(organisation, before_id=before, limit=batch, **filters)
        yield from rows
        if len(rows) < batch:
            return
        before = int(rows[-1]["id"])
