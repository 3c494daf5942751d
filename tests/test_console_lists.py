"""The console's list page: details (edited by analysts, sharing by admins), entries page by
page with a search that answers exactly what a brute-force filter does on SQLite and
PostgreSQL (whatever PostgreSQL's collation), withdrawing selected entries after a
confirmation (and so out of matching), exports, and nothing of another organisation's."""

from __future__ import annotations

import csv
import html
import io
import json
import random
import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from sqlalchemy import create_engine, text, update

from conftest import random_hexes
from console import csrf_of, staff_client
from dbs import BACKENDS, POSTGRES_ADMIN_URL
from hashmatch.console.pages import lists as lists_page
from hashmatch.errors import InvalidField
from hashmatch.hashsets.read import HashRow
from hashmatch.hashsets.write import ExportWriter, Format
from hashmatch.signals import Hash, get
from hashmatch.store import EntryRow, Role, StaffRole, Store
from hashmatch.store.browse import EntryDetail, SearchPage, hash_prefix_ranges
from hashmatch.store.schema import lists
from services import Service, running_service

SCRIPT = "<script>alert(1)</script>"
ATTRIBUTE = '"><img src=x onerror=alert(1)>'
ROW_ID = re.compile(r'<th scope="row" class="num">(\d+)</th>')


@pytest.fixture(params=BACKENDS)
def service(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Service]:
    with running_service(request.param, tmp_path) as running:
        yield running


@pytest.fixture
def sqlite_service(tmp_path: Path) -> Iterator[Service]:
    with running_service("sqlite", tmp_path) as running:
        yield running


def page_ids(page: str) -> list[int]:
    return [int(i) for i in ROW_ID.findall(page)]


def link(page: str, rel: str) -> str | None:
    found = re.search(rf'<a href="([^"]*)" rel="{rel}">', page)
    return None if found is None else html.unescape(found.group(1))


def ok(response: httpx.Response, status: int = 200) -> str:
    assert response.status_code == status, response.text[:2000]
    return response.text


# --- the search, against a brute-force oracle -------------------------------------------------

ALPHABET = ["a", "A", "b", "B", "z", "Z", "0", "9", "_", "%", "-", ".", " ", "é", "É", "ß"]
ALPHABET += ["中", "文", "😀", "\uffff", "ｚ"]
LABELS = ["urgent", "Urgent", "case_1", "50%", "ラベル", "é"]
ALGORITHMS = ["pdq", "phash", "md5", "sha256"]


def random_rows(count: int, seed: int) -> list[HashRow]:
    rng = random.Random(seed)
    prefixes = [rng.randbytes(4) for _ in range(5)]
    rows = []
    for line in range(1, count + 1):
        algorithm = get(rng.choice(ALGORITHMS))
        start = rng.choice(prefixes) if rng.random() < 0.5 else b""
        value = start + rng.randbytes(algorithm.nbytes - len(start))
        if rng.random() < 0.1:
            reference = None
        else:
            stem = rng.choice(["", "", "ref_", "Ref%", "ref", "中文", "😀"])
            reference = stem + "".join(rng.choice(ALPHABET) for _ in range(rng.randrange(0, 6)))
        labels = tuple(rng.sample(LABELS, rng.randrange(0, 3)))
        rows.append(HashRow(line, Hash(algorithm, value), reference, labels))
    return rows


