"""API keys: who calls, for which organisation, with which roles.

A key is shown once, at creation; only its SHA-256 is stored (keys are 256 random bits, so a
fast hash is enough: there is nothing to brute-force). Creation and revocation are audited.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from sqlalchemy import insert, select, update

from hashmatch.errors import InvalidList, NotFound
from hashmatch.schema import api_keys, organisations
from hashmatch.store import Store, new_id, utcnow

KEY_PREFIX: Final = "hm_"


class Role(StrEnum):
    MATCH = "match"
    CONTRIBUTE = "contribute"
    ADMIN = "admin"


@dataclass(frozen=True)
class KeyInfo:
    id: int
    organisation: str
    name: str
    prefix: str
    roles: frozenset[Role]
    created_at: dt.datetime
    revoked_at: dt.datetime | None = None

    def allows(self, role: Role) -> bool:
        return role in self.roles or Role.ADMIN in self.roles

    def can_see(self, owner: str, shared_with: tuple[str, ...]) -> bool:
        """A list is visible to its owner, the organisations it is shared with, and admins."""
        return (
            Role.ADMIN in self.roles
            or owner == self.organisation
            or self.organisation in shared_with
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "organisation": self.organisation,
            "name": self.name,
            "prefix": self.prefix,
            "roles": sorted(self.roles),
            "created_at": self.created_at.isoformat(),
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
        }


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def parse_roles(names: list[str]) -> frozenset[Role]:
    try:
        roles = frozenset(Role(name.strip().lower()) for name in names)
    except ValueError:
        known = ", ".join(r.value for r in Role)
        raise InvalidList(f"unknown role in {names!r}; known: {known}") from None
    if not roles:
        raise InvalidList("a key needs at least one role")
    return roles


def create_key(
    store: Store, organisation: str, roles: frozenset[Role], *, actor: str, name: str = ""
) -> tuple[KeyInfo, str]:
    """A new key for ``organisation``: its record and the secret, which is never shown again."""
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    now = utcnow()
    with store.write_transaction() as conn:
        org_id = store.ensure_organisation(organisation, conn)
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
        store.audit(
            conn, actor, "key.create", organisation, {"key": key_id, "roles": sorted(roles)}
        )
    return KeyInfo(key_id, organisation, name, secret[:10], roles, now), secret


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
    )


def authenticate(store: Store, secret: str) -> KeyInfo | None:
    """The live key with this secret, or None (unknown, malformed or revoked)."""
    if not secret.startswith(KEY_PREFIX) or len(secret) > 128:
        return None
    with store.engine.connect() as conn:
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


def list_keys(store: Store) -> list[KeyInfo]:
    with store.engine.connect() as conn:
        return [_info(r) for r in conn.execute(_query().order_by(api_keys.c.id)).mappings()]


def revoke_key(store: Store, key_id: int, *, actor: str) -> KeyInfo:
    with store.write_transaction() as conn:
        result = conn.execute(
            update(api_keys)
            .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
            .values(revoked_at=utcnow())
        )
        if result.rowcount == 0:
            raise NotFound(f"no live key with id {key_id}")
        store.audit(conn, actor, "key.revoke", str(key_id), {"key": key_id})
    return next(k for k in list_keys(store) if k.id == key_id)
