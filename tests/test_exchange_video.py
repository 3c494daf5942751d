"""Video entries over the exchange: a vPDQ entry travels whole, its packed frames beside it,
checked by the subscriber against the entry's hash, and pages are bounded by their frames'
bytes as well as by their entries.

Set up as ``test_exchange.py`` is: an origin's feed page through JSON and :func:`parse_page`
into a subscriber's mirrors, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from conftest import random_hexes
from hashmatch import signals
from hashmatch.errors import PeerRefused
from hashmatch.exchange.fetcher import local_digest
from hashmatch.exchange.folder import FolderSource
from hashmatch.exchange.wire import (
    MAX_PAGE_BYTES,
    MAX_PAGE_ENTRIES,
    MAX_PAGE_FRAME_BYTES,
    FeedCursor,
    check_frames,
    encode_frames,
    parse_page,
)
from hashmatch.hashsets.read import HashRow, entry_row
from hashmatch.matching.policy import DEFAULT_BOUNDS
from hashmatch.matching.state import MatchState
from hashmatch.signals import PDQ, Hash
from hashmatch.signals.vpdq import (
    MAX_FRAMES,
    RECORD,
    FrameHash,
    format_frames,
    frames_digest,
    pack_frames,
    unpack_frames,
)
from hashmatch.store import Store

VPDQ = "vpdq"


def frames_of(count: int, seed: int) -> list[FrameHash]:
    """``count`` frames as vPDQ samples them at one a second: random PDQs, full quality."""
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 256, (count, 32), dtype=np.uint8)
    return [FrameHash(30 * i, float(i), codes[i].tobytes(), 100) for i in range(count)]


def video_row(line: int, frames: list[FrameHash], reference: str) -> HashRow:
    packed = pack_frames(frames)
    value = Hash(signals.get(VPDQ), frames_digest(frames))
    return HashRow(line, value, reference, ("ncii",), packed)


def image_rows(hexes: list[str], prefix: str = "R") -> list[Any]:
    return [entry_row(i, "pdq", h, f"{prefix}{i}", ["ncii"]) for i, h in enumerate(hexes)]


def shared(origin: Store, name: str = "l", *, accept: bool = True) -> None:
    origin.lists.create(name, owner="ncc", category="ncii", actor="t", shared_with=["kcsc"])
    if accept:
        origin.lists.answer_offer(name, "kcsc", actor="t", accept=True)


def fetch(
    origin: Store, subscriber: Store, *, limit: int = 100, frame_bytes: int = MAX_PAGE_FRAME_BYTES
) -> dict[str, Any]:
    """One page from the origin for org kcsc, as bytes on the wire and back."""
    info = subscriber.peers.get("ncc")
    page = origin.feed.page(
        "kcsc", FeedCursor.parse(info.cursor), limit, subscriber.instance, frame_bytes=frame_bytes
    )
    decoded: dict[str, Any] = orjson.loads(orjson.dumps(page.as_dict()))
    return decoded


def sync(
    origin: Store, subscriber: Store, *, limit: int = 100, frame_bytes: int = MAX_PAGE_FRAME_BYTES
) -> list[dict[str, Any]]:
    """Every page until the origin has no more, applied; the pages as they were sent."""
    pages = []
    while True:
        raw = fetch(origin, subscriber, limit=limit, frame_bytes=frame_bytes)
        page = parse_page(raw, DEFAULT_BOUNDS, limit=limit, own_instance="kcsc")
        assert subscriber.mirrors.apply(subscriber.peers.get("ncc"), page).applied
        pages.append(raw)
        if not page.more:
            return pages


def stored(store: Store, name: str) -> dict[str | None, tuple[str, str, bytes | None]]:
    """A list's live entries by reference: algorithm, hash and frames as stored."""
    return {
        e.reference: (e.hash.algorithm.name, e.hash.hex, e.frames)
        for e in store.entries.listed(name)
    }


def digests_equal(origin: Store, subscriber: Store, name: str = "l") -> bool:
    theirs = origin.feed.digest("kcsc", name)
    assert theirs is not None
    mirror = subscriber.lists.get(f"ncc:{name}")
    return local_digest(subscriber, mirror.id) == {k: v for k, v in theirs.items() if k != "list"}


def wire_entries(raw: dict[str, Any], algorithm: str) -> list[list[Any]]:
    return [
        item
        for event in raw["events"]
        if event["type"] == "add" and event["algorithm"] == algorithm
        for item in event["entries"]
    ]


