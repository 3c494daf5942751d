"""Hash-set files held between their validation report and the analyst's confirmation.

A file uploaded through the console is kept as it came, in chunks (``staged_chunks``), beside a
row naming who uploaded it, to which list, and the report of what importing it would do
(``staged_uploads``). The report is the real import run in full and rolled back
(:meth:`.Entries.import_rows` with ``dry_run``), so it cannot disagree with the import that
follows; only what changes in the list meanwhile can. Committing claims the row first (one
``UPDATE`` that only one caller can win), re-reads the chunks as a stream through the same import
(audited under the person), and deletes the row and its chunks. Uploads left uncommitted are
deleted a day later, whenever a new one is staged.

Memory stays at a chunk and an import batch whatever the file's size: chunks are written as they
arrive and read back one query each.
"""

from __future__ import annotations

import datetime as dt
import io
import secrets
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO, Final

from sqlalchemy import delete, insert, null, select, update

from hashmatch import fields
from hashmatch.errors import Conflict, NotFound, ReadOnlyMirror
from hashmatch.hashsets.read import HashRow, RowError, read_hash_set
from hashmatch.store.database import Database, utcnow
from hashmatch.store.entries import LOOKUP_CHUNK, Entries, _checked_row
from hashmatch.store.lists import Lists
from hashmatch.store.records import MAX_REPORTED_ERRORS, ImportReport
from hashmatch.store.schema import entries, lists, staged_chunks, staged_uploads

#: Bytes of the file per ``staged_chunks`` row.
CHUNK_BYTES: Final = 1 << 20
#: Uploads not committed (nor discarded) within this are deleted when the next is staged.
MAX_AGE: Final = dt.timedelta(hours=24)
MAX_FILENAME_CHARS: Final = 256
#: Rows looked up at once to tell hashes already in the list from repeats within the file.
_LIVE_BATCH: Final = 20 * LOOKUP_CHUNK


@dataclass(frozen=True)
class StagedUpload:
    """A staged file: whose, for which list, and its report (``None`` while it is validated
    or committed)."""

    id: str
    user_id: int
    list_id: int
    list_name: str
    filename: str
    size: int
    report: dict[str, Any] | None
    created_at: dt.datetime


def report_of(report: ImportReport, already_listed: int) -> dict[str, Any]:
    """A dry run's report as it is kept and shown. ``duplicates`` splits into rows whose hash
    was already live in the list and rows repeating an earlier row of the file."""
    valid = report.added + report.duplicates + report.previously_withdrawn
    return {
        "valid": valid,
        "new": report.added,
        "already_listed": already_listed,
        "repeated": report.duplicates - already_listed,
        "previously_withdrawn": report.previously_withdrawn,
        "withdrawn_rows": report.withdrawn_rows,
        "rejected": report.rejected,
        "errors": report.errors,
        "errors_truncated": report.rejected > len(report.errors),
        "max_reported": MAX_REPORTED_ERRORS,
    }


