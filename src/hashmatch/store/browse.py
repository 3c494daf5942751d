"""Browsing a list's entries, as the console shows them to the list's owner: pages of a
search (by reference, hash prefix or label, in the order of the index that finds them), entries
by id, and exports a batch at a time, on the record."""

from __future__ import annotations

import dataclasses
import json
import string
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Final

from sqlalchemy import (
    ColumnElement,
    Connection,
    Select,
    Text,
    and_,
    bindparam,
    cast,
    false,
    func,
    or_,
    select,
    text,
)

from hashmatch import fields, signals
from hashmatch.errors import InvalidField
from hashmatch.store.entries import LOOKUP_CHUNK, EntryRepository, entry_row
from hashmatch.store.records import EntryRow
from hashmatch.store.schema import entries

#: The most entries one search page or one lookup by id returns.
MAX_PAGE: Final = 1_000
#: The shortest hash prefix a search takes (fewer digits would match too much to be useful).
MIN_HASH_PREFIX: Final = 8
#: The most entries of a list a search by label alone reads per request (labels are JSON: no
#: index finds them, so the entries are read in id order and their labels checked one by one).
LABEL_SCAN_WINDOW: Final = 50_000
#: Entries per batch of an export: each batch a short read of its own, in id order.
EXPORT_BATCH: Final = 2_000
_HEX: Final = frozenset(string.hexdigits.lower())
#: PostgreSQL default collations that compare text as UTF-8 bytes (code point order), as
#: SQLite does: the only ones under which a range on ``reference`` is a prefix, index and all.
_BYTEWISE_COLLATIONS: Final = frozenset({"C", "POSIX", "C.UTF-8", "C.utf8", "C.UTF8", "C.utf-8"})


@dataclasses.dataclass(frozen=True)
class EntryDetail(EntryRow):
    """An entry as its list's owner reviews it: who added it and, once withdrawn, who
    withdrew it, why, and the class of the reason."""

    added_by: str = ""
    withdrawn_by: str | None = None
    withdrawal_reason: str | None = None
    withdrawal_class: str | None = None


@dataclasses.dataclass(frozen=True)
class SearchPage:
    """One page of a search, in display order, and where a windowed scan (a search by label
    alone) stopped reading when it stopped before finding a full page with entries of the list
    left to read: the search goes on from there with ``after_id=scanned_to`` (or, reading
    backwards, ``before_id=scanned_to``). None: the page is full, or the scan read to the end
    of the list (in its direction)."""

    rows: list[EntryDetail]
    scanned_to: int | None = None