def test_a_video_travels_whole_and_is_withdrawn_whole(pair: tuple[Store, Store]) -> None:
    origin, subscriber = pair
    shared(origin)
    videos = [frames_of(120, seed=1), frames_of(45, seed=2)]
    origin.entries.import_rows("l", image_rows(random_hexes(5, seed=3)), actor="t")
    origin.entries.import_rows(
        "l", [video_row(i + 1, f, f"V{i}") for i, f in enumerate(videos)], actor="t"
    )
    pages = sync(origin, subscriber, limit=4)
    assert len(pages) > 1  # entry-bounded as ever
    # Videos carry their frames as a sixth element, in base64; images keep five elements.
    # (The snapshot sends every live entry, and the imports' changes send them again.)
    sent = {item[0]: item for raw in pages for item in wire_entries(raw, VPDQ)}
    assert len(sent) == 2 and all(len(item) == 6 for item in sent.values())
    first = sent[min(sent)]
    assert base64.b64decode(first[5], validate=True) == pack_frames(videos[0])
    assert all(len(item) == 5 for raw in pages for item in wire_entries(raw, "pdq"))
    mirrored = stored(subscriber, "ncc:l")
    assert mirrored == stored(origin, "l")
    assert mirrored["V0"][2] == pack_frames(videos[0])  # byte for byte
    assert mirrored["R0"][2] is None
    assert digests_equal(origin, subscriber)

    # The mirror's video is matchable: its frames are in the PDQ index.
    state = MatchState.build(subscriber.entries.live_rows())
    state.set_lists(subscriber.lists.all())
    entry_id = next(e.id for e in subscriber.entries.listed("ncc:l") if e.reference == "V0")
    assert state.videos.get(entry_id) is not None
    (hits,) = state.match([Hash(PDQ, videos[0][7].pdq)])
    found = [h for h in hits if h.entry_id == entry_id]
    assert found and found[0].listed_time is not None

    origin.withdrawals.withdraw("l", actor="t", reason="x", references=["V0"])
    sync(origin, subscriber)
    assert set(stored(subscriber, "ncc:l")) == {"R0", "R1", "R2", "R3", "R4", "V1"}
    assert digests_equal(origin, subscriber)
    state = MatchState.build(subscriber.entries.live_rows())
    assert state.videos.get(entry_id) is None


def _frames_item(raw: dict[str, Any]) -> list[Any]:
    """The page's first video entry (the snapshot's: the import's change sends it again)."""
    return wire_entries(raw, VPDQ)[0]


def _tamper(raw: dict[str, Any]) -> None:
    item = _frames_item(raw)
    packed = bytearray(base64.b64decode(item[5]))
    packed[-5] ^= 0x01  # a bit of the last frame's PDQ: still frames, not these frames
    item[5] = encode_frames(bytes(packed))


def _truncate(raw: dict[str, Any]) -> None:
    item = _frames_item(raw)
    item[5] = encode_frames(base64.b64decode(item[5])[:-7])


def _frames_on_an_image(raw: dict[str, Any]) -> None:
    wire_entries(raw, "pdq")[0].append(_frames_item(raw)[5])


def _no_frames(raw: dict[str, Any]) -> None:
    _frames_item(raw).pop()


def _not_base64(raw: dict[str, Any]) -> None:
    item = _frames_item(raw)
    item[5] = item[5][:40] + "\n" + item[5][40:]


def _frames_of_another_video(raw: dict[str, Any]) -> None:
    _frames_item(raw)[5] = encode_frames(pack_frames(frames_of(10, seed=99)))


BAD_PAGES: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "tampered frames": (_tamper, "hash"),
    "truncated frames": (_truncate, "frames"),
    "frames on a pdq entry": (_frames_on_an_image, "pdq entry"),
    "a vpdq entry without frames": (_no_frames, "vpdq entry"),
    "frames not strict base64": (_not_base64, "base64"),
    "another video's frames": (_frames_of_another_video, "hash"),
}


