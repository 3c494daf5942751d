"""Withdrawals stick: a victim's withdrawal survives re-imports until revived on purpose, and
every name given is accounted for (on SQLite and PostgreSQL, the store, HTTP and the CLI)."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import random_hexes
from dbs import BACKENDS
from hashmatch.errors import InvalidField, NothingMatched
from hashmatch.hashsets.read import read_hash_set
from hashmatch.signals import Hash
from hashmatch.store import Role
from services import Service, running_service


@pytest.fixture(params=BACKENDS)
def service(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Service]:
    with running_service(request.param, tmp_path) as running:
        yield running


def csv_file(hexes: list[str]) -> bytes:
    rows = "".join(f"pdq,{h},ref-{i},case;urgent\n" for i, h in enumerate(hexes))
    return f"algorithm,hash,reference,labels\n{rows}".encode()


def test_reimporting_a_withdrawn_hash_does_not_revive_it(service: Service) -> None:
    store = service.store
    store.lists.create("l", owner="kcsc", category="ncii", actor="a")
    hexes = random_hexes(4, seed=5)
    store.entries.import_rows("l", read_hash_set(io.BytesIO(csv_file(hexes))), actor="a")
    store.withdrawals.withdraw(
        "l", actor="victim", reason="withdrawn by the victim", references=["ref-1"]
    )
    again = store.entries.import_rows("l", read_hash_set(io.BytesIO(csv_file(hexes))), actor="a")
    assert (again.added, again.duplicates, again.previously_withdrawn) == (0, 3, 1)
    assert again.as_dict()["withdrawn_rows"][0]["line"] == 3
    assert "withdrawn" in again.as_dict()["withdrawn_rows"][0]["reason"]
    assert hexes[1] not in [e.hash.hex for e in store.entries.listed("l")]
    # Only an explicit revival, with a reason, brings it back (as a new entry, audited).
    with pytest.raises(InvalidField):
        store.withdrawals.revive("l", actor="kcsc", reason=" ", references=["ref-1"])
    report = store.withdrawals.revive(
        "l", actor="kcsc", reason="victim asked again", references=["ref-1"]
    )
    assert report.count == 1 and report.already == [] and report.unmatched == []
    live = {e.hash.hex: e for e in store.entries.listed("l")}
    assert live[hexes[1]].reference == "ref-1" and live[hexes[1]].labels == ("case", "urgent")
    assert len(list(store.entries.listed("l", include_withdrawn=True))) == 5  # the tombstone stays
    assert store.withdrawals.revive("l", actor="k", reason="r", references=["ref-1"]).already == [
        "ref-1"
    ]
    audit = store.audit.log("l")
    assert audit[1]["action"] == "entries.revive" and audit[1]["reason"] == "victim asked again"
    # A revived hash is matched again by every replica.
    service.follow()
    found = service.matcher.match([Hash.from_hex("pdq", hexes[1])])[0]
    assert [m.reference for m in found] == ["ref-1"]


def test_a_withdrawal_names_what_it_did_not_find(service: Service) -> None:
    store = service.store
    store.lists.create("l", owner="kcsc", category="ncii", actor="a")
    hexes = random_hexes(3, seed=6)
    store.entries.import_rows("l", read_hash_set(io.BytesIO(csv_file(hexes))), actor="a")
    with pytest.raises(NothingMatched) as nothing:
        store.withdrawals.withdraw("l", actor="v", reason="r", references=["ref-typo"])
    assert "ref-typo" in nothing.value.message
    assert store.changes.after(0)[-1].kind == "add"  # nothing was written
    missing = Hash.from_hex("pdq", random_hexes(1, seed=99)[0])
    report = store.withdrawals.withdraw(
        "l", actor="v", reason="r", references=["ref-0", "ref-typo"], hashes=[missing]
    )
    assert report.count == 1 and report.unmatched == ["ref-typo", str(missing)]
    again = store.withdrawals.withdraw("l", actor="v", reason="r", references=["ref-0"])
    assert again.count == 0 and again.already == ["ref-0"]


def test_withdrawals_and_revivals_over_http(service: Service) -> None:
    kcsc = service.key("kcsc", Role.CONTRIBUTE, Role.MATCH)
    service.create_list(kcsc, "l")
    value = random_hexes(1, seed=8)[0]
    service.add(kcsc, "l", ("pdq", value, "case-1"))
    typo = service.post(
        "/v1/lists/l/withdrawals", kcsc, json={"reason": "v", "references": ["case-I"]}
    )
    assert typo.status_code == 404 and typo.json()["error"]["code"] == "nothing_matched"
    done = service.post(
        "/v1/lists/l/withdrawals", kcsc, json={"reason": "v", "references": ["case-1", "case-2"]}
    )
    assert done.json()["withdrawn"] == 1 and done.json()["unmatched"] == ["case-2"]
    reimported = service.add(kcsc, "l", ("pdq", value, "case-1"))
    assert (reimported["added"], reimported["previously_withdrawn"]) == (0, 1)
    service.follow()
    query = {"hashes": [{"algorithm": "pdq", "value": value}]}
    assert service.post("/v1/match/hashes", kcsc, json=query).json()["match"] is False
    revived = service.post(
        "/v1/lists/l/revivals",
        kcsc,
        json={"reason": "mistaken withdrawal", "hashes": [{"algorithm": "pdq", "value": value}]},
    )
    assert revived.status_code == 200 and revived.json()["revived"] == 1
    service.follow()
    assert service.post("/v1/match/hashes", kcsc, json=query).json()["match"] is True


def test_the_cli_exits_non_zero_when_a_name_matches_nothing(service: Service) -> None:
    service.store.lists.create("l", owner="kcsc", category="ncii", actor="a")
    values = random_hexes(2, seed=9)
    service.store.entries.import_rows("l", read_hash_set(io.BytesIO(csv_file(values))), actor="a")
    nothing = service.cli("lists", "withdraw", "l", "--reference", "ref-9", "--reason", "v")
    assert nothing.returncode == 66 and b"ref-9" in nothing.stderr
    partly = service.cli(
        "lists", "withdraw", "l", "--reference", "ref-0", "--reference", "ref-9", "--reason", "v"
    )
    assert partly.returncode == 1 and json.loads(partly.stdout)["unmatched"] == ["ref-9"]
    back = service.cli("lists", "revive", "l", "--reference", "ref-0", "--reason", "mistake")
    assert back.returncode == 0 and json.loads(back.stdout)["revived"] == 1