def fill(store: Store, name: str, count: int = 300, seed: int = 1) -> list[EntryRow]:
    """``count`` random entries in a new list, a tenth of them withdrawn; every entry back as
    stored (references stripped, blanks as None)."""
    store.lists.create(name, owner="kcsc", category="ncii", actor="test")
    rows = random_rows(count, seed)
    store.entries.import_rows(name, rows, actor="test")
    gone = [row.hash for row in random.Random(seed).sample(rows, count // 10)]
    store.withdrawals.withdraw(name, actor="test", reason="test", hashes=gone)
    return list(store.entries.listed(name, include_withdrawn=True))


def queries(universe: list[EntryRow], seed: int) -> Iterator[dict[str, Any]]:
    rng = random.Random(seed)
    references = sorted({e.reference for e in universe if e.reference})
    for prefix in ["a", "A", "_", "%", "é", "É", "中", "😀", "ref_", "Ref%", "ref", "nothing"]:
        yield {"reference_prefix": prefix}
    for reference in rng.sample(references, 8):
        yield {"reference_prefix": reference[: rng.randrange(1, len(reference) + 1)]}
        yield {"reference": reference}
    for entry in rng.sample(universe, 6):
        digits = entry.hash.hex
        yield {"hash_hex_prefix": digits[:8]}
        yield {"hash_hex_prefix": digits[:9].upper()}
        yield {"hash_hex_prefix": digits}
        yield {"hash_hex_prefix": f"{entry.hash.algorithm.name}:{digits[:11]}"}
    yield {"hash_hex_prefix": "ffffffff"}
    for label in [*LABELS, "URGENT", "nothing"]:
        yield {"label": label}
    yield {"label": "urgent", "reference_prefix": "ref"}
    yield {}


def oracle(universe: list[EntryRow], query: dict[str, Any], withdrawn: bool) -> list[int]:
    """What a search must answer, in its order, by brute force over every entry."""

    def wanted(e: EntryRow) -> bool:
        if not withdrawn and e.withdrawn_at is not None:
            return False
        if "label" in query and query["label"] not in e.labels:
            return False
        if "reference" in query and e.reference != query["reference"]:
            return False
        prefix = query.get("reference_prefix")
        if prefix is not None and not (e.reference or "").startswith(prefix):
            return False
        given = query.get("hash_hex_prefix")
        if given is not None:
            name, _, digits = given.lower().rpartition(":")
            if name and e.hash.algorithm.name != name:
                return False
            return e.hash.hex.startswith(digits)
        return True

    found = [e for e in universe if wanted(e)]
    if "hash_hex_prefix" in query:
        found.sort(key=lambda e: (e.hash.algorithm.name, e.hash.value, e.id))
    elif "reference" in query or "reference_prefix" in query:
        found.sort(key=lambda e: (e.reference or "", e.id))
    else:
        found.sort(key=lambda e: e.id)
    return [e.id for e in found]


def walk(search: Callable[..., list[EntryDetail]], limit: int) -> tuple[list[int], list[int]]:
    """Every page forwards from the start, then backwards from the last entry."""
    forwards: list[int] = []
    page = search(limit=limit)
    while page:
        assert len(page) <= limit
        forwards += [e.id for e in page]
        page = search(after_id=page[-1].id, limit=limit)
    if not forwards:
        return forwards, []
    backwards = [forwards[-1]]
    page = search(before_id=forwards[-1], limit=limit)
    while page:
        backwards[:0] = [e.id for e in page]
        page = search(before_id=page[0].id, limit=limit)
    return forwards, backwards


def check_against_oracle(store: Store, name: str, universe: list[EntryRow]) -> int:
    checked = 0
    for query in queries(universe, seed=2):
        for withdrawn in (False, True):

            def search(
                query: dict[str, Any] = query, withdrawn: bool = withdrawn, **page: Any
            ) -> list[EntryDetail]:
                found = store.browse.search(name, **query, include_withdrawn=withdrawn, **page)
                assert found.scanned_to is None  # a small list: within one label window
                return found.rows

            expected = oracle(universe, query, withdrawn)
            forwards, backwards = walk(search, limit=23)
            assert forwards == expected, (query, withdrawn)
            assert backwards == expected, (query, withdrawn)
            checked += bool(expected)
    return checked


def test_search_answers_what_a_brute_force_filter_does(service: Service) -> None:
    universe = fill(service.store, "l")
    assert any(e.withdrawn_at for e in universe) and any(e.reference is None for e in universe)
    # Most queries find something: the oracle is not vacuously agreeing on empty answers.
    assert check_against_oracle(service.store, "l", universe) > 60
    # A label search pages too, and another list's entries never show up.
    fill(service.store, "other", count=50, seed=3)
    assert all(e.list_id == universe[0].list_id for e in service.store.browse.search("l").rows)


def test_search_agrees_under_a_linguistic_postgresql_collation(tmp_path: Path) -> None:
    """In an ICU ("en") database text sorts as people read it ('a' < 'B' < 'b'), not by code
    point: a plain range on ``reference`` there is not a prefix. The search still answers
    exactly what the oracle does (it compares ``COLLATE "C"``)."""
    name = f"hm_test_icu_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(
            text(
                f'CREATE DATABASE "{name}" TEMPLATE template0 LOCALE_PROVIDER icu '
                "ICU_LOCALE 'en' LOCALE 'C.utf8'"
            )
        )
    url = POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        store = Store.open(url)
        try:
            universe = fill(store, "l")
            with store.database.engine.connect() as conn:
                assert conn.execute(text("SELECT 'B' < 'a'")).scalar() is False  # not bytes
                list_id = universe[0].list_id
                naive = conn.execute(
                    text(
                        "SELECT count(*) FROM entries WHERE list_id = :l AND reference >= 'a'"
                        " AND reference < 'b'"
                    ),
                    {"l": list_id},
                ).scalar_one()
                assert store.browse._bytewise(conn) is False
            in_range = [e for e in universe if e.reference and "a" <= e.reference < "b"]
            assert naive != len(in_range)  # the database's own order would answer wrongly
            assert check_against_oracle(store, "l", universe) > 60
        finally:
            store.close()
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_the_test_databases_compare_text_as_bytes(service: Service) -> None:
    """The shared test databases take the indexed path (a plain range on ``reference``)."""
    with service.store.database.engine.connect() as conn:
        assert service.store.browse._bytewise(conn) is True


def test_hash_prefix_ranges() -> None:
    assert hash_prefix_ranges("PDQ:ABCDEF012")["pdq"] == (
        b"\xab\xcd\xef\x01\x20",
        b"\xab\xcd\xef\x01\x30",
    )
    assert hash_prefix_ranges("ffffffff")["md5"] == (b"\xff\xff\xff\xff", None)
    assert hash_prefix_ranges("0123456f")["phash"] == (b"\x01\x23\x45\x6f", b"\x01\x23\x45\x70")
    assert hash_prefix_ranges("012345ff")["phash"][1] == b"\x01\x23\x46"
    assert set(hash_prefix_ranges("0" * 17)) == {"pdq", "md5", "sha256", "vpdq"}  # not phash
    for bad in ("0123456", "0123456g", "nope:01234567", ""):
        with pytest.raises(InvalidField, match="hash"):
            hash_prefix_ranges(bad)


# --- a search by label alone reads a window of entries at a time ------------------------------

WINDOW = 7


def fill_interleaved(store: Store, name: str = "l") -> list[EntryRow]:
    """:func:`fill`'s list, imported in turns with another list's entries: the ids of its
    entries are not consecutive, so a window counted in ids rather than entries would show."""
    store.lists.create(name, owner="kcsc", category="ncii", actor="test")
    store.lists.create("between", owner="kcsc", category="ncii", actor="test")
    rows = random_rows(300, seed=1)
    others = random_rows(len(rows), seed=4)
    for start in range(0, len(rows), 10):
        store.entries.import_rows(name, rows[start : start + 10], actor="test")
        store.entries.import_rows("between", others[start : start + start % 7], actor="test")
    gone = [row.hash for row in random.Random(1).sample(rows, len(rows) // 10)]
    store.withdrawals.withdraw(name, actor="test", reason="test", hashes=gone)
    universe = list(store.entries.listed(name, include_withdrawn=True))
    ids = [e.id for e in universe]
    assert ids[-1] - ids[0] > len(ids)  # interleaved
    return universe


def scan_by_label(
    store: Store, universe: list[EntryRow], label: str, withdrawn: bool, forward: bool, limit: int
) -> tuple[list[int], list[int | None]]:
    """Every match of a search by label alone, ``WINDOW`` entries a request in one direction
    (from the list's first entry, or back from its last): each full page followed from its
    last entry, each short one from where it stopped reading. Returns the matches in id order
    and where each request stopped; checks that no request read past its window."""
    position = {e.id: n for n, e in enumerate(universe)}
    last = universe[-1]
    matches_last = label in last.labels and (withdrawn or last.withdrawn_at is None)
    found: list[int] = [] if forward or not matches_last else [last.id]
    stops: list[int | None] = []
    cursor: int | None = None if forward else last.id

    def read(entry_id: int) -> int:
        """Entries of the list from the cursor to ``entry_id``, in the scan's direction."""
        start = -1 if cursor is None else position[cursor]
        return position[entry_id] - start if forward else start - position[entry_id]

    while True:
        where: dict[str, Any] = {"after_id": cursor} if forward else {"before_id": cursor}
        page: SearchPage = store.browse.search(
            "l", label=label, include_withdrawn=withdrawn, limit=limit, label_window=WINDOW, **where
        )
        ids = [e.id for e in page.rows]
        assert ids == sorted(ids) and len(ids) <= limit
        assert all(0 < read(i) <= WINDOW for i in ids)
        if page.scanned_to is not None:
            assert len(ids) < limit and read(page.scanned_to) == WINDOW  # a whole window
        stops.append(page.scanned_to)
        found = found + ids if forward else ids + found
        if len(ids) == limit:
            cursor = ids[-1] if forward else ids[0]
        elif page.scanned_to is not None:
            cursor = page.scanned_to
        else:
            return found, stops


def test_a_label_search_reads_a_window_at_a_time(service: Service) -> None:
    store = service.store
    universe = fill_interleaved(store)
    count = len(universe)
    stopped_short = 0
    for label in [*LABELS, "nothing"]:
        for withdrawn in (False, True):
            expected = oracle(universe, {"label": label}, withdrawn)
            for forward in (True, False):
                for limit in (1, 5):
                    found, stops = scan_by_label(store, universe, label, withdrawn, forward, limit)
                    # Every match once, in id order, whichever way the list was read.
                    assert found == expected, (label, withdrawn, forward, limit)
                    stopped_short += sum(stop is not None for stop in stops)
    assert stopped_short > 100  # most requests stopped at their window's end
    # A label that matches nothing: a window per request, and where it stopped, to the end.
    nothing, stops = scan_by_label(store, universe, "nothing", True, True, 50)
    assert nothing == [] and len(stops) == -(-count // WINDOW)
    assert stops[-1] is None and all(stop is not None for stop in stops[:-1])
    assert stops[:-1] == [e.id for e in universe[WINDOW - 1 :: WINDOW]][: len(stops) - 1]
    # A list shorter than the window: read to its end at once, nothing said about stopping.
    whole = store.browse.search("l", label="nothing", label_window=count)
    assert whole.rows == [] and whole.scanned_to is None
    longer = store.browse.search("l", label="nothing", label_window=count - 1)
    assert longer.scanned_to == universe[-2].id
    # Every other kind of search reads on until it fills its page, label or not.
    others: list[dict[str, Any]] = [
        {"reference_prefix": "ref"},
        {"label": "urgent", "reference_prefix": "ref"},
    ]
    for query in others:
        page = store.browse.search("l", **query, include_withdrawn=True, limit=5, label_window=1)
        assert [e.id for e in page.rows] == oracle(universe, query, True)[:5]
        assert page.scanned_to is None
    with pytest.raises(InvalidField, match="label_window"):
        store.browse.search("l", label="urgent", label_window=0)


def further(page: str, which: str) -> str | None:
    found = re.search(rf'<a href="([^"]*)" id="{which}">', page)
    return None if found is None else html.unescape(found.group(1))


def test_the_page_searches_further_for_a_label(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A search by label alone, a window of 7 entries a request: following "Next page" and
    "Search further" from the first page, then "Previous page" and "Search further back"
    from the last, shows every match once; every page's link the other way leads to the
    matches next to it; a label that matches nothing says how far it read on every page."""
    monkeypatch.setattr(lists_page, "LABEL_SCAN_WINDOW", WINDOW)
    universe = fill_interleaved(service.store)
    client = staff_client(service, "kcsc", "ann", StaffRole.VIEWER)
    checked = 0
    for label, withdrawn in (("urgent", False), ("é", True), ("case_1", False), ("nothing", False)):
        expected = oracle(universe, {"label": label}, withdrawn)
        query = {"label": label, **({"withdrawn": "1"} if withdrawn else {})}
        target: str | None = f"/console/lists/l?{urlencode(query)}"
        forwards: list[int] = []
        pages = 0
        while target is not None:
            page = ok(client.get(target))
            pages += 1
            forwards += page_ids(page)
            if further(page, "search-further"):
                assert "No more matches among the entries searched so far." in page
                assert link(page, "next") is None and 'role="status"' in page
            # The page before this one ends with the last match at or before its cursor.
            after = cursor_of(target, "after")
            ahead = [m for m in expected if after is not None and m <= after]
            back = link(page, "prev")
            assert back is not None or not ahead, target  # shown too when a probe stopped short
            if back is not None:
                shown = page_ids(ok(client.get(back)))
                assert shown == ahead[len(ahead) - len(shown) :], (target, back)
                checked += bool(shown)
            target = link(page, "next") or further(page, "search-further")
        assert forwards == expected, label
        if label == "nothing":
            assert pages == -(-len(universe) // WINDOW)
        backwards = page_ids(page)
        while (target := link(page, "prev") or further(page, "search-further-back")) is not None:
            page = ok(client.get(target))
            backwards[:0] = page_ids(page)
            # The page after this one starts with the first match at or after its cursor.
            before = cursor_of(target, "before")
            assert before is not None
            behind = [m for m in expected if m >= before]
            on = link(page, "next")
            assert on is not None or not behind, target
            if on is not None:
                shown = page_ids(ok(client.get(on)))
                assert shown == behind[: len(shown)], (target, on)
                checked += bool(shown)
        assert backwards == expected, label
    assert checked > 50
    first = ok(client.get("/console/lists/l?label=nothing"))
    assert "at most 7 at a time" in first and "No entries to show." not in first
    assert further(first, "search-further") == (
        f"/console/lists/l?label=nothing&after={universe[WINDOW - 1].id}#entries"
    )


def cursor_of(url: str, name: str) -> int | None:
    values = parse_qs(urlsplit(url).query).get(name)
    return None if values is None else int(values[0])


# --- the page -------------------------------------------------------------------------------


def owner_with_list(service: Service, name: str = "l", **extra: Any) -> dict[str, str]:
    key = service.key("kcsc", Role.ADMIN, Role.MATCH)
    service.create_list(key, name, **extra)
    return key


def test_pages_return_every_entry_once_in_both_directions(service: Service) -> None:
    key = owner_with_list(service)
    hexes = random_hexes(130, seed=11)
    service.add(key, "l", *[("pdq", h, f"case-{i % 40:03d}") for i, h in enumerate(hexes)])
    service.add(key, "l", *[("pdq", h, f"other-{i}") for i, h in enumerate(random_hexes(20))])
    service.store.withdrawals.withdraw("l", actor="t", reason="r", references=["case-007"])
    universe = list(service.store.entries.listed("l", include_withdrawn=True))
    expected = oracle(universe, {"reference_prefix": "case-"}, withdrawn=True)
    assert len(expected) == 130
    client = staff_client(service, "kcsc", "ann", StaffRole.VIEWER)

    first = ok(client.get("/console/lists/l?reference=case-&withdrawn=1"))
    assert link(first, "prev") is None
    forwards, page = page_ids(first), first
    while (target := link(page, "next")) is not None:
        page = ok(client.get(target))
        forwards += page_ids(page)
    assert forwards == expected  # every entry once, in (reference, id) order
    backwards = page_ids(page)
    while (target := link(page, "prev")) is not None:
        page = ok(client.get(target))
        backwards[:0] = page_ids(page)
    assert backwards == expected
    # Without the withdrawn ones, by id, with no filter: 50 a page.
    plain = ok(client.get("/console/lists/l"))
    assert page_ids(plain) == [e.id for e in universe if e.withdrawn_at is None][:50]
    assert 'name="entry"' not in plain and "Withdraw selected" not in plain  # viewers: no
    # A bad hash search says why, on the page.
    bad = client.get("/console/lists/l?hash=abc")
    assert bad.status_code == 422 and 'role="alert"' in bad.text and "8" in bad.text


def test_editing_details_is_audited_and_a_threshold_over_the_bound_refused(
    service: Service,
) -> None:
    owner_with_list(service, description="before")
    ann = staff_client(service, "kcsc", "ann", StaffRole.ANALYST)
    page = ok(ann.get("/console/lists/l"))
    assert 'name="shared_with"' not in page  # sharing is the admins'
    assert "0 to 51" in page and "0 to 7" in page  # the instance's bounds, shown
    form = {"csrf": csrf_of(page), "description": "a new\r\ndescription", "source": "hotline"}
    form |= {"enabled": "false", "threshold-pdq": "40", "threshold-phash": "6"}
    saved = ann.post("/console/lists/l", data=form, follow_redirects=False)
    assert saved.status_code == 303 and saved.headers["location"] == "/console/lists/l?saved=1"
    info = service.store.lists.get("l")
    assert (info.description, info.source, info.enabled) == ("a new\ndescription", "hotline", False)
    assert info.thresholds["pdq"] == 40
    row = service.store.audit.log("l")[0]
    assert (row["action"], row["actor"]) == ("list.update", "user:ann:kcsc")
    assert row["details"]["old"] == {
        "description": "before",
        "enabled": True,
        "source": "",
        "thresholds": {**row["details"]["old"]["thresholds"], "pdq": 31},
    }
    assert row["details"]["new"]["thresholds"]["pdq"] == 40

    too_far = ann.post("/console/lists/l", data={**form, "threshold-pdq": "52"})
    assert too_far.status_code == 422
    assert "must be an integer from 0 to 51" in too_far.text and 'role="alert"' in too_far.text
    assert 'value="52"' in too_far.text  # what was typed stays in the form
    assert service.store.lists.get("l") == info
    assert len(service.store.audit.log("l")) == 2  # list.create and the one update

    offer = ann.post("/console/lists/l", data={**form, "shared_with": "ncc"})
    assert offer.status_code == 403 and service.store.lists.get("l").shared_with == ()
    csrf_less = ann.post("/console/lists/l", data={k: v for k, v in form.items() if k != "csrf"})
    assert csrf_less.status_code == 403

    boss = staff_client(service, "kcsc", "boss", StaffRole.ADMIN)
    page = ok(boss.get("/console/lists/l"))
    shared = boss.post(
        "/console/lists/l",
        data={"csrf": csrf_of(page), "shared_with": "ncc, NCMEC", "tlp": "RED"},
        follow_redirects=False,
    )
    assert shared.status_code == 303
    info = service.store.lists.get("l")
    assert (info.shared_with, info.tlp) == (("ncc", "ncmec"), "RED")
    assert service.store.audit.log("l")[0]["actor"] == "user:boss:kcsc"
    viewer = staff_client(service, "kcsc", "vic", StaffRole.VIEWER)
    refused = viewer.post("/console/lists/l", data={"csrf": csrf_of(page), "source": "x"})
    assert refused.status_code == 403 and service.store.lists.get("l").source == "hotline"


def test_withdrawing_selected_entries_stops_them_matching(service: Service) -> None:
    key = owner_with_list(service)
    values = random_hexes(4, seed=21)
    service.add(key, "l", *[("pdq", v, f"case-{i}") for i, v in enumerate(values)])
    service.follow()

    def matches(value: str) -> bool:
        query = {"hashes": [{"algorithm": "pdq", "value": value}]}
        answer = service.post("/v1/match/hashes", key, json=query)
        return bool(answer.json()["match"])

    assert all(matches(v) for v in values)
    ids = {e.reference: e.id for e in service.store.entries.listed("l")}
    ann = staff_client(service, "kcsc", "ann", StaffRole.ANALYST)
    page = ok(ann.get("/console/lists/l"))
    assert f'name="entry" value="{ids["case-0"]}"' in page and "Withdraw selected" in page
    assert 'href="/console/lists/l/upload"' in page

    chosen = f"entry={ids['case-0']}&entry={ids['case-2']}"
    confirm = ok(ann.get(f"/console/lists/l/withdraw?{chosen}"))
    assert (
        "These 2 entries will stop matching on every platform and at every partner that "
        "mirrors this list." in confirm
    )
    assert page_ids(confirm) == [ids["case-0"], ids["case-2"]]
    assert "case-0" in confirm and "case-2" in confirm and "case-1" not in confirm
    assert values[0][:16] in confirm and f'title="{values[2]}"' in confirm
    for reason_class in ("victim_request", "listed_in_error", "legal", "expired", "other"):
        assert f'value="{reason_class}"' in confirm
    assert not any(e.withdrawn_at for e in service.store.entries.listed("l"))  # shown only

    form = {"csrf": csrf_of(confirm), "entry": [str(ids["case-0"]), str(ids["case-2"])]}
    form |= {"reason_class": "victim_request"}
    no_reason = ann.post("/console/lists/l/withdraw", data={**form, "reason": "  "})
    assert no_reason.status_code == 422 and 'role="alert"' in no_reason.text
    no_csrf = ann.post(
        "/console/lists/l/withdraw",
        data={k: v for k, v in form.items() if k != "csrf"} | {"reason": "victim asked"},
    )
    assert no_csrf.status_code == 403
    viewer = staff_client(service, "kcsc", "vic", StaffRole.VIEWER)
    assert viewer.get(f"/console/lists/l/withdraw?{chosen}").status_code == 403
    viewer_post = viewer.post("/console/lists/l/withdraw", data={**form, "reason": "x"})
    assert viewer_post.status_code == 403
    assert len(list(service.store.entries.listed("l"))) == 4  # nothing withdrawn yet

    done = ann.post(
        "/console/lists/l/withdraw",
        data={**form, "reason": "victim asked"},
        follow_redirects=False,
    )
    assert done.status_code == 303
    assert done.headers["location"] == "/console/lists/l?withdrawn_count=2#entries"
    assert "2 entries were withdrawn" in ok(ann.get(done.headers["location"]))
    row = service.store.audit.log("l")[0]
    assert (row["action"], row["actor"], row["reason"]) == (
        "entries.withdraw",
        "user:ann:kcsc",
        "victim asked",
    )
    assert row["counts"]["withdrawn"] == 2
    gone = {e.reference: e for e in service.store.entries.listed("l", include_withdrawn=True)}
    assert gone["case-0"].withdrawn_at and gone["case-2"].withdrawn_at
    service.follow()
    assert [matches(v) for v in values] == [False, True, False, True]

    # Selecting them again: nothing live is left to withdraw, and nothing is.
    again = ann.get(f"/console/lists/l/withdraw?{chosen}")
    assert again.status_code == 422 and "2 selected entries are not live" in again.text
    shown = ok(ann.get("/console/lists/l?withdrawn=1"))
    assert "victim asked" in shown and "Victim's request" in shown


def test_another_organisation_sees_none_of_it(service: Service) -> None:
    key = owner_with_list(service, shared_with=["ncc"])
    service.add(key, "l", ("pdq", random_hexes(1, seed=31)[0], "case-1"))
    ncc_admin = service.key("ncc", Role.ADMIN)
    assert service.post("/v1/shares/l/accept", ncc_admin).status_code == 200
    entry = next(iter(service.store.entries.listed("l")))
    other = staff_client(service, "ncc", "nina", StaffRole.ADMIN)
    own_page = ok(other.get("/console/"))
    csrf = csrf_of(own_page)
    assert 'href="/console/lists/l"' not in own_page  # offered lists are not linked
    for path in (
        "/console/lists/l",
        f"/console/lists/l/withdraw?entry={entry.id}",
        "/console/lists/l/export?format=csv",
        "/console/lists/nosuch",
    ):
        assert other.get(path).status_code == 404, path
    for path, data in (
        ("/console/lists/l", {"csrf": csrf, "description": "mine now"}),
        ("/console/lists/l/withdraw", {"csrf": csrf, "entry": str(entry.id), "reason": "x"}),
    ):
        refused = other.post(path, data={**data, "reason_class": "other"})
        assert refused.status_code == 404, path
    assert service.store.lists.get("l").description == ""
    assert not any(
        e.withdrawn_at for e in service.store.entries.listed("l", include_withdrawn=True)
    )
    # Ids of another list's entries name nothing here.
    service.create_list(service.key("ncc", Role.ADMIN), "theirs")
    mine = ok(other.get("/console/lists/theirs"))
    assert "No entries to show." in mine
    stray = other.get(f"/console/lists/theirs/withdraw?entry={entry.id}")
    assert stray.status_code == 422 and "case-1" not in stray.text
    owner_page = ok(staff_client(service, "kcsc", "ann", StaffRole.VIEWER).get("/console/"))
    assert 'href="/console/lists/l"' in owner_page


def parse_csv(body: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(body)))


def test_export_streams_the_live_entries_on_the_record(service: Service) -> None:
    key = owner_with_list(service)
    hexes = random_hexes(2500, seed=41)  # over one export batch
    service.add(key, "l", *[("pdq", h, f"case-{i}") for i, h in enumerate(hexes)])
    service.add(key, "l", ("md5", "0" * 31 + "1", None))
    service.store.withdrawals.withdraw("l", actor="t", reason="r", references=["case-3"])
    live = list(service.store.entries.listed("l"))
    ann = staff_client(service, "kcsc", "ann", StaffRole.ANALYST)
    page = ok(ann.get("/console/lists/l"))
    assert 'href="/console/lists/l/export?format=csv"' in page
    assert 'href="/console/lists/l/export?format=jsonl"' in page
    bodies = {}
    for export_format in ("csv", "jsonl"):
        response = ann.get(f"/console/lists/l/export?format={export_format}")
        assert response.status_code == 200
        disposition = response.headers["content-disposition"]
        assert disposition == f'attachment; filename="l-entries.{export_format}"'
        expected = io.StringIO()
        writer = ExportWriter(expected, Format(export_format))
        for entry in live:
            writer.write(entry)
        assert response.text == expected.getvalue()
        bodies[export_format] = response.text
    rows = parse_csv(bodies["csv"])
    assert len(rows) == len(hexes) and "case-3" not in {r["reference"] for r in rows}
    lines = [json.loads(line) for line in bodies["jsonl"].splitlines()]
    assert len(lines) == len(hexes) and lines[-1]["algorithm"] == "md5"
    assert lines[-1]["reference"] is None and lines[0]["reference"] == "case-0"
    assert ok(ann.get("/console/lists/l/export")) == bodies["csv"]  # CSV unless told
    audit = [r for r in service.store.audit.log("l") if r["action"] == "entries.export"]
    assert [(r["actor"], r["counts"]["format"]) for r in reversed(audit)] == [
        ("user:ann:kcsc", "csv"),
        ("user:ann:kcsc", "jsonl"),
        ("user:ann:kcsc", "csv"),
    ]
    viewer = staff_client(service, "kcsc", "vic", StaffRole.VIEWER)
    assert viewer.get("/console/lists/l/export?format=csv").status_code == 403
    assert "export?format" not in ok(viewer.get("/console/lists/l"))


def test_text_from_the_database_is_escaped(sqlite_service: Service) -> None:
    service = sqlite_service
    key = owner_with_list(service, description=f"{SCRIPT} {ATTRIBUTE}")
    value = random_hexes(1, seed=51)[0]
    service.add(key, "l", ("pdq", value, f"{SCRIPT}{ATTRIBUTE}"))
    service.store.entries.import_rows(
        "l",
        [HashRow(1, Hash.from_hex("md5", "f" * 32), "x", (SCRIPT, ATTRIBUTE))],
        actor="t",
    )
    ann = staff_client(service, "kcsc", "ann", StaffRole.ANALYST)
    entry = next(e for e in service.store.entries.listed("l") if e.hash.hex == value)
    for path in (
        "/console/lists/l",
        "/console/lists/l?reference=%3Cscript%3E",
        f"/console/lists/l/withdraw?entry={entry.id}",
    ):
        page = ok(ann.get(path))
        assert SCRIPT not in page and ATTRIBUTE not in page, path
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page, path
        assert "&#34;&gt;&lt;img src=x onerror=alert(1)&gt;" in page, path
    # What is typed into the search comes back escaped too.
    typed = ok(ann.get("/console/lists/l", params={"label": ATTRIBUTE}))
    assert ATTRIBUTE not in typed and 'value="&#34;&gt;&lt;img' in typed
    assert page_ids(typed) == [
        e.id for e in service.store.entries.listed("l") if ATTRIBUTE in e.labels
    ]


def test_a_mirror_is_shown_read_only(sqlite_service: Service) -> None:
    service = sqlite_service
    owner_with_list(service)
    with service.store.database.engine.begin() as conn:
        conn.execute(update(lists).values(origin={"peer": "kr", "tlp": "AMBER"}))
    ann = staff_client(service, "kcsc", "ann", StaffRole.ANALYST)
    page = ok(ann.get("/console/lists/l"))
    assert (
        "read-only" in page
        and "/upload" not in page
        and 'method="post" action="/console/lists/l"' not in page
    )
    refused = ann.post("/console/lists/l", data={"csrf": csrf_of(page), "source": "x"})
    assert refused.status_code == 409 and service.store.lists.get("l").source == ""
