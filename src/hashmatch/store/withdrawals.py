"""Withdrawing entries (a victim may withdraw at any time) and reviving them, on the record.

A withdrawal keeps the entry as a tombstone: it never matches again, an import of the same
hash into the same list is refused (:meth:`Entries.import_rows`), and only :meth:`revive`,
with a reason, brings it back, as a new entry beside the tombstone. Both say exactly what
happened to every reference and hash they were given: withdrawn (or revived), already so, or
matching nothing in the list — a mistyped reference must not look like a done withdrawal.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, NotRequired, TypedDict, Unpack

from sqlalchemy import ColumnElement, Connection, func, select, update

from hashmatch import fields
from hashmatch.errors import InvalidField, NothingMatched, ReadOnlyMirror
from hashmatch.signals import Hash
from hashmatch.store.bulk import Added, EntryTuple, insert_entries
from hashmatch.store.database import utcnow
from hashmatch.store.entries import LOOKUP_CHUNK, EntryRepository
from hashmatch.store.records import ListInfo
from hashmatch.store.schema import entries

#: How many unmatched names a report lists (the count is always exact).
MAX_LISTED: Final = 1_000


class EntryRequest(TypedDict):
    """Who acts, why, and the entries they name: by the source's reference, or by hash."""

    actor: str
    reason: str
    references: NotRequired[Sequence[object]]
    hashes: NotRequired[Sequence[Hash]]
    #: Why, as a class peers may learn (``fields.WITHDRAWAL_CLASSES``); the reason stays here.
    reason_class: NotRequired[str]


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


@dataclass(frozen=True)
class _Names:
    """The names one request gives, checked, each with whether the list has a live entry for
    it (absent: no entry at all)."""

    list_id: int
    references: list[str]
    hashes: list[Hash]
    live_references: dict[str, bool]
    live_hashes: dict[Hash, bool]

    def found(self) -> bool:
        return bool(self.live_references or self.live_hashes)

    def conditions(self, live: bool) -> Iterator[ColumnElement[bool]]:
        """Conditions on ``entries`` selecting the found names whose state is ``live``."""
        references = [r for r, state in self.live_references.items() if state == live]
        hashes = [h for h, state in self.live_hashes.items() if state == live]
        return _conditions(self.list_id, references, hashes)


@dataclass(frozen=True)
class _Action:
    name: str  # what the report says was done
    change: str  # the change-log kind replicas apply
    audited: str  # the audit log's action
    done_when_live: bool  # a name is already done when its live state is this


_WITHDRAW: Final = _Action("withdrawn", "withdraw", "entries.withdraw", done_when_live=False)
_REVIVE: Final = _Action("revived", "add", "entries.revive", done_when_live=True)


class Withdrawals(EntryRepository):
    #: Called inside each withdrawal's transaction with the list and the change's cursor
    #: (the store queues webhook notices so: they exist if and only if the withdrawal does).
    on_withdrawn: Callable[[Connection, ListInfo, int], object] | None = None

    def withdraw(self, list_name: str, **request: Unpack[EntryRequest]) -> EntryReport:
        """Withdraw the live entries with these references or hashes, in one transaction.

        Raises :class:`NothingMatched` (and changes nothing) when no name matches any entry."""
        return self._act(list_name, _WITHDRAW, self._withdraw_live, request)

    def revive(self, list_name: str, **request: Unpack[EntryRequest]) -> EntryReport:
        """Bring withdrawn hashes back as new live entries (tombstones stay, for the record)."""
        return self._act(list_name, _REVIVE, self._revive_dead, request)

    def _act(
        self,
        list_name: str,
        action: _Action,
        apply: Callable[[Connection, _Names, int, str, str, str], int],
        request: EntryRequest,
    ) -> EntryReport:
        actor, reason = request["actor"], fields.reason(request["reason"])
        reason_class = fields.withdrawal_class(request.get("reason_class", "other"))
        references, hashes = _checked(request.get("references", ()), request.get("hashes", ()))
        info = self._lists.get(list_name)
        if info.is_mirror:
            raise ReadOnlyMirror(
                f"list {list_name!r} is a mirror: withdraw at its origin, or disable the mirror"
            )
        report = EntryReport(list_name, action.name)
        with self._database.write_transaction() as conn:
            names = _state(conn, info.id, references, hashes)
            _sort(report, names, action.done_when_live)
            if not names.found():
                raise NothingMatched(_nothing(list_name, report))
            cursor = self._changes.record(conn, action.change, info.id)
            report.count = apply(conn, names, cursor, actor, reason, reason_class)
            report.cursor = cursor
            if action is _WITHDRAW and self.on_withdrawn is not None:
                self.on_withdrawn(conn, info, cursor)
            self._changes.set_count(conn, cursor, report.count)
            self._audit.record(conn, actor, action.audited, list_name, _counts(report), reason)
        return report

    @staticmethod
    def _withdraw_live(
        conn: Connection, names: _Names, cursor: int, actor: str, reason: str, reason_class: str
    ) -> int:
        values = {
            "withdrawn_at": utcnow(),
            "withdrawn_by": actor,
            "withdrawal_reason": reason,
            "withdrawal_class": reason_class,
            "withdrawn_change": cursor,
        }
        live = entries.c.withdrawn_at.is_(None)
        return sum(
            conn.execute(update(entries).where(condition & live).values(**values)).rowcount
            for condition in names.conditions(live=True)
        )

    @staticmethod
    def _revive_dead(
        conn: Connection, names: _Names, cursor: int, actor: str, _reason: str, _class: str
    ) -> int:
        rows = _tombstones(conn, names)
        insert_entries(conn, rows, Added(names.list_id, cursor, utcnow(), actor))
        added = conn.execute(
            select(func.count()).select_from(entries).where(entries.c.added_change == cursor)
        ).scalar_one()
        return int(added)


