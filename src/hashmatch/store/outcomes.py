"""Outcome reports: what platforms did about their matches, and the matches counted.

A platform reports by match id (:mod:`hashmatch.matching.tokens`): the id alone proves which
entry of which list it matched, when, and for which organisation, so a report needs no record
written at match time. A batch is one transaction: good items are applied, bad ones are
reported by position with a code, and a match id reported again replaces its earlier outcome
(the audit row of the batch keeps the values it replaced), so a retried batch never counts
twice.

The instance's token secret lives here too (the ``instance`` table), created by the first
process that needs it, under the writers' lock, so every worker and replica shares one.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final, TypedDict

from sqlalchemy import bindparam, insert, select, text, update

from hashmatch import fields
from hashmatch.errors import HashFormatError, HashmatchError, InvalidMatchId, InvalidOutcome
from hashmatch.matching.tokens import MatchClaim, MatchTokens
from hashmatch.signals import Hash, parse_hash
from hashmatch.store.audit import AuditLog
from hashmatch.store.database import Database, utcnow
from hashmatch.store.lists import Lists
from hashmatch.store.schema import instance, match_counts, outcomes

TOKEN_KEY: Final = "outcome_token_key"  # noqa: S105 - where the secret is kept
MAX_BATCH: Final = 10_000
MAX_NOTE_CHARS: Final = 500
#: How far a report's time may run ahead of this instance's clock, or behind the match's.
CLOCK_SKEW: Final = dt.timedelta(minutes=5)
#: Per-item errors a report lists (the count is always exact).
MAX_LISTED_ERRORS: Final = 1_000
#: Match ids per ``IN (...)``: under SQLite's oldest limit of bound parameters.
_CHUNK: Final = 900


class OutcomeKind(StrEnum):
    REMOVED = "removed"
    ACTIONED = "actioned"
    FALSE_POSITIVE = "false_positive"
    UNDER_REVIEW = "under_review"
    NOT_ACTIONED = "not_actioned"


#: What a withdrawal notice is owed to: content the platform took down or acted on.
ACTED: Final = (OutcomeKind.REMOVED, OutcomeKind.ACTIONED)


class OutcomeItem(TypedDict, total=False):
    """One report as a front end received it; every value is checked here."""

    match_id: object
    outcome: object
    acted_at: object  # ISO-8601 text with a zone, or an aware datetime; default: now
    hash: object  # "pdq:<hex>", only with false_positive
    note: object


@dataclass
class OutcomeReport:
    accepted: int = 0  # match ids reported for the first time
    updated: int = 0  # match ids reported before: their outcome replaced
    rejected: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)

    def reject(self, index: int, error: HashmatchError) -> None:
        self.rejected += 1
        if len(self.errors) < MAX_LISTED_ERRORS:
            self.errors.append(
                {"index": index, "code": error.code, "message": fields.printable(error.message)}
            )

    def as_dict(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted,
            "updated": self.updated,
            "rejected": self.rejected,
            "errors": self.errors,
            "errors_truncated": self.rejected > len(self.errors),
        }


def as_utc(value: dt.datetime) -> dt.datetime:
    """A stored time as an aware UTC datetime (SQLite hands them back naive)."""
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def _kind(value: object) -> OutcomeKind:
    try:
        if not isinstance(value, str):
            raise ValueError(value)
        return OutcomeKind(value)
    except ValueError:
        known = ", ".join(kind.value for kind in OutcomeKind)
        shown = fields.printable(repr(value)[:40])
        raise InvalidOutcome(f"outcome: must be one of {known}, got {shown}") from None


def _acted_at(value: object, claim: MatchClaim, now: dt.datetime) -> dt.datetime:
    if value is None:
        # A replica whose clock runs ahead may have stamped the match a little after "now".
        return max(now, claim.matched_at)
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError:
            raise InvalidOutcome("acted_at: not an ISO-8601 time") from None
    if not isinstance(value, dt.datetime):
        raise InvalidOutcome("acted_at: not an ISO-8601 time")
    if value.tzinfo is None:
        # A platform in Seoul and one in Taipei would silently disagree by an hour.
        raise InvalidOutcome("acted_at: give the time zone (Z or +hh:mm)")
    value = value.astimezone(dt.UTC)
    if value > now + CLOCK_SKEW:
        raise InvalidOutcome("acted_at: in the future")
    if value < claim.matched_at - CLOCK_SKEW:
        raise InvalidOutcome("acted_at: before the match")
    # Within the skew either side of the match: the clocks disagree, not the facts.
    return max(value, claim.matched_at)


def _hash(value: object, kind: OutcomeKind) -> Hash | None:
    if value is None:
        return None
    if kind is not OutcomeKind.FALSE_POSITIVE:
        raise InvalidOutcome("hash: only a false_positive report carries the query's hash")
    if not isinstance(value, str):
        raise InvalidOutcome("hash: must be written ALGORITHM:HEX")
    try:
        return parse_hash(value)
    except HashFormatError as exc:
        raise InvalidOutcome(f"hash: {exc.message}") from None


class Outcomes:
    def __init__(self, database: Database, lists: Lists, audit: AuditLog) -> None:
        self._database = database
        self._lists = lists
        self._audit = audit
        self._tokens: MatchTokens | None = None

    # --- the instance's token secret -------------------------------------------------------

    def token_key(self) -> bytes:
        """The secret of every match id, made once per database (whoever asks first)."""
        query = select(instance.c.value).where(instance.c.key == TOKEN_KEY)
        with self._database.engine.connect() as conn:
            value = conn.execute(query).scalar()
        if value is None:
            with self._database.write_transaction() as conn:
                # Under the writers' lock: a second process waits, then finds the first's key.
                value = conn.execute(query).scalar()
                if value is None:
                    value = secrets.token_urlsafe(32)
                    conn.execute(insert(instance).values(key=TOKEN_KEY, value=value))
        return str(value).encode("ascii")

    def tokens(self) -> MatchTokens:
        if self._tokens is None:
            self._tokens = MatchTokens(self.token_key())
        return self._tokens

    # --- reports ---------------------------------------------------------------------------

    def report(
        self,
        organisation: str,
        items: Sequence[OutcomeItem],
        *,
        actor: str,
        now: dt.datetime | None = None,
    ) -> OutcomeReport:
        """Apply ``organisation``'s reports in one transaction; bad items are listed, not
        applied. An id given twice in one batch counts once: its last report wins."""
        organisation = fields.organisation(organisation)
        if len(items) > MAX_BATCH:
            raise InvalidOutcome(f"outcomes: at most {MAX_BATCH} reports a batch")
        now = utcnow() if now is None else now
        tokens = self.tokens()
        result = OutcomeReport()
        rows: dict[str, dict[str, Any]] = {}
        replaced_in_batch: list[dict[str, Any]] = []
        for index, item in enumerate(items):
            try:
                row = self._checked(item, tokens, organisation, now)
            except HashmatchError as exc:
                result.reject(index, exc)
                continue
            earlier = rows.pop(row["match_id"], None)
            if earlier is not None:
                result.updated += 1
                replaced_in_batch.append(_replaced(earlier))
            rows[row["match_id"]] = row
        if not rows:
            return result
        postgres = self._database.dialect == "postgresql"
        chunk = MAX_BATCH if postgres else _CHUNK
        with self._database.write_transaction() as conn:
            if postgres:
                # Every lookup here is by the unique match id. Right after a large batch the
                # planner's statistics still describe a small table, and a sequential scan
                # per lookup turns 10,000 reports into seconds.
                conn.execute(text("SET LOCAL enable_seqscan = off"))
            org_id = self._lists.organisation_id(organisation, conn)
            ids = list(rows)
            known: dict[str, dict[str, Any]] = {}
            columns = (outcomes.c.match_id, outcomes.c.outcome, outcomes.c.acted_at)
            for start in range(0, len(ids), chunk):
                query = select(*columns).where(outcomes.c.match_id.in_(ids[start : start + chunk]))
                for match_id, kind, acted_at in conn.execute(query):
                    known[match_id] = {"outcome": kind, "acted_at": as_utc(acted_at)}
            fresh = [
                {**row, "organisation_id": org_id, "reported_at": now}
                for match_id, row in rows.items()
                if match_id not in known
            ]
            again = [
                {f"b_{name}": value for name, value in row.items()}
                for match_id, row in rows.items()
                if match_id in known
            ]
            if fresh:
                conn.execute(insert(outcomes), fresh)
            if again:
                conn.execute(_UPDATE, again)
            result.accepted += len(fresh)
            result.updated += len(again)
            replaced = replaced_in_batch + [
                _replaced({"match_id": match_id, **known[match_id]})
                for match_id in rows
                if match_id in known
            ]
            counts = {"accepted": result.accepted, "updated": result.updated}
            counts["rejected"] = result.rejected
            self._audit.record(
                conn,
                actor,
                "outcomes.report",
                organisation,
                counts,
                details={"replaced": replaced} if replaced else None,
            )
        return result

    @staticmethod
    def _checked(
        item: OutcomeItem, tokens: MatchTokens, organisation: str, now: dt.datetime
    ) -> dict[str, Any]:
        if not isinstance(item, Mapping):
            raise InvalidOutcome("a report is an object")
        claim = tokens.verify(item.get("match_id"), organisation)
        kind = _kind(item.get("outcome"))
        if claim.matched_at > now + CLOCK_SKEW:
            raise InvalidMatchId("not a match id: its match is in the future")
        acted_at = _acted_at(item.get("acted_at"), claim, now)
        value = _hash(item.get("hash"), kind)
        try:
            note = fields.optional_text(item.get("note"), "note", MAX_NOTE_CHARS)
        except HashmatchError as exc:
            raise InvalidOutcome(exc.message) from None
        return {
            "match_id": claim.match_id,
            "list_id": claim.list_id,
            "entry_id": claim.entry_id,
            "matched_at": claim.matched_at,
            "outcome": kind.value,
            "acted_at": acted_at,
            "algorithm": None if value is None else value.algorithm.name,
            "hash": None if value is None else value.value,
            "note": note,
            "updated_at": now,
        }

    # --- match counts ----------------------------------------------------------------------

    def add_counts(self, counts: Mapping[tuple[int, int, dt.date], int]) -> None:
        """Add matches per (list, entry, day) to the stored totals: additive, so every
        worker and instance flushing into one database adds up."""
        if not counts:
            return
        statement = _upsert(self._database.dialect)
        statement = statement.on_conflict_do_update(
            index_elements=[match_counts.c.list_id, match_counts.c.entry_id, match_counts.c.day],
            set_={"matches": match_counts.c.matches + statement.excluded.matches},
        )
        rows = [
            {"list_id": list_id, "entry_id": entry_id, "day": day, "matches": count}
            for (list_id, entry_id, day), count in sorted(counts.items())
        ]
        with self._database.write_transaction() as conn:
            conn.execute(statement, rows)


def _upsert(dialect: str) -> Any:
    """``INSERT`` into ``match_counts`` in the dialect that can say ``ON CONFLICT``."""
    if dialect == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql.insert(match_counts)
    from sqlalchemy.dialects import sqlite

    return sqlite.insert(match_counts)


_UPDATE: Final = (
    update(outcomes)
    .where(outcomes.c.match_id == bindparam("b_match_id"))
    .values(
        outcome=bindparam("b_outcome"),
        acted_at=bindparam("b_acted_at"),
        algorithm=bindparam("b_algorithm"),
        hash=bindparam("b_hash"),
        note=bindparam("b_note"),
        updated_at=bindparam("b_updated_at"),
    )
)


def _replaced(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "match_id": row["match_id"],
        "outcome": row["outcome"],
        "acted_at": row["acted_at"].isoformat(),
    }