class EntryBrowser(EntryRepository):
    """A list's entries as its owner reviews them (reads only, but for the export's record)."""

    #: Whether the database orders text as UTF-8 bytes (asked once, on the first search).
    _text_bytewise: bool | None = None

    def search(
        self,
        list_name: str,
        *,
        reference: str | None = None,
        reference_prefix: str | None = None,
        hash_hex_prefix: str | None = None,
        label: str | None = None,
        include_withdrawn: bool = False,
        after_id: int | None = None,
        before_id: int | None = None,
        limit: int = 50,
        label_window: int = LABEL_SCAN_WINDOW,
    ) -> SearchPage:
        """One page of a list's entries, filtered, in the order of the index that finds them.

        - no filter: by id (``ix_entries_list_id_id``)
        - a ``label`` alone: by id too, the entries' labels checked one by one (labels are
          JSON: no index); one request reads at most ``label_window`` entries of the list
          (live or withdrawn), and when they hold fewer than ``limit`` matches the page says
          where it stopped (:attr:`SearchPage.scanned_to`)
        - ``reference`` (exact) or ``reference_prefix``: by reference, then id
          (``ix_entries_list_reference``); a prefix is a range of code points, the same on
          SQLite and PostgreSQL whatever the database's collation
        - ``hash_hex_prefix`` (``[algorithm:]hex``, at least :data:`MIN_HASH_PREFIX` digits,
          or a whole hash): by algorithm, hash, then id (``ix_entries_list_algorithm_hash``),
          a range of packed bytes per algorithm

        Filters combine (the first of hash, reference, label decides the order; a label with
        another filter is checked within that filter's range, unwindowed). ``after_id`` and
        ``before_id`` name an entry of the list, the last or first of the page shown (or where
        a scan stopped): the ``limit`` entries after it, or just before it, in display order
        either way. Every page reads O(``limit``) index rows, whatever the size of the list,
        but a label's: O(``label_window``) alone, the other filter's range with one.
        """
        info = self._lists.get(list_name)
        if after_id is not None and before_id is not None:
            raise InvalidField("before", "give after or before, not both")
        if not 1 <= limit <= MAX_PAGE:
            raise InvalidField("limit", f"must be from 1 to {MAX_PAGE}")
        if label_window < 1:
            raise InvalidField("label_window", "must be at least 1")
        exact = _search_text(reference, "reference", fields.MAX_REFERENCE_CHARS)
        prefix = _search_text(reference_prefix, "reference", fields.MAX_REFERENCE_CHARS)
        if exact is not None and prefix is not None:
            raise InvalidField("reference", "search by an exact reference or a prefix, not both")
        wanted_label = _search_text(label, "label", fields.MAX_LABEL_CHARS)
        ranges = None if hash_hex_prefix is None else hash_prefix_ranges(hash_hex_prefix)
        forward = before_id is None
        anchor_id = after_id if forward else before_id
        windowed = wanted_label is not None and ranges is None and exact is None and prefix is None
        scanned_to = None
        with self._database.engine.connect() as conn:
            ref = entries.c.reference if self._bytewise(conn) else entries.c.reference.collate("C")
            where: list[ColumnElement[bool]] = [entries.c.list_id == info.id]
            if not include_withdrawn:
                where.append(entries.c.withdrawn_at.is_(None))
            if wanted_label is not None:
                where.append(_has_label(conn, wanted_label))
            if exact is not None:
                where.append(ref == exact)
            if prefix is not None:
                where.append(ref >= prefix)
                upper = _text_successor(prefix)
                if upper is not None:
                    where.append(ref < upper)
            anchor = None
            if anchor_id is not None:
                anchor = self._anchor(conn, info.id, anchor_id, "after" if forward else "before")
            if ranges is not None:
                found = self._hash_pages(conn, where, ranges, anchor, forward, limit)
            else:
                keys: list[ColumnElement[Any]] = [entries.c.id]
                values: list[Any] = [] if anchor is None else [anchor["id"]]
                if exact is not None or prefix is not None:
                    keys.insert(0, ref)
                    if anchor is not None:
                        values.insert(0, anchor["reference"])
                edge, beyond = None, False
                if windowed:
                    start = None if anchor is None else int(anchor["id"])
                    edge, beyond = _scan_window(conn, info.id, start, forward, label_window)
                    if edge is not None:
                        where.append(entries.c.id <= edge if forward else entries.c.id >= edge)
                found = _page(conn, where, keys, values, forward, limit)
                if beyond and len(found) < limit:
                    scanned_to = edge
        rows = [entry_detail(r) for r in (found if forward else reversed(found))]
        return SearchPage(rows, scanned_to)

    def _bytewise(self, conn: Connection) -> bool:
        """Whether the database's own text order is that of UTF-8 bytes (code points)."""
        if self._text_bytewise is None:
            self._text_bytewise = _bytewise_collation(conn)
        return self._text_bytewise

    @staticmethod
    def _anchor(conn: Connection, list_id: int, entry_id: int, field: str) -> Any:
        found = (
            conn.execute(
                select(
                    entries.c.id, entries.c.reference, entries.c.algorithm, entries.c.hash
                ).where(entries.c.list_id == list_id, entries.c.id == entry_id)
            )
            .mappings()
            .first()
        )
        if found is None:
            raise InvalidField(field, f"no entry {entry_id} in this list")
        return found

    @staticmethod
    def _hash_pages(
        conn: Connection,
        where: list[ColumnElement[bool]],
        ranges: dict[str, tuple[bytes, bytes | None]],
        anchor: Any,
        forward: bool,
        limit: int,
    ) -> list[Any]:
        """A page of a hash search: each algorithm's range in turn (in name order), each read
        from ``ix_entries_list_algorithm_hash`` in (hash, id) order."""
        found: list[Any] = []
        for name in sorted(ranges, reverse=not forward):
            if anchor is not None and (
                name < anchor["algorithm"] if forward else name > anchor["algorithm"]
            ):
                continue
            low, high = ranges[name]
            conditions = [*where, entries.c.algorithm == name, entries.c.hash >= low]
            if high is not None:
                conditions.append(entries.c.hash < high)
            values: list[Any] = []
            if anchor is not None and name == anchor["algorithm"]:
                values = [bytes(anchor["hash"]), anchor["id"]]
            keys: list[ColumnElement[Any]] = [entries.c.hash, entries.c.id]
            found.extend(_page(conn, conditions, keys, values, forward, limit - len(found)))
            if len(found) >= limit:
                break
        return found

    def by_ids(self, list_name: str, ids: Iterable[int]) -> list[EntryDetail]:
        """The entries of the list with these ids, in id order: ids of another list's entries,
        or of none, are left out."""
        info = self._lists.get(list_name)
        wanted = sorted({int(i) for i in ids})
        if len(wanted) > MAX_PAGE:
            raise InvalidField("entry", f"at most {MAX_PAGE} entries at a time")
        found: list[EntryDetail] = []
        with self._database.engine.connect() as conn:
            for start in range(0, len(wanted), LOOKUP_CHUNK):
                query = select(entries).where(
                    entries.c.list_id == info.id,
                    entries.c.id.in_(wanted[start : start + LOOKUP_CHUNK]),
                )
                found.extend(entry_detail(r) for r in conn.execute(query).mappings())
        return sorted(found, key=lambda entry: entry.id)

    def batches(
        self, list_name: str, *, include_withdrawn: bool = False, size: int = EXPORT_BATCH
    ) -> Iterator[list[EntryRow]]:
        """A list's entries in id order, ``size`` at a time, each batch one short read (no
        connection stays open while the caller sends a batch on, however slowly)."""
        info = self._lists.get(list_name)
        after = 0
        while True:
            query = (
                select(entries)
                .where(entries.c.list_id == info.id, entries.c.id > after)
                .order_by(entries.c.id)
                .limit(size)
            )
            if not include_withdrawn:
                query = query.where(entries.c.withdrawn_at.is_(None))
            with self._database.engine.connect() as conn:
                batch = [entry_row(r) for r in conn.execute(query).mappings()]
            if batch:
                yield batch
            if len(batch) < size:
                return
            after = batch[-1].id

    def record_export(self, list_name: str, *, actor: str, export_format: str) -> None:
        """Put an export of the list's live entries on the record, under who asked for it."""
        info = self._lists.get(list_name)
        with self._database.write_transaction() as conn:
            self._audit.record(conn, actor, "entries.export", info.name, {"format": export_format})