class Staging:
    def __init__(self, database: Database, lists_: Lists, entries_: Entries) -> None:
        self._database = database
        self._lists = lists_
        self._entries = entries_

    # --- staging a file --------------------------------------------------------------------

    def start(self, user_id: int, list_name: str, filename: str) -> str:
        """A new staged upload of ``user_id`` to ``list_name`` (which must take imports);
        returns its id. Uploads older than :data:`MAX_AGE` are deleted first."""
        info = self._lists.get(list_name)
        if info.is_mirror:
            raise ReadOnlyMirror(
                f"list {list_name!r} is a mirror: its entries come from its origin"
            )
        self.purge()
        upload_id = secrets.token_hex(16)
        with self._database.write_transaction() as conn:
            conn.execute(
                insert(staged_uploads).values(
                    id=upload_id,
                    user_id=user_id,
                    list_id=info.id,
                    filename=_filename(filename),
                    size=0,
                    created_at=utcnow(),
                )
            )
        return upload_id

    def append(self, upload_id: str, first_seq: int, chunks: Sequence[bytes]) -> None:
        """Chunks ``first_seq``, ``first_seq + 1``, ... of the file, in one transaction."""
        if not chunks:
            return
        with self._database.write_transaction() as conn:
            conn.execute(
                insert(staged_chunks),
                [
                    {"upload_id": upload_id, "seq": first_seq + n, "data": chunk}
                    for n, chunk in enumerate(chunks)
                ],
            )
            conn.execute(
                update(staged_uploads)
                .where(staged_uploads.c.id == upload_id)
                .values(size=staged_uploads.c.size + sum(len(chunk) for chunk in chunks))
            )

    def validate(self, upload_id: str) -> dict[str, Any]:
        """What importing the staged file would do now, kept on its row: the import run in
        full and rolled back."""
        upload = self._row(upload_id)
        counter = _ListedCounter(self._database, upload.list_id)
        rows = counter.count(read_hash_set(self.reader(upload_id)))
        report = self._entries.import_rows(upload.list_name, rows, actor="dry-run", dry_run=True)
        kept = report_of(report, counter.listed)
        with self._database.write_transaction() as conn:
            conn.execute(
                update(staged_uploads).where(staged_uploads.c.id == upload_id).values(report=kept)
            )
        return kept

    # --- reading it back -------------------------------------------------------------------

    def get(self, upload_id: str, user_id: int) -> StagedUpload:
        """The upload, for the person who staged it; anyone else is told it does not exist."""
        upload = self._find(upload_id)
        if upload is None or upload.user_id != user_id:
            raise NotFound("no such upload (committed, discarded, expired or never staged)")
        return upload

    def chunks(self, upload_id: str) -> Iterator[bytes]:
        """The file's bytes, one chunk (one short query) at a time."""
        seq = 0
        while True:
            with self._database.engine.connect() as conn:
                data = conn.execute(
                    select(staged_chunks.c.data).where(
                        staged_chunks.c.upload_id == upload_id, staged_chunks.c.seq == seq
                    )
                ).scalar_one_or_none()
            if data is None:
                return
            yield bytes(data)
            seq += 1

    def reader(self, upload_id: str) -> BinaryIO:
        """The file as a binary stream, read chunk by chunk."""
        return io.BufferedReader(_ChunkReader(self.chunks(upload_id)), buffer_size=1 << 16)

    # --- committing or discarding -----------------------------------------------------------

    def commit(self, upload_id: str, user_id: int, *, actor: str) -> ImportReport:
        """Import the staged file for real, audited under ``actor``, then delete it.

        The upload is claimed first (its report taken off its row in one ``UPDATE`` only one
        caller can win): a second commit, at the same time or later, imports nothing. An
        import that fails gives the claim back, so the person can try again."""
        upload = self.get(upload_id, user_id)
        with self._database.write_transaction() as conn:
            claimed = conn.execute(
                update(staged_uploads)
                .where(
                    staged_uploads.c.id == upload_id,
                    staged_uploads.c.user_id == user_id,
                    staged_uploads.c.report.is_not(None),
                )
                .values(report=null())
            ).rowcount
        if claimed != 1 or upload.report is None:
            raise Conflict("this upload is being validated or committed already")
        try:
            report = self._entries.import_rows(
                upload.list_name, read_hash_set(self.reader(upload_id)), actor=actor
            )
        except BaseException:
            with self._database.write_transaction() as conn:
                conn.execute(
                    update(staged_uploads)
                    .where(staged_uploads.c.id == upload_id)
                    .values(report=upload.report)
                )
            raise
        self._delete(upload_id)
        return report

    def discard(self, upload_id: str, user_id: int) -> StagedUpload:
        """Delete the person's staged upload without importing it."""
        upload = self.get(upload_id, user_id)
        if upload.report is None:
            raise Conflict("this upload is being validated or committed already")
        self._delete(upload_id)
        return upload

    def abandon(self, upload_id: str) -> None:
        """Delete an upload that failed while it was staged or validated."""
        self._delete(upload_id)

    def purge(self, now: dt.datetime | None = None) -> int:
        """Delete uploads older than :data:`MAX_AGE`; returns how many."""
        cutoff = (now or utcnow()) - MAX_AGE
        with self._database.engine.connect() as conn:
            old = [
                str(r[0])
                for r in conn.execute(
                    select(staged_uploads.c.id).where(staged_uploads.c.created_at < cutoff)
                )
            ]
        for upload_id in old:
            self._delete(upload_id)
        return len(old)

    # --- helpers ---------------------------------------------------------------------------

    def _delete(self, upload_id: str) -> None:
        with self._database.write_transaction() as conn:
            conn.execute(delete(staged_chunks).where(staged_chunks.c.upload_id == upload_id))
            conn.execute(delete(staged_uploads).where(staged_uploads.c.id == upload_id))

    def _row(self, upload_id: str) -> StagedUpload:
        upload = self._find(upload_id)
        if upload is None:
            raise NotFound("no such upload")
        return upload

    def _find(self, upload_id: str) -> StagedUpload | None:
        if not isinstance(upload_id, str) or len(upload_id) > 32:
            return None
        with self._database.engine.connect() as conn:
            r = (
                conn.execute(
                    select(staged_uploads, lists.c.name.label("list_name"))
                    .join(lists, lists.c.id == staged_uploads.c.list_id)
                    .where(staged_uploads.c.id == upload_id)
                )
                .mappings()
                .first()
            )
        if r is None:
            return None
        created = r["created_at"]
        return StagedUpload(
            id=str(r["id"]),
            user_id=int(r["user_id"]),
            list_id=int(r["list_id"]),
            list_name=str(r["list_name"]),
            filename=str(r["filename"]),
            size=int(r["size"]),
            report=None if r["report"] is None else dict(r["report"]),
            created_at=created if created.tzinfo else created.replace(tzinfo=dt.UTC),
        )


