"""The store on real SQLite and real PostgreSQL: lists, imports, withdrawals, logs."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

from conftest import random_hexes
from dbs import BACKENDS, database
from hashmatch.errors import Conflict, ImportRejected, InvalidList, NotFound, StoreError
from hashmatch.hashsets.read import HashRow, RowError, read_hash_set
from hashmatch.signals import MD5, Hash
from hashmatch.store import Store
from hashmatch.store.schema import metadata


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    with database(request.param, tmp_path) as url:
        opened = Store.open(url)
        try:
            yield opened
        finally:
            opened.close()


def csv_bytes(hexes: list[str], algorithm: str = "pdq", extra: str = "") -> bytes:
    body = "".join(f"{algorithm},{h},ref-{i},a;b\n" for i, h in enumerate(hexes))
    return ("algorithm,hash,reference,labels\n" + body + extra).encode()


def test_migrations_build_exactly_the_schema(store: Store) -> None:
    with store.database.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []


def test_reopening_applies_no_migration_twice(store: Store) -> None:
    store.lists.create("kept", owner="ncc", category="csam", actor="t")
    again = Store.open(store.database.engine.url.render_as_string(hide_password=False))
    assert [info.name for info in again.lists.all()] == ["kept"]
    again.close()


def test_create_list_and_its_checks(store: Store) -> None:
    info = store.lists.create(
        "ncii-tw",
        owner="ncc-tw",
        category="ncii",
        actor="alice",
        source="NCC",
        jurisdiction="TW",
        thresholds={"pdq": 20},
        shared_with=["kcsc-kr"],
    )
    assert info.thresholds == {
        "pdq": 20,
        "phash": 6,
        "vpdq": 31,  # a video's frames, and the two shares of frames a video match needs
        "vpdq_query_percent": 50,
        "vpdq_listed_percent": 0,
        "vpdq_contained_percent": 80,
    }
    assert info.owner == "ncc-tw" and info.shared_with == ("kcsc-kr",) and info.enabled
    with pytest.raises(Conflict):
        store.lists.create("ncii-tw", owner="x", category="ncii", actor="alice")
    with pytest.raises(InvalidList):
        store.lists.create("bad kind", owner="x", category="ncii", actor="a")
    with pytest.raises(InvalidList):
        store.lists.create("k", owner="x", category="ncii", actor="a", kind="maybe")
    with pytest.raises(InvalidList):
        store.lists.create("t", owner="x", category="ncii", actor="a", thresholds={"pdq": 200})
    with pytest.raises(InvalidList):
        store.lists.create("t", owner="x", category="ncii", actor="a", thresholds={"md5": 1})
    with pytest.raises(NotFound):
        store.lists.get("nope")
    assert [i.name for i in store.lists.all()] == ["ncii-tw"]


def test_import_reports_added_duplicates_and_bad_rows(store: Store) -> None:
    store.lists.create("l", owner="o", category="csam", actor="a")
    hexes = random_hexes(300)
    extra = f"pdq,{hexes[0]},dup,\npdq,abc,short,\nphotodna,{hexes[1]},x,\n"
    report = store.entries.import_rows(
        "l", read_hash_set(io.BytesIO(csv_bytes(hexes, extra=extra))), actor="a"
    )
    assert (report.added, report.duplicates, report.rejected) == (300, 1, 2)
    assert [e["line"] for e in report.errors] == [303, 304]
    assert "64 hex digits" in report.errors[0]["reason"]
    assert "photodna" in report.errors[1]["reason"]
    stored = list(store.entries.listed("l"))
    assert [e.hash.hex for e in stored] == hexes
    assert stored[3].reference == "ref-3" and stored[3].labels == ("a", "b")
    again = store.entries.import_rows("l", read_hash_set(io.BytesIO(csv_bytes(hexes))), actor="a")
    assert (again.added, again.duplicates) == (0, 300)


def test_strict_import_with_a_bad_row_lands_nothing(store: Store) -> None:
    store.lists.create("l", owner="o", category="csam", actor="a")
    before = store.changes.latest()
    data = csv_bytes(random_hexes(50), extra="pdq,zz,bad,\n")
    with pytest.raises(ImportRejected) as rejected:
        store.entries.import_rows("l", read_hash_set(io.BytesIO(data)), actor="a", strict=True)
    assert rejected.value.report is not None and rejected.value.report.rejected == 1
    assert list(store.entries.listed("l")) == []
    assert store.changes.latest() == before
    assert [r["action"] for r in store.audit.log("l")] == ["list.create"]


def test_import_failing_half_way_leaves_nothing(store: Store) -> None:
    store.lists.create("l", owner="o", category="csam", actor="a")
    hexes = random_hexes(12_000)

    def rows() -> Iterator[HashRow | RowError]:
        for i, h in enumerate(hexes):
            if i == 11_000:  # after two batches have been written
                raise OSError("connection to the uploader lost")
            yield HashRow(i + 1, Hash.from_hex("pdq", h), None, ())

    with pytest.raises(OSError):
        store.entries.import_rows("l", rows(), actor="a")
    assert list(store.entries.listed("l")) == []
    assert store.changes.after(0)[-1].kind == "list"


def test_withdrawal_by_reference_and_hash_keeps_tombstones(store: Store) -> None:
    store.lists.create("l", owner="o", category="ncii", actor="a")
    hexes = random_hexes(10)
    store.entries.import_rows("l", read_hash_set(io.BytesIO(csv_bytes(hexes))), actor="a")
    report = store.withdrawals.withdraw(
        "l",
        actor="victim",
        reason="withdrawn by the victim",
        references=["ref-2", "ref-missing"],
        hashes=[Hash.from_hex("pdq", hexes[5]), Hash.from_hex("pdq", hexes[2])],
    )
    assert report.count == 2 and report.unmatched == ["ref-missing"]
    live = [e.hash.hex for e in store.entries.listed("l")]
    assert hexes[2] not in live and hexes[5] not in live and len(live) == 8
    everything = list(store.entries.listed("l", include_withdrawn=True))
    assert len(everything) == 10
    assert sum(e.withdrawn_at is not None for e in everything) == 2
    change = store.changes.after(0)[-1]
    assert (change.kind, change.count) == ("withdraw", 2)
    assert sorted(store.entries.withdrawn_by(change.cursor)) == sorted(
        e.id for e in everything if e.withdrawn_at is not None
    )
    audit = store.audit.log("l")[0]
    assert audit["action"] == "entries.withdraw" and audit["reason"] == "withdrawn by the victim"
    assert audit["actor"] == "victim" and audit["counts"]["withdrawn"] == 2
    with pytest.raises(StoreError):
        store.withdrawals.withdraw("l", actor="a", reason=" ", references=["ref-1"])


def test_change_log_is_monotonic_and_complete(store: Store) -> None:
    store.lists.create("l", owner="o", category="csam", actor="a")
    store.entries.import_rows("l", read_hash_set(io.BytesIO(csv_bytes(random_hexes(5)))), actor="a")
    store.withdrawals.withdraw("l", actor="a", reason="r", references=["ref-1"])
    store.lists.update("l", actor="a", enabled=False)
    changes = store.changes.after(0)
    assert [c.kind for c in changes] == ["list", "add", "withdraw", "list"]
    cursors = [c.cursor for c in changes]
    assert cursors == sorted(cursors) and len(set(cursors)) == 4
    assert [e.reference for e in store.entries.added_by(cursors[1])] == [
        f"ref-{i}" for i in range(5)
    ]
    assert store.changes.after(cursors[1]) == changes[2:]
    assert not store.lists.get("l").enabled


def test_digests_and_phash_rows(store: Store) -> None:
    store.lists.create("l", owner="o", category="csam", actor="a")
    md5s = random_hexes(3, seed=1, nbytes=16)
    data = ("".join(f"md5 {h}\n" for h in md5s)).encode()
    report = store.entries.import_rows("l", read_hash_set(io.BytesIO(data)), actor="a")
    assert report.added == 3
    assert {e.hash.algorithm for e in store.entries.listed("l")} == {MD5}


def test_an_organisation_named_twice_is_shared_with_once(store: Store) -> None:
    """Found by schemathesis: a repeated name used to break the share table's key (a 500)."""
    info = store.lists.create(
        "twice", owner="ncc-tw", category="ncii", shared_with=["kcsc-kr", "kcsc-kr"], actor="t"
    )
    assert info.shared_with == ("kcsc-kr",)
    changed = store.lists.update("twice", shared_with=["a", "b", "a"], actor="t")
    assert changed.shared_with == ("a", "b")


