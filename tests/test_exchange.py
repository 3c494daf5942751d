"""The exchange between instances, store to store: a publisher's feed applied to a
subscriber's mirrors through the wire form, on SQLite and PostgreSQL.

Every page goes through JSON and :func:`parse_page`, as it would over HTTP; the two-process
version with faults on the wire is ``test_exchange_e2e.py``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from conftest import random_hexes
from dbs import BACKENDS, database
from hashmatch.errors import PeerRefused, ReadOnlyMirror
from hashmatch.exchange.fetcher import local_digest
from hashmatch.exchange.wire import FeedCursor, parse_page
from hashmatch.hashsets.read import entry_row
from hashmatch.matching.policy import DEFAULT_BOUNDS
from hashmatch.matching.state import MatchState
from hashmatch.signals import Hash
from hashmatch.store import Store


def rows(hexes: list[str], prefix: str = "R") -> list[Any]:
    return [entry_row(i, "pdq", h, f"{prefix}{i}", ["ncii"]) for i, h in enumerate(hexes)]


def fetch(origin: Store, subscriber: Store, *, limit: int = 7, peer: str = "ncc") -> dict[str, Any]:
    """One page from the origin for org kcsc, as bytes on the wire and back."""
    info = subscriber.peers.get(peer)
    page = origin.feed.page("kcsc", FeedCursor.parse(info.cursor), limit, subscriber.instance)
    decoded: dict[str, Any] = orjson.loads(orjson.dumps(page.as_dict()))
    return decoded


def sync(origin: Store, subscriber: Store, *, limit: int = 7) -> int:
    pages = 0
    while True:
        raw = fetch(origin, subscriber, limit=limit)
        page = parse_page(raw, DEFAULT_BOUNDS, limit=limit, own_instance="kcsc")
        assert subscriber.mirrors.apply(subscriber.peers.get("ncc"), page).applied
        pages += 1
        if not page.more:
            return pages


def live(store: Store, name: str) -> set[tuple[str, str | None]]:
    return {(e.hash.hex, e.reference) for e in store.entries.listed(name)}


def test_mirror_follows_origin_through_snapshot_adds_withdrawals_and_unsharing(
    pair: tuple[Store, Store],
) -> None:
    origin, subscriber = pair
    hexes = random_hexes(40, seed=1)
    origin.lists.create(
        "ncii-tw",
        owner="ncc",
        category="ncii",
        actor="t",
        shared_with=["kcsc"],
        tlp="GREEN",
        jurisdiction="TW",
    )
    origin.entries.import_rows("ncii-tw", rows(hexes[:20]), actor="t")
    origin.withdrawals.withdraw("ncii-tw", actor="t", reason="victim", references=["R3"])
    # Nothing is sent before the offer is accepted.
    assert fetch(origin, subscriber)["lists"] == []
    origin.lists.answer_offer("ncii-tw", "kcsc", actor="t", accept=True)
    origin.entries.import_rows("ncii-tw", rows(hexes[20:30], "S"), actor="t")
    origin.withdrawals.withdraw(
        "ncii-tw",
        actor="t",
        reason="private",
        references=["R5", "S1"],
        reason_class="victim_request",
    )
    assert sync(origin, subscriber) > 2  # several pages of 7
    assert live(subscriber, "ncc:ncii-tw") == live(origin, "ncii-tw")
    assert len(live(origin, "ncii-tw")) == 27
    mirror = subscriber.lists.get("ncc:ncii-tw")
    assert mirror.tlp == "GREEN" and mirror.owner == "kcsc" and mirror.origin is not None
    assert mirror.origin["origin_instance"] == "ncc" and mirror.origin["jurisdiction"] == "TW"
    # The withdrawal's free text stays at the origin; its class travels.
    withdrawn = [
        e
        for e in subscriber.entries.listed("ncc:ncii-tw", include_withdrawn=True)
        if e.withdrawn_at
    ]
    assert len(withdrawn) == 0  # withdrawn before they were sent: never mirrored at all
    origin.withdrawals.withdraw(
        "ncii-tw",
        actor="t",
        reason="named person",
        references=["R7"],
        reason_class="victim_request",
    )
    sync(origin, subscriber)
    assert live(subscriber, "ncc:ncii-tw") == live(origin, "ncii-tw")
    theirs = origin.feed.digest("kcsc", "ncii-tw")
    assert theirs is not None
    assert local_digest(subscriber, mirror.id) == {k: v for k, v in theirs.items() if k != "list"}
    # Unshared: the mirror stops matching; shared again: sent whole, equal again.
    origin.lists.answer_offer("ncii-tw", "kcsc", actor="t", accept=False)
    origin.withdrawals.withdraw("ncii-tw", actor="t", reason="x", references=["R8"])
    sync(origin, subscriber)
    assert live(subscriber, "ncc:ncii-tw") == set()
    assert not subscriber.lists.get("ncc:ncii-tw").enabled
    origin.lists.answer_offer("ncii-tw", "kcsc", actor="t", accept=True)
    sync(origin, subscriber)
    assert live(subscriber, "ncc:ncii-tw") == live(origin, "ncii-tw")
    assert subscriber.lists.get("ncc:ncii-tw").enabled


def test_a_resync_repairs_a_mirror_that_drifted(pair: tuple[Store, Store]) -> None:
    origin, subscriber = pair
    origin.lists.create("l", owner="ncc", category="ncii", actor="t", shared_with=["kcsc"])
    origin.lists.answer_offer("l", "kcsc", actor="t", accept=True)
    origin.entries.import_rows("l", rows(random_hexes(15, seed=2)), actor="t")
    sync(origin, subscriber)
    # Drift behind the exchange's back: a mirrored entry lost, a stray one gained.
    from sqlalchemy import delete, update

    from hashmatch.store.schema import entries

    mirror = subscriber.lists.get("ncc:l")
    with subscriber.database.write_transaction() as conn:
        conn.execute(
            delete(entries).where(entries.c.list_id == mirror.id, entries.c.reference == "R4")
        )
        conn.execute(
            update(entries)
            .where(entries.c.list_id == mirror.id, entries.c.reference == "R5")
            .values(origin_id=999_999)
        )
    assert live(subscriber, "ncc:l") != live(origin, "l")
    subscriber.peers.resync("ncc", actor="t")
    sync(origin, subscriber)
    assert live(subscriber, "ncc:l") == live(origin, "l")
    # Equal by origin id as well: the stray entry is withdrawn, not just shadowing R5.
    theirs = origin.feed.digest("kcsc", "l")
    assert theirs is not None
    assert local_digest(subscriber, mirror.id) == {k: v for k, v in theirs.items() if k != "list"}


def test_a_page_is_applied_once_and_only_if_it_answers_the_cursor(
    pair: tuple[Store, Store],
) -> None:
    origin, subscriber = pair
    origin.lists.create("l", owner="ncc", category="ncii", actor="t", shared_with=["kcsc"])
    origin.lists.answer_offer("l", "kcsc", actor="t", accept=True)
    origin.entries.import_rows("l", rows(random_hexes(5, seed=3)), actor="t")
    raw = fetch(origin, subscriber, limit=100)
    page = parse_page(raw, DEFAULT_BOUNDS, limit=100, own_instance="kcsc")
    assert subscriber.mirrors.apply(subscriber.peers.get("ncc"), page).applied
    # The same page again (a duplicated response): refused, nothing changes.
    report = subscriber.mirrors.apply(subscriber.peers.get("ncc"), page)
    assert not report.applied
    assert len(live(subscriber, "ncc:l")) == 5
    assert subscriber.peers.get("ncc").cursor == raw["cursor"]


BAD_PAGES = {
    "unknown algorithm": lambda p: p["events"][1].update(algorithm="photodna"),
    "malformed hash": lambda p: p["events"][1]["entries"][0].__setitem__(1, "zz" * 32),
    "threshold above the local bound": lambda p: p["events"][0]["meta"]["thresholds"].update(
        pdq=120
    ),
    "control character in a list name": lambda p: p["lists"].append("bad\x07name"),
    "more entries than asked": lambda p: p["events"][1]["entries"].extend(
        p["events"][1]["entries"] * 10
    ),
    "echo of our own list": lambda p: p["events"][0]["meta"].update(origin_instance="kcsc"),
    "unknown TLP label": lambda p: p["events"][0]["meta"].update(tlp="PURPLE"),
    "negative entry id": lambda p: p["events"][1]["entries"][0].__setitem__(0, -5),
    "time beyond any calendar": lambda p: p["events"][1]["entries"][0].__setitem__(4, 2**62),
    "labels not a list": lambda p: p["events"][1]["entries"][0].__setitem__(3, "x"),
}


@pytest.mark.parametrize("breakage", sorted(BAD_PAGES))
def test_a_bad_page_is_refused_whole(pair: tuple[Store, Store], breakage: str) -> None:
    origin, subscriber = pair
    origin.lists.create("l", owner="ncc", category="ncii", actor="t", shared_with=["kcsc"])
    origin.lists.answer_offer("l", "kcsc", actor="t", accept=True)
    origin.entries.import_rows("l", rows(random_hexes(6, seed=4)), actor="t")
    raw = fetch(origin, subscriber, limit=10)
    assert [e["type"] for e in raw["events"]][:2] == ["list", "add"]
    BAD_PAGES[breakage](raw)
    with pytest.raises(PeerRefused):
        parse_page(raw, DEFAULT_BOUNDS, limit=10, own_instance="kcsc")
    assert subscriber.peers.get("ncc").cursor == ""
    assert subscriber.mirrors.of_peer("ncc") == []


def test_tlp_rules_travel_with_the_list(pair: tuple[Store, Store], tmp_path: Path) -> None:
    origin, subscriber = pair
    for name, label in (
        ("red", "RED"),
        ("amber", "AMBER"),
        ("green", "GREEN"),
        ("strict", "AMBER+STRICT"),
    ):
        origin.lists.create(
            name, owner="ncc", category="ncii", actor="t", shared_with=["kcsc"], tlp=label
        )
        origin.lists.answer_offer(name, "kcsc", actor="t", accept=True)
        origin.entries.import_rows(name, rows(random_hexes(2, seed=len(name))), actor="t")
    sync(origin, subscriber, limit=100)
    # RED and AMBER+STRICT: matched only for kcsc itself, offered to nobody.
    for name in ("ncc:red", "ncc:strict"):
        with pytest.raises(ReadOnlyMirror):
            subscriber.lists.update(name, actor="t", shared_with=["platform-a"])
    # AMBER may reach kcsc's own platforms; GREEN too.
    for name in ("ncc:amber", "ncc:green"):
        subscriber.lists.update(name, actor="t", shared_with=["platform-a", "partner"])
        subscriber.lists.answer_offer(name, "platform-a", actor="t", accept=True)
        subscriber.lists.answer_offer(name, "partner", actor="t", accept=True)
    # Re-export: only GREEN reaches a third instance, under a name it can prefix.
    relay = subscriber.feed.page("partner", FeedCursor(), 100, "third").as_dict()
    assert relay["lists"] == ["ncc.green"]
    # Never echoed back to its origin, whatever its label.
    assert subscriber.feed.page("partner", FeedCursor(), 100, "ncc").as_dict()["lists"] == []
    # A label can be made stricter locally, never looser; stricter drops the offers.
    with pytest.raises(ReadOnlyMirror):
        subscriber.lists.update("ncc:amber", actor="t", tlp="GREEN")
    subscriber.lists.update("ncc:green", actor="t", tlp="RED")
    assert subscriber.lists.get("ncc:green").tlp == "RED"
    sync(origin, subscriber, limit=100)
    assert subscriber.lists.get("ncc:green").tlp == "RED"  # the origin's next page keeps it


def test_mirrors_are_read_only_and_thresholds_only_tighten(pair: tuple[Store, Store]) -> None:
    origin, subscriber = pair
    origin.lists.create(
        "l", owner="ncc", category="ncii", actor="t", shared_with=["kcsc"], thresholds={"pdq": 40}
    )
    origin.lists.answer_offer("l", "kcsc", actor="t", accept=True)
    hexes = random_hexes(3, seed=5)
    origin.entries.import_rows("l", rows(hexes), actor="t")
    sync(origin, subscriber)
    with pytest.raises(ReadOnlyMirror):
        subscriber.entries.import_rows("ncc:l", rows(random_hexes(1, seed=6)), actor="t")
    with pytest.raises(ReadOnlyMirror):
        subscriber.withdrawals.withdraw("ncc:l", actor="t", reason="x", references=["R0"])
    with pytest.raises(ReadOnlyMirror):
        subscriber.lists.update("ncc:l", actor="t", category="csam")
    subscriber.lists.update("ncc:l", actor="t", thresholds={"pdq": 20})
    assert subscriber.lists.get("ncc:l").thresholds["pdq"] == 20
    origin.lists.update("l", actor="t", thresholds={"pdq": 45})  # the origin loosens
    sync(origin, subscriber)
    assert subscriber.lists.get("ncc:l").thresholds["pdq"] == 20  # the local tightening holds
    subscriber.lists.update("ncc:l", actor="t", thresholds={"pdq": 50})  # asking for more
    assert subscriber.lists.get("ncc:l").thresholds["pdq"] == 45  # gets the origin's at most


def test_matches_on_a_mirror_report_their_origin(pair: tuple[Store, Store]) -> None:
    origin, subscriber = pair
    origin.lists.create(
        "l", owner="ncc", category="ncii", actor="t", shared_with=["kcsc"], jurisdiction="TW"
    )
    origin.lists.answer_offer("l", "kcsc", actor="t", accept=True)
    hexes = random_hexes(3, seed=7)
    origin.entries.import_rows("l", rows(hexes), actor="t")
    sync(origin, subscriber)
    state = MatchState.build(subscriber.entries.live_rows())
    state.set_lists(subscriber.lists.all())
    (hits,) = state.match([Hash.from_hex("pdq", hexes[1])])
    origin_ids = {e.reference: e.id for e in origin.entries.listed("l")}
    assert [h.origin for h in hits] == [
        {
            "instance": "ncc",
            "peer": "ncc",
            "list": "l",
            "owner": "ncc",
            "category": "ncii",
            "jurisdiction": "TW",
            "entry_id": origin_ids["R1"],
        }
    ]


def test_a_folder_of_files_is_a_source_of_whole_lists(tmp_path: Path) -> None:
    from hashmatch.exchange.folder import FolderSource

    folder = tmp_path / "drop"
    folder.mkdir()
    store = Store.open(f"sqlite:///{tmp_path / 'sub.db'}", instance="kcsc")
    store.peers.add("hotline", url=folder.as_uri(), secret="-", organisation="kcsc", actor="t")
    source = FolderSource("hotline", folder, bounds=DEFAULT_BOUNDS)

    def pull() -> None:
        while True:
            page = source.fetch(store.peers.get("hotline").cursor, 4, 0.0)
            assert store.mirrors.apply(store.peers.get("hotline"), page).applied
            if not page.more:
                return

    hexes = random_hexes(12, seed=9)
    (folder / "ncii-x.csv").write_text(
        "algorithm,hash,reference\n" + "".join(f"pdq,{h},F{i}\n" for i, h in enumerate(hexes[:9]))
    )
    (folder / "ncii-x.json").write_text('{"category": "ncii", "tlp": "RED", "jurisdiction": "KR"}')
    (folder / "empty.tx").write_text("")
    pull()
    assert {r for _, r in live(store, "hotline:ncii-x")} == {f"F{i}" for i in range(9)}
    mirror = store.lists.get("hotline:ncii-x")
    assert (mirror.tlp, mirror.category, mirror.jurisdiction) == ("RED", "ncii", "KR")
    assert live(store, "hotline:empty") == set()
    # A new version of the file: what it no longer holds is withdrawn, what it adds arrives.
    time.sleep(0.01)
    (folder / "ncii-x.csv").write_text(
        "algorithm,hash,reference\n"
        + "".join(f"pdq,{h},F{i}\n" for i, h in enumerate(hexes) if i % 3)
    )
    pull()
    assert {r for _, r in live(store, "hotline:ncii-x")} == {f"F{i}" for i in range(12) if i % 3}
    assert local_digest(store, mirror.id) == source.digest("ncii-x")
    # A bad line refuses the whole file, and nothing changes until it is fixed.
    time.sleep(0.01)
    (folder / "ncii-x.csv").write_text("algorithm,hash,reference\npdq,nothex,F99\n")
    with pytest.raises(PeerRefused, match="line 2"):
        source.fetch(store.peers.get("hotline").cursor, 4, 0.0)
    assert len(live(store, "hotline:ncii-x")) == 8
    # A file removed is a list unshared.
    (folder / "ncii-x.csv").unlink()
    pull()
    assert live(store, "hotline:ncii-x") == set()
    store.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_exactly_one_fetcher_runs_and_another_takes_over(backend: str, tmp_path: Path) -> None:
    from hashmatch.exchange.fetcher import Fetcher, FetcherSettings

    with database(backend, tmp_path) as url:
        # Three workers' worth of fetchers, each with its own engine, on one database.
        stores = [Store.open(url, instance="kcsc") for _ in range(3)]
        fetchers = [
            Fetcher(
                store,
                bounds=DEFAULT_BOUNDS,
                own_instance="kcsc",
                settings=FetcherSettings(lease_seconds=1.5),
            )
            for store in stores
        ]
        for fetcher in fetchers:
            fetcher.start()
        try:
            deadline = time.monotonic() + 10
            while sum(f.active for f in fetchers) != 1:
                assert time.monotonic() < deadline, "no fetcher took the lease"
                time.sleep(0.05)
            for _ in range(20):  # and it stays one
                assert sum(f.active for f in fetchers) == 1
                time.sleep(0.05)
            holder = next(f for f in fetchers if f.active)
            assert stores[0].leases.holder("exchange-fetcher") == holder.holder
            holder.stop()
            others = [f for f in fetchers if f is not holder]
            deadline = time.monotonic() + 10
            while sum(f.active for f in others) != 1:
                assert time.monotonic() < deadline, "nobody took over"
                time.sleep(0.05)
        finally:
            for fetcher in fetchers:
                fetcher.stop()
            for store in stores:
                store.close()
