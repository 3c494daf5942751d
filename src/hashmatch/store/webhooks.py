"""Withdrawal webhooks: where a platform wants to hear of withdrawals, the notices queued for
it, and the lease that lets one sender run per database.

A platform that reported ``removed`` or ``actioned`` for a match is owed a notice when the
entry behind it is withdrawn, so content taken down by mistake can be restored.
:meth:`Webhooks.queue_withdrawn` runs inside the withdrawal's own transaction: the notice
exists if and only if the withdrawal does. :mod:`hashmatch.delivery` sends them.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

from sqlalchemy import Connection, func, insert, select, update

from hashmatch import fields
from hashmatch.errors import InvalidField, NotFound
from hashmatch.store.audit import AuditLog
from hashmatch.store.database import Database, utcnow
from hashmatch.store.lists import Lists
from hashmatch.store.outcomes import ACTED, as_utc
from hashmatch.store.records import ListInfo
from hashmatch.store.schema import (
    entries,
    leases,
    organisations,
    outcomes,
    webhook_deliveries,
    webhooks,
)

MAX_URL_CHARS: Final = 2048
SECRET_PREFIX: Final = "whsec_"  # noqa: S105 - a prefix, not a secret
PENDING: Final = "pending"
DELIVERED: Final = "delivered"
FAILED: Final = "failed"


def checked_url(value: object) -> str:
    """An absolute http(s) URL without credentials. Where it points is checked when it is
    called (:func:`hashmatch.delivery.check_target`): a name resolves anew every time."""
    url = fields.text(value, "url", MAX_URL_CHARS).strip()
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise InvalidField("url", "not a URL") from None
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise InvalidField("url", "must be an absolute http:// or https:// URL")
    if parts.username or parts.password:
        raise InvalidField("url", "must not carry credentials")
    if any(c.isspace() for c in url):
        raise InvalidField("url", "must not contain spaces")
    return url


@dataclass(frozen=True)
class Delivery:
    id: int
    organisation: str
    url: str
    secret: str
    payload: dict[str, Any]
    attempts: int


class Webhooks:
    def __init__(self, database: Database, lists: Lists, audit: AuditLog) -> None:
        self._database = database
        self._lists = lists
        self._audit = audit

    def set(self, organisation: str, url: str, *, actor: str) -> tuple[dict[str, Any], str]:
        """Register (or replace) ``organisation``'s webhook. A new signing secret every time:
        returned here, never shown again."""
        organisation = fields.organisation(organisation, "org")
        url = checked_url(url)
        secret = SECRET_PREFIX + secrets.token_urlsafe(32)
        now = utcnow()
        with self._database.write_transaction() as conn:
            org_id = self._lists.organisation_id(organisation, conn)
            old = conn.execute(
                select(webhooks.c.url).where(webhooks.c.organisation_id == org_id)
            ).scalar()
            values = {"url": url, "secret": secret, "updated_at": now, "updated_by": actor}
            if old is None:
                conn.execute(
                    insert(webhooks).values(organisation_id=org_id, created_at=now, **values)
                )
            else:
                conn.execute(
                    update(webhooks).where(webhooks.c.organisation_id == org_id).values(**values)
                )
            self._audit.record(
                conn,
                actor,
                "webhook.set",
                organisation,
                {},
                details={"old": {"url": old}, "new": {"url": url}},
            )
        return {"organisation": organisation, "url": url, "updated_at": now.isoformat()}, secret

    def all(self, organisation: str | None = None) -> list[dict[str, Any]]:
        """Webhooks (never their secrets) with their deliveries by status and the last error."""
        query = select(
            organisations.c.name, webhooks.c.organisation_id, webhooks.c.url, webhooks.c.updated_at
        ).join(organisations, organisations.c.id == webhooks.c.organisation_id)
        if organisation is not None:
            query = query.where(organisations.c.name == fields.organisation(organisation, "org"))
        counted = select(
            webhook_deliveries.c.organisation_id, webhook_deliveries.c.status, func.count()
        ).group_by(webhook_deliveries.c.organisation_id, webhook_deliveries.c.status)
        statuses: defaultdict[int, dict[str, int]] = defaultdict(
            lambda: {PENDING: 0, DELIVERED: 0, FAILED: 0}
        )
        with self._database.engine.connect() as conn:
            for org_id, status, count in conn.execute(counted):
                statuses[org_id][status] = int(count)
            rows = list(conn.execute(query.order_by(organisations.c.name)))
        return [
            {
                "organisation": name,
                "url": url,
                "updated_at": as_utc(updated_at).isoformat(),
                "deliveries": statuses[org_id],
            }
            for name, org_id, url, updated_at in rows
        ]

    def deliveries(
        self, organisation: str | None = None, status: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """The latest notices first, with their state."""
        query = (
            select(webhook_deliveries, organisations.c.name.label("organisation"))
            .join(organisations, organisations.c.id == webhook_deliveries.c.organisation_id)
            .order_by(webhook_deliveries.c.id.desc())
            .limit(limit)
        )
        if organisation is not None:
            query = query.where(organisations.c.name == fields.organisation(organisation, "org"))
        if status is not None:
            query = query.where(webhook_deliveries.c.status == status)
        with self._database.engine.connect() as conn:
            rows = list(conn.execute(query).mappings())
        return [_delivery_dict(row) for row in rows]

    # --- the withdrawal's side -------------------------------------------------------------

    @staticmethod
    def queue_withdrawn(conn: Connection, info: ListInfo, cursor: int) -> int:
        """In the withdrawal's transaction: a notice per (platform with a webhook, entry
        withdrawn by change ``cursor``) for each platform that removed or acted on a match of
        the entry. The number queued."""
        query = (
            select(
                outcomes.c.organisation_id,
                outcomes.c.entry_id,
                outcomes.c.match_id,
                entries.c.withdrawn_at,
                entries.c.withdrawal_class,
            )
            .join(entries, entries.c.id == outcomes.c.entry_id)
            .join(webhooks, webhooks.c.organisation_id == outcomes.c.organisation_id)
            .where(
                entries.c.withdrawn_change == cursor,
                outcomes.c.list_id == info.id,
                outcomes.c.outcome.in_([kind.value for kind in ACTED]),
            )
            .order_by(outcomes.c.id)
        )
        owed: dict[tuple[int, int], dict[str, Any]] = {}
        for org_id, entry_id, match_id, withdrawn_at, reason_class in conn.execute(query):
            notice = owed.setdefault(
                (org_id, entry_id),
                {
                    "event": "entry.withdrawn",
                    "match_ids": [],
                    "list": info.name,
                    "entry_id": entry_id,
                    "withdrawn_at": as_utc(withdrawn_at).isoformat(),
                    "reason_class": reason_class,
                },
            )
            notice["match_ids"].append(match_id)
        if not owed:
            return 0
        now = utcnow()
        conn.execute(
            insert(webhook_deliveries),
            [
                {
                    "organisation_id": org_id,
                    "list_id": info.id,
                    "entry_id": entry_id,
                    "payload": payload,
                    "status": PENDING,
                    "attempts": 0,
                    "created_at": now,
                    "next_attempt_at": now,
                }
                for (org_id, entry_id), payload in owed.items()
            ],
        )
        return len(owed)

    # --- the sender's side -----------------------------------------------------------------

    def due(self, limit: int = 100, now: dt.datetime | None = None) -> list[Delivery]:
        now = utcnow() if now is None else now
        query = (
            select(
                webhook_deliveries.c.id,
                organisations.c.name,
                webhooks.c.url,
                webhooks.c.secret,
                webhook_deliveries.c.payload,
                webhook_deliveries.c.attempts,
            )
            .join(webhooks, webhooks.c.organisation_id == webhook_deliveries.c.organisation_id)
            .join(organisations, organisations.c.id == webhook_deliveries.c.organisation_id)
            .where(
                webhook_deliveries.c.status == PENDING,
                webhook_deliveries.c.next_attempt_at <= now,
            )
            .order_by(webhook_deliveries.c.next_attempt_at, webhook_deliveries.c.id)
            .limit(limit)
        )
        with self._database.engine.connect() as conn:
            return [
                Delivery(int(r[0]), r[1], r[2], r[3], dict(r[4]), int(r[5]))
                for r in conn.execute(query)
            ]

    def attempted(
        self,
        delivery_id: int,
        *,
        status: int | None,
        error: str | None,
        retry_at: dt.datetime | None,
    ) -> None:
        """Record an attempt: delivered (no ``error``), to retry at ``retry_at``, or given up
        (an error and no ``retry_at``)."""
        now = utcnow()
        values: dict[str, Any] = {
            "attempts": webhook_deliveries.c.attempts + 1,
            "last_attempt_at": now,
            "last_status": status,
            "last_error": None if error is None else fields.printable(error)[:500],
        }
        if error is None:
            values.update(status=DELIVERED, delivered_at=now, next_attempt_at=None)
        elif retry_at is not None:
            values.update(next_attempt_at=retry_at)
        else:
            values.update(status=FAILED, next_attempt_at=None)
        with self._database.write_transaction() as conn:
            done = conn.execute(
                update(webhook_deliveries)
                .where(webhook_deliveries.c.id == delivery_id)
                .values(**values)
            ).rowcount
        if not done:
            raise NotFound(f"no webhook delivery {delivery_id}")

    # --- one sender per database -----------------------------------------------------------

    def take_lease(self, name: str, holder: str, seconds: float) -> bool:
        """Hold (or keep holding) job ``name`` for ``seconds``: true when ``holder`` has it.
        Under the writers' lock, so two processes never both win."""
        now = utcnow()
        until = now + dt.timedelta(seconds=seconds)
        with self._database.write_transaction() as conn:
            taken = conn.execute(
                update(leases)
                .where(
                    leases.c.name == name,
                    (leases.c.expires_at < now) | (leases.c.holder == holder),
                )
                .values(holder=holder, expires_at=until)
            ).rowcount
            if taken:
                return True
            exists = conn.execute(select(leases.c.name).where(leases.c.name == name)).first()
            if exists is not None:
                return False
            conn.execute(insert(leases).values(name=name, holder=holder, expires_at=until))
            return True

    def release_lease(self, name: str, holder: str) -> None:
        with self._database.write_transaction() as conn:
            conn.execute(
                update(leases)
                .where(leases.c.name == name, leases.c.holder == holder)
                .values(expires_at=utcnow() - dt.timedelta(seconds=1))
            )


def _delivery_dict(row: Any) -> dict[str, Any]:
    values = {k: row[k] for k in ("id", "organisation", "entry_id", "status", "attempts")}
    for name in ("created_at", "next_attempt_at", "last_attempt_at", "delivered_at"):
        values[name] = None if row[name] is None else as_utc(row[name]).isoformat()
    values["last_status"] = row["last_status"]
    values["last_error"] = row["last_error"]
    values["match_ids"] = row["payload"].get("match_ids", [])
    values["list"] = row["payload"].get("list")
    return values
