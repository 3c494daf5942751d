"""Staff accounts: who uses the console, for which organisation, with which role.

A person signs in with a login and a password (Argon2id, :mod:`hashmatch.credentials`), and a
TOTP code when they have a second factor. Wrong passwords count against the account in the
database, so the back-off holds across workers and replicas: after
:data:`FREE_FAILURES` failures in a row the account is locked for a period that doubles with
every further failure, up to :data:`MAX_LOCK`. Every change is audited under the person who
made it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from sqlalchemy import Connection, delete, insert, select, update

from hashmatch import credentials, fields
from hashmatch.errors import Forbidden, InvalidField, NotFound
from hashmatch.store.audit import AuditLog
from hashmatch.store.database import Database, new_id, utcnow
from hashmatch.store.lists import Lists
from hashmatch.store.schema import console_sessions, organisations, users

FREE_FAILURES: Final = 5
FIRST_LOCK: Final = dt.timedelta(seconds=30)
MAX_LOCK: Final = dt.timedelta(hours=1)
MAX_LOGIN_CHARS: Final = 64
_LOGIN: Final = re.compile(r"[a-z0-9](?:[a-z0-9._@-]*[a-z0-9])?")


class StaffRole(StrEnum):
    """What a person may do, each including the ones before it."""

    VIEWER = "viewer"  # read the organisation's pages, test an image
    ANALYST = "analyst"  # upload, withdraw, edit lists
    ADMIN = "admin"  # people, keys, sharing, exchanges

    @property
    def rank(self) -> int:
        return list(StaffRole).index(self)


def staff_role(value: object) -> StaffRole:
    try:
        return StaffRole(str(value).strip().lower())
    except ValueError:
        known = ", ".join(r.value for r in StaffRole)
        raise InvalidField("role", f"unknown role {value!r}; known: {known}") from None


def login_name(value: object) -> str:
    """A login: lowercase ASCII letters, digits and ``. _ @ -`` (no look-alikes)."""
    if not isinstance(value, str):
        raise InvalidField("login", "must be a string")
    text = value.strip().lower()
    if not text or len(text) > MAX_LOGIN_CHARS or not _LOGIN.fullmatch(text):
        raise InvalidField(
            "login",
            f"must be 1 to {MAX_LOGIN_CHARS} of a-z 0-9 . _ @ -, starting and ending with a"
            " letter or digit",
        )
    return text


@dataclass(frozen=True)
class UserInfo:
    id: int
    organisation: str
    login: str
    name: str
    role: StaffRole
    has_totp: bool
    locale: str | None
    timezone: str | None
    failed_logins: int
    locked_until: dt.datetime | None
    disabled_at: dt.datetime | None
    created_at: dt.datetime
    last_login_at: dt.datetime | None
    must_change_password: bool

    def allows(self, role: StaffRole) -> bool:
        return self.role.rank >= role.rank

    @property
    def actor(self) -> str:
        """Who acted, as the audit log records it: the person, not a key."""
        return f"user:{self.login}:{self.organisation}"

    def as_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        return {k: v.isoformat() if isinstance(v, dt.datetime) else v for k, v in values.items()}


@dataclass(frozen=True)
class LoginResult:
    """``user`` when the password was right; otherwise why not (``wrong``, ``locked`` with
    ``retry_after`` seconds, ``disabled``). Unknown logins are ``wrong``, indistinguishably."""

    outcome: str
    user: UserInfo | None = None
    retry_after: int = 0


def _query() -> Any:
    return select(users, organisations.c.name.label("organisation")).join(
        organisations, organisations.c.id == users.c.organisation_id
    )


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=dt.UTC)  # SQLite hands back naive UTC


def user_info(row: Any) -> UserInfo:
    return UserInfo(
        int(row["id"]),
        row["organisation"],
        row["login"],
        row["name"],
        StaffRole(row["role"]),
        row["totp_secret"] is not None,
        row["locale"],
        row["timezone"],
        int(row["failed_logins"]),
        _aware(row["locked_until"]),
        _aware(row["disabled_at"]),
        _aware(row["created_at"]) or utcnow(),
        _aware(row["last_login_at"]),
        bool(row["must_change_password"]),
    )


def lock_for(failures: int) -> dt.timedelta:
    """How long an account stays locked after ``failures`` wrong passwords in a row."""
    if failures < FREE_FAILURES:
        return dt.timedelta(0)
    lock: dt.timedelta = FIRST_LOCK * 2 ** min(failures - FREE_FAILURES, 16)
    return min(lock, MAX_LOCK)


class Users:
    def __init__(self, database: Database, lists: Lists, audit: AuditLog) -> None:
        self._database = database
        self._lists = lists
        self._audit = audit

    def create(
        self,
        organisation: str,
        login: str,
        role: StaffRole,
        *,
        actor: str,
        name: str = "",
        password: str | None = None,
        totp: bool = False,
    ) -> tuple[UserInfo, str, str | None]:
        """A new person: their record, their first password (generated unless given; they are
        asked to change a generated one) and their TOTP secret when ``totp``."""
        organisation = fields.organisation(organisation, "org")
        login = login_name(login)
        name = fields.text(name, "name", fields.MAX_ACTOR_CHARS).strip()
        generated = password is None
        secret = credentials.new_password() if password is None else password
        password_hash = credentials.hash_password(secret)
        totp_secret = credentials.new_totp_secret() if totp else None
        with self._database.write_transaction() as conn:
            org_id = self._lists.organisation_id(organisation, conn)
            result = conn.execute(
                insert(users).values(
                    organisation_id=org_id,
                    login=login,
                    name=name,
                    role=role.value,
                    password_hash=password_hash,
                    must_change_password=generated,
                    totp_secret=totp_secret,
                    created_at=utcnow(),
                    created_by=actor,
                )
            )
            user_id = new_id(result)
            self._audit.record(
                conn,
                actor,
                "user.create",
                organisation,
                {"user": login, "role": role.value, "totp": totp},
            )
        return self.by_id(user_id), secret, totp_secret

    def by_id(self, user_id: int) -> UserInfo:
        with self._database.engine.connect() as conn:
            row = conn.execute(_query().where(users.c.id == user_id)).mappings().first()
        if row is None:
            raise NotFound(f"no person with id {user_id}")
        return user_info(row)

    def get(self, login: str, organisation: str | None = None) -> UserInfo:
        """The person with ``login``; within ``organisation`` only, when given (an admin of
        one organisation never reaches another's people)."""
        login = login_name(login)
        with self._database.engine.connect() as conn:
            row = conn.execute(_query().where(users.c.login == login)).mappings().first()
        if row is None or (organisation is not None and row["organisation"] != organisation):
            raise NotFound(f"no person with login {login!r}")
        return user_info(row)

    def all(self, organisation: str | None = None) -> list[UserInfo]:
        query = _query().order_by(users.c.login)
        if organisation is not None:
            query = query.where(organisations.c.name == organisation)
        with self._database.engine.connect() as conn:
            return [user_info(r) for r in conn.execute(query).mappings()]

    def authenticate(
        self, login: str, password: str, now: dt.datetime | None = None
    ) -> LoginResult:
        """Check a password, counting failures against the account (see the module's doc)."""
        now = now or utcnow()
        try:
            login = login_name(login)
        except InvalidField:
            credentials.verify_password(None, password)
            return LoginResult("wrong")
        with self._database.engine.connect() as conn:
            row = conn.execute(_query().where(users.c.login == login)).mappings().first()
        if row is None:
            credentials.verify_password(None, password)
            return LoginResult("wrong")
        user = user_info(row)
        if user.disabled_at is not None:
            credentials.verify_password(None, password)
            return LoginResult("disabled")
        if user.locked_until is not None and user.locked_until > now:
            return LoginResult("locked", retry_after=_seconds(user.locked_until - now))
        if not credentials.verify_password(row["password_hash"], password):
            failures = self._fail(user.id, now)
            lock = lock_for(failures)
            if lock:
                return LoginResult("locked", retry_after=_seconds(lock))
            return LoginResult("wrong")
        values: dict[str, Any] = {"failed_logins": 0, "locked_until": None}
        if credentials.needs_rehash(row["password_hash"]):
            values["password_hash"] = credentials.hash_password(password)
        with self._database.write_transaction() as conn:
            conn.execute(update(users).where(users.c.id == user.id).values(**values))
        return LoginResult("ok", dataclasses.replace(user, failed_logins=0, locked_until=None))

    def _fail(self, user_id: int, now: dt.datetime) -> int:
        with self._database.write_transaction() as conn:
            failures = (
                int(
                    conn.execute(
                        select(users.c.failed_logins).where(users.c.id == user_id)
                    ).scalar_one()
                )
                + 1
            )
            lock = lock_for(failures)
            conn.execute(
                update(users)
                .where(users.c.id == user_id)
                .values(failed_logins=failures, locked_until=now + lock if lock else None)
            )
            if failures == FREE_FAILURES:
                user = conn.execute(_query().where(users.c.id == user_id)).mappings().one()
                self._audit.record(
                    conn,
                    "console",
                    "user.locked",
                    user["organisation"],
                    {"user": user["login"], "failures": failures},
                )
        return failures

    def check_totp(self, user_id: int, code: str, now: float | None = None) -> bool:
        """Whether ``code`` is the person's current TOTP code, never accepting one twice."""
        with self._database.engine.connect() as conn:
            row = conn.execute(
                select(users.c.totp_secret, users.c.totp_step).where(users.c.id == user_id)
            ).first()
        if row is None or row.totp_secret is None:
            return False
        step = credentials.totp_match(row.totp_secret, code, now)
        if step is None:
            self._fail(user_id, utcnow())
            return False
        with self._database.write_transaction() as conn:
            # Compare-and-set: of two requests with the same code, one wins.
            last = users.c.totp_step
            result = conn.execute(
                update(users)
                .where(users.c.id == user_id, (last.is_(None)) | (last < step))
                .values(totp_step=step, failed_logins=0, locked_until=None, last_login_at=utcnow())
            )
        return bool(result.rowcount)

    def signed_in(self, user_id: int) -> None:
        with self._database.write_transaction() as conn:
            conn.execute(update(users).where(users.c.id == user_id).values(last_login_at=utcnow()))

    def enrol_totp(self, user_id: int, secret: str, code: str, *, actor: str) -> bool:
        """Set the person's second factor, once they have shown a code from it."""
        step = credentials.totp_match(secret, code)
        if step is None:
            return False
        with self._database.write_transaction() as conn:
            conn.execute(
                update(users)
                .where(users.c.id == user_id)
                .values(totp_secret=secret, totp_step=step)
            )
            self._audit_user(conn, user_id, actor, "user.totp_enrol", {})
        return True

    def change_password(self, user_id: int, current: str, new: str, *, actor: str) -> bool:
        with self._database.engine.connect() as conn:
            stored = conn.execute(
                select(users.c.password_hash).where(users.c.id == user_id)
            ).scalar_one()
        if not credentials.verify_password(stored, current):
            return False
        new_hash = credentials.hash_password(new)
        with self._database.write_transaction() as conn:
            conn.execute(
                update(users)
                .where(users.c.id == user_id)
                .values(password_hash=new_hash, must_change_password=False)
            )
            self._audit_user(conn, user_id, actor, "user.password", {})
        return True

    def set_preferences(self, user_id: int, *, locale: str | None, timezone: str | None) -> None:
        with self._database.write_transaction() as conn:
            conn.execute(
                update(users).where(users.c.id == user_id).values(locale=locale, timezone=timezone)
            )

    def disable(self, login: str, *, actor: str, organisation: str | None = None) -> UserInfo:
        user = self.get(login, organisation)
        if actor == user.actor:
            raise Forbidden("you cannot disable your own account")
        with self._database.write_transaction() as conn:
            conn.execute(update(users).where(users.c.id == user.id).values(disabled_at=utcnow()))
            conn.execute(delete(console_sessions).where(console_sessions.c.user_id == user.id))
            self._audit_user(conn, user.id, actor, "user.disable", {})
        return self.by_id(user.id)

    def enable(self, login: str, *, actor: str, organisation: str | None = None) -> UserInfo:
        user = self.get(login, organisation)
        with self._database.write_transaction() as conn:
            conn.execute(
                update(users)
                .where(users.c.id == user.id)
                .values(disabled_at=None, failed_logins=0, locked_until=None)
            )
            self._audit_user(conn, user.id, actor, "user.enable", {})
        return self.by_id(user.id)

    def reset(
        self,
        login: str,
        *,
        actor: str,
        organisation: str | None = None,
        password: bool = True,
        totp: bool = True,
        new_password: str | None = None,
    ) -> tuple[UserInfo, str | None]:
        """Clear the lockout, end every session, and reset the password (a new one, returned,
        to change at next sign-in) and/or remove the second factor (enrolled again at the next
        sign-in where the operator requires one)."""
        user = self.get(login, organisation)
        values: dict[str, Any] = {"failed_logins": 0, "locked_until": None}
        secret: str | None = None
        if password:
            secret = new_password or credentials.new_password()
            values.update(
                password_hash=credentials.hash_password(secret),
                must_change_password=new_password is None,
            )
        if totp:
            values.update(totp_secret=None, totp_step=None)
        with self._database.write_transaction() as conn:
            conn.execute(update(users).where(users.c.id == user.id).values(**values))
            conn.execute(delete(console_sessions).where(console_sessions.c.user_id == user.id))
            self._audit_user(
                conn, user.id, actor, "user.reset", {"password": password, "totp": totp}
            )
        return self.by_id(user.id), secret

    def _audit_user(
        self, conn: Connection, user_id: int, actor: str, action: str, counts: dict[str, Any]
    ) -> None:
        row = conn.execute(_query().where(users.c.id == user_id)).mappings().one()
        self._audit.record(
            conn, actor, action, row["organisation"], {"user": row["login"], **counts}
        )


def _seconds(delta: dt.timedelta) -> int:
    return max(1, int(delta.total_seconds() + 0.999))