@pytest.mark.parametrize("breakage", sorted(BAD_PAGES))
def test_a_page_with_bad_frames_is_refused_whole(pair: tuple[Store, Store], breakage: str) -> None:
    origin, subscriber = pair
    shared(origin)
    origin.entries.import_rows("l", image_rows(random_hexes(3, seed=4)), actor="t")
    origin.entries.import_rows("l", [video_row(1, frames_of(60, seed=5), "V")], actor="t")
    raw = fetch(origin, subscriber)
    # Unbroken, the page is good.
    parse_page(orjson.loads(orjson.dumps(raw)), DEFAULT_BOUNDS, limit=100, own_instance="kcsc")
    breaks, says = BAD_PAGES[breakage]
    breaks(raw)
    with pytest.raises(PeerRefused, match=says) as refused:
        parse_page(raw, DEFAULT_BOUNDS, limit=100, own_instance="kcsc")
    assert "events[" in refused.value.message  # it says where
    assert subscriber.peers.get("ncc").cursor == ""
    assert subscriber.mirrors.of_peer("ncc") == []


def test_pages_are_bounded_by_frame_bytes_and_the_cursor_stays_exact(
    pair: tuple[Store, Store],
) -> None:
    origin, subscriber = pair
    shared(origin)
    videos = [frames_of(200 + 10 * i, seed=10 + i) for i in range(9)]
    sizes = [len(pack_frames(f)) for f in videos]
    # Images and videos interleaved across imports, so pages cut inside changes and between.
    for i in range(0, 9, 3):
        origin.entries.import_rows(
            "l", image_rows(random_hexes(4, seed=20 + i), prefix=f"I{i}-"), actor="t"
        )
        origin.entries.import_rows(
            "l", [video_row(j, videos[j], f"V{j}") for j in range(i, i + 3)], actor="t"
        )
    budget = 2 * max(sizes) + 100  # two videos a page, never three
    pages = sync(origin, subscriber, limit=MAX_PAGE_ENTRIES, frame_bytes=budget)
    per_page = [
        sum(len(base64.b64decode(item[5])) for item in wire_entries(raw, VPDQ)) for raw in pages
    ]
    assert len(pages) >= 5 and all(0 < size <= budget for size in per_page[:-1])
    assert sorted(len(wire_entries(raw, VPDQ)) for raw in pages)[-1] == 2
    assert stored(subscriber, "ncc:l") == stored(origin, "l")
    assert digests_equal(origin, subscriber)

    # A budget under one video: still one entry a page, never none.
    subscriber.peers.resync("ncc", actor="t")
    pages = sync(origin, subscriber, limit=MAX_PAGE_ENTRIES, frame_bytes=min(sizes) // 2)
    assert all(len(wire_entries(raw, VPDQ)) <= 1 for raw in pages)
    assert len({item[0] for raw in pages for item in wire_entries(raw, VPDQ)}) == 9
    assert stored(subscriber, "ncc:l") == stored(origin, "l")
    assert digests_equal(origin, subscriber)


def test_a_page_of_long_videos_stays_under_the_subscriber_cap(tmp_path: Path) -> None:
    """At the real budget: a list of the longest videos is split by bytes, every page under
    what a subscriber accepts, and the longest video there can be fits a page on its own."""
    origin = Store.open(f"sqlite:///{tmp_path / 'origin.db'}", instance="ncc")
    subscriber = Store.open(f"sqlite:///{tmp_path / 'sub.db'}", instance="kcsc")
    subscriber.peers.add(
        "ncc", url="http://127.0.0.1:1", secret="hm_x", organisation="kcsc", actor="t"
    )
    shared(origin, accept=False)  # accepted once filled: one snapshot, each video once
    frames = frames_of(MAX_FRAMES, seed=30)
    size = len(pack_frames(frames))
    count = MAX_PAGE_FRAME_BYTES // size + 2
    rng = np.random.default_rng(31)
    rows = []
    for i in range(count):
        # Distinct videos, cheaply: each with a first frame of its own.
        first = FrameHash(0, 0.0, rng.integers(0, 256, 32, dtype=np.uint8).tobytes(), 100)
        rows.append(video_row(i + 1, [first, *frames[1:]], f"V{i}"))
    origin.entries.import_rows("l", rows, actor="t")
    origin.lists.answer_offer("l", "kcsc", actor="t", accept=True)
    pages = []
    while True:
        info = subscriber.peers.get("ncc")
        sent = origin.feed.page("kcsc", FeedCursor.parse(info.cursor), MAX_PAGE_ENTRIES, "kcsc")
        body = orjson.dumps(sent.as_dict())
        parsed = parse_page(
            orjson.loads(body), DEFAULT_BOUNDS, limit=MAX_PAGE_ENTRIES, own_instance="kcsc"
        )
        assert subscriber.mirrors.apply(subscriber.peers.get("ncc"), parsed).applied
        pages.append(
            (len(body), sum(len(e.frames or b"") for ev in parsed.events for e in ev.added))
        )
        if not parsed.more:
            break
    assert len(pages) == 2
    assert all(
        length < MAX_PAGE_BYTES and frames <= MAX_PAGE_FRAME_BYTES for length, frames in pages
    )
    assert stored(subscriber, "ncc:l") == stored(origin, "l")
    assert digests_equal(origin, subscriber)
    # The longest video there can be, alone, fits what a subscriber accepts.
    longest = len(encode_frames(bytes(1 + RECORD.itemsize * MAX_FRAMES)))
    assert longest <= MAX_PAGE_FRAME_BYTES * 4 // 3 < MAX_PAGE_BYTES - 10 * 1024 * 1024
    origin.close()
    subscriber.close()


def test_a_folder_carries_videos_as_a_feed_does(tmp_path: Path) -> None:
    """The folder source takes a video row's frames as the hash-set reader gives them
    (JSON lines with Meta's text form), and pages them by bytes; a video whose frames do not
    hash to the digest it names is refused with its file and line."""
    folder = tmp_path / "drop"
    folder.mkdir()
    store = Store.open(f"sqlite:///{tmp_path / 'sub.db'}", instance="kcsc")
    store.peers.add("hotline", url=folder.as_uri(), secret="-", organisation="kcsc", actor="t")
    videos = [frames_of(100, seed=40 + i) for i in range(4)]
    size = len(pack_frames(videos[0]))
    source = FolderSource("hotline", folder, bounds=DEFAULT_BOUNDS, frame_bytes=size + 10)
    lines = [
        {"algorithm": "pdq", "hash": random_hexes(1, seed=41)[0], "reference": "I0"},
        *(
            {"algorithm": VPDQ, "reference": f"V{i}", "frames": format_frames(f)}
            for i, f in enumerate(videos)
        ),
    ]
    (folder / "vids.jsonl").write_bytes(b"".join(orjson.dumps(x) + b"\n" for x in lines))
    pages = 0
    while True:
        page = source.fetch(store.peers.get("hotline").cursor, 100, 0.0)
        added = [e for ev in page.events for e in ev.added]
        assert sum(len(e.frames or b"") for e in added) <= size + 10 or len(added) == 1
        assert store.mirrors.apply(store.peers.get("hotline"), page).applied
        pages += 1
        if not page.more:
            break
    assert pages == 4
    mirrored = stored(store, "hotline:vids")
    assert {r: f for r, (_, _, f) in mirrored.items()} == {
        "I0": None,
        **{f"V{i}": pack_frames(f) for i, f in enumerate(videos)},
    }
    mirror = store.lists.get("hotline:vids")
    assert local_digest(store, mirror.id) == source.digest("vids")
    # A digest that is not the frames': the file is refused whole, naming the line.
    lines[2]["hash"] = frames_digest(videos[0]).hex()
    (folder / "vids.jsonl").write_bytes(b"".join(orjson.dumps(x) + b"\n" for x in lines))
    source.close()
    with pytest.raises(PeerRefused, match="line 3"):
        source.fetch(store.peers.get("hotline").cursor, 100, 0.0)
    store.close()


def test_the_subscriber_check_is_unpacking_and_digesting() -> None:
    """:func:`check_frames` validates the blob as ``unpack_frames`` does and digests the blob
    itself: the same answer as ``frames_digest(unpack_frames(blob))``, since a valid blob is
    exactly the packed form of its frames (times at 29.97 fps included)."""
    rng = np.random.default_rng(50)
    frames = [
        FrameHash(i, round(i * 1001 / 30000, 3), rng.bytes(32), int(rng.integers(0, 101)))
        for i in range(0, 3000, 7)
    ]
    packed = pack_frames(frames)
    value = Hash(signals.get(VPDQ), frames_digest(unpack_frames(packed)))
    assert pack_frames(unpack_frames(packed)) == packed
    assert check_frames(value, packed, "x") == packed
    with pytest.raises(PeerRefused, match="version"):
        check_frames(value, b"\x02" + packed[1:], "x")
    swapped = bytearray(packed)
    swapped[1 : 1 + RECORD.itemsize], swapped[1 + RECORD.itemsize : 1 + 2 * RECORD.itemsize] = (
        packed[1 + RECORD.itemsize : 1 + 2 * RECORD.itemsize],
        packed[1 : 1 + RECORD.itemsize],
    )
    with pytest.raises(PeerRefused, match="increase"):
        check_frames(value, bytes(swapped), "x")
