"""Peers this instance subscribes to, the lease that keeps one fetcher running, and this
instance's name on the exchange.

A peer's key is stored to be sent, so it cannot be hashed like our own keys: it stays in the
database, goes out only in the ``Authorization`` header of a feed request, and no listing, log
line, audit row or error message ever carries it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import secrets
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

from sqlalchemy import delete, insert, select, update

from hashmatch import fields
from hashmatch.errors import Conflict, InvalidField, NotFound
from hashmatch.store.audit import AuditLog
from hashmatch.store.database import Database, utcnow
from hashmatch.store.lists import Lists
from hashmatch.store.schema import instance, leases, organisations, peers

MAX_PEER_NAME_CHARS: Final = 32
MAX_URL_CHARS: Final = 512
MAX_SECRET_CHARS: Final = 512


@dataclass(frozen=True)
class PeerInfo:
    """A peer as every listing shows it: never its key."""

    id: int
    name: str
    url: str
    organisation: str
    lists: tuple[str, ...] | None
    paused: bool
    cursor: str
    remote_instance: str | None
    created_at: dt.datetime
    last_attempt_at: dt.datetime | None
    last_success_at: dt.datetime | None
    last_change_at: dt.datetime | None
    last_error: str | None
    failures: int
    next_attempt_at: dt.datetime | None
    verified_at: dt.datetime | None
    verify_report: dict[str, Any] | None
    outcomes_sent_at: dt.datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values["lists"] = None if self.lists is None else list(self.lists)
        return {k: v.isoformat() if isinstance(v, dt.datetime) else v for k, v in values.items()}


def peer_name(value: object) -> str:
    name = fields.organisation(value, "name")
    if len(name) > MAX_PEER_NAME_CHARS:
        raise InvalidField("name", f"a peer's name is at most {MAX_PEER_NAME_CHARS} characters")
    return name


def peer_url(value: object) -> str:
    text = fields.text(value, "url", MAX_URL_CHARS).strip().rstrip("/")
    parts = urlsplit(text)
    if parts.scheme == "file":
        if parts.netloc or not parts.path.startswith("/"):
            raise InvalidField("url", "a folder source is file:///absolute/path")
        return text
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidField("url", "must be an http:// or https:// address of a hashmatch")
    if parts.username or parts.password:
        raise InvalidField("url", "must not carry credentials: give the key with --key-file")
    if parts.query or parts.fragment:
        raise InvalidField("url", "must not carry a query or fragment")
    return text


def peer_secret(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidField("key", "the peer's key is empty")
    secret = value.strip()
    if len(secret) > MAX_SECRET_CHARS or not secret.isascii() or not secret.isprintable():
        raise InvalidField("key", "a key is printable ASCII, at most 512 characters")
    return secret


def _info(row: Any) -> PeerInfo:
    values = {f.name: row[f.name] for f in dataclasses.fields(PeerInfo)}
    values["lists"] = None if row["lists"] is None else tuple(row["lists"])
    return PeerInfo(**values)


_COLUMNS: Final = [c for c in peers.c if c.name != "secret"]


class Peers:
    def __init__(self, database: Database, lists: Lists, audit: AuditLog) -> None:
        self._database = database
        self._lists = lists
        self._audit = audit

    def add(
        self,
        name: str,
        *,
        url: str,
        secret: str,
        organisation: str,
        actor: str,
        lists: list[str] | None = None,
    ) -> PeerInfo:
        name, url, secret = peer_name(name), peer_url(url), peer_secret(secret)
        organisation = fields.organisation(organisation, "org")
        wanted = None
        if lists is not None:
            wanted = list(dict.fromkeys(fields.list_name(n, "lists[]") for n in lists))
        with self._database.write_transaction() as conn:
            org_id = self._lists.organisation_id(organisation, conn)
            try:
                conn.execute(
                    insert(peers).values(
                        name=name,
                        url=url,
                        secret=secret,
                        organisation_id=org_id,
                        lists=wanted,
                        created_at=utcnow(),
                    )
                )
            except Conflict:
                raise Conflict(f"a peer named {name!r} exists already") from None
            details = {"new": {"url": url, "organisation": organisation, "lists": wanted}}
            self._audit.record(conn, actor, "peer.add", name, {}, details=details)
        return self.get(name)

    def all(self) -> list[PeerInfo]:
        query = (
            select(*_COLUMNS, organisations.c.name.label("organisation"))
            .join(organisations, organisations.c.id == peers.c.organisation_id)
            .order_by(peers.c.name)
        )
        with self._database.engine.connect() as conn:
            return [_info(r) for r in conn.execute(query).mappings()]

    def get(self, name: str) -> PeerInfo:
        for info in self.all():
            if info.name == name:
                return info
        raise NotFound(f"no peer named {str(name)[:64]!r}")

    def secret(self, name: str) -> str:
        """The key to send to the peer: for the fetcher only."""
        with self._database.engine.connect() as conn:
            found = conn.execute(select(peers.c.secret).where(peers.c.name == name)).scalar()
        if found is None:
            raise NotFound(f"no peer named {str(name)[:64]!r}")
        return str(found)

    def set_paused(self, name: str, paused: bool, *, actor: str) -> PeerInfo:
        self._set(name, actor, "peer.pause" if paused else "peer.resume", paused=paused)
        return self.get(name)

    def resync(self, name: str, *, actor: str) -> PeerInfo:
        """Read the peer's feed again from the start: every list comes whole, and what the
        mirrors hold beyond it is withdrawn (the repair ``verify`` makes)."""
        self._set(name, actor, "peer.resync", cursor="", next_attempt_at=None)
        return self.get(name)

    def remove(self, name: str, *, actor: str) -> None:
        info = self.get(name)
        with self._database.write_transaction() as conn:
            conn.execute(delete(peers).where(peers.c.id == info.id))
            self._audit.record(conn, actor, "peer.remove", name, {})

    def _set(self, name: str, actor: str, action: str, **values: Any) -> None:
        info = self.get(name)
        with self._database.write_transaction() as conn:
            conn.execute(update(peers).where(peers.c.id == info.id).values(**values))
            self._audit.record(conn, actor, action, name, {})

    def record_failure(self, name: str, error: str, retry_at: dt.datetime) -> None:
        with self._database.write_transaction() as conn:
            conn.execute(
                update(peers)
                .where(peers.c.name == name)
                .values(
                    last_attempt_at=utcnow(),
                    last_error=fields.printable(error)[:2000],
                    failures=peers.c.failures + 1,
                    next_attempt_at=retry_at,
                )
            )

    def record_outcomes_sent(self, name: str, at: dt.datetime) -> None:
        with self._database.write_transaction() as conn:
            conn.execute(update(peers).where(peers.c.name == name).values(outcomes_sent_at=at))

    def record_verify(self, name: str, report: dict[str, Any]) -> None:
        with self._database.write_transaction() as conn:
            conn.execute(
                update(peers)
                .where(peers.c.name == name)
                .values(verified_at=utcnow(), verify_report=report)
            )


class Leases:
    """A named job that one process runs at a time, across workers and replicas."""

    def __init__(self, database: Database) -> None:
        self._database = database

    def take(self, name: str, holder: str, seconds: float) -> bool:
        """Take or renew the lease; False while another holder's is unexpired."""
        now = utcnow()
        until = now + dt.timedelta(seconds=seconds)
        with self._database.write_transaction() as conn:
            current = conn.execute(
                select(leases.c.holder, leases.c.expires_at).where(leases.c.name == name)
            ).first()
            if current is None:
                conn.execute(insert(leases).values(name=name, holder=holder, expires_at=until))
                return True
            expires = _aware(current.expires_at)
            if current.holder != holder and expires > now:
                return False
            conn.execute(
                update(leases).where(leases.c.name == name).values(holder=holder, expires_at=until)
            )
            return True

    def release(self, name: str, holder: str) -> None:
        with self._database.write_transaction() as conn:
            conn.execute(delete(leases).where(leases.c.name == name, leases.c.holder == holder))

    def holder(self, name: str) -> str | None:
        with self._database.engine.connect() as conn:
            row = conn.execute(
                select(leases.c.holder, leases.c.expires_at).where(leases.c.name == name)
            ).first()
        if row is None or _aware(row.expires_at) <= utcnow():
            return None
        return str(row.holder)


def _aware(value: dt.datetime) -> dt.datetime:
    # SQLite hands back naive datetimes; every time stored here is UTC.
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


def instance_name(database: Database, configured: str | None = None) -> str:
    """This instance's name on the exchange: the configured one, else one made up once and
    kept in the database, so every worker and replica of the instance shares it."""
    if configured:
        return fields.organisation(configured, "instance_name")
    with database.write_transaction() as conn:
        found = conn.execute(select(instance.c.value).where(instance.c.key == "name")).scalar()
        if found is not None:
            return str(found)
        made = f"hm-{secrets.token_hex(4)}"
        conn.execute(insert(instance).values(key="name", value=made))
        return made
