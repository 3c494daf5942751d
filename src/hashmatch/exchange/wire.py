"""The peer feed's wire form: its cursor, its events, and the checks a subscriber makes.

A page is JSON (gzip on the wire when asked)::

    {"instance": "ncc-tw", "from": "1200.-1", "cursor": "1234.-1", "more": false,
     "lists": ["ncii-tw"],
     "events": [
       {"type": "list", "list": "ncii-tw", "snapshot": true, "meta": {...}},
       {"type": "add", "list": "ncii-tw", "algorithm": "pdq",
        "entries": [[origin_id, "hex", "reference", ["label"], added_at_epoch], ...]},
       {"type": "snapshot_end", "list": "ncii-tw"},
       {"type": "withdraw", "list": "ncii-tw", "entries": [[origin_id, "victim_request"]]}]}

``from`` repeats the cursor the page was asked from: a subscriber applies a page only if it
answers the request it made (a duplicated or stale page is refused, never applied twice).

``lists`` names every list the caller receives now: a mirror whose list is no longer among
them was unshared. Entries are compact arrays (the same algorithm, list and time repeat and
compress away): about 40 bytes a PDQ entry once compressed.

A video (a signal type of :attr:`~hashmatch.signals.IndexKind.FRAMES`, ``vpdq``) is one entry
whose hash is the SHA-256 of its packed frames; the frames travel with it as a sixth element,
``[id, hash, reference, labels, added_at, frames]``, the packed form
(:func:`hashmatch.signals.vpdq.pack_frames`) in standard base64 without newlines. Packed, not a
JSON array of frames: 41 bytes a frame instead of ~80, and the subscriber's check is one
decode, one validation and one digest. Base64, not hex: the frames' PDQs are incompressible,
so gzip brings either back to about the packed size on the wire (base64 to 0.98 of it, hex to
1.08), but the decompressed page (capped at :data:`MAX_PAGE_BYTES`) holds 4/3 of it, not
twice. Every other entry keeps its five elements, so peers that predate videos read image
lists as before (a page holding a video they refuse, as any unknown algorithm). A page stops
taking entries before its frames pass :data:`MAX_PAGE_FRAME_BYTES` (a first entry always goes).

Everything a peer sends is checked here before a byte of it is written: a page that breaks any
rule is refused whole (:class:`~hashmatch.errors.PeerRefused`), with a message that says where.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import functools
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from hashmatch import fields, signals
from hashmatch.errors import HashFormatError, InvalidField, PeerRefused
from hashmatch.exchange import tlp as tlp_labels
from hashmatch.matching.policy import ThresholdBounds
from hashmatch.signals import Hash, IndexKind
from hashmatch.signals.vpdq import MAX_FRAMES, unpack_records

#: Entries a page may carry (a peer sending more than asked is refused). A subscriber asks for
#: 20,000: a page is one transaction, and on a million-entry mirror each commit writes the
#: index pages it touched, so fewer, larger pages sync several times faster (about 2 MB of
#: gzip on the wire each).
MAX_PAGE_ENTRIES: Final = 50_000
DEFAULT_PAGE_ENTRIES: Final = 20_000
#: A page's compressed and decompressed size caps, on the subscriber's side.
MAX_PAGE_BYTES: Final = 64 * 1024 * 1024
#: Packed video frames a page carries at most, unless its first entry alone is larger: 32 MiB
#: is ~43 MiB of base64, which with a full page of image entries (~7 MB) stays well under
#: :data:`MAX_PAGE_BYTES`, however many entries were asked for. A longest video
#: (:data:`~hashmatch.signals.vpdq.MAX_FRAMES`) fits a page alone.
MAX_PAGE_FRAME_BYTES: Final = 32 * 1024 * 1024
MAX_LISTS: Final = 10_000
#: The longest a feed request may wait for a change (long-polling).
MAX_WAIT_SECONDS: Final = 30.0
#: 9999-12-31T23:59:59Z: the last second a datetime can hold.
MAX_EPOCH_SECONDS: Final = 253_402_300_799
EVENT_TYPES: Final = ("list", "add", "withdraw", "snapshot_end")


@dataclass(frozen=True, order=True)
class FeedCursor:
    """Changes before ``change`` are sent; of ``change`` itself, entries up to id ``entry``
    (``-1``: nothing of it yet, ``0``: its header only)."""

    change: int = 0
    entry: int = -1

    @classmethod
    def parse(cls, text: str) -> FeedCursor:
        if not text:
            return cls()
        head, dot, tail = text.partition(".")
        try:
            change, entry = int(head), int(tail) if dot else -1
        except ValueError:
            raise InvalidField("cursor", f"not a feed cursor: {text[:40]!r}") from None
        if not (0 <= change < 2**63 and -1 <= entry < 2**63):
            raise InvalidField("cursor", f"out of range: {text[:40]!r}")
        return cls(change, entry)

    def __str__(self) -> str:
        return f"{self.change}.{self.entry}"


@dataclass(frozen=True)
class ListMeta:
    """A list as a feed describes it: what a mirror copies and enforces."""

    name: str
    owner: str
    kind: str
    category: str
    source: str
    jurisdiction: str
    description: str
    enabled: bool
    thresholds: dict[str, int]
    tlp: tlp_labels.Tlp
    origin_instance: str


@dataclass(frozen=True)
class AddedEntry:
    origin_id: int
    hash: Hash
    reference: str | None
    labels: tuple[str, ...]
    added_at: dt.datetime
    #: A video entry's frames, packed (:func:`hashmatch.signals.vpdq.pack_frames`).
    frames: bytes | None = None


@dataclass
class Event:
    """One event of a page, checked: ``kind`` is one of :data:`EVENT_TYPES`."""

    kind: str
    list_name: str
    meta: ListMeta | None = None
    snapshot: bool = False
    added: list[AddedEntry] = field(default_factory=list)
    withdrawn: list[tuple[int, str]] = field(default_factory=list)


@dataclass
class Page:
    instance: str
    #: The cursor the page was asked from: a page answering another request is refused.
    since: FeedCursor
    cursor: FeedCursor
    more: bool
    lists: frozenset[str]
    events: list[Event]


def _refuse(where: str, why: str) -> PeerRefused:
    return PeerRefused(f"{where}: {fields.printable(why)[:300]}")


def _int(value: object, where: str, low: int = 0) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value < 2**63:
        raise _refuse(where, "must be a non-negative 64-bit integer")
    return value


def list_meta(raw: object, where: str, bounds: ThresholdBounds) -> ListMeta:
    """A list's description as a source gives it, checked field by field (refused whole,
    saying ``where``)."""
    if not isinstance(raw, Mapping):
        raise _refuse(where, "list metadata must be an object")
    try:
        thresholds = bounds.check(raw.get("thresholds", {}), "thresholds")
        kind = raw.get("kind")
        if kind not in ("block", "allow"):
            raise InvalidField("kind", "must be block or allow")
        return ListMeta(
            name=fields.list_name(raw.get("name"), "name"),
            owner=fields.organisation(raw.get("owner"), "owner"),
            kind=str(kind),
            category=fields.category(raw.get("category"), "category"),
            source=fields.text(raw.get("source", ""), "source", fields.MAX_SOURCE_CHARS),
            jurisdiction=fields.text(
                raw.get("jurisdiction", ""), "jurisdiction", fields.MAX_JURISDICTION_CHARS
            ),
            description=fields.text(
                raw.get("description", ""),
                "description",
                fields.MAX_DESCRIPTION_CHARS,
                multiline=True,
            ),
            enabled=bool(raw.get("enabled", True)),
            thresholds=thresholds,
            tlp=tlp_labels.parse(raw.get("tlp")),
            origin_instance=fields.organisation(raw.get("origin_instance"), "origin_instance"),
        )
    except InvalidField as exc:
        raise _refuse(where, exc.message) from None


def _added(raw: object, algorithm: signals.SignalType, where: str) -> AddedEntry:
    video = carries_frames(algorithm)
    if not isinstance(raw, list) or len(raw) != (6 if video else 5):
        form = "[id, hash, reference, labels, added_at" + (", frames]" if video else "]")
        raise _refuse(where, f"an added {algorithm.name} entry is {form}")
    origin_id, text, reference, labels, added_at = raw[:5]
    try:
        if not isinstance(text, str):
            raise HashFormatError("hash must be a string")
        value = Hash(algorithm, algorithm.parse(text))
        checked_reference = fields.reference(reference)
        if not isinstance(labels, list):
            raise InvalidField("labels", "must be a list")
        checked_labels = fields.labels(labels) if labels else ()
    except (HashFormatError, InvalidField) as exc:
        raise _refuse(where, exc.message) from None
    frames = None
    if video:
        frames = check_frames(value, decode_frames(raw[5], f"{where}.frames"), f"{where}.frames")
    seconds = _int(added_at, f"{where}.added_at")
    if seconds > MAX_EPOCH_SECONDS:
        raise _refuse(f"{where}.added_at", "after the year 9999")
    at = _timestamp(seconds)
    return AddedEntry(
        _int(origin_id, f"{where}.id", 1), value, checked_reference, checked_labels, at, frames
    )


def carries_frames(algorithm: signals.SignalType) -> bool:
    """Whether entries of ``algorithm`` are videos: their frames travel with them."""
    return algorithm.index_kind is IndexKind.FRAMES


def encode_frames(packed: bytes) -> str:
    """Packed frames as the wire carries them: standard base64, no newlines."""
    return base64.b64encode(packed).decode("ascii")


def decode_frames(text: object, where: str) -> bytes:
    """The packed frames of a wire entry; refused unless strict base64 (no newlines, no
    stray characters: a peer's bytes are never guessed at)."""
    if not isinstance(text, str) or not text:
        raise _refuse(where, "must be the packed frames in base64")
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error, ValueError):
        raise _refuse(where, "not valid base64") from None


