"""Entries: imports (one transaction each, withdrawn hashes kept out), pages of a list,
and what replicas read to follow the change log. The console's browsing of a list's entries
(searches, exports) is :mod:`.browse`'s."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Final

from sqlalchemy import Connection, Text, and_, cast, func, select

from hashmatch import fields, signals
from hashmatch.errors import ImportRejected, InvalidField, ReadOnlyMirror
from hashmatch.hashsets.read import HashRow, RowError
from hashmatch.signals import Hash
from hashmatch.store.audit import AuditLog
from hashmatch.store.bulk import Added, EntryTuple, insert_entries
from hashmatch.store.changes import ChangeLog
from hashmatch.store.database import Database, utcnow
from hashmatch.store.lists import Lists
from hashmatch.store.records import EntryRow, ImportReport
from hashmatch.store.schema import entries

IMPORT_BATCH: Final = 20_000
#: A live entry as the matcher loads it: id, list id, algorithm, hash, reference, labels as
#: JSON text, origin id, a video's packed frames.
LiveRow = tuple[int, int, str, bytes, str | None, str, int | None, bytes | None]
#: Hashes per ``IN (...)`` lookup: under SQLite's oldest limit of 999 bound parameters.
LOOKUP_CHUNK: Final = 900


class _DryRun(Exception):
    """Ends a dry-run import's transaction by rolling it back."""


class EntryRepository:
    """What writes entries needs: the database, the lists they belong to, the change log and
    the audit log."""

    def __init__(
        self, database: Database, lists: Lists, changes: ChangeLog, audit: AuditLog
    ) -> None:
        self._database = database
        self._lists = lists
        self._changes = changes
        self._audit = audit


