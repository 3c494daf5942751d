"""What a list's owner learns from the platforms: matches, outcomes, time to removal, false
positives, and the one-step answer to a false positive (withdraw the entry, or allow the
reported image's hash).

Numbers are per list and, on request, per entry, over UTC days ``since``..``until``
(inclusive): matches by the day they were counted, outcomes by the day of their match, so a
period's outcomes are those of its matches. The export (JSON, or CSV rows) is what a
transparency report needs; it names no platform.
"""

from __future__ import annotations

import datetime as dt
import statistics
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Final

from sqlalchemy import Connection, func, select, update

from hashmatch import fields
from hashmatch.errors import Conflict, InvalidField, NotFound
from hashmatch.hashsets.read import HashRow
from hashmatch.signals import Hash
from hashmatch.store.audit import AuditLog
from hashmatch.store.database import Database, utcnow
from hashmatch.store.entries import Entries
from hashmatch.store.lists import Lists
from hashmatch.store.outcomes import OutcomeKind, as_utc
from hashmatch.store.records import ListInfo
from hashmatch.store.remote_outcomes import RemoteOutcomes
from hashmatch.store.schema import entries, match_counts, organisations, outcomes
from hashmatch.store.withdrawals import Withdrawals

RESOLUTIONS: Final = {"withdraw": "withdrawn", "allow": "allowed"}
CSV_COLUMNS: Final = (
    "list",
    "entry_id",
    "reference",
    "matches",
    *(kind.value for kind in OutcomeKind),
    "median_seconds_to_removal",
    "false_positives_open",
)
_CHUNK: Final = 900


@dataclass
class Tally:
    """The numbers of one list, or of one entry of it."""

    matches: int = 0
    outcomes: dict[str, int] = field(default_factory=lambda: {k.value: 0 for k in OutcomeKind})
    removal_seconds: list[float] = field(default_factory=list)
    false_positives_open: int = 0

    def as_dict(self) -> dict[str, Any]:
        median = statistics.median(self.removal_seconds) if self.removal_seconds else None
        return {
            "matches": self.matches,
            "outcomes": dict(self.outcomes),
            "median_seconds_to_removal": median,
            "false_positives": {
                "reported": self.outcomes[OutcomeKind.FALSE_POSITIVE],
                "open": self.false_positives_open,
            },
        }


@dataclass
class ListStats:
    list_name: str
    since: dt.date | None
    until: dt.date | None
    total: Tally
    entries: dict[int, Tally]
    references: dict[int, str | None]
    #: The part of the numbers partner instances reported, per partner organisation.
    partners: dict[str, Tally] = field(default_factory=dict)

    def as_dict(self, per_entry: bool = False) -> dict[str, Any]:
        result: dict[str, Any] = {
            "list": self.list_name,
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
            **self.total.as_dict(),
            "partners": {org: t.as_dict() for org, t in sorted(self.partners.items())},
        }
        if per_entry:
            result["entries"] = [
                {"entry_id": entry_id, "reference": self.references.get(entry_id), **t.as_dict()}
                for entry_id, t in sorted(self.entries.items())
            ]
        return result

    def csv_rows(self, per_entry: bool = False) -> Iterator[list[Any]]:
        """Rows under :data:`CSV_COLUMNS`: the list's total (entry_id blank), then each
        entry's when ``per_entry``."""
        yield _row(self.list_name, None, None, self.total)
        if per_entry:
            for entry_id, tally in sorted(self.entries.items()):
                yield _row(self.list_name, entry_id, self.references.get(entry_id), tally)


def _row(name: str, entry_id: int | None, reference: str | None, tally: Tally) -> list[Any]:
    values = tally.as_dict()
    median = values["median_seconds_to_removal"]
    return [
        name,
        "" if entry_id is None else entry_id,
        reference or "",
        tally.matches,
        *(tally.outcomes[kind.value] for kind in OutcomeKind),
        "" if median is None else round(median, 3),
        tally.false_positives_open,
    ]


def _days(since: dt.date | None, until: dt.date | None) -> tuple[dt.datetime, dt.datetime]:
    if since is not None and until is not None and since > until:
        raise InvalidField("since", "after until")
    start = dt.datetime.combine(since or dt.date(1970, 1, 1), dt.time(), dt.UTC)
    end = dt.datetime.combine(until or dt.date(9998, 12, 30), dt.time(), dt.UTC)
    return start, end + dt.timedelta(days=1)