def entry_detail(r: Any) -> EntryDetail:
    row = entry_row(r)
    return EntryDetail(
        **{f.name: getattr(row, f.name) for f in dataclasses.fields(EntryRow)},
        added_by=r["added_by"],
        withdrawn_by=r["withdrawn_by"],
        withdrawal_reason=r["withdrawal_reason"],
        withdrawal_class=r["withdrawal_class"],
    )


def _scan_window(
    conn: Connection, list_id: int, start: int | None, forward: bool, window: int
) -> tuple[int | None, bool]:
    """The last of the ``window`` entries of the list after ``start`` (before it when not
    ``forward``; None: from the list's first or last entry) in id order, and whether any
    entry lies beyond it; ``(None, False)`` when fewer than ``window`` are left. One read of
    ``ix_entries_list_id_id`` (every entry of the list, live or withdrawn, counts)."""
    query = select(entries.c.id).where(entries.c.list_id == list_id)
    if start is not None:
        query = query.where(entries.c.id > start if forward else entries.c.id < start)
    query = (
        query.order_by(entries.c.id if forward else entries.c.id.desc()).offset(window - 1).limit(2)
    )
    ids = [int(i) for i in conn.execute(query).scalars()]
    if not ids:
        return None, False
    return ids[0], len(ids) > 1


def hash_prefix_ranges(value: str) -> dict[str, tuple[bytes, bytes | None]]:
    """The packed hashes a search for ``value`` (``[algorithm:]hex``, a whole hash or at least
    :data:`MIN_HASH_PREFIX` hex digits of one) finds: per algorithm whose hashes are long
    enough, the range ``low <= hash < high`` (``high`` None: no upper end)."""
    algorithm_name, separator, digits = value.strip().lower().rpartition(":")
    digits = digits.strip()
    if len(digits) < MIN_HASH_PREFIX or not set(digits) <= _HEX:
        raise InvalidField(
            "hash", f"search by a whole hash or at least {MIN_HASH_PREFIX} of its hex digits"
        )
    if separator:
        known = {signal.name: signal for signal in signals.all_signals()}
        if algorithm_name.strip() not in known:
            raise InvalidField("hash", f"no signal type is named {algorithm_name[:32]!r}")
        candidates: Iterable[signals.SignalType] = [known[algorithm_name.strip()]]
    else:
        candidates = signals.all_signals()
    return {
        signal.name: _byte_range(digits)
        for signal in candidates
        if len(digits) <= signal.nbytes * 2
    }