def _filename(name: str) -> str:
    return fields.printable(name.replace("\\", "/").rsplit("/", 1)[-1])[:MAX_FILENAME_CHARS]


class _ListedCounter:
    """Counts the valid rows whose hash is live in the list already (as committed: a dry
    run's own inserts are not seen), looked up in batches as the rows pass by."""

    def __init__(self, database: Database, list_id: int) -> None:
        self._database = database
        self._list_id = list_id
        self.listed = 0

    def count(self, rows: Iterable[HashRow | RowError]) -> Iterator[HashRow | RowError]:
        batch: list[HashRow | RowError] = []
        for row in rows:
            # The store's own check, as the import makes it (it keeps a row that passed as is).
            batch.append(_checked_row(row))
            if len(batch) >= _LIVE_BATCH:
                self._look_up(batch)
                yield from batch
                batch.clear()
        self._look_up(batch)
        yield from batch

    def _look_up(self, batch: Sequence[HashRow | RowError]) -> None:
        wanted: dict[str, list[bytes]] = {}
        for row in batch:
            if isinstance(row, HashRow):
                wanted.setdefault(row.hash.algorithm.name, []).append(row.hash.value)
        live: set[tuple[str, bytes]] = set()
        with self._database.engine.connect() as conn:
            for algorithm, values in wanted.items():
                unique = list(set(values))
                for start in range(0, len(unique), LOOKUP_CHUNK):
                    found = conn.execute(
                        select(entries.c.hash).where(
                            entries.c.list_id == self._list_id,
                            entries.c.algorithm == algorithm,
                            entries.c.hash.in_(unique[start : start + LOOKUP_CHUNK]),
                            entries.c.withdrawn_at.is_(None),
                        )
                    )
                    live.update((algorithm, bytes(value)) for (value,) in found)
        if live:
            self.listed += sum(
                1
                for row in batch
                if isinstance(row, HashRow) and (row.hash.algorithm.name, row.hash.value) in live
            )


class _ChunkReader(io.RawIOBase):
    """A raw binary stream over an iterator of chunks."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._pending = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while not self._pending:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._pending = memoryview(chunk)
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size
