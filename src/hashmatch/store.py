"""Durable lists: the database, its migrations, and every query the service makes of it.

SQLite in the data directory by default, PostgreSQL when ``HASHMATCH_DATABASE_URL`` is set.
Every write is one transaction that also appends its change-log row and its audit row, so an
import that fails half way leaves nothing behind. Writers are serialised (SQLite's write lock,
a PostgreSQL advisory lock) so that change cursors are committed in the order they are handed
out and a replica tailing ``cursor > c`` never skips a change.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from sqlalchemy import (
    Connection,
    Engine,
    Text,
    and_,
    cast,
    create_engine,
    delete,
    event,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.exc import DataError, IntegrityError, InterfaceError, OperationalError

from hashmatch import fields
from hashmatch.bulk import EntryTuple, insert_entries
from hashmatch.errors import (
    Conflict,
    ImportRejected,
    InvalidField,
    NotFound,
    StoreUnavailable,
)
from hashmatch.formats_in import HashRow, RowError
from hashmatch.hashing import Algorithm, Hash
from hashmatch.policy import DEFAULT_BOUNDS, DEFAULT_THRESHOLDS, ThresholdBounds
from hashmatch.schema import audit, changes, entries, list_shares, lists, organisations

__all__ = ["DEFAULT_THRESHOLDS", "ListInfo", "Store"]

LIST_KINDS: Final = ("block", "allow")
IMPORT_BATCH: Final = 20_000
MAX_REPORTED_ERRORS: Final = 1_000
#: Hashes per ``IN (...)`` lookup: under SQLite's oldest limit of 999 bound parameters.
LOOKUP_CHUNK: Final = 900
#: Fields of a list its owner may change, and the rule each value must meet.
_LIST_TEXT_FIELDS: Final = {
    "source": fields.MAX_SOURCE_CHARS,
    "jurisdiction": fields.MAX_JURISDICTION_CHARS,
}
_WRITER_LOCK_KEY: Final = 0x68617368  # "hash": PostgreSQL advisory lock of all writers
CHANGES_CHANNEL: Final = "hashmatch_changes"  # PostgreSQL NOTIFY channel of every commit


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class ListInfo:
    id: int
    name: str
    owner: str
    kind: str
    category: str
    source: str
    jurisdiction: str
    description: str
    enabled: bool
    thresholds: dict[str, int]
    #: Organisations the list is offered to; of those, the ones that accepted it, and the
    #: ones that let it (an allow-list) suppress hits of their own block lists.
    shared_with: tuple[str, ...] = ()
    accepted_by: tuple[str, ...] = ()
    trusted_by: tuple[str, ...] = ()
    created_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None

    def as_dict(self, organisation: str | None = None) -> dict[str, Any]:
        """The list as ``organisation`` may see it: its sharing in full for the owner (and
        the operator, ``None``), only its own offer for anyone else."""

        def seen(names: tuple[str, ...]) -> list[str]:
            if organisation is None or organisation == self.owner:
                return list(names)
            return [name for name in names if name == organisation]

        return {
            "name": self.name,
            "owner": self.owner,
            "kind": self.kind,
            "category": self.category,
            "source": self.source,
            "jurisdiction": self.jurisdiction,
            "description": self.description,
            "enabled": self.enabled,
            "thresholds": self.thresholds,
            "shared_with": seen(self.shared_with),
            "accepted_by": seen(self.accepted_by),
            "trusted_by": seen(self.trusted_by),
        }

    def offer_to(self, organisation: str) -> dict[str, Any]:
        """The offer of this list to ``organisation``, as that organisation sees it."""
        return {
            "list": self.name,
            "owner": self.owner,
            "kind": self.kind,
            "category": self.category,
            "state": "accepted" if organisation in self.accepted_by else "offered",
            "trusted": organisation in self.trusted_by,
        }

    def editable(self) -> dict[str, Any]:
        """The values an owner may change, as the audit log records them."""
        return {
            "enabled": self.enabled,
            "description": self.description,
            "source": self.source,
            "jurisdiction": self.jurisdiction,
            "category": self.category,
            "thresholds": dict(self.thresholds),
            "shared_with": list(self.shared_with),
        }


@dataclass
class ImportReport:
    list_name: str
    cursor: int | None = None
    added: int = 0
    duplicates: int = 0
    rejected: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    #: Rows whose hash was withdrawn from this list: never revived by an import.
    previously_withdrawn: int = 0
    withdrawn_rows: list[dict[str, Any]] = field(default_factory=list)

    def reject(self, error: RowError) -> None:
        self.rejected += 1
        if len(self.errors) < MAX_REPORTED_ERRORS:
            # A reason may quote the file's own text: it must still encode as the report.
            self.errors.append({"line": error.line, "reason": fields.printable(error.reason)})

    def skip_withdrawn(self, row: HashRow) -> None:
        self.previously_withdrawn += 1
        if len(self.withdrawn_rows) < MAX_REPORTED_ERRORS:
            self.withdrawn_rows.append(
                {
                    "line": row.line,
                    "reason": "withdrawn from this list before; not revived by an import "
                    "(revive it explicitly, with a reason)",
                }
            )

    def as_dict(self) -> dict[str, Any]:
        return {
            "list": self.list_name,
            "cursor": self.cursor,
            "added": self.added,
            "duplicates": self.duplicates,
            "previously_withdrawn": self.previously_withdrawn,
            "rejected": self.rejected,
            "errors": self.errors,
            "errors_truncated": self.rejected > len(self.errors),
            "withdrawn_rows": self.withdrawn_rows,
        }


@dataclass(frozen=True)
class EntryRow:
    id: int
    list_id: int
    hash: Hash
    reference: str | None
    labels: tuple[str, ...]
    added_at: dt.datetime
    withdrawn_at: dt.datetime | None = None


@dataclass(frozen=True)
class Change:
    cursor: int
    kind: str
    list_id: int
    count: int
    at: dt.datetime


def database_url(data_dir: Path, configured: str | None) -> str:
    if configured:
        return configured
    data_dir.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(data_dir / 'hashmatch.db').resolve()}"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _sqlite_begin(connection: Any) -> None:
    # A writer takes the write lock at BEGIN: two writers never interleave, and never deadlock
    # upgrading a read lock. Readers begin deferred and go on reading a WAL snapshot meanwhile.
    writing = connection.get_execution_options().get("hashmatch_write", False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if writing else "BEGIN")


def _translate_error(context: ExceptionContext) -> None:
    """Database failures -> domain errors, once for every query: an unreachable database is
    a 503 to retry, a value the database refuses is the caller's 422, a clash with stored data
    a 409. None of the messages carries a value: the database's own (``Key (name)=(...)``)
    would, and so would the statement's parameters, which the engine hides as well."""
    error = context.sqlalchemy_exception
    cause = type(context.original_exception).__name__
    if context.is_disconnect or isinstance(error, OperationalError | InterfaceError):
        raise StoreUnavailable(f"database unavailable ({cause})") from None
    if isinstance(error, DataError):
        raise InvalidField("value", f"refused by the database ({cause})") from None
    if isinstance(error, IntegrityError):
        raise Conflict(f"the change conflicts with stored data ({cause})") from None


