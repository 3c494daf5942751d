"""Withdrawing entries (a victim may withdraw at any time) and reviving them, on the record.

A withdrawal keeps the entry as a tombstone: it never matches again, an import of the same
hash into the same list is refused (:meth:`Store.import_rows`), and only :func:`revive`, with
a reason, brings it back, as a new entry beside the tombstone. Both say exactly what happened
to every reference and hash they were given: withdrawn (or revived), already so, or matching
nothing in the list — a mistyped reference must not look like a done withdrawal.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from sqlalchemy import Connection, func, select, update

from hashmatch import fields
from hashmatch.errors import InvalidField, NothingMatched
from hashmatch.signals import Hash
from hashmatch.store.audit import AuditLog
from hashmatch.store.bulk import EntryTuple, insert_entries
from hashmatch.store.changes import ChangeLog
from hashmatch.store.database import Database, utcnow
from hashmatch.store.entries import LOOKUP_CHUNK
from hashmatch.store.lists import Lists
from hashmatch.store.records import ListInfo
from hashmatch.store.schema import entries

#: How many unmatched names a report lists (the count is always exact).
MAX_LISTED: Final = 1_000


@dataclass
class EntryReport:
    """What one withdrawal or revival did with the references and hashes it was given."""

    list_name: str
    action: str  # "withdrawn" | "revived"
    cursor: int | None = None
    count: int = 0  # entries withdrawn or revived
    already: list[str] = field(default_factory=list)  # named, but already in that state
    unmatched: list[str] = field(default_factory=list)  # named, but in no entry of the list

    def as_dict(self) -> dict[str, Any]:
        already = "already_withdrawn" if self.action == "withdrawn" else "already_live"
        return {
            "list": self.list_name,
            "cursor": self.cursor,
            self.action: self.count,
            already: self.already[:MAX_LISTED],
            "unmatched": self.unmatched[:MAX_LISTED],
            "unmatched_count": len(self.unmatched),
        }


def _names(references: Sequence[object], hashes: Sequence[Hash]) -> tuple[list[str], list[Hash]]:
    refs: dict[str, None] = {}
    for position, value in enumerate(references):
        reference = fields.reference(value, f"references[{position}]")
        if reference is None:
            raise InvalidField(f"references[{position}]", "blank reference")
        refs[reference] = None
    if not refs and not hashes:
        raise InvalidField("references", "name what to act on: references or hashes")
    return list(refs), list(dict.fromkeys(hashes))


def _state(
    conn: Connection, list_id: int, references: list[str], hashes: list[Hash]
) -> tuple[dict[str, bool], dict[Hash, bool]]:
    """For each named reference and hash found in the list: whether any entry is live."""
    by_reference: dict[str, bool] = {}
    for start in range(0, len(references), LOOKUP_CHUNK):
        chunk = references[start : start + LOOKUP_CHUNK]
        rows = conn.execute(
            select(entries.c.reference, entries.c.withdrawn_at.is_(None)).where(
                entries.c.list_id == list_id, entries.c.reference.in_(chunk)
            )
        )
        for reference, live in rows:
            by_reference[reference] = by_reference.get(reference, False) or bool(live)
    by_hash: dict[Hash, bool] = {}
    for algorithm in {h.algorithm for h in hashes}:
        wanted = {h.value: h for h in hashes if h.algorithm is algorithm}
        values = list(wanted)
        for start in range(0, len(values), LOOKUP_CHUNK):
            rows = conn.execute(
                select(entries.c.hash, entries.c.withdrawn_at.is_(None)).where(
                    entries.c.list_id == list_id,
                    entries.c.algorithm == algorithm.name,
                    entries.c.hash.in_(values[start : start + LOOKUP_CHUNK]),
                )
            )
            for value, live in rows:
                named = wanted[bytes(value)]
                by_hash[named] = by_hash.get(named, False) or bool(live)
    return by_reference, by_hash


#: What an action does inside its transaction, given the list, the state of each name and
#: the change's cursor; returns how many entries it changed.
Apply = Callable[[Connection, ListInfo, dict[str, bool], dict[Hash, bool], int, str], int]


class Withdrawals:
    def __init__(
        self, database: Database, lists: Lists, changes: ChangeLog, audit: AuditLog
    ) -> None:
        self._database = database
        self._lists = lists
        self._changes = changes
        self._audit = audit

    def _act(
        self,
        list_name: str,
        *,
        action: str,
        change: str,
        audited: str,
        apply: Apply,
        actor: str,
        reason: str,
        references: Sequence[object],
        hashes: Sequence[Hash],
    ) -> EntryReport:
        reason = fields.reason(reason)
        refs, named_hashes = _names(references, hashes)
        info = self._lists.get(list_name)
        report = EntryReport(list_name, action)
        with self._database.write_transaction() as conn:
            by_reference, by_hash = _state(conn, info.id, refs, named_hashes)
            _sort(report, refs, named_hashes, by_reference, by_hash, action == "revived")
            if not by_reference and not by_hash:
                raise NothingMatched(_nothing(list_name, report))
            cursor = self._changes.record(conn, change, info.id)
            report.count = apply(conn, info, by_reference, by_hash, cursor, reason)
            report.cursor = cursor
            self._changes.set_count(conn, cursor, report.count)
            self._audit.record(conn, actor, audited, list_name, _counts(report), reason)
        return report

    def withdraw(
        self,
        list_name: str,
        *,
        actor: str,
        reason: str,
        references: Sequence[object] = (),
        hashes: Sequence[Hash] = (),
    ) -> EntryReport:
        """Withdraw the live entries with these references or hashes, in one transaction.

        Raises :class:`NothingMatched` (and changes nothing) when no name matches any entry."""

        def apply(
            conn: Connection,
            info: ListInfo,
            by_reference: dict[str, bool],
            by_hash: dict[Hash, bool],
            cursor: int,
            reason: str,
        ) -> int:
            values = {
                "withdrawn_at": utcnow(),
                "withdrawn_by": actor,
                "withdrawal_reason": reason,
                "withdrawn_change": cursor,
            }
            live = (entries.c.list_id == info.id) & entries.c.withdrawn_at.is_(None)
            count = 0
            live_refs = [r for r, is_live in by_reference.items() if is_live]
            for start in range(0, len(live_refs), LOOKUP_CHUNK):
                chunk = live_refs[start : start + LOOKUP_CHUNK]
                result = conn.execute(
                    update(entries).where(live & entries.c.reference.in_(chunk)).values(**values)
                )
                count += result.rowcount
            live_hashes = [h for h, is_live in by_hash.items() if is_live]
            for algorithm in {h.algorithm for h in live_hashes}:
                values_of = [h.value for h in live_hashes if h.algorithm is algorithm]
                for start in range(0, len(values_of), LOOKUP_CHUNK):
                    result = conn.execute(
                        update(entries)
                        .where(
                            live
                            & (entries.c.algorithm == algorithm.name)
                            & entries.c.hash.in_(values_of[start : start + LOOKUP_CHUNK])
                        )
                        .values(**values)
                    )
                    count += result.rowcount
            return count

        return self._act(
            list_name,
            action="withdrawn",
            change="withdraw",
            audited="entries.withdraw",
            apply=apply,
            actor=actor,
            reason=reason,
            references=references,
            hashes=hashes,
        )

    def revive(
        self,
        list_name: str,
        *,
        actor: str,
        reason: str,
        references: Sequence[object] = (),
        hashes: Sequence[Hash] = (),
    ) -> EntryReport:
        """Bring withdrawn hashes back as new live entries (the tombstones stay, for the record)."""

        def apply(
            conn: Connection,
            info: ListInfo,
            by_reference: dict[str, bool],
            by_hash: dict[Hash, bool],
            cursor: int,
            _reason: str,
        ) -> int:
            dead_refs = [r for r, is_live in by_reference.items() if not is_live]
            dead_hashes = [h for h, is_live in by_hash.items() if not is_live]
            rows = _tombstones(conn, info.id, dead_refs, dead_hashes)
            insert_entries(
                conn, rows, list_id=info.id, cursor=cursor, added_at=utcnow(), added_by=actor
            )
            added = conn.execute(
                select(func.count()).select_from(entries).where(entries.c.added_change == cursor)
            ).scalar_one()
            return int(added)

        return self._act(
            list_name,
            action="revived",
            change="add",
            audited="entries.revive",
            apply=apply,
            actor=actor,
            reason=reason,
            references=references,
            hashes=hashes,
        )


def _tombstones(
    conn: Connection, list_id: int, references: list[str], hashes: list[Hash]
) -> list[EntryTuple]:
    """The latest tombstone of each withdrawn hash named directly or by reference."""
    dead = (entries.c.list_id == list_id) & entries.c.withdrawn_at.is_not(None)
    latest: dict[tuple[str, bytes], tuple[int, EntryTuple]] = {}

    def keep(rows: Any) -> None:
        for entry_id, algorithm, value, reference, labels in rows:
            key = (algorithm, bytes(value))
            if key not in latest or latest[key][0] < entry_id:
                latest[key] = (entry_id, (algorithm, bytes(value), reference, tuple(labels or ())))

    columns = (
        entries.c.id,
        entries.c.algorithm,
        entries.c.hash,
        entries.c.reference,
        entries.c.labels,
    )
    for start in range(0, len(references), LOOKUP_CHUNK):
        chunk = references[start : start + LOOKUP_CHUNK]
        keep(conn.execute(select(*columns).where(dead & entries.c.reference.in_(chunk))))
    for algorithm in {h.algorithm for h in hashes}:
        values = [h.value for h in hashes if h.algorithm is algorithm]
        for start in range(0, len(values), LOOKUP_CHUNK):
            keep(
                conn.execute(
                    select(*columns).where(
                        dead
                        & (entries.c.algorithm == algorithm.name)
                        & entries.c.hash.in_(values[start : start + LOOKUP_CHUNK])
                    )
                )
            )
    return [row for _, row in latest.values()]


def _sort(
    report: EntryReport,
    references: list[str],
    hashes: list[Hash],
    by_reference: dict[str, bool],
    by_hash: dict[Hash, bool],
    done_when_live: bool,
) -> None:
    """File each name under unmatched, or already done: revived when it has a live entry
    (``done_when_live``), withdrawn when it has none."""
    for reference in references:
        if reference not in by_reference:
            report.unmatched.append(reference)
        elif by_reference[reference] == done_when_live:
            report.already.append(reference)
    for value in hashes:
        if value not in by_hash:
            report.unmatched.append(str(value))
        elif by_hash[value] == done_when_live:
            report.already.append(str(value))


def _nothing(list_name: str, report: EntryReport) -> str:
    shown = ", ".join(repr(name[:80]) for name in report.unmatched[:5])
    more = f" and {len(report.unmatched) - 5} more" if len(report.unmatched) > 5 else ""
    return f"nothing in list {list_name!r} matches {shown}{more}; nothing was {report.action}"


def _counts(report: EntryReport) -> dict[str, Any]:
    return {
        report.action: report.count,
        "already": len(report.already),
        "unmatched": len(report.unmatched),
        "cursor": report.cursor,
    }