def _byte_range(digits: str) -> tuple[bytes, bytes | None]:
    """``(low, high)``: exactly the byte strings whose hex starts with ``digits`` lie in
    ``low <= value < high``."""
    whole = bytes.fromhex(digits[: len(digits) // 2 * 2])
    if len(digits) % 2 == 0:
        return whole, _bytes_successor(whole)
    nibble = int(digits[-1], 16)
    high = whole + bytes([(nibble + 1) << 4]) if nibble < 15 else _bytes_successor(whole)
    return whole + bytes([nibble << 4]), high


def _bytes_successor(value: bytes) -> bytes | None:
    """The least byte string greater than every one that starts with ``value``."""
    trimmed = value.rstrip(b"\xff")
    if not trimmed:
        return None
    return trimmed[:-1] + bytes([trimmed[-1] + 1])


def _text_successor(value: str) -> str | None:
    """The least string (in code point order, which is UTF-8's byte order) greater than
    every one that starts with ``value``: the next code point in place of its last (past the
    surrogates, which no stored text holds)."""
    trimmed = value.rstrip(chr(0x10FFFF))
    if not trimmed:
        return None
    following = ord(trimmed[-1]) + 1
    if 0xD800 <= following <= 0xDFFF:
        following = 0xE000
    return trimmed[:-1] + chr(following)


def _search_text(value: str | None, field: str, max_chars: int) -> str | None:
    if value is None or value == "":
        return None
    return fields.text(value, field, max_chars)


def _has_label(conn: Connection, label: str) -> ColumnElement[bool]:
    """Whether an entry's labels (a JSON array of strings) hold ``label`` exactly."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import JSONB

        wanted = cast(bindparam("search_label", json.dumps([label]), type_=Text), JSONB)
        found: ColumnElement[bool] = cast(entries.c.labels, JSONB).contains(wanted)
        return found
    each = func.json_each(entries.c.labels).table_valued("value")
    return select(each.c.value).where(each.c.value == label).exists()


def _page(
    conn: Connection,
    where: Sequence[ColumnElement[bool]],
    keys: Sequence[ColumnElement[Any]],
    after: Sequence[Any],
    forward: bool,
    limit: int,
) -> list[Any]:
    """Up to ``limit`` rows meeting ``where`` in ``keys`` order (descending when not
    ``forward``), after the key values ``after`` (none: from the start)."""
    conditions = list(where)
    if after:
        if any(value is None for value in after):
            conditions.append(false())  # the anchor is not among these results
        else:
            conditions.append(_keyset(keys, after, forward))
    query: Select[Any] = (
        select(entries)
        .where(*conditions)
        .order_by(*(key if forward else key.desc() for key in keys))
        .limit(limit)
    )
    return list(conn.execute(query).mappings())


def _keyset(
    keys: Sequence[ColumnElement[Any]], values: Sequence[Any], forward: bool
) -> ColumnElement[bool]:
    """``keys`` past ``values`` in lexicographic order, with the first key's bound on its own
    so that the index on it bounds the scan."""

    def past(key: ColumnElement[Any], value: Any) -> ColumnElement[bool]:
        beyond: ColumnElement[bool] = key > value if forward else key < value
        return beyond

    condition = past(keys[-1], values[-1])
    for key, value in zip(reversed(keys[:-1]), reversed(values[:-1]), strict=True):
        condition = or_(past(key, value), and_(key == value, condition))
    if len(keys) == 1:
        return condition
    bound = keys[0] >= values[0] if forward else keys[0] <= values[0]
    return and_(bound, condition)


def _bytewise_collation(conn: Connection) -> bool:
    """Whether text compares as UTF-8 bytes: always on SQLite (``BINARY``); on PostgreSQL
    when the database's collation is C, POSIX or C.UTF-8 (libc's or the builtin provider's).
    Elsewhere a search compares ``COLLATE "C"``: the same answers, without the index."""
    if conn.dialect.name != "postgresql":
        return True
    row = conn.execute(
        text("SELECT to_jsonb(d) FROM pg_database d WHERE d.datname = current_database()")
    ).scalar_one()
    provider = row.get("datlocprovider", "c")
    if provider == "c":
        return row.get("datcollate") in _BYTEWISE_COLLATIONS
    if provider == "b":
        return (row.get("datlocale") or row.get("daticulocale")) in _BYTEWISE_COLLATIONS
    return False