class Store:
    def __init__(self, engine: Engine, bounds: ThresholdBounds = DEFAULT_BOUNDS) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self.bounds = bounds

    @classmethod
    def open(
        cls, url: str, *, migrate: bool = True, bounds: ThresholdBounds = DEFAULT_BOUNDS
    ) -> Store:
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
        # Parameters never reach an error message or a log line: they hold hash values and
        # withdrawal reasons.
        engine = create_engine(url, pool_pre_ping=True, hide_parameters=True)
        event.listen(engine, "handle_error", _translate_error)
        if engine.dialect.name == "sqlite":
            event.listen(engine, "connect", _sqlite_pragmas)
            # pysqlite's own transaction handling must stay out of the way of BEGIN IMMEDIATE.
            event.listen(engine, "connect", lambda c, _r: setattr(c, "isolation_level", None))
            event.listen(engine, "begin", _sqlite_begin)
        store = cls(engine, bounds)
        if migrate:
            from hashmatch.migrate import upgrade

            upgrade(store)
        return store

    def close(self) -> None:
        self.engine.dispose()

    def change_listener(self) -> ChangeListener:
        return ChangeListener(self)

    # --- transactions -----------------------------------------------------------------------

    def write_transaction(self) -> Any:
        return _WriteTransaction(self)

    # --- organisations and lists --------------------------------------------------------------

    def ensure_organisation(self, name: str, connection: Connection | None = None) -> int:
        name = fields.organisation(name)
        if connection is None:
            with self.write_transaction() as conn:
                return self.ensure_organisation(name, conn)
        found = connection.execute(
            select(organisations.c.id).where(organisations.c.name == name)
        ).scalar()
        if found is not None:
            return int(found)
        result = connection.execute(insert(organisations).values(name=name, created_at=utcnow()))
        return new_id(result)

    def create_list(
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
        }
        offers = _offers(shared_with, owner)
        now = utcnow()
        with self.write_transaction() as conn:
            owner_id = self.ensure_organisation(owner, conn)
            try:
                list_id = new_id(
                    conn.execute(
                        insert(lists).values(
                            name=name,
                            owner_id=owner_id,
                            kind=kind,
                            enabled=True,
                            created_at=now,
                            updated_at=now,
                            **values,
                        )
                    )
                )
            except Conflict:
                raise Conflict(f"a list named {name!r} already exists") from None
            self._offer(conn, list_id, offers, actor, now)
            cursor = self.record_change(conn, "list", list_id, 0)
            details = {"new": {**values, "kind": kind, "shared_with": list(offers)}}
            self.audit(conn, actor, "list.create", name, {"cursor": cursor}, details=details)
        return self.get_list(name)

    def update_list(self, name: str, *, actor: str, **changes: Any) -> ListInfo:
        """Change what its owner may change; the audit row keeps the old and new values.
        ``shared_with`` replaces the set of offers: organisations left out lose the list
        (accepted or not), new ones get an offer, the others keep their answer."""
        allowed = {"enabled", "description", "source", "jurisdiction", "category", "thresholds"}
        unknown = set(changes) - allowed - {"shared_with"}
        if unknown:
            raise InvalidField(sorted(unknown)[0], "cannot be changed")
        current = self.get_list(name)
        values: dict[str, Any] = {}
        for key, value in changes.items():
            if value is None or key == "shared_with":
                continue
            if key == "enabled":
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
        now = utcnow()
        with self.write_transaction() as conn:
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
            cursor = self.record_change(conn, "list", current.id, 0)
            old = current.editable()
            new = {**old, **values}
            if offers is not None:
                new["shared_with"] = sorted(offers)
            changed = sorted(k for k in new if new[k] != old[k])
            details = {"old": {k: old[k] for k in changed}, "new": {k: new[k] for k in changed}}
            self.audit(conn, actor, "list.update", name, {"cursor": cursor}, details=details)
        return self.get_list(name)

    def _offer(
        self, conn: Connection, list_id: int, offers: Sequence[str], actor: str, now: dt.datetime
    ) -> None:
        for organisation in offers:
            org_id = self.ensure_organisation(organisation, conn)
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
        info = self.get_list(name)
        if organisation not in info.shared_with:
            raise NotFound(f"list {name!r} is not offered to {organisation!r}")
        if trust and (not accept or info.kind != "allow"):
            raise InvalidField("trust", "only an accepted allow-list can be trusted")
        old = {
            "accepted": organisation in info.accepted_by,
            "trusted": organisation in info.trusted_by,
        }
        new = {"accepted": accept, "trusted": trust}
        with self.write_transaction() as conn:
            org_id = self.ensure_organisation(organisation, conn)
            conn.execute(
                update(list_shares)
                .where(list_shares.c.list_id == info.id, list_shares.c.organisation_id == org_id)
                .values(
                    accepted_at=utcnow() if accept else None,
                    accepted_by=actor if accept else None,
                    trusted=trust,
                )
            )
            cursor = self.record_change(conn, "list", info.id, 0)
            action = "share.accept" if accept else "share.leave"
            self.audit(
                conn,
                actor,
                action,
                name,
                {"cursor": cursor, "organisation": organisation},
                details={"old": old, "new": new},
            )
        return self.get_list(name)

    def get_list(self, name: str) -> ListInfo:
        if not isinstance(name, str) or not fields.is_list_name(name):
            raise NotFound(f"no list named {name[:128]!r}")
        for info in self.lists(names=[name]):
            return info
        raise NotFound(f"no list named {name!r}")

    def lists(self, names: Sequence[str] | None = None) -> list[ListInfo]:
        query = (
            select(lists, organisations.c.name.label("owner"))
            .join(organisations, organisations.c.id == lists.c.owner_id)
            .order_by(lists.c.name)
        )
        if names is not None:
            query = query.where(lists.c.name.in_(names))
        shares: dict[int, list[tuple[str, bool, bool]]] = {}
        with self.engine.connect() as conn:
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
                    shared_with=tuple(org for org, _, _ in offered),
                    accepted_by=tuple(org for org, accepted, _ in offered if accepted),
                    trusted_by=tuple(org for org, accepted, t in offered if accepted and t),
                    created_at=r["created_at"],
                    updated_at=r["updated_at"],
                )
            )
        return infos

    # --- entries ----------------------------------------------------------------------------

    def import_rows(
        self,
        list_name: str,
        rows: Iterable[HashRow | RowError],
        *,
        actor: str,
        strict: bool = False,
    ) -> ImportReport:
        """Add every valid row in one transaction; bad rows are reported (line, reason).

        With ``strict`` any bad row rejects the whole import. Rows whose hash is already live
        in the list are skipped and counted as duplicates; rows whose hash was withdrawn from
        the list are skipped and reported: a withdrawal sticks until revived explicitly.
        """
        info = self.get_list(list_name)
        report = ImportReport(list_name)
        valid = 0
        with self.write_transaction() as conn:
            has_tombstones = self._has_tombstones(conn, info.id)
            cursor = self.record_change(conn, "add", info.id, 0)
            now = utcnow()
            batch: list[HashRow] = []

            def flush() -> None:
                nonlocal valid
                withdrawn = self._tombstoned(conn, info.id, batch) if has_tombstones else set()
                kept: list[EntryTuple] = []
                for row in batch:
                    if (row.hash.algorithm.value, row.hash.value) in withdrawn:
                        report.skip_withdrawn(row)
                        continue
                    value = row.hash
                    kept.append((value.algorithm.value, value.value, row.reference, row.labels))
                valid += len(kept)
                insert_entries(
                    conn, kept, list_id=info.id, cursor=cursor, added_at=now, added_by=actor
                )
                batch.clear()

            for row in rows:
                checked = _checked_row(row)
                if isinstance(checked, RowError):
                    report.reject(checked)
                    continue
                batch.append(checked)
                if len(batch) >= IMPORT_BATCH:
                    flush()
            if strict and report.rejected:
                raise ImportRejected(
                    f"{report.rejected} bad rows; nothing imported (strict)", report
                )
            flush()
            added = conn.execute(
                select(func.count()).select_from(entries).where(entries.c.added_change == cursor)
            ).scalar_one()
            report.added = int(added)
            report.duplicates = valid - report.added
            report.cursor = cursor
            conn.execute(update(changes).where(changes.c.cursor == cursor).values(count=added))
            self.audit(
                conn,
                actor,
                "entries.import",
                list_name,
                {
                    "added": report.added,
                    "duplicates": report.duplicates,
                    "previously_withdrawn": report.previously_withdrawn,
                    "rejected": report.rejected,
                    "cursor": cursor,
                },
            )
        return report

    @staticmethod
    def _has_tombstones(conn: Connection, list_id: int) -> bool:
        found = conn.execute(
            select(entries.c.id)
            .where(entries.c.list_id == list_id, entries.c.withdrawn_at.is_not(None))
            .limit(1)
        ).first()
        return found is not None

    @staticmethod
    def _tombstoned(
        conn: Connection, list_id: int, rows: Sequence[HashRow]
    ) -> set[tuple[str, bytes]]:
        """``(algorithm, hash)`` of the rows withdrawn from the list and not live again."""
        live = aliased_entries()
        found: set[tuple[str, bytes]] = set()
        for algorithm in {row.hash.algorithm for row in rows}:
            values = list({row.hash.value for row in rows if row.hash.algorithm is algorithm})
            for start in range(0, len(values), LOOKUP_CHUNK):
                query = select(entries.c.hash).where(
                    entries.c.list_id == list_id,
                    entries.c.algorithm == algorithm.value,
                    entries.c.hash.in_(values[start : start + LOOKUP_CHUNK]),
                    entries.c.withdrawn_at.is_not(None),
                    ~select(live.c.id)
                    .where(
                        and_(
                            live.c.list_id == list_id,
                            live.c.algorithm == algorithm.value,
                            live.c.hash == entries.c.hash,
                            live.c.withdrawn_at.is_(None),
                        )
                    )
                    .exists(),
                )
                found.update((algorithm.value, bytes(v)) for (v,) in conn.execute(query))
        return found

    def entries(
        self,
        list_name: str,
        *,
        include_withdrawn: bool = False,
        after_id: int = 0,
        limit: int | None = None,
    ) -> Iterator[EntryRow]:
        info = self.get_list(list_name)
        query = (
            select(entries)
            .where(entries.c.list_id == info.id, entries.c.id > after_id)
            .order_by(entries.c.id)
        )
        if not include_withdrawn:
            query = query.where(entries.c.withdrawn_at.is_(None))
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            for r in conn.execution_options(yield_per=10_000).execute(query).mappings():
                yield _entry(r)

    # --- change log and audit ---------------------------------------------------------------

    def latest_cursor(self) -> int:
        with self.engine.connect() as conn:
            return int(
                conn.execute(select(func.coalesce(func.max(changes.c.cursor), 0))).scalar_one()
            )

    def changes_after(self, cursor: int, limit: int = 1000) -> list[Change]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(changes)
                .where(changes.c.cursor > cursor)
                .order_by(changes.c.cursor)
                .limit(limit)
            ).mappings()
            return [
                Change(int(r["cursor"]), r["kind"], int(r["list_id"]), int(r["count"]), r["at"])
                for r in rows
            ]

    def live_rows(
        self, *, upto_cursor: int | None = None
    ) -> Iterator[tuple[int, int, str, bytes, str | None, str]]:
        """Every live entry as plain columns (id, list id, algorithm, hash, reference, labels
        as JSON text): the matcher's bulk load, without an object per row."""
        query = (
            select(
                entries.c.id,
                entries.c.list_id,
                entries.c.algorithm,
                entries.c.hash,
                entries.c.reference,
                cast(entries.c.labels, Text),
            )
            .where(entries.c.withdrawn_at.is_(None))
            .order_by(entries.c.id)
        )
        if upto_cursor is not None:
            query = query.where(entries.c.added_change <= upto_cursor)
        with self.engine.connect() as conn:
            for row in conn.execution_options(yield_per=50_000).execute(query):
                yield int(row[0]), int(row[1]), row[2], bytes(row[3]), row[4], row[5]

    def entries_added_by(self, cursor: int) -> list[EntryRow]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(entries).where(entries.c.added_change == cursor).order_by(entries.c.id)
            ).mappings()
            return [_entry(r) for r in rows]

    def entries_withdrawn_by(self, cursor: int) -> list[int]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(entries.c.id).where(entries.c.withdrawn_change == cursor))
            return [int(r[0]) for r in rows]

    def audit_log(self, list_name: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        query = select(audit).order_by(audit.c.id.desc()).limit(limit)
        if list_name is not None:
            query = query.where(audit.c.target == fields.list_name(list_name, "list"))
        with self.engine.connect() as conn:
            return [
                {**dict(r), "at": r["at"].isoformat() if r["at"] else None}
                for r in conn.execute(query).mappings()
            ]

    def record_change(self, conn: Connection, kind: str, list_id: int, count: int = 0) -> int:
        result = conn.execute(
            insert(changes).values(kind=kind, list_id=list_id, count=count, at=utcnow())
        )
        return new_id(result)

    @staticmethod
    def audit(
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


class _WriteTransaction:
    """A connection in one write transaction, serialised against every other writer."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._conn: Connection | None = None
        self._transaction: Any = None

    def __enter__(self) -> Connection:
        conn = self._store.engine.connect().execution_options(hashmatch_write=True)
        self._conn = conn
        self._transaction = conn.begin()
        if self._store.dialect == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _WRITER_LOCK_KEY})
        return conn

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        assert self._conn is not None
        try:
            if exc_type is None:
                if self._store.dialect == "postgresql":
                    # Delivered to listening replicas when, and only if, this commits.
                    self._conn.execute(text(f"NOTIFY {CHANGES_CHANNEL}"))
                self._transaction.commit()
            else:
                self._transaction.rollback()
        finally:
            self._conn.close()


def new_id(result: Any) -> int:
    key = result.inserted_primary_key
    assert key is not None and key[0] is not None, "insert returned no primary key"
    return int(key[0])


def _entry(r: Any) -> EntryRow:
    return EntryRow(
        id=int(r["id"]),
        list_id=int(r["list_id"]),
        hash=Hash(Algorithm(r["algorithm"]), bytes(r["hash"])),
        reference=r["reference"],
        labels=tuple(r["labels"] or ()),
        added_at=r["added_at"],
        withdrawn_at=r["withdrawn_at"],
    )


def aliased_entries() -> Any:
    return entries.alias("live")


def _description(value: object) -> str:
    return fields.text(value, "description", fields.MAX_DESCRIPTION_CHARS, multiline=True).strip()


def _offers(organisations_: object, owner: str) -> tuple[str, ...]:
    if isinstance(organisations_, str) or not isinstance(organisations_, Sequence):
        raise InvalidField("shared_with", "must be a list of organisation names")
    offers = fields.organisations(organisations_, "shared_with")
    if owner in offers:
        raise InvalidField("shared_with", f"{owner!r} owns the list; it cannot be offered it")
    return offers


def _checked_row(row: HashRow | RowError) -> HashRow | RowError:
    """The store's own check of a row's text, whatever read it: the same rule for every path."""
    if isinstance(row, RowError):
        return row
    try:
        reference = fields.reference(row.reference)
        labels = fields.labels(row.labels)
    except InvalidField as exc:
        return RowError(row.line, exc.message)
    if reference == row.reference and labels == row.labels:
        return row
    return HashRow(row.line, row.hash, reference, labels)


class ChangeListener:
    """Waits for the next committed change: PostgreSQL LISTEN where available, else a timer.

    A replica's follower calls :meth:`wait` between refreshes, so a commit elsewhere wakes it
    at once on PostgreSQL and within the poll interval on SQLite.
    """

    def __init__(self, store: Store) -> None:
        self._store = store
        self._connection: Any = None
        self._idle = threading.Event()
        if store.dialect == "postgresql":
            import psycopg

            url = store.engine.url.set(drivername="postgresql")
            try:
                self._connection = psycopg.connect(
                    url.render_as_string(hide_password=False), autocommit=True
                )
                self._connection.execute(f"LISTEN {CHANGES_CHANNEL}")
            except psycopg.Error:
                self._connection = None  # polling alone still keeps the replica fresh

    @property
    def notified(self) -> bool:
        return self._connection is not None

    def wait(self, timeout: float) -> None:
        if self._connection is None:
            self._idle.wait(timeout)
            return
        try:
            for _ in self._connection.notifies(timeout=timeout, stop_after=1):
                pass
        except Exception:
            self.close()
            self._idle.wait(timeout)

    def wake(self) -> None:
        """End a :meth:`wait` in progress (another thread's), e.g. to stop its follower."""
        self._idle.set()
        if self._connection is not None:
            with contextlib.suppress(Exception), self._store.engine.connect() as conn:
                conn.execute(text(f"NOTIFY {CHANGES_CHANNEL}"))
                conn.commit()

    def close(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):
                self._connection.close()
            self._connection = None