LONG = "x" * 100_000
BAD_TEXT = ("nul\x00here", "bell\x07", "\u202eevil", "\ud800", LONG)


@pytest.mark.parametrize("bad", BAD_TEXT, ids=["nul", "bell", "bidi", "surrogate", "long"])
def test_every_text_field_is_checked_before_it_reaches_sql(store: Store, bad: str) -> None:
    """The same rule on both databases, whatever the caller: PostgreSQL refuses NUL and lone
    surrogates outright, and that must never surface as a database error."""
    store.lists.create("l", owner="o", category="ncii", actor="t")
    fields: dict[str, dict[str, Any]] = {
        "name": {"name": bad},
        "owner": {"owner": bad},
        "category": {"category": bad},
        "source": {"source": bad},
        "jurisdiction": {"jurisdiction": bad},
        "shared_with[0]": {"shared_with": [bad]},
    }
    for field, change in fields.items():
        arguments: dict[str, Any] = {"name": "n", "owner": "o", "category": "ncii", **change}
        name = arguments.pop("name")
        with pytest.raises(InvalidList) as refused:
            store.lists.create(name, actor="t", **arguments)
        assert refused.value.message.startswith(field), (field, refused.value.message)
    if bad != "bell\x07":  # a description may hold tabs and newlines, not other controls
        with pytest.raises(InvalidList, match=r"^description"):
            store.lists.update("l", actor="t", description=bad)
    with pytest.raises(InvalidList, match=r"^source"):
        store.lists.update("l", actor="t", source=bad)
    value = Hash.from_hex("pdq", random_hexes(1)[0])
    report = store.entries.import_rows(
        "l",
        [HashRow(1, value, bad, ()), HashRow(2, value, None, ("ok", bad))],
        actor="t",
    )
    assert (report.added, report.rejected) == (0, 2)
    assert [e["reason"].split(":")[0] for e in report.errors] == ["reference", "labels[1]"]
    with pytest.raises(InvalidList, match=r"^reason"):
        store.withdrawals.withdraw("l", actor="t", reason=bad, references=["r"])
    with pytest.raises(InvalidList, match=r"^references\[0\]"):
        store.withdrawals.withdraw("l", actor="t", reason="ok", references=[bad])
    with pytest.raises(InvalidList):
        store.lists.answer_offer("l", bad, actor="t", accept=True)
    with pytest.raises(NotFound):
        store.lists.get(bad)
    assert list(store.entries.listed("l")) == []


def test_database_errors_never_carry_their_parameters(store: Store) -> None:
    secret = "withdrawn-by-victim-7f3a"
    with store.database.engine.connect() as conn, pytest.raises(Conflict) as duplicate:
        for _ in range(2):
            conn.execute(
                text("INSERT INTO organisations (name, created_at) VALUES (:n, :t)"),
                {"n": secret, "t": "2026-01-01 00:00:00"},
            )
    assert secret not in str(duplicate.value) and "conflicts" in duplicate.value.message
    if store.database.dialect == "postgresql":
        with store.database.engine.connect() as conn, pytest.raises(InvalidList) as refused:
            conn.execute(text("SELECT CAST(:v AS INTEGER)"), {"v": secret})
        assert secret not in refused.value.message
