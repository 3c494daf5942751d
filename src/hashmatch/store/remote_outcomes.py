"""Outcomes flowing back to a list's origin: what a partner's platforms did with mirrored
entries, as totals per entry and day of match.

The subscriber :meth:`collects <RemoteOutcomes.collect>` the totals of its mirrors' entries
(matches, outcomes by kind, seconds from match to removal) under their ids at the origin, and
sends them over the exchange; the origin :meth:`receives <RemoteOutcomes.receive>` them for the
lists it shares with the sender and replaces its totals for those entries and days, so a report
sent twice, or again after a crash, counts once. Platform names travel only if the sending
operator allows it (``HASHMATCH_EXCHANGE_SHARE_PLATFORMS``).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from sqlalchemy import Connection, delete, insert, select

from hashmatch import fields
from hashmatch.errors import InvalidField
from hashmatch.store.database import Database, utcnow
from hashmatch.store.entries import LOOKUP_CHUNK
from hashmatch.store.lists import Lists
from hashmatch.store.schema import (
    entries,
    match_counts,
    organisations,
    outcomes,
    remote_outcomes,
)

MAX_ITEMS: Final = 10_000
MAX_SAMPLES: Final = 100
OUTCOME_KINDS: Final = ("removed", "actioned", "false_positive", "under_review", "not_actioned")


@dataclass
class _Total:
    matches: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    removal_seconds: list[float] = field(default_factory=list)
    platforms: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class RemoteTally:
    organisation: str
    entry_id: int
    matches: int
    outcomes: dict[str, int]
    removal_seconds: list[float]
    day: dt.date | None = None


def _day(value: dt.datetime) -> dt.date:
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC)
    return value.date()


class RemoteOutcomes:
    def __init__(self, database: Database, lists: Lists) -> None:
        self._database = database
        self._lists = lists

    # --- the subscriber's side ----------------------------------------------------------------

    def collect(
        self, mirrors: Mapping[int, str], since: dt.date | None, *, platforms: bool = False
    ) -> list[dict[str, Any]]:
        """Totals of the entries of ``mirrors`` (list id -> the list's name at the origin),
        per entry and day from ``since`` on, keyed by their ids at the origin."""
        if not mirrors:
            return []
        start = since or dt.date(1970, 1, 1)
        totals: defaultdict[tuple[int, dt.date], _Total] = defaultdict(_Total)
        ids = list(mirrors)
        with self._database.engine.connect() as conn:
            counted = select(
                match_counts.c.entry_id, match_counts.c.day, match_counts.c.matches
            ).where(match_counts.c.list_id.in_(ids), match_counts.c.day >= start)
            for entry_id, day, matches in conn.execute(counted):
                totals[(int(entry_id), day)].matches += int(matches)
            reported = (
                select(
                    outcomes.c.entry_id,
                    outcomes.c.outcome,
                    outcomes.c.matched_at,
                    outcomes.c.acted_at,
                    organisations.c.name,
                )
                .join(organisations, organisations.c.id == outcomes.c.organisation_id)
                .where(
                    outcomes.c.list_id.in_(ids),
                    outcomes.c.matched_at >= dt.datetime.combine(start, dt.time(), dt.UTC),
                )
            )
            for entry_id, kind, matched_at, acted_at, platform in conn.execute(reported):
                total = totals[(int(entry_id), _day(matched_at))]
                total.outcomes[kind] = total.outcomes.get(kind, 0) + 1
                if kind == "removed" and len(total.removal_seconds) < MAX_SAMPLES:
                    seconds = (_aware(acted_at) - _aware(matched_at)).total_seconds()
                    total.removal_seconds.append(round(max(0.0, seconds), 3))
                total.platforms.add(str(platform))
            origin = _origin_ids(conn, sorted({entry_id for entry_id, _ in totals}))
        items = []
        for (entry_id, day), total in sorted(totals.items()):
            found = origin.get(entry_id)
            if found is None:
                continue
            origin_id, list_id = found
            item: dict[str, Any] = {
                "list": mirrors[list_id],
                "id": origin_id,
                "day": day.isoformat(),
                "matches": total.matches,
                "outcomes": total.outcomes,
                "removal_seconds": total.removal_seconds,
            }
            if platforms:
                item["platforms"] = sorted(total.platforms)
            items.append(item)
        return items

    # --- the origin's side ------------------------------------------------------------------

    def receive(
        self, organisation: str, shared: Mapping[str, int], items: Sequence[object]
    ) -> dict[str, int]:
        """Replace ``organisation``'s totals for the entries and days in ``items``. Items
        naming a list not shared with it (``shared``: name -> list id), or an entry not in
        that list, are refused and counted, never said which: that would confirm an id."""
        if len(items) > MAX_ITEMS:
            raise InvalidField("entries", f"at most {MAX_ITEMS} items a report")
        checked = [_item(position, raw) for position, raw in enumerate(items)]
        wanted = [(c, shared[c["list"]]) for c in checked if c["list"] in shared]
        accepted = 0
        now = utcnow()
        with self._database.write_transaction() as conn:
            org_id = self._lists.organisation_id(organisation, conn)
            members = _members(conn, [(c["id"], list_id) for c, list_id in wanted])
            for item, list_id in wanted:
                if (item["id"], list_id) not in members:
                    continue
                key = (
                    (remote_outcomes.c.organisation_id == org_id)
                    & (remote_outcomes.c.entry_id == item["id"])
                    & (remote_outcomes.c.day == item["day"])
                )
                conn.execute(delete(remote_outcomes).where(key))
                conn.execute(
                    insert(remote_outcomes).values(
                        organisation_id=org_id,
                        entry_id=item["id"],
                        day=item["day"],
                        list_id=list_id,
                        matches=item["matches"],
                        outcomes=item["outcomes"],
                        removal_seconds=item["removal_seconds"],
                        platforms=item.get("platforms"),
                        updated_at=now,
                    )
                )
                accepted += 1
        return {"accepted": accepted, "refused": len(checked) - accepted}

    def tallies(self, list_id: int, start: dt.date, end: dt.date) -> list[RemoteTally]:
        """Partners' totals for a list's entries over days ``start`` <= day < ``end``."""
        query = (
            select(remote_outcomes, organisations.c.name.label("organisation"))
            .join(organisations, organisations.c.id == remote_outcomes.c.organisation_id)
            .where(
                remote_outcomes.c.list_id == list_id,
                remote_outcomes.c.day >= start,
                remote_outcomes.c.day < end,
            )
        )
        with self._database.engine.connect() as conn:
            return [
                RemoteTally(
                    r["organisation"],
                    int(r["entry_id"]),
                    int(r["matches"]),
                    dict(r["outcomes"]),
                    [float(s) for s in r["removal_seconds"]],
                    r["day"],
                )
                for r in conn.execute(query).mappings()
            ]


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


def _origin_ids(conn: Connection, entry_ids: list[int]) -> dict[int, tuple[int, int]]:
    found: dict[int, tuple[int, int]] = {}
    for start in range(0, len(entry_ids), LOOKUP_CHUNK):
        chunk = entry_ids[start : start + LOOKUP_CHUNK]
        query = select(entries.c.id, entries.c.origin_id, entries.c.list_id).where(
            entries.c.id.in_(chunk), entries.c.origin_id.is_not(None)
        )
        for entry_id, origin_id, list_id in conn.execute(query):
            found[int(entry_id)] = (int(origin_id), int(list_id))
    return found


def _members(conn: Connection, pairs: list[tuple[int, int]]) -> set[tuple[int, int]]:
    ids = sorted({entry_id for entry_id, _ in pairs})
    found: set[tuple[int, int]] = set()
    for start in range(0, len(ids), LOOKUP_CHUNK):
        query = select(entries.c.id, entries.c.list_id).where(
            entries.c.id.in_(ids[start : start + LOOKUP_CHUNK])
        )
        found.update((int(i), int(list_id)) for i, list_id in conn.execute(query))
    return found


def _count(value: object, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**53:
        raise InvalidField(where, "must be a non-negative integer")
    return value


def _item(position: int, raw: object) -> dict[str, Any]:
    where = f"entries[{position}]"
    if not isinstance(raw, Mapping):
        raise InvalidField(where, "must be an object")
    try:
        day = dt.date.fromisoformat(str(raw.get("day")))
    except ValueError:
        raise InvalidField(f"{where}.day", "must be a date, YYYY-MM-DD") from None
    reported = raw.get("outcomes", {})
    if not isinstance(reported, Mapping) or not set(reported) <= set(OUTCOME_KINDS):
        raise InvalidField(f"{where}.outcomes", f"counts of {', '.join(OUTCOME_KINDS)}")
    samples = raw.get("removal_seconds", [])
    if not isinstance(samples, list) or len(samples) > MAX_SAMPLES:
        raise InvalidField(f"{where}.removal_seconds", f"at most {MAX_SAMPLES} numbers")
    if not all(
        isinstance(s, int | float) and not isinstance(s, bool) and 0 <= s < 1e9 for s in samples
    ):
        raise InvalidField(f"{where}.removal_seconds", "numbers of seconds")
    item: dict[str, Any] = {
        "list": fields.list_name(raw.get("list"), f"{where}.list"),
        "id": _count(raw.get("id"), f"{where}.id"),
        "day": day,
        "matches": _count(raw.get("matches", 0), f"{where}.matches"),
        "outcomes": {k: _count(v, f"{where}.outcomes.{k}") for k, v in reported.items()},
        "removal_seconds": [float(s) for s in samples],
    }
    platforms = raw.get("platforms")
    if platforms is not None:
        if not isinstance(platforms, list) or len(platforms) > 100:
            raise InvalidField(f"{where}.platforms", "at most 100 organisation names")
        item["platforms"] = list(fields.organisations(platforms, f"{where}.platforms"))
    return item