def check_frames(value: Hash, packed: bytes, where: str) -> bytes:
    """``packed`` if it is a video's frames whose digest is ``value``; refused otherwise.

    The digest is what a mirror keeps as the entry's hash and what ``verify`` compares, so
    frames that do not hash to it would be a video the origin never listed under that id.
    :func:`~hashmatch.signals.vpdq.unpack_records` validates the blob as
    :func:`~hashmatch.signals.vpdq.unpack_frames` does (version, whole records, at most
    :data:`~hashmatch.signals.vpdq.MAX_FRAMES`, qualities, increasing numbers), and a valid
    blob is exactly :func:`~hashmatch.signals.vpdq.pack_frames` of its frames, so its SHA-256
    is their :func:`~hashmatch.signals.vpdq.frames_digest`: the same check as unpacking and
    re-packing, without a Python object a frame (a full page is ~800,000 frames: ~1 s that
    way, a few ms this way), and what is stored is byte for byte what the origin stored."""
    try:
        records = unpack_records(packed)
    except HashFormatError as exc:
        raise _refuse(where, exc.message) from None
    if len(records) > MAX_FRAMES:  # unpack_records refuses these too: a guard, not a rule
        raise _refuse(where, f"more than {MAX_FRAMES} frames")
    if hashlib.sha256(packed).digest() != value.value:
        raise _refuse(where, "frames do not match the entry's hash (their SHA-256)")
    return packed