def _checked(references: Sequence[object], hashes: Sequence[Hash]) -> tuple[list[str], list[Hash]]:
    refs: dict[str, None] = {}
    for position, value in enumerate(references):
        reference = fields.reference(value, f"references[{position}]")
        if reference is None:
            raise InvalidField(f"references[{position}]", "blank reference")
        refs[reference] = None
    if not refs and not hashes:
        raise InvalidField("references", "name what to act on: references or hashes")
    return list(refs), list(dict.fromkeys(hashes))


def _conditions(
    list_id: int, references: Sequence[str], hashes: Sequence[Hash]
) -> Iterator[ColumnElement[bool]]:
    """Conditions on ``entries`` for these references and hashes of one list, in chunks an
    ``IN (...)`` of every database takes."""
    in_list = entries.c.list_id == list_id
    for start in range(0, len(references), LOOKUP_CHUNK):
        yield in_list & entries.c.reference.in_(references[start : start + LOOKUP_CHUNK])
    for algorithm in {h.algorithm for h in hashes}:
        values = [h.value for h in hashes if h.algorithm is algorithm]
        for start in range(0, len(values), LOOKUP_CHUNK):
            yield (
                in_list
                & (entries.c.algorithm == algorithm.name)
                & entries.c.hash.in_(values[start : start + LOOKUP_CHUNK])
            )


def _state(conn: Connection, list_id: int, references: list[str], hashes: list[Hash]) -> _Names:
    """For each named reference and hash found in the list: whether any entry is live."""
    by_reference: dict[str, bool] = {}
    by_hash: dict[Hash, bool] = {}
    named = {(h.algorithm.name, h.value): h for h in hashes}
    live = entries.c.withdrawn_at.is_(None)
    columns = (entries.c.reference, entries.c.algorithm, entries.c.hash, live)
    wanted = set(references)
    for condition in _conditions(list_id, references, hashes):
        for reference, algorithm, value, is_live in conn.execute(select(*columns).where(condition)):
            if reference in wanted:
                by_reference[reference] = by_reference.get(reference, False) or bool(is_live)
            found = named.get((algorithm, bytes(value)))
            if found is not None:
                by_hash[found] = by_hash.get(found, False) or bool(is_live)
    return _Names(list_id, references, hashes, by_reference, by_hash)


def _tombstones(conn: Connection, names: _Names) -> list[EntryTuple]:
    """The latest tombstone of each withdrawn hash named directly or by reference."""
    latest: dict[tuple[str, bytes], tuple[int, EntryTuple]] = {}
    columns = (entries.c.id, entries.c.algorithm, entries.c.hash, entries.c.reference)
    dead = entries.c.withdrawn_at.is_not(None)
    for condition in names.conditions(live=False):
        query = select(*columns, entries.c.labels, entries.c.frames).where(condition & dead)
        for entry_id, algorithm, value, reference, labels, frames in conn.execute(query):
            key = (algorithm, bytes(value))
            if key not in latest or latest[key][0] < entry_id:
                packed = None if frames is None else bytes(frames)
                row = (algorithm, bytes(value), reference, tuple(labels or ()), packed)
                latest[key] = (entry_id, row)
    return [row for _, row in latest.values()]


def _sort(report: EntryReport, names: _Names, done_when_live: bool) -> None:
    """File each name under unmatched, or already done (its live state is ``done_when_live``:
    revived when it has a live entry, withdrawn when it has none)."""
    for reference in names.references:
        if reference not in names.live_references:
            report.unmatched.append(reference)
        elif names.live_references[reference] == done_when_live:
            report.already.append(reference)
    for value in names.hashes:
        if value not in names.live_hashes:
            report.unmatched.append(str(value))
        elif names.live_hashes[value] == done_when_live:
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
