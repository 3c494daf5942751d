"""API keys: who calls, for which organisation, with which roles.

A key is shown once, at creation; only its SHA-256 is stored (keys are 256 random bits, so a
fast hash is enough: there is nothing to brute-force). Creation, revocation, suspension and
reinstatement are audited. Roles act within the key's own organisation only: ``admin`` manages
that organisation's lists and the offers made to it; what spans organisations (keys, every
list) is the operator's, from the CLI.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from sqlalchemy import insert, select, update

from hashmatch import fields
from hashmatch.errors import InvalidField, NotFound
from hashmatch.store.audit import AuditLog
from hashmatch.store.database import Database, new_id, utcnow
from hashmatch.store.lists import Lists
from hashmatch.store.schema import api_keys, organisations

KEY_PREFIX: Final = "hm_"


class Role(StrEnum):
    MATCH = "match"
    CONTRIBUTE = "contribute"
    ADMIN = "admin"
    #: A partner instance's: reads the peer feed of the lists its organisation accepted, and
    #: nothing else (``admin`` does not include it: the feed carries hash values).
    EXCHANGE = "exchange"


@dataclass(frozen=True)
class KeyInfo:
    id: int
    organisation: str
    name: str
    prefix: str
    roles: frozenset[Role]
    created_at: dt.datetime
    revoked_at: dt.datetime | None = None
    suspended_at: dt.datetime | None = None
    suspended_reason: str | None = None
    reinstated_at: dt.datetime | None = None

    def allows(self, role: Role) -> bool:
        if role is Role.EXCHANGE:
            return role in self.roles
        return role in self.roles or Role.ADMIN in self.roles

    @property
    def actor(self) -> str:
        """Who acted, as the audit log records it."""
        return f"key:{self.id}:{self.organisation}"

    def as_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values["roles"] = sorted(self.roles)
        return {k: v.isoformat() if isinstance(v, dt.datetime) else v for k, v in values.items()}


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def parse_roles(names: list[str]) -> frozenset[Role]:
    try:
        roles = frozenset(Role(name.strip().lower()) for name in names)
    except ValueError:
        known = ", ".join(r.value for r in Role)
        raise InvalidField("roles", f"unknown role in {names!r}; known: {known}") from None
    if not roles:
        raise InvalidField("roles", "a key needs at least one role")
    return roles


def _query() -> Any:
    return select(api_keys, organisations.c.name.label("organisation")).join(
        organisations, organisations.c.id == api_keys.c.organisation_id
    )


def _info(row: Any) -> KeyInfo:
    return KeyInfo(
        int(row["id"]),
        row["organisation"],
        row["name"],
        row["prefix"],
        frozenset(Role(r) for r in row["roles"]),
        row["created_at"],
        row["revoked_at"],
        row["suspended_at"],
        row["suspended_reason"],
        row["reinstated_at"],
    )


class Keys:
    def __init__(self, database: Database, lists: Lists, audit: AuditLog) -> None:
        self._database = database
        self._lists = lists
        self._audit = audit

    def create(
        self, organisation: str, roles: frozenset[Role], *, actor: str, name: str = ""
    ) -> tuple[KeyInfo, str]:
        """A new key for ``organisation``: its record and the secret, which is never shown again."""
        organisation = fields.organisation(organisation, "org")
        name = fields.text(name, "name", fields.MAX_ACTOR_CHARS).strip()
        secret = KEY_PREFIX + secrets.token_urlsafe(32)
        now = utcnow()
        with self._database.write_transaction() as conn:
            org_id = self._lists.organisation_id(organisation, conn)
            result = conn.execute(
                insert(api_keys).values(
                    organisation_id=org_id,
                    name=name,
                    prefix=secret[:10],
                    secret_hash=_digest(secret),
                    roles=sorted(roles),
                    created_at=now,
                    created_by=actor,
                )
            )
            key_id = new_id(result)
            self._audit.record(
                conn, actor, "key.create", organisation, {"key": key_id, "roles": sorted(roles)}
            )
        return KeyInfo(key_id, organisation, name, secret[:10], roles, now), secret

    def authenticate(self, secret: str) -> KeyInfo | None:
        """The unrevoked key with this secret (perhaps suspended), or None (unknown, malformed or
        revoked)."""
        if not secret.startswith(KEY_PREFIX) or len(secret) > 128:
            return None
        with self._database.engine.connect() as conn:
            row = (
                conn.execute(
                    _query().where(
                        api_keys.c.secret_hash == _digest(secret), api_keys.c.revoked_at.is_(None)
                    )
                )
                .mappings()
                .first()
            )
        return _info(row) if row is not None else None

    def all(self) -> list[KeyInfo]:
        with self._database.engine.connect() as conn:
            return [_info(r) for r in conn.execute(_query().order_by(api_keys.c.id)).mappings()]

    def revoke(self, key_id: int, *, actor: str) -> KeyInfo:
        with self._database.write_transaction() as conn:
            result = conn.execute(
                update(api_keys)
                .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=utcnow())
            )
            if result.rowcount == 0:
                raise NotFound(f"no live key with id {key_id}")
            self._audit.record(conn, actor, "key.revoke", str(key_id), {"key": key_id})
        return next(k for k in self.all() if k.id == key_id)

    def suspend(
        self, key_id: int, *, actor: str, reason: str, probed_list: str | None = None
    ) -> None:
        """Stop a key (every request answers 403 ``key_suspended``) until :meth:`reinstate`.
        ``probed_list``: the list it was caught probing; its owner sees it in the list's audit."""
        reason = fields.reason(reason)
        with self._database.write_transaction() as conn:
            result = conn.execute(
                update(api_keys)
                .where(api_keys.c.id == key_id, api_keys.c.suspended_at.is_(None))
                .values(suspended_at=utcnow(), suspended_reason=reason)
            )
            if result.rowcount:
                self._audit.record(conn, actor, "key.suspend", str(key_id), {"key": key_id}, reason)
                if probed_list is not None:
                    self._audit.record(
                        conn, actor, "list.probed", probed_list, {"key": key_id}, reason
                    )

    def reinstate(self, key_id: int, *, actor: str, reason: str) -> KeyInfo:
        reason = fields.reason(reason)
        with self._database.write_transaction() as conn:
            result = conn.execute(
                update(api_keys)
                .where(api_keys.c.id == key_id, api_keys.c.suspended_at.is_not(None))
                .values(suspended_at=None, suspended_reason=None, reinstated_at=utcnow())
            )
            if result.rowcount == 0:
                raise NotFound(f"no suspended key with id {key_id}")
            self._audit.record(conn, actor, "key.reinstate", str(key_id), {"key": key_id}, reason)
        return next(k for k in self.all() if k.id == key_id)
