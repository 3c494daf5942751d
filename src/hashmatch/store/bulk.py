"""Bulk insertion of list entries, the fast way on each database.

An import of a million hashes must take seconds, not minutes: SQLite gets one prepared
``INSERT ... ON CONFLICT DO NOTHING`` executed over plain tuples; PostgreSQL gets ``COPY`` into a
temporary table and one ``INSERT ... SELECT ... ON CONFLICT DO NOTHING``. Both skip hashes
already live in the list (the partial unique index), which the caller counts as duplicates.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection

#: (algorithm, hash bytes, reference, labels, a video's packed frames or None)
EntryTuple = tuple[str, bytes, str | None, tuple[str, ...], bytes | None]

_COLUMNS = "list_id, algorithm, hash, reference, labels, added_at, added_by, added_change, frames"
_CONFLICT = "ON CONFLICT (list_id, algorithm, hash) WHERE withdrawn_at IS NULL DO NOTHING"


@dataclass(frozen=True)
class Added:
    """What every row of one insertion shares: its list, its change, when and by whom."""

    list_id: int
    cursor: int
    at: dt.datetime
    by: str


def insert_entries(conn: Connection, rows: Sequence[EntryTuple], added: Added) -> None:
    if not rows:
        return
    if conn.dialect.name == "postgresql":
        _postgresql(conn, rows, added)
    else:
        _sqlite(conn, rows, added)


def _sqlite(conn: Connection, rows: Sequence[EntryTuple], added: Added) -> None:
    # SQLAlchemy's own storage format for DateTime on SQLite, so reads parse it back.
    stamp = added.at.strftime("%Y-%m-%d %H:%M:%S.%f")
    raw: Any = conn.connection.dbapi_connection
    shared = (stamp, added.by, added.cursor)
    raw.executemany(
        f"INSERT INTO entries ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) {_CONFLICT}",  # noqa: S608 - constants only
        [
            (added.list_id, algorithm, value, reference, json.dumps(list(labels)), *shared, frames)
            for algorithm, value, reference, labels, frames in rows
        ],
    )


def _postgresql(conn: Connection, rows: Sequence[EntryTuple], added: Added) -> None:
    raw: Any = conn.connection.dbapi_connection
    with raw.cursor() as cur:
        cur.execute(
            "CREATE TEMP TABLE IF NOT EXISTS hashmatch_import "
            "(algorithm text, hash bytea, reference text, labels text, frames bytea) "
            "ON COMMIT DROP"
        )
        with cur.copy(
            "COPY hashmatch_import (algorithm, hash, reference, labels, frames) FROM STDIN"
        ) as copy:
            for algorithm, value, reference, labels, frames in rows:
                copy.write_row((algorithm, value, reference, json.dumps(list(labels)), frames))
        cur.execute(
            f"INSERT INTO entries ({_COLUMNS}) "  # noqa: S608 - constants only
            "SELECT %s, algorithm, hash, reference, labels::json, %s, %s, %s, frames "
            f"FROM hashmatch_import {_CONFLICT}",
            (added.list_id, added.at, added.by, added.cursor),
        )
        cur.execute("TRUNCATE hashmatch_import")


#: (algorithm, hash bytes, reference, labels, added at, origin id, packed frames or None): a
#: mirrored entry.
MirroredTuple = tuple[str, bytes, str | None, tuple[str, ...], dt.datetime, int, bytes | None]
_MIRRORED = _COLUMNS + ", origin_id"


def insert_mirrored(
    conn: Connection, rows: Sequence[MirroredTuple], list_id: int, cursor: int, by: str
) -> None:
    """Mirrored entries, each with its own time and origin id; those already here (by origin
    id, or live by hash) are skipped, as the caller's idempotency needs."""
    if not rows:
        return
    # In hash order: the two hash indexes are then written page after page, not at random.
    rows = sorted(rows, key=lambda row: (row[0], row[1]))
    raw: Any = conn.connection.dbapi_connection
    if conn.dialect.name != "postgresql":
        stamps: dict[dt.datetime, str] = {}
        raw.executemany(
            f"INSERT INTO entries ({_MIRRORED}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "  # noqa: S608 - constants only
            "ON CONFLICT DO NOTHING",
            [
                (
                    list_id,
                    algorithm,
                    value,
                    reference,
                    "[]" if not labels else json.dumps(list(labels)),
                    stamps.get(at) or stamps.setdefault(at, _sqlite_time(at)),
                    by,
                    cursor,
                    frames,
                    origin_id,
                )
                for algorithm, value, reference, labels, at, origin_id, frames in rows
            ],
        )
        return
    with raw.cursor() as cur:
        cur.execute(
            "CREATE TEMP TABLE IF NOT EXISTS hashmatch_mirrored (algorithm text, hash bytea, "
            "reference text, labels text, added_at timestamptz, origin_id bigint, frames bytea) "
            "ON COMMIT DROP"
        )
        with cur.copy(
            "COPY hashmatch_mirrored "
            "(algorithm, hash, reference, labels, added_at, origin_id, frames) FROM STDIN"
        ) as copy:
            for algorithm, value, reference, labels, at, origin_id, frames in rows:
                copy.write_row(
                    (algorithm, value, reference, json.dumps(list(labels)), at, origin_id, frames)
                )
        cur.execute(
            f"INSERT INTO entries ({_MIRRORED}) "  # noqa: S608 - constants only
            "SELECT %s, algorithm, hash, reference, labels::json, added_at, %s, %s, frames, "
            "origin_id "
            "FROM hashmatch_mirrored ON CONFLICT DO NOTHING",
            (list_id, by, cursor),
        )
        cur.execute("TRUNCATE hashmatch_mirrored")


def _sqlite_time(at: dt.datetime) -> str:
    # SQLAlchemy's storage format for DateTime on SQLite (naive UTC), so reads parse it back.
    if at.tzinfo is not None:
        at = at.astimezone(dt.UTC).replace(tzinfo=None)
    return at.strftime("%Y-%m-%d %H:%M:%S.%f")
