"""Outcome reporting: match ids that authenticate themselves, idempotent batch reports, match
counting, a list owner's stats and false positives (real SQLite and PostgreSQL, the real app)."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from conftest import random_hexes
from dbs import BACKENDS, database
from hashmatch.api.app import create_app
from hashmatch.api.deps import services_of
from hashmatch.config import Settings
from hashmatch.errors import InvalidMatchId
from hashmatch.hashsets.read import HashRow
from hashmatch.matching.counts import CountFlusher, MatchCounter
from hashmatch.matching.tokens import TOKEN_CHARS, MatchTokens
from hashmatch.signals import Hash
from hashmatch.store import Role, Store
from hashmatch.store.schema import outcomes
from services import Service, flip, running_service

T0 = dt.datetime(2026, 11, 2, 8, 0, tzinfo=dt.UTC)


@pytest.fixture(params=BACKENDS)
def service(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Service]:
    with running_service(request.param, tmp_path) as running:
        yield running


def match_ids(response: Any) -> list[str]:
    body = response.json()
    return [m["match_id"] for r in body["results"] for m in r["matches"] + r["allowed"]]


# --- tokens -------------------------------------------------------------------------------


def test_match_ids_round_trip_and_refuse_forgeries_and_other_organisations() -> None:
    tokens = MatchTokens(b"k" * 32)
    at = int(T0.timestamp())
    token = tokens.issue(2**40 + 7, 12, "ncc", at)
    assert len(token) == TOKEN_CHARS < 64 and token.isascii()
    claim = tokens.verify(token, "ncc")
    assert (claim.entry_id, claim.list_id, claim.matched_at) == (2**40 + 7, 12, T0)
    # Each field is covered: another entry, time or organisation gives another id.
    assert tokens.issue(2**40 + 8, 12, "ncc", at) != token
    assert tokens.issue(2**40 + 7, 12, "ncc", at + 1) != token
    with pytest.raises(InvalidMatchId):
        tokens.verify(token, "kcsc")  # issued to ncc: kcsc cannot report on it
    with pytest.raises(InvalidMatchId):
        MatchTokens(b"x" * 32).verify(token, "ncc")  # another instance's secret
    for position in (3, 20, len(token) - 1):  # the payload, and the MAC
        changed = (
            token[:position] + ("A" if token[position] != "A" else "B") + token[position + 1 :]
        )
        with pytest.raises(InvalidMatchId):
            tokens.verify(changed, "ncc")
    for junk in ("", token + "A", token[:-1], "é" * TOKEN_CHARS, 5, None):
        with pytest.raises(InvalidMatchId):
            tokens.verify(junk, "ncc")


# --- reports ------------------------------------------------------------------------------


def test_reports_are_idempotent_and_checked_item_by_item(service: Service) -> None:
    kcsc = service.key("kcsc", Role.CONTRIBUTE, Role.MATCH)
    ncc = service.key("ncc", Role.ADMIN)
    value = random_hexes(1, seed=11)[0]
    service.share_one(kcsc, ncc, value)
    near = flip(bytes.fromhex(value), 3, seed=1).hex()
    query = {"hashes": [{"algorithm": "pdq", "value": near}]}
    (match_id,) = match_ids(service.post("/v1/match/hashes", ncc, json=query))
    (kcsc_id,) = match_ids(service.post("/v1/match/hashes", kcsc, json=query))
    assert match_id != kcsc_id  # the organisation is part of the id

    first = service.post(
        "/v1/outcomes", ncc, json={"outcomes": [{"match_id": match_id, "outcome": "removed"}]}
    )
    assert first.status_code == 200, first.text
    assert first.json() | {"errors": []} == {
        "accepted": 1,
        "updated": 0,
        "rejected": 0,
        "errors": [],
        "errors_truncated": False,
    }
    now = dt.datetime.now(dt.UTC)
    batch = [
        {"match_id": match_id, "outcome": "under_review", "acted_at": now.isoformat()},
        {"match_id": kcsc_id, "outcome": "removed"},  # kcsc's match: not ncc's to report
        {"match_id": match_id[:-2] + "AA", "outcome": "removed"},  # forged
        {"match_id": match_id, "outcome": "deleted"},
        {"match_id": match_id, "outcome": "removed", "hash": f"pdq:{near}"},
        {"match_id": match_id, "outcome": "removed", "acted_at": "2026-12-01T10:00:00"},
        {"match_id": match_id, "outcome": "removed", "acted_at": "2999-01-01T00:00:00Z"},
        {"match_id": match_id, "outcome": "removed", "acted_at": "2001-01-01T00:00:00Z"},
        {"match_id": match_id, "outcome": "false_positive", "hash": "pdq:zz"},
    ]
    second = service.post("/v1/outcomes", ncc, json={"outcomes": batch})
    body = second.json()
    assert (body["accepted"], body["updated"], body["rejected"]) == (0, 1, 8)
    codes = {e["index"]: e["code"] for e in body["errors"]}
    assert codes == {
        1: "invalid_match_id",
        2: "invalid_match_id",
        3: "invalid_outcome",
        4: "invalid_outcome",
        5: "invalid_outcome",
        6: "invalid_outcome",
        7: "invalid_outcome",
        8: "invalid_outcome",
    }
    assert "zone" in body["errors"][4]["message"] and "future" in body["errors"][5]["message"]
    # One row per match id, the latest outcome; the audit row keeps the replaced one.
    with service.store.database.engine.connect() as conn:
        rows = list(conn.execute(select(outcomes.c.match_id, outcomes.c.outcome)))
    assert rows == [(match_id, "under_review")]
    audit = [row for row in service.store.audit.log("ncc") if row["action"] == "outcomes.report"]
    assert audit[0]["counts"] == {"accepted": 0, "updated": 1, "rejected": 8}
    assert audit[0]["details"]["replaced"][0]["outcome"] == "removed"
    assert audit[0]["actor"].endswith(":ncc")
    # A key without the match role may not report; a repeated id in one batch counts once.
    contribute_only = service.key("ncc", Role.CONTRIBUTE)
    refused = service.post(
        "/v1/outcomes", contribute_only, json={"outcomes": [{"match_id": match_id, "outcome": "x"}]}
    )
    assert refused.status_code == 403
    twice = service.post(
        "/v1/outcomes",
        kcsc,
        json={
            "outcomes": [
                {"match_id": kcsc_id, "outcome": "removed"},
                {"match_id": kcsc_id, "outcome": "actioned"},
            ]
        },
    ).json()
    assert (twice["accepted"], twice["updated"]) == (1, 1)
    with service.store.database.engine.connect() as conn:
        stored = conn.execute(select(outcomes.c.outcome).where(outcomes.c.match_id == kcsc_id))
        assert stored.scalar_one() == "actioned"


def test_ten_thousand_reports_in_one_batch(service: Service) -> None:
    store = service.store
    store.lists.create("l", owner="kcsc", category="ncii", actor="t")
    tokens = store.outcomes.tokens()
    at = int(dt.datetime.now(dt.UTC).timestamp()) - 3600
    ids = [tokens.issue(i, 1, "ncc", at) for i in range(1, 10_001)]
    items: list[Any] = [{"match_id": i, "outcome": "removed"} for i in ids]
    report = store.outcomes.report("ncc", items, actor="t")
    assert (report.accepted, report.updated, report.rejected) == (10_000, 0, 0)
    again = store.outcomes.report("ncc", items[:5000], actor="t")
    assert (again.accepted, again.updated) == (0, 5000)
    assert store.reviews.stats("l").total.outcomes["removed"] == 10_000


def test_every_process_shares_one_token_secret(tmp_path: Path) -> None:
    with database("sqlite", tmp_path) as url:
        first, second = Store.open(url), Store.open(url)
        try:
            token = first.outcomes.tokens().issue(1, 1, "ncc", 1_800_000_000)
            assert second.outcomes.tokens().verify(token, "ncc").entry_id == 1
        finally:
            first.close()
            second.close()


# --- counting -----------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_match_counts_flush_periodically_and_at_shutdown(backend: str, tmp_path: Path) -> None:
    value = random_hexes(1, seed=12)[0]
    with database(backend, tmp_path) as url:
        store = Store.open(url)
        try:
            store.lists.create("l", owner="kcsc", category="ncii", actor="t")
            _, secret = store.keys.create("kcsc", frozenset({Role.MATCH}), actor="t")
            key = {"Authorization": f"Bearer {secret}"}
            store.entries.import_rows("l", [HashRow(1, Hash.from_hex("pdq", value))], actor="t")
            query = {"hashes": [{"algorithm": "pdq", "value": value}]}
            settings = Settings(data_dir=tmp_path / "a", database_url=url, rate_burst=1000)
            slow = Settings(**{**settings.__dict__, "match_count_flush_seconds": 3600.0})
            with TestClient(create_app(slow, load_in_background=False)) as client:
                for _ in range(3):
                    assert client.post("/v1/match/hashes", json=query, headers=key).json()["match"]
                recorder = services_of(client.app).recorder
                assert recorder is not None and recorder.counter.pending() == 3
                assert store.reviews.stats("l").total.matches == 0  # nothing written yet
            assert store.reviews.stats("l").total.matches == 3  # written at shutdown
            fast = Settings(**{**settings.__dict__, "match_count_flush_seconds": 0.1})
            with TestClient(create_app(fast, load_in_background=False)) as client:
                client.post("/v1/match/hashes", json=query, headers=key)
                deadline = time.monotonic() + 10
                while store.reviews.stats("l").total.matches < 4:
                    assert time.monotonic() < deadline, "the periodic flush never came"
                    time.sleep(0.05)
                # The client is still open: this was the periodic flush, not the last one.
        finally:
            store.close()


def test_counts_from_several_processes_add_up(service: Service) -> None:
    store = service.store
    store.lists.create("l", owner="kcsc", category="ncii", actor="t")
    info = store.lists.get("l")
    day = dt.date(2026, 11, 2)
    counters = [MatchCounter(), MatchCounter()]
    for n, counter in enumerate(counters):
        for _ in range(n + 2):
            counter.add((info.id, 5, day))
        counter.add((info.id, 6, day + dt.timedelta(days=1)))
    for counter, expected in zip(counters, (3, 4), strict=True):
        assert counter.pending() == expected
        assert CountFlusher(counter, store.outcomes.add_counts).flush() == expected
    for counter in counters:  # a second flush of the same counters adds nothing
        assert CountFlusher(counter, store.outcomes.add_counts).flush() == 0
    stats = store.reviews.stats("l")
    assert stats.total.matches == 7
    assert (stats.entries[5].matches, stats.entries[6].matches) == (5, 2)
    assert store.reviews.stats("l", since=day + dt.timedelta(days=1)).total.matches == 2
    assert store.reviews.stats("l", until=day).total.matches == 5


# --- stats and false positives ------------------------------------------------------------


def _report(
    store: Store, org: str, entry_id: int, list_id: int, matched: dt.datetime, **item: Any
) -> str:
    token = store.outcomes.tokens().issue(entry_id, list_id, org, int(matched.timestamp()))
    items: list[Any] = [{"match_id": token, **item}]
    report = store.outcomes.report(org, items, actor="t")
    assert report.rejected == 0, report.errors
    return token


def test_stats_numbers_and_exports(service: Service) -> None:
    store = service.store
    kcsc = service.key("kcsc", Role.CONTRIBUTE)
    service.create_list(kcsc, "l")
    hexes = random_hexes(3, seed=13)
    service.add(kcsc, "l", *(("pdq", h, f"case-{i}") for i, h in enumerate(hexes)))
    info = store.lists.get("l")
    ids = [e.id for e in store.entries.listed("l")]

    def removed(entry: int, seconds: int, day: int = 0, org: str = "ncc") -> None:
        matched = T0 + dt.timedelta(days=day, minutes=entry)
        acted = (matched + dt.timedelta(seconds=seconds)).isoformat()
        _report(store, org, entry, info.id, matched, outcome="removed", acted_at=acted)

    removed(ids[0], 60)
    removed(ids[0], 180, org="meta")
    removed(ids[1], 600)
    removed(ids[1], 30, day=5)  # outside the period asked below
    _report(store, "ncc", ids[2], info.id, T0, outcome="false_positive", hash=f"pdq:{hexes[0]}")
    _report(store, "ncc", ids[2], info.id, T0 + dt.timedelta(seconds=1), outcome="not_actioned")
    store.outcomes.add_counts({(info.id, ids[0], T0.date()): 4, (info.id, ids[2], T0.date()): 9})

    period = {"since": "2026-11-01", "until": "2026-11-03"}
    response = service.client.get(
        "/v1/lists/l/stats", params={**period, "per_entry": True}, headers=kcsc
    )
    assert response.status_code == 200, response.text
    stats = response.json()
    assert stats["matches"] == 13
    assert stats["outcomes"] == {
        "removed": 3,
        "actioned": 0,
        "false_positive": 1,
        "under_review": 0,
        "not_actioned": 1,
    }
    assert stats["median_seconds_to_removal"] == 180  # of 60, 180 and 600
    assert stats["false_positives"] == {"reported": 1, "open": 1}
    by_entry = {e["entry_id"]: e for e in stats["entries"]}
    assert by_entry[ids[0]]["median_seconds_to_removal"] == 120
    assert by_entry[ids[0]]["reference"] == "case-0" and by_entry[ids[0]]["matches"] == 4
    assert by_entry[ids[2]]["median_seconds_to_removal"] is None
    everything = service.client.get("/v1/lists/l/stats", headers=kcsc).json()
    assert everything["median_seconds_to_removal"] == 120  # of 30, 60, 180 and 600

    exported = service.client.get(
        "/v1/lists/l/stats", params={**period, "per_entry": True, "format": "csv"}, headers=kcsc
    )
    assert exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert [r["entry_id"] for r in rows] == ["", *(str(i) for i in ids)]
    assert (rows[0]["matches"], rows[0]["removed"], rows[0]["median_seconds_to_removal"]) == (
        "13",
        "3",
        "180.0",
    )
    # The owner's only: another organisation's key does not learn the list exists.
    stranger = service.key("meta", Role.ADMIN)
    assert service.client.get("/v1/lists/l/stats", headers=stranger).status_code == 404
    assert service.client.get("/v1/lists/l/false-positives", headers=stranger).status_code == 404
    cli = service.cli(
        "stats", "l", "--format", "csv", "--since", "2026-11-01", "--until", "2026-11-03"
    )
    assert cli.returncode == 0, cli.stderr
    assert list(csv.reader(io.StringIO(cli.stdout.decode())))[1][3:5] == ["13", "3"]
    as_json = json.loads(service.cli("stats", "l", "--per-entry").stdout)
    assert as_json["median_seconds_to_removal"] == 120 and len(as_json["entries"]) == 3


def test_false_positives_are_resolved_both_ways(service: Service) -> None:
    store = service.store
    kcsc = service.key("kcsc", Role.CONTRIBUTE, Role.MATCH)
    ncc = service.key("ncc", Role.MATCH)
    service.create_list(kcsc, "l", shared_with=["ncc"])
    service.create_list(kcsc, "l-allow", kind="allow")
    hexes = random_hexes(2, seed=14)
    service.add(kcsc, "l", ("pdq", hexes[0], "case-0"), ("pdq", hexes[1], "case-1"))
    service.store.lists.answer_offer("l", "ncc", actor="t", accept=True)
    service.follow()
    uploaded = flip(bytes.fromhex(hexes[0]), 5, seed=2).hex()
    query = {
        "hashes": [{"algorithm": "pdq", "value": uploaded}, {"algorithm": "pdq", "value": hexes[1]}]
    }
    first, second = match_ids(service.post("/v1/match/hashes", ncc, json=query))
    reports = [
        {
            "match_id": first,
            "outcome": "false_positive",
            "hash": f"pdq:{uploaded}",
            "note": "a cat",
        },
        {"match_id": second, "outcome": "false_positive"},
    ]
    assert service.post("/v1/outcomes", ncc, json={"outcomes": reports}).json()["accepted"] == 2
    listed = service.client.get("/v1/lists/l/false-positives", headers=kcsc).json()
    fp = {r["reference"]: r for r in listed["false_positives"]}
    assert fp["case-0"]["hash"] == f"pdq:{uploaded}" and fp["case-0"]["organisation"] == "ncc"
    assert fp["case-0"]["note"] == "a cat" and fp["case-1"]["hash"] is None

    # Allow: the reported image's hash goes to the owner's allow-list; the entry stays.
    path = f"/v1/lists/l/false-positives/{fp['case-0']['report_id']}/resolve"
    no_list = service.post(path, kcsc, json={"action": "allow", "reason": "a cat"})
    assert no_list.status_code == 422
    allowed = service.post(
        path, kcsc, json={"action": "allow", "reason": "a cat", "allow_list": "l-allow"}
    )
    assert allowed.status_code == 200, allowed.text
    assert allowed.json()["added"] == 1 and allowed.json()["resolution"] == "allowed"
    assert [e.hash.hex for e in store.entries.listed("l-allow")] == [uploaded]
    assert len(list(store.entries.listed("l"))) == 2
    service.follow()
    # The owner's own matches of that image are suppressed now.
    again = service.post("/v1/match/hashes", kcsc, json=query).json()["results"][0]["matches"]
    assert again[0]["suppressed_by"] == "l-allow"
    assert service.post(path, kcsc, json={"action": "withdraw", "reason": "x"}).status_code == 409

    # Withdraw: the entry goes, through the one withdrawal path.
    path = f"/v1/lists/l/false-positives/{fp['case-1']['report_id']}/resolve"
    # Without a hash there is nothing to allow.
    assert (
        service.post(
            path, kcsc, json={"action": "allow", "reason": "r", "allow_list": "l-allow"}
        ).status_code
        == 422
    )
    withdrawn = service.post(path, kcsc, json={"action": "withdraw", "reason": "not abuse"})
    assert withdrawn.status_code == 200 and withdrawn.json()["withdrawn"] == 1
    assert [e.reference for e in store.entries.listed("l")] == ["case-0"]
    assert service.client.get("/v1/lists/l/false-positives", headers=kcsc).json() == {
        "false_positives": [],
        "next": None,
    }
    everything = service.client.get(
        "/v1/lists/l/false-positives", params={"state": "all"}, headers=kcsc
    ).json()["false_positives"]
    assert [r["resolution"] for r in everything] == ["allowed", "withdrawn"]
    actions = [r["action"] for r in store.audit.log("l")]
    assert actions[:2] == ["false_positive.resolve", "entries.withdraw"]
    assert "false_positive.resolve" in actions[2:]
    # A platform cannot resolve; an unknown report is 404.
    assert service.post(path, ncc, json={"action": "withdraw", "reason": "r"}).status_code == 403
    missing = service.post(
        "/v1/lists/l/false-positives/999/resolve", kcsc, json={"action": "withdraw", "reason": "r"}
    )
    assert missing.status_code == 404


def test_the_cli_match_gives_match_ids(service: Service) -> None:
    store = service.store
    store.lists.create("l", owner="kcsc", category="ncii", actor="t")
    value = random_hexes(1, seed=15)[0]
    store.entries.import_rows("l", [HashRow(1, Hash.from_hex("pdq", value))], actor="t")
    done = service.cli("match", "--json", "--org", "kcsc", "--hash", f"pdq:{value}")
    assert done.returncode == 0, done.stderr
    (result,) = json.loads(done.stdout)
    claim = store.outcomes.tokens().verify(result["matches"][0]["match_id"], "kcsc")
    assert claim.entry_id == next(iter(store.entries.listed("l"))).id
    assert store.reviews.stats("l").total.matches == 1
