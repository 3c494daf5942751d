"""Durable state: the database and one repository per concern.

- :mod:`.database`: the engine, write transactions (serialised writers), errors as domain errors
- :mod:`.schema` and :mod:`.migrate` (Alembic, in ``migrations/``): the tables
- :mod:`.lists`: lists, organisations, offers and their answers
- :mod:`.entries` (with :mod:`.bulk`): imports, pages, what replicas read
- :mod:`.withdrawals`: withdrawals and revivals, every name accounted for
- :mod:`.changes`: the change log replicas follow, and its listener
- :mod:`.audit`: who did what, with the values before and after
- :mod:`.keys`: API keys, their roles, suspension

Every write is one transaction that also appends its change-log row and its audit row, so an
import that fails half way leaves nothing behind.
"""

from __future__ import annotations

from hashmatch.matching.policy import DEFAULT_BOUNDS, ThresholdBounds
from hashmatch.store.audit import AuditLog
from hashmatch.store.changes import Change, ChangeListener, ChangeLog
from hashmatch.store.database import Database, database_url, new_id, utcnow
from hashmatch.store.entries import Entries
from hashmatch.store.keys import KeyInfo, Keys, Role
from hashmatch.store.lists import Lists
from hashmatch.store.records import EntryRow, ImportReport, ListInfo
from hashmatch.store.withdrawals import EntryReport, Withdrawals


class Store:
    """The database and its repositories, opened (and migrated) together."""

    def __init__(self, database: Database, bounds: ThresholdBounds = DEFAULT_BOUNDS) -> None:
        self.database = database
        self.changes = ChangeLog(database)
        self.audit = AuditLog(database)
        self.lists = Lists(database, self.changes, self.audit, bounds)
        self.entries = Entries(database, self.lists, self.changes, self.audit)
        self.withdrawals = Withdrawals(database, self.lists, self.changes, self.audit)
        self.keys = Keys(database, self.lists, self.audit)

    @classmethod
    def open(
        cls, url: str, *, migrate: bool = True, bounds: ThresholdBounds = DEFAULT_BOUNDS
    ) -> Store:
        database = Database.connect(url)
        if migrate:
            from hashmatch.store.migrate import upgrade

            upgrade(database)
        return cls(database, bounds)

    def close(self) -> None:
        self.database.close()


__all__ = [
    "AuditLog",
    "Change",
    "ChangeListener",
    "ChangeLog",
    "Database",
    "Entries",
    "EntryReport",
    "EntryRow",
    "ImportReport",
    "KeyInfo",
    "Keys",
    "ListInfo",
    "Lists",
    "Role",
    "Store",
    "Withdrawals",
    "database_url",
    "new_id",
    "utcnow",
]
