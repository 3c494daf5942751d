"""The change log: one row per committed operation (an import, a withdrawal, a list update),
numbered by a monotonic ``cursor``, and the listener that wakes replicas when it grows.

Entries point at the change that added them and the change that withdrew them, so a replica
that has applied everything up to cursor ``c`` catches up by reading the changes after ``c``
and the entries they touched: a million-row import is one change row, not a million.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, func, insert, select, text, update

from hashmatch.store.database import CHANGES_CHANNEL, Database, new_id, utcnow
from hashmatch.store.schema import changes


@dataclass(frozen=True)
class Change:
    cursor: int
    kind: str  # add | withdraw | list
    list_id: int
    count: int
    at: dt.datetime


class ChangeLog:
    def __init__(self, database: Database) -> None:
        self._database = database

    def record(self, conn: Connection, kind: str, list_id: int, count: int = 0) -> int:
        """A change row in the caller's write transaction; returns its cursor."""
        result = conn.execute(
            insert(changes).values(kind=kind, list_id=list_id, count=count, at=utcnow())
        )
        return new_id(result)

    def set_count(self, conn: Connection, cursor: int, count: int) -> None:
        conn.execute(update(changes).where(changes.c.cursor == cursor).values(count=count))

    def latest(self) -> int:
        with self._database.engine.connect() as conn:
            return int(
                conn.execute(select(func.coalesce(func.max(changes.c.cursor), 0))).scalar_one()
            )

    def after(self, cursor: int, limit: int = 1000) -> list[Change]:
        with self._database.engine.connect() as conn:
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

    def listener(self) -> ChangeListener:
        return ChangeListener(self._database)


class ChangeListener:
    """Waits for the next committed change: PostgreSQL LISTEN where available, else a timer.

    A replica's follower calls :meth:`wait` between refreshes, so a commit elsewhere wakes it
    at once on PostgreSQL and within the poll interval on SQLite.
    """

    def __init__(self, database: Database) -> None:
        self._database = database
        self._connection: Any = None
        self._idle = threading.Event()
        if database.dialect == "postgresql":
            import psycopg

            url = database.engine.url.set(drivername="postgresql")
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
            with contextlib.suppress(Exception), self._database.engine.connect() as conn:
                conn.execute(text(f"NOTIFY {CHANGES_CHANNEL}"))
                conn.commit()

    def close(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):
                self._connection.close()
            self._connection = None