@functools.lru_cache(maxsize=1024)
def _timestamp(seconds: int) -> dt.datetime:
    # Entries of one import share their time: a page holds few distinct ones.
    return dt.datetime.fromtimestamp(seconds, dt.UTC)


def parse_page(raw: object, bounds: ThresholdBounds, *, limit: int, own_instance: str) -> Page:
    """A peer's page, checked whole: every rule of the wire form, the local threshold bounds,
    the registered signal types, and no list of this instance's own echoed back."""
    if not isinstance(raw, Mapping):
        raise _refuse("page", "must be a JSON object")
    try:
        instance = fields.organisation(raw.get("instance"), "instance")
        since = FeedCursor.parse(_text(raw.get("from")))
        cursor = FeedCursor.parse(_text(raw.get("cursor")) or "?")
    except InvalidField as exc:
        raise _refuse("page", exc.message) from None
    if cursor < since:
        raise _refuse("page.cursor", "goes backwards")
    names = raw.get("lists")
    if not isinstance(names, list) or len(names) > MAX_LISTS:
        raise _refuse("page.lists", f"must be a list of at most {MAX_LISTS} names")
    try:
        visible = frozenset(fields.list_name(n, "lists[]") for n in names)
    except InvalidField as exc:
        raise _refuse("page.lists", exc.message) from None
    events = raw.get("events")
    if not isinstance(events, list):
        raise _refuse("page.events", "must be a list")
    page = Page(instance, since, cursor, bool(raw.get("more", False)), visible, [])
    total = 0
    for position, item in enumerate(events):
        event = _event(item, f"events[{position}]", bounds, own_instance)
        total += len(event.added) + len(event.withdrawn)
        if total > limit:
            raise _refuse(f"events[{position}]", f"more than the {limit} entries asked for")
        page.events.append(event)
    return page


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _event(raw: object, where: str, bounds: ThresholdBounds, own_instance: str) -> Event:
    if not isinstance(raw, Mapping) or raw.get("type") not in EVENT_TYPES:
        raise _refuse(where, f"an event is an object with a type in {EVENT_TYPES}")
    try:
        name = fields.list_name(raw.get("list"), "list")
    except InvalidField as exc:
        raise _refuse(where, exc.message) from None
    event = Event(str(raw["type"]), name)
    if event.kind == "list":
        meta = list_meta(raw.get("meta"), f"{where}.meta", bounds)
        if meta.name != name:
            raise _refuse(where, "meta.name differs from the event's list")
        if meta.origin_instance == own_instance:
            raise _refuse(where, f"list {name!r} originates here: never mirrored back")
        event.meta = meta
        event.snapshot = raw.get("snapshot") is True
        return event
    if event.kind == "snapshot_end":
        return event
    items = raw.get("entries")
    if not isinstance(items, list):
        raise _refuse(where, "entries must be a list")
    if event.kind == "add":
        try:
            algorithm = signals.get(str(raw.get("algorithm")))
        except HashFormatError as exc:
            raise _refuse(where, exc.message) from None
        event.added = [
            _added(item, algorithm, f"{where}.entries[{i}]") for i, item in enumerate(items)
        ]
        return event
    for i, item in enumerate(items):
        if not isinstance(item, list) or len(item) != 2 or item[1] not in fields.WITHDRAWAL_CLASSES:
            raise _refuse(f"{where}.entries[{i}]", "a withdrawal is [id, reason class]")
        event.withdrawn.append((_int(item[0], f"{where}.entries[{i}]", 1), str(item[1])))
    return event


def meta_dict(values: Mapping[str, Any]) -> dict[str, Any]:
    """The ``meta`` of a list event, from a list's reported fields."""
    keys = (
        "name",
        "owner",
        "kind",
        "category",
        "source",
        "jurisdiction",
        "description",
        "enabled",
        "thresholds",
        "tlp",
        "origin_instance",
    )
    return {key: values[key] for key in keys}


def entry_digest(entries: Sequence[tuple[int, str, bytes]]) -> int:
    """An order-independent digest of live entries (origin id, algorithm, hash): the sum of
    their 128-bit BLAKE2 hashes, so origin and mirror compare without sorting."""
    total = 0
    for origin_id, algorithm, value in entries:
        item = hashlib.blake2b(
            origin_id.to_bytes(8, "big") + algorithm.encode() + b":" + value, digest_size=16
        )
        total += int.from_bytes(item.digest(), "big")
    return total % (1 << 128)
