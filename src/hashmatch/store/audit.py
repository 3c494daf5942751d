"""The audit log: who did what to which list or key, when, why, and the values before and
after. Rows are written in the same transaction as the change they record."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, insert, select

from hashmatch import fields
from hashmatch.store.database import Database, utcnow
from hashmatch.store.schema import audit


class AuditLog:
    def __init__(self, database: Database) -> None:
        self._database = database

    @staticmethod
    def record(
        conn: Connection,
        actor: str,
        action: str,
        target: str,
        counts: dict[str, Any],
        reason: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        conn.execute(
            insert(audit).values(
                at=utcnow(),
                actor=fields.text(actor, "actor", fields.MAX_ACTOR_CHARS),
                action=action,
                target=target,
                counts=counts,
                reason=reason,
                details=details,
            )
        )

    def log(self, target: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """The latest rows first; only those about ``target`` (a list's name) when given."""
        query = select(audit).order_by(audit.c.id.desc()).limit(limit)
        if target is not None:
            if not isinstance(target, str) or not fields.is_list_name(target):
                fields.list_name(target, "list")  # raises, saying what a name is
            query = query.where(audit.c.target == target)
        with self._database.engine.connect() as conn:
            return [
                {**dict(r), "at": r["at"].isoformat() if r["at"] else None}
                for r in conn.execute(query).mappings()
            ]
