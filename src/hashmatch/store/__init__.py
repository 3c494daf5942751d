"""Durable state: the database and one repository per concern.

- :mod:`.database`: the engine, write transactions (serialised writers), errors as domain errors
- :mod:`.schema` and :mod:`.migrate` (Alembic, in ``migrations/``): the tables
- :mod:`.lists`: lists, organisations, offers and their answers
- :mod:`.entries` (with :mod:`.bulk`): imports, pages, what replicas read
- :mod:`.browse`: a list's entries as the console shows them: searches, lookups by id, exports
- :mod:`.withdrawals`: withdrawals and revivals, every name accounted for
- :mod:`.changes`: the change log replicas follow, and its listener
- :mod:`.audit`: who did what, with the values before and after
- :mod:`.keys`: API keys, their roles, suspension
- :mod:`.feed`: the peer feed this instance publishes (entry-level deltas, per organisation)
- :mod:`.peers` and :mod:`.mirrors`: the peers it subscribes to, the lease of the one fetcher,
  and their pages applied to read-only mirrors
- :mod:`.outcomes`: platforms' outcome reports by match id, match counts, the token secret
- :mod:`.stats`: a list's stats and false positives, for its owner
- :mod:`.webhooks`: withdrawal notices owed to platforms, and the sender's lease
- :mod:`.users` and :mod:`.sessions`: staff accounts (passwords, second factor, lockout) and
  their console sessions
- :mod:`.staging`: hash-set files uploaded through the console, held with their validation
  report until the person commits or discards them

Every write is one transaction that also appends its change-log row and its audit row, so an
import that fails half way leaves nothing behind.
"""

from __future__ import annotations

from hashmatch.matching.policy import DEFAULT_BOUNDS, ThresholdBounds
from hashmatch.store.audit import AuditLog
from hashmatch.store.browse import EntryBrowser
from hashmatch.store.changes import Change, ChangeListener, ChangeLog
from hashmatch.store.database import Database, database_url, new_id, utcnow
from hashmatch.store.entries import Entries
from hashmatch.store.feed import Feed
from hashmatch.store.keys import KeyInfo, Keys, Role
from hashmatch.store.lists import Lists
from hashmatch.store.mirrors import Mirrors
from hashmatch.store.outcomes import Outcomes
from hashmatch.store.peers import Leases, Peers, instance_name
from hashmatch.store.records import EntryRow, ImportReport, ListInfo
from hashmatch.store.remote_outcomes import RemoteOutcomes
from hashmatch.store.sessions import Session, SessionRules, Sessions
from hashmatch.store.staging import Staging
from hashmatch.store.stats import Reviews
from hashmatch.store.users import LoginResult, StaffRole, UserInfo, Users
from hashmatch.store.webhooks import Webhooks
from hashmatch.store.withdrawals import EntryReport, Withdrawals


class Store:
    """The database and its repositories, opened (and migrated) together."""

    def __init__(
        self,
        database: Database,
        bounds: ThresholdBounds = DEFAULT_BOUNDS,
        instance: str | None = None,
    ) -> None:
        self.database = database
        self._configured_instance = instance
        self._instance: str | None = None
        self.changes = ChangeLog(database)
        self.audit = AuditLog(database)
        self.lists = Lists(database, self.changes, self.audit, bounds)
        self.entries = Entries(database, self.lists, self.changes, self.audit)
        self.browse = EntryBrowser(database, self.lists, self.changes, self.audit)
        self.withdrawals = Withdrawals(database, self.lists, self.changes, self.audit)
        self.keys = Keys(database, self.lists, self.audit)
        self.peers = Peers(database, self.lists, self.audit)
        self.leases = Leases(database)
        self.mirrors = Mirrors(database, self.lists, self.changes, self.audit)
        self.outcomes = Outcomes(database, self.lists, self.audit)
        self.webhooks = Webhooks(database, self.lists, self.audit)
        self.withdrawals.on_withdrawn = self.webhooks.queue_withdrawn
        self.mirrors.on_withdrawn = self.webhooks.queue_withdrawn
        self.remote_outcomes = RemoteOutcomes(database, self.lists)
        self.users = Users(database, self.lists, self.audit)
        self.sessions = Sessions(database, self.users)
        self.staging = Staging(database, self.lists, self.entries)
        self.reviews = Reviews(
            database, self.lists, self.entries, self.withdrawals, self.audit, self.remote_outcomes
        )

    @property
    def instance(self) -> str:
        """This instance's name on the exchange (configured, or made up once and kept)."""
        if self._instance is None:
            self._instance = instance_name(self.database, self._configured_instance)
        return self._instance

    @property
    def feed(self) -> Feed:
        return Feed(self.database, self.lists, self.instance)

    @classmethod
    def open(
        cls,
        url: str,
        *,
        migrate: bool = True,
        bounds: ThresholdBounds = DEFAULT_BOUNDS,
        instance: str | None = None,
    ) -> Store:
        database = Database.connect(url)
        if migrate:
            from hashmatch.store.migrate import upgrade

            upgrade(database)
        return cls(database, bounds, instance)

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
    "LoginResult",
    "Outcomes",
    "Reviews",
    "Role",
    "Session",
    "SessionRules",
    "Sessions",
    "StaffRole",
    "Store",
    "UserInfo",
    "Users",
    "Webhooks",
    "Withdrawals",
    "database_url",
    "new_id",
    "utcnow",
]
