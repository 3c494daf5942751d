"""Console sessions, kept server-side: the cookie carries 256 random bits, the database only
their SHA-256, so a copy of the database signs nobody in.

A session is ``password`` (the password was right, the second factor is awaited: it opens the
second-factor page and nothing else) or ``full``. It ends after :attr:`SessionRules.idle`
without a request and :attr:`SessionRules.absolute` after sign-in, whatever happens; each
request moves ``seen_at`` at most once a minute, so browsing is not a write per page.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass
from typing import Final

from sqlalchemy import delete, insert, select, update

from hashmatch.store.database import Database, utcnow
from hashmatch.store.schema import console_sessions
from hashmatch.store.users import UserInfo, Users

TOUCH_EVERY: Final = dt.timedelta(minutes=1)
MAX_TOKEN_CHARS: Final = 128


@dataclass(frozen=True)
class SessionRules:
    idle: dt.timedelta = dt.timedelta(minutes=30)
    absolute: dt.timedelta = dt.timedelta(hours=12)


@dataclass(frozen=True)
class Session:
    user: UserInfo
    stage: str  # "password" | "full"
    csrf: str
    created_at: dt.datetime


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


class Sessions:
    def __init__(self, database: Database, people: Users) -> None:
        self._database = database
        self._users = people

    def start(self, user_id: int, stage: str) -> str:
        """A new session for the person; returns the cookie's value."""
        token = secrets.token_urlsafe(32)
        now = utcnow()
        with self._database.write_transaction() as conn:
            conn.execute(
                insert(console_sessions).values(
                    id=_digest(token),
                    user_id=user_id,
                    stage=stage,
                    csrf=secrets.token_urlsafe(32),
                    created_at=now,
                    seen_at=now,
                )
            )
        return token

    def resume(
        self, token: str, rules: SessionRules, now: dt.datetime | None = None
    ) -> Session | None:
        """The live session behind ``token``, or None (unknown, expired, or its person
        disabled). An expired session is deleted."""
        if not token or len(token) > MAX_TOKEN_CHARS:
            return None
        now = now or utcnow()
        key = _digest(token)
        with self._database.engine.connect() as conn:
            row = (
                conn.execute(
                    select(
                        console_sessions.c.stage,
                        console_sessions.c.csrf,
                        console_sessions.c.created_at,
                        console_sessions.c.seen_at,
                        console_sessions.c.user_id,
                    ).where(console_sessions.c.id == key)
                )
                .mappings()
                .first()
            )
        if row is None:
            return None
        created, seen = _aware(row["created_at"]), _aware(row["seen_at"])
        if now - seen > rules.idle or now - created > rules.absolute:
            self.end(token)
            return None
        user = self._users.by_id(int(row["user_id"]))
        if user.disabled_at is not None:
            self.end(token)
            return None
        if now - seen >= TOUCH_EVERY:
            with self._database.write_transaction() as conn:
                conn.execute(
                    update(console_sessions).where(console_sessions.c.id == key).values(seen_at=now)
                )
        return Session(user, row["stage"], row["csrf"], created)

    def promote(self, token: str) -> str:
        """The second factor was right: the pending session ends and a full one begins, under
        a new cookie (a value seen before sign-in is worth nothing after)."""
        with self._database.engine.connect() as conn:
            user_id = conn.execute(
                select(console_sessions.c.user_id).where(console_sessions.c.id == _digest(token))
            ).scalar_one()
        self.end(token)
        return self.start(int(user_id), "full")

    def end(self, token: str) -> None:
        with self._database.write_transaction() as conn:
            conn.execute(delete(console_sessions).where(console_sessions.c.id == _digest(token)))

    def end_all(self, user_id: int) -> None:
        with self._database.write_transaction() as conn:
            conn.execute(delete(console_sessions).where(console_sessions.c.user_id == user_id))

    def prune(self, rules: SessionRules, now: dt.datetime | None = None) -> int:
        """Delete sessions past either expiry; returns how many."""
        now = now or utcnow()
        with self._database.write_transaction() as conn:
            result = conn.execute(
                delete(console_sessions).where(
                    (console_sessions.c.seen_at < now - rules.idle)
                    | (console_sessions.c.created_at < now - rules.absolute)
                )
            )
        return int(result.rowcount)