class Entries(EntryRepository):
    def import_rows(
        self,
        list_name: str,
        rows: Iterable[HashRow | RowError],
        *,
        actor: str,
        strict: bool = False,
        dry_run: bool = False,
    ) -> ImportReport:
        """Add every valid row in one transaction; bad rows are reported (line, reason).

        With ``strict`` any bad row rejects the whole import. Rows whose hash is already live
        in the list are skipped and counted as duplicates; rows whose hash was withdrawn from
        the list are skipped and reported: a withdrawal sticks until revived explicitly.

        With ``dry_run`` the import is done in full and then rolled back: the report is what
        the import would do now (without a cursor), and nothing is kept, audited or logged.
        """
        info = self._lists.get(list_name)
        if info.is_mirror:
            raise ReadOnlyMirror(
                f"list {list_name!r} is a mirror: its entries come from its origin"
            )
        report = ImportReport(list_name)
        valid = 0
        with contextlib.suppress(_DryRun), self._database.write_transaction() as conn:
            has_tombstones = self._has_tombstones(conn, info.id)
            cursor = self._changes.record(conn, "add", info.id, 0)
            stamp = Added(info.id, cursor, utcnow(), actor)
            batch: list[HashRow] = []

            def flush() -> None:
                nonlocal valid
                withdrawn = self._tombstoned(conn, info.id, batch) if has_tombstones else set()
                kept: list[EntryTuple] = []
                for row in batch:
                    if (row.hash.algorithm.name, row.hash.value) in withdrawn:
                        report.skip_withdrawn(row)
                        continue
                    value = row.hash
                    kept.append(
                        (value.algorithm.name, value.value, row.reference, row.labels, row.frames)
                    )
                valid += len(kept)
                insert_entries(conn, kept, stamp)
                batch.clear()

            for row in rows:
                checked = _checked_row(row)
                if isinstance(checked, RowError):
                    report.reject(checked)
                    continue
                batch.append(checked)
                if len(batch) >= IMPORT_BATCH:
                    flush()
            if strict and report.rejected:
                raise ImportRejected(
                    f"{report.rejected} bad rows; nothing imported (strict)", report
                )
            flush()
            added = conn.execute(
                select(func.count()).select_from(entries).where(entries.c.added_change == cursor)
            ).scalar_one()
            report.added = int(added)
            report.duplicates = valid - report.added
            report.cursor = cursor
            self._changes.set_count(conn, cursor, int(added))
            self._audit.record(
                conn,
                actor,
                "entries.import",
                list_name,
                {
                    "added": report.added,
                    "duplicates": report.duplicates,
                    "previously_withdrawn": report.previously_withdrawn,
                    "rejected": report.rejected,
                    "cursor": cursor,
                },
            )
            if dry_run:
                report.cursor = None
                raise _DryRun  # rolls the whole import back; its report stays
        return report

    @staticmethod
    def _has_tombstones(conn: Connection, list_id: int) -> bool:
        found = conn.execute(
            select(entries.c.id)
            .where(entries.c.list_id == list_id, entries.c.withdrawn_at.is_not(None))
            .limit(1)
        ).first()
        return found is not None

    @staticmethod
    def _tombstoned(
        conn: Connection, list_id: int, rows: Sequence[HashRow]
    ) -> set[tuple[str, bytes]]:
        """``(algorithm, hash)`` of the rows withdrawn from the list and not live again."""
        live = entries.alias("live")
        found: set[tuple[str, bytes]] = set()
        for algorithm in {row.hash.algorithm for row in rows}:
            values = list({row.hash.value for row in rows if row.hash.algorithm is algorithm})
            for start in range(0, len(values), LOOKUP_CHUNK):
                query = select(entries.c.hash).where(
                    entries.c.list_id == list_id,
                    entries.c.algorithm == algorithm.name,
                    entries.c.hash.in_(values[start : start + LOOKUP_CHUNK]),
                    entries.c.withdrawn_at.is_not(None),
                    ~select(live.c.id)
                    .where(
                        and_(
                            live.c.list_id == list_id,
                            live.c.algorithm == algorithm.name,
                            live.c.hash == entries.c.hash,
                            live.c.withdrawn_at.is_(None),
                        )
                    )
                    .exists(),
                )
                found.update((algorithm.name, bytes(v)) for (v,) in conn.execute(query))
        return found

    def listed(
        self,
        list_name: str,
        *,
        include_withdrawn: bool = False,
        after_id: int = 0,
        limit: int | None = None,
    ) -> Iterator[EntryRow]:
        info = self._lists.get(list_name)
        query = (
            select(entries)
            .where(entries.c.list_id == info.id, entries.c.id > after_id)
            .order_by(entries.c.id)
        )
        if not include_withdrawn:
            query = query.where(entries.c.withdrawn_at.is_(None))
        if limit is not None:
            query = query.limit(limit)
        with self._database.engine.connect() as conn:
            for r in conn.execution_options(yield_per=10_000).execute(query).mappings():
                yield entry_row(r)

    def live_rows(self, *, upto_cursor: int | None = None) -> Iterator[LiveRow]:
        """Every live entry as plain columns (id, list id, algorithm, hash, reference, labels
        as JSON text, origin id, a video's packed frames): the matcher's bulk load, without an
        object per row."""
        query = (
            select(
                entries.c.id,
                entries.c.list_id,
                entries.c.algorithm,
                entries.c.hash,
                entries.c.reference,
                cast(entries.c.labels, Text),
                entries.c.origin_id,
                entries.c.frames,
            )
            .where(entries.c.withdrawn_at.is_(None))
            .order_by(entries.c.id)
        )
        if upto_cursor is not None:
            query = query.where(entries.c.added_change <= upto_cursor)
        with self._database.engine.connect() as conn:
            for row in conn.execution_options(yield_per=50_000).execute(query):
                origin_id = None if row[6] is None else int(row[6])
                frames = None if row[7] is None else bytes(row[7])
                yield (
                    int(row[0]),
                    int(row[1]),
                    row[2],
                    bytes(row[3]),
                    row[4],
                    row[5],
                    origin_id,
                    frames,
                )

    def mirrored(self, list_id: int) -> list[tuple[int, str, bytes]]:
        """A mirror's live entries as (origin id, algorithm, hash): what ``verify`` digests."""
        with self._database.engine.connect() as conn:
            rows = conn.execute(
                select(entries.c.origin_id, entries.c.algorithm, entries.c.hash).where(
                    entries.c.list_id == list_id,
                    entries.c.withdrawn_at.is_(None),
                    entries.c.origin_id.is_not(None),
                )
            )
            return [(int(i), str(a), bytes(h)) for i, a, h in rows]

    def added_by(self, cursor: int) -> list[EntryRow]:
        with self._database.engine.connect() as conn:
            rows = conn.execute(
                select(entries).where(entries.c.added_change == cursor).order_by(entries.c.id)
            ).mappings()
            return [entry_row(r) for r in rows]

    def withdrawn_by(self, cursor: int) -> list[int]:
        with self._database.engine.connect() as conn:
            rows = conn.execute(select(entries.c.id).where(entries.c.withdrawn_change == cursor))
            return [int(r[0]) for r in rows]


def entry_row(r: Any) -> EntryRow:
    return EntryRow(
        id=int(r["id"]),
        list_id=int(r["list_id"]),
        hash=Hash(signals.get(r["algorithm"]), bytes(r["hash"])),
        reference=r["reference"],
        labels=tuple(r["labels"] or ()),
        added_at=r["added_at"],
        withdrawn_at=r["withdrawn_at"],
        origin_id=r.get("origin_id"),
        frames=None if r.get("frames") is None else bytes(r["frames"]),
    )


def _checked_row(row: HashRow | RowError) -> HashRow | RowError:
    """The store's own check of a row's text, whatever read it: the same rule for every path."""
    if isinstance(row, RowError):
        return row
    try:
        reference = fields.reference(row.reference)
        labels = fields.labels(row.labels)
    except InvalidField as exc:
        return RowError(row.line, exc.message)
    if reference == row.reference and labels == row.labels:
        return row
    return HashRow(row.line, row.hash, reference, labels, row.frames)