class Reviews:
    """Stats and false positives of a list, for its owner."""

    def __init__(
        self,
        database: Database,
        lists: Lists,
        entries_repo: Entries,
        withdrawals: Withdrawals,
        audit: AuditLog,
        remote: RemoteOutcomes | None = None,
    ) -> None:
        self._remote = remote
        self._database = database
        self._lists = lists
        self._entries = entries_repo
        self._withdrawals = withdrawals
        self._audit = audit

    def stats(
        self, list_name: str, since: dt.date | None = None, until: dt.date | None = None
    ) -> ListStats:
        info = self._lists.get(list_name)
        start, end = _days(since, until)
        total = Tally()
        per_entry: defaultdict[int, Tally] = defaultdict(Tally)
        with self._database.engine.connect() as conn:
            counted = (
                select(match_counts.c.entry_id, func.sum(match_counts.c.matches))
                .where(
                    match_counts.c.list_id == info.id,
                    match_counts.c.day >= start.date(),
                    match_counts.c.day < end.date(),
                )
                .group_by(match_counts.c.entry_id)
            )
            for entry_id, matches in conn.execute(counted):
                per_entry[entry_id].matches = int(matches)
                total.matches += int(matches)
            reported = select(
                outcomes.c.entry_id,
                outcomes.c.outcome,
                outcomes.c.matched_at,
                outcomes.c.acted_at,
                outcomes.c.resolution,
            ).where(
                outcomes.c.list_id == info.id,
                outcomes.c.matched_at >= start,
                outcomes.c.matched_at < end,
            )
            for entry_id, kind, matched_at, acted_at, resolution in conn.execute(reported):
                for tally in (total, per_entry[entry_id]):
                    tally.outcomes[kind] = tally.outcomes.get(kind, 0) + 1
                    if kind == OutcomeKind.REMOVED:
                        seconds = (as_utc(acted_at) - as_utc(matched_at)).total_seconds()
                        tally.removal_seconds.append(seconds)
                    if kind == OutcomeKind.FALSE_POSITIVE and resolution is None:
                        tally.false_positives_open += 1
            partners: defaultdict[str, Tally] = defaultdict(Tally)
            remote = (
                []
                if self._remote is None
                else self._remote.tallies(info.id, start.date(), end.date())
            )
            for found in remote:
                # What partner instances' platforms did with their mirrors of these entries.
                for tally in (total, per_entry[found.entry_id], partners[found.organisation]):
                    tally.matches += found.matches
                    for kind, count in found.outcomes.items():
                        tally.outcomes[kind] = tally.outcomes.get(kind, 0) + count
                    tally.removal_seconds.extend(found.removal_seconds)
            references = _references(conn, list(per_entry))
        result = ListStats(info.name, since, until, total, dict(per_entry), references)
        result.partners = dict(partners)
        return result

    def daily(
        self, list_ids: list[int], since: dt.date, until: dt.date
    ) -> list[tuple[dt.date, int, int]]:
        """Matches and removals per UTC day over ``since``..``until`` for these lists (partner
        instances' included): one row a day, zeros where nothing happened."""
        start, end = _days(since, until)
        matches: defaultdict[dt.date, int] = defaultdict(int)
        removals: defaultdict[dt.date, int] = defaultdict(int)
        if list_ids:
            with self._database.engine.connect() as conn:
                counted = (
                    select(match_counts.c.day, func.sum(match_counts.c.matches))
                    .where(
                        match_counts.c.list_id.in_(list_ids),
                        match_counts.c.day >= start.date(),
                        match_counts.c.day < end.date(),
                    )
                    .group_by(match_counts.c.day)
                )
                for day, total in conn.execute(counted):
                    matches[day] += int(total)
                removed = select(outcomes.c.matched_at).where(
                    outcomes.c.list_id.in_(list_ids),
                    outcomes.c.outcome == OutcomeKind.REMOVED.value,
                    outcomes.c.matched_at >= start,
                    outcomes.c.matched_at < end,
                )
                for (matched_at,) in conn.execute(removed):
                    removals[as_utc(matched_at).date()] += 1
            if self._remote is not None:
                for list_id in list_ids:
                    for found in self._remote.tallies(list_id, start.date(), end.date()):
                        if found.day is None:
                            continue
                        matches[found.day] += found.matches
                        removals[found.day] += found.outcomes.get(OutcomeKind.REMOVED.value, 0)
        days = (until - since).days + 1
        return [
            (day, matches[day], removals[day])
            for day in (since + dt.timedelta(days=n) for n in range(days))
        ]

    # --- false positives -------------------------------------------------------------------

    def false_positives(
        self, list_name: str, *, open_only: bool = True, after: int = 0, limit: int = 100
    ) -> list[dict[str, Any]]:
        """The list's false-positive reports after report id ``after``, oldest first."""
        info = self._lists.get(list_name)
        query = (
            select(outcomes, organisations.c.name.label("organisation"))
            .join(organisations, organisations.c.id == outcomes.c.organisation_id)
            .where(
                outcomes.c.list_id == info.id,
                outcomes.c.outcome == OutcomeKind.FALSE_POSITIVE.value,
                outcomes.c.id > after,
            )
            .order_by(outcomes.c.id)
            .limit(limit)
        )
        if open_only:
            query = query.where(outcomes.c.resolution.is_(None))
        with self._database.engine.connect() as conn:
            rows = list(conn.execute(query).mappings())
            references = _references(conn, [row["entry_id"] for row in rows])
        return [_false_positive(row, references.get(row["entry_id"])) for row in rows]

    def resolve(
        self,
        list_name: str,
        report_id: int,
        *,
        action: str,
        reason: str,
        actor: str,
        allow_list: str | None = None,
    ) -> dict[str, Any]:
        """Answer a false positive: ``withdraw`` its entry, or ``allow`` the reported hash in
        ``allow_list`` (an allow-list of the same owner). Audited; a report is answered once."""
        if action not in RESOLUTIONS:
            raise InvalidField("action", "must be withdraw or allow")
        reason = fields.reason(reason)
        info = self._lists.get(list_name)
        report = self._report(info, report_id)
        if report["resolution"] is not None:
            raise Conflict(f"false-positive report {report_id} was resolved already")
        if action == "withdraw":
            done = self._withdraw(info, report["entry_id"], actor, reason)
        else:
            done = self._allow(info, report, actor, allow_list)
        now = utcnow()
        with self._database.write_transaction() as conn:
            changed = conn.execute(
                update(outcomes)
                .where(outcomes.c.id == report_id, outcomes.c.resolution.is_(None))
                .values(
                    resolution=RESOLUTIONS[action],
                    resolved_at=now,
                    resolved_by=actor,
                    resolution_reason=reason,
                )
            ).rowcount
            if not changed:
                raise Conflict(f"false-positive report {report_id} was resolved already")
            details = {"report": report_id, "entry_id": report["entry_id"], **done}
            self._audit.record(
                conn,
                actor,
                "false_positive.resolve",
                info.name,
                {"action": action},
                reason,
                details,
            )
        return {"report_id": report_id, "resolution": RESOLUTIONS[action], **done}

    def _report(self, info: ListInfo, report_id: int) -> dict[str, Any]:
        query = select(outcomes).where(
            outcomes.c.id == report_id,
            outcomes.c.list_id == info.id,
            outcomes.c.outcome == OutcomeKind.FALSE_POSITIVE.value,
        )
        with self._database.engine.connect() as conn:
            row = conn.execute(query).mappings().first()
        if row is None:
            raise NotFound(f"no false-positive report {report_id} on list {info.name!r}")
        return dict(row)

    def _withdraw(self, info: ListInfo, entry_id: int, actor: str, reason: str) -> dict[str, Any]:
        query = select(entries.c.algorithm, entries.c.hash, entries.c.withdrawn_at).where(
            entries.c.id == entry_id, entries.c.list_id == info.id
        )
        with self._database.engine.connect() as conn:
            row = conn.execute(query).first()
        if row is None:
            raise NotFound(f"entry {entry_id} is not in list {info.name!r}")
        algorithm, value, withdrawn_at = row
        if withdrawn_at is not None:
            return {"withdrawn": 0, "already_withdrawn": True}
        # A live entry is the only live one with its hash in its list: withdrawing the hash
        # withdraws exactly this entry, through the one withdrawal path (change log, audit,
        # notices to platforms that removed content).
        done = self._withdrawals.withdraw(
            info.name, actor=actor, reason=reason, hashes=[_hash(algorithm, value)]
        )
        return {"withdrawn": done.count, "already_withdrawn": False, "cursor": done.cursor}

    def _allow(
        self, info: ListInfo, report: dict[str, Any], actor: str, allow_list: str | None
    ) -> dict[str, Any]:
        if allow_list is None:
            raise InvalidField("allow_list", "name the allow-list to add the hash to")
        target = self._lists.get(fields.list_name(allow_list, "allow_list"))
        if target.kind != "allow" or target.owner != info.owner:
            raise InvalidField("allow_list", f"{allow_list!r} is not an allow-list of {info.owner}")
        if report["hash"] is None:
            raise InvalidField("action", "this report carries no hash to allow; withdraw instead")
        value = _hash(report["algorithm"], report["hash"])
        row = HashRow(1, value, f"false-positive-{report['id']}", ("false-positive",))
        imported = self._entries.import_rows(target.name, [row], actor=actor)
        return {
            "allow_list": target.name,
            "hash": str(value),
            "added": imported.added,
            "duplicates": imported.duplicates,
        }


def _hash(algorithm: str, value: bytes) -> Hash:
    from hashmatch import signals

    return Hash(signals.get(algorithm), bytes(value))


def _references(conn: Connection, entry_ids: list[int]) -> dict[int, str | None]:
    found: dict[int, str | None] = {}
    for start in range(0, len(entry_ids), _CHUNK):
        chunk = entry_ids[start : start + _CHUNK]
        query = select(entries.c.id, entries.c.reference).where(entries.c.id.in_(chunk))
        found.update({int(i): reference for i, reference in conn.execute(query)})
    return found


def _false_positive(row: Any, reference: str | None) -> dict[str, Any]:
    value = None if row["hash"] is None else str(_hash(row["algorithm"], row["hash"]))

    def when(value: dt.datetime | None) -> str | None:
        return None if value is None else as_utc(value).isoformat()

    return {
        "report_id": row["id"],
        "organisation": row["organisation"],
        "entry_id": row["entry_id"],
        "reference": reference,
        "hash": value,
        "note": row["note"],
        "matched_at": when(row["matched_at"]),
        "reported_at": when(row["updated_at"]),
        "resolution": row["resolution"],
        "resolved_at": when(row["resolved_at"]),
        "resolved_by": row["resolved_by"],
    }
