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
    cast,
    create_engine,
    event,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError

from hashmatch.bulk import EntryTuple, insert_entries
from hashmatch.errors import Conflict, ImportRejected, InvalidList, NotFound, StoreError
from hashmatch.formats_in import HashRow, RowError
from hashmatch.hashing import Algorithm, Hash
from hashmatch.schema import audit, changes, entries, list_shares, lists, organisations

#: Measured by ``benchmarks/bench_robustness.py`` on real photographs. PDQ: precision stays at
#: 99.99% on every transform up to 77 bits, and the extrapolated tail of distances between
#: distinct photos reaches one in 10^12 at 44; 31 (Meta's recommendation) keeps two decades of
#: that margin for uploads that are not photographs (screenshots, memes, near-flat images).
#: pHash: precision falls below 99.99% above 7 bits (a 4 degree turn), so one bit under it.
DEFAULT_THRESHOLDS: Final = {"pdq": 31, "phash": 6}
LIST_KINDS: Final = ("block", "allow")
IMPORT_BATCH: Final = 20_000
MAX_REPORTED_ERRORS: Final = 1_000
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
    shared_with: tuple[str, ...] = ()
    created_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None

    def as_dict(self) -> dict[str, Any]:
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

    def reject(self, error: RowError) -> None:
        self.rejected += 1
        if len(self.errors) < MAX_REPORTED_ERRORS:
            self.errors.append({"line": error.line, "reason": error.reason})

    def as_dict(self) -> dict[str, Any]:
        return {
            "list": self.list_name,
            "cursor": self.cursor,
            "added": self.added,
            "duplicates": self.duplicates,
            "rejected": self.rejected,
            "errors": self.errors,
            "errors_truncated": self.rejected > len(self.errors),
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


class Store:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name

    @classmethod
    def open(cls, url: str, *, migrate: bool = True) -> Store:
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
        engine = create_engine(url, pool_pre_ping=True)
        if engine.dialect.name == "sqlite":
            event.listen(engine, "connect", _sqlite_pragmas)
            # pysqlite's own transaction handling must stay out of the way of BEGIN IMMEDIATE.
            event.listen(engine, "connect", lambda c, _r: setattr(c, "isolation_level", None))
            event.listen(engine, "begin", _sqlite_begin)
        store = cls(engine)
        if migrate:
            from hashmatch.migrate import upgrade

            upgrade(engine)
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
        _check_list_fields(name, kind, category)
        merged = {**DEFAULT_THRESHOLDS, **(thresholds or {})}
        _check_thresholds(merged)
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
                            category=category,
                            source=source,
                            jurisdiction=jurisdiction,
                            description=description,
                            enabled=True,
                            thresholds=merged,
                            created_at=now,
                            updated_at=now,
                        )
                    )
                )
            except IntegrityError:
                raise Conflict(f"a list named {name!r} already exists") from None
            for organisation in dict.fromkeys(shared_with):  # a name given twice shares once
                org_id = self.ensure_organisation(organisation, conn)
                conn.execute(insert(list_shares).values(list_id=list_id, organisation_id=org_id))
            cursor = self._change(conn, "list", int(list_id), 0)
            self.audit(conn, actor, "list.create", name, {"cursor": cursor})
        return self.get_list(name)

    def update_list(self, name: str, *, actor: str, **fields: Any) -> ListInfo:
        allowed = {"enabled", "description", "source", "jurisdiction", "category", "thresholds"}
        unknown = set(fields) - allowed - {"shared_with"}
        if unknown:
            raise InvalidList(f"cannot change {', '.join(sorted(unknown))}")
        current = self.get_list(name)
        values = {k: v for k, v in fields.items() if k in allowed and v is not None}
        if "thresholds" in values:
            values["thresholds"] = {**current.thresholds, **values["thresholds"]}
            _check_thresholds(values["thresholds"])
        with self.write_transaction() as conn:
            conn.execute(
                update(lists).where(lists.c.id == current.id).values(**values, updated_at=utcnow())
            )
            if fields.get("shared_with") is not None:
                conn.execute(list_shares.delete().where(list_shares.c.list_id == current.id))
                for organisation in dict.fromkeys(fields["shared_with"]):
                    org_id = self.ensure_organisation(organisation, conn)
                    conn.execute(
                        insert(list_shares).values(list_id=current.id, organisation_id=org_id)
                    )
            cursor = self._change(conn, "list", current.id, 0)
            self.audit(conn, actor, "list.update", name, {"cursor": cursor}, None, fields)
        return self.get_list(name)

    def get_list(self, name: str) -> ListInfo:
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
        with self.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
            shares: dict[int, list[str]] = {}
            for list_id, org in conn.execute(
                select(list_shares.c.list_id, organisations.c.name).join(
                    organisations, organisations.c.id == list_shares.c.organisation_id
                )
            ):
                shares.setdefault(int(list_id), []).append(str(org))
        return [
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
                shared_with=tuple(sorted(shares.get(int(r["id"]), []))),
                created_at=r["created_at"],
                updated_at=r["updated_at"],
            )
            for r in rows
        ]

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
        in the list are skipped and counted as duplicates.
        """
        info = self.get_list(list_name)
        report = ImportReport(list_name)
        valid = 0
        with self.write_transaction() as conn:
            cursor = self._change(conn, "add", info.id, 0)
            now = utcnow()
            batch: list[EntryTuple] = []

            def flush() -> None:
                insert_entries(
                    conn, batch, list_id=info.id, cursor=cursor, added_at=now, added_by=actor
                )
                batch.clear()

            for row in rows:
                if isinstance(row, RowError):
                    report.reject(row)
                    continue
                valid += 1
                batch.append((row.hash.algorithm.value, row.hash.value, row.reference, row.labels))
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
                    "rejected": report.rejected,
                    "cursor": cursor,
                },
            )
        return report

    def withdraw(
        self,
        list_name: str,
        *,
        actor: str,
        reason: str,
        references: Sequence[str] = (),
        hashes: Sequence[Hash] = (),
    ) -> int:
        """Withdraw live entries by reference and/or hash; returns how many were withdrawn."""
        if not reason.strip():
            raise StoreError("a withdrawal needs a reason")
        info = self.get_list(list_name)
        with self.write_transaction() as conn:
            cursor = self._change(conn, "withdraw", info.id, 0)
            now = utcnow()
            values = {
                "withdrawn_at": now,
                "withdrawn_by": actor,
                "withdrawal_reason": reason,
                "withdrawn_change": cursor,
            }
            live = (entries.c.list_id == info.id) & entries.c.withdrawn_at.is_(None)
            count = 0
            for start in range(0, len(references), 500):
                chunk = list(references[start : start + 500])
                result = conn.execute(
                    update(entries).where(live & entries.c.reference.in_(chunk)).values(**values)
                )
                count += result.rowcount
            for algorithm in {h.algorithm for h in hashes}:
                values_of = [h.value for h in hashes if h.algorithm is algorithm]
                for start in range(0, len(values_of), 500):
                    result = conn.execute(
                        update(entries)
                        .where(
                            live
                            & (entries.c.algorithm == algorithm.value)
                            & entries.c.hash.in_(values_of[start : start + 500])
                        )
                        .values(**values)
                    )
                    count += result.rowcount
            conn.execute(update(changes).where(changes.c.cursor == cursor).values(count=count))
            self.audit(
                conn,
                actor,
                "entries.withdraw",
                list_name,
                {"withdrawn": count, "cursor": cursor},
                reason,
            )
        return count

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
            query = query.where(audit.c.target == list_name)
        with self.engine.connect() as conn:
            return [
                {**dict(r), "at": r["at"].isoformat() if r["at"] else None}
                for r in conn.execute(query).mappings()
            ]

    def _change(self, conn: Connection, kind: str, list_id: int, count: int) -> int:
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
        recorded = {**counts, **({"fields": sorted(details)} if details else {})}
        conn.execute(
            insert(audit).values(
                at=utcnow(),
                actor=actor,
                action=action,
                target=target,
                counts=recorded,
                reason=reason,
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


def _check_list_fields(name: str, kind: str, category: str) -> None:
    if (
        not name
        or len(name) > 128
        or not name.replace("-", "").replace("_", "").replace(".", "").isalnum()
    ):
        raise InvalidList("list name must be 1-128 letters, digits, '-', '_' or '.'")
    if kind not in LIST_KINDS:
        raise InvalidList(f"kind must be one of {', '.join(LIST_KINDS)}, got {kind!r}")
    if not category or len(category) > 32:
        raise InvalidList("category must be 1-32 characters (e.g. csam, ncii, other)")


def _check_thresholds(thresholds: dict[str, int]) -> None:
    for algorithm, value in thresholds.items():
        if algorithm not in DEFAULT_THRESHOLDS:
            raise InvalidList(f"no threshold for {algorithm!r}: only pdq and phash have distances")
        bits = Algorithm(algorithm).bits
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= bits // 2:
            raise InvalidList(f"{algorithm} threshold must be an integer from 0 to {bits // 2}")


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
