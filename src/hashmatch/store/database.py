"""The database: its engine, its write transactions, and its failures as domain errors.

SQLite in the data directory by default, PostgreSQL when ``HASHMATCH_DATABASE_URL`` is set.
Writers are serialised (SQLite's write lock, a PostgreSQL advisory lock) so that change cursors
are committed in the order they are handed out and a replica tailing ``cursor > c`` never
skips a change; on PostgreSQL every commit also notifies listening replicas.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any, Final

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.exc import DataError, IntegrityError, InterfaceError, OperationalError

from hashmatch.errors import Conflict, InvalidField, StoreUnavailable

_WRITER_LOCK_KEY: Final = 0x68617368  # "hash": PostgreSQL advisory lock of all writers
CHANGES_CHANNEL: Final = "hashmatch_changes"  # PostgreSQL NOTIFY channel of every commit


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def database_url(data_dir: Path, configured: str | None) -> str:
    if configured:
        return configured
    data_dir.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(data_dir / 'hashmatch.db').resolve()}"


def new_id(result: Any) -> int:
    key = result.inserted_primary_key
    assert key is not None and key[0] is not None, "insert returned no primary key"
    return int(key[0])


class Database:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name

    @classmethod
    def connect(cls, url: str) -> Database:
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
        return cls(engine)

    def close(self) -> None:
        self.engine.dispose()

    def write_transaction(self) -> WriteTransaction:
        return WriteTransaction(self)


class WriteTransaction:
    """A connection in one write transaction, serialised against every other writer."""

    def __init__(self, database: Database) -> None:
        self._database = database
        self._conn: Connection | None = None
        self._transaction: Any = None

    def __enter__(self) -> Connection:
        conn = self._database.engine.connect().execution_options(hashmatch_write=True)
        self._conn = conn
        self._transaction = conn.begin()
        if self._database.dialect == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _WRITER_LOCK_KEY})
        return conn

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        assert self._conn is not None
        try:
            if exc_type is None:
                if self._database.dialect == "postgresql":
                    # Delivered to listening replicas when, and only if, this commits.
                    self._conn.execute(text(f"NOTIFY {CHANGES_CHANNEL}"))
                self._transaction.commit()
            else:
                self._transaction.rollback()
        finally:
            self._conn.close()


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    # 64 MiB of page cache (SQLite's default is 2 MiB), allocated as pages are read: bulk
    # inserts of random hashes touch the whole of the hash indexes, and at a million entries a
    # small cache turns every insert into reads from the file.
    cursor.execute("PRAGMA cache_size=-65536")
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
