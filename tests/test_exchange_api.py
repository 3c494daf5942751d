"""The exchange over HTTP, through the real ASGI app: who may read the feed, long-polling,
compression, and peers managed by an organisation's admin key."""

from __future__ import annotations

import gzip
import json
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from conftest import random_hexes
from hashmatch.store import Role
from services import running_service


@pytest.fixture
def service(tmp_path: Path) -> Any:
    with running_service("sqlite", tmp_path, exchange_fetcher=False) as running:
        yield running


def shared_list(service: Any, entries: int = 3) -> tuple[dict[str, str], dict[str, str]]:
    """A list of ncc's, offered to and accepted by kcsc; ncc's contribute key and kcsc's
    exchange key."""
    owner = service.key("ncc", Role.CONTRIBUTE)
    service.create_list(owner, "ncii-tw", shared_with=["kcsc"], tlp="GREEN")
    hexes = random_hexes(entries, seed=21)
    service.add(owner, "ncii-tw", *[("pdq", h, f"R{i}") for i, h in enumerate(hexes)])
    accepted = service.post("/v1/shares/ncii-tw/accept", service.key("kcsc", Role.ADMIN))
    assert accepted.status_code == 200, accepted.text
    return owner, service.key("kcsc", Role.EXCHANGE)


def test_only_exchange_keys_read_the_feed_and_they_read_nothing_else(service: Any) -> None:
    owner, exchange = shared_list(service)
    admin = service.key("kcsc", Role.ADMIN, Role.MATCH, Role.CONTRIBUTE)
    refused = service.client.get("/v1/exchange/feed", headers=admin)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
    page = service.client.get("/v1/exchange/feed", headers=exchange).json()
    assert page["lists"] == ["ncii-tw"]
    added = [e for e in page["events"] if e["type"] == "add"]
    assert sum(len(e["entries"]) for e in added) == 3
    # The hashes come with the feed, and nowhere else to a non-owner.
    body = {"hashes": [{"algorithm": "pdq", "value": added[0]["entries"][0][1]}]}
    assert service.client.post("/v1/match/hashes", json=body, headers=exchange).status_code == 403
    assert service.client.get("/v1/lists/ncii-tw/entries", headers=exchange).status_code == 403
    # Another organisation's exchange key sees none of it.
    other = service.key("third", Role.EXCHANGE)
    assert service.client.get("/v1/exchange/feed", headers=other).json()["lists"] == []
    digest = service.client.get("/v1/exchange/digest?list=ncii-tw", headers=exchange).json()
    assert digest["count"] == 3 and len(digest["digest"]) == 32
    assert service.client.get("/v1/exchange/digest?list=ncii-tw", headers=other).status_code == 404
    del owner


def test_a_waiting_feed_answers_as_soon_as_an_entry_is_added(service: Any) -> None:
    owner, exchange = shared_list(service)
    cursor = service.client.get("/v1/exchange/feed", headers=exchange).json()["cursor"]
    timings: dict[str, Any] = {}

    def wait() -> None:
        start = time.monotonic()
        answer = service.client.get(
            f"/v1/exchange/feed?cursor={cursor}&wait=20", headers=exchange
        ).json()
        timings["seconds"] = time.monotonic() - start
        timings["page"] = answer

    waiter = threading.Thread(target=wait)
    waiter.start()
    time.sleep(0.5)
    assert waiter.is_alive()  # nothing new: it waits
    service.add(owner, "ncii-tw", ("pdq", random_hexes(1, seed=99)[0], "late"))
    waiter.join(timeout=10)
    assert not waiter.is_alive()
    assert 0.4 < timings["seconds"] < 3.0
    (event,) = [e for e in timings["page"]["events"] if e["type"] == "add"]
    assert event["entries"][0][2] == "late"


def test_the_feed_is_compressed_when_asked_and_small_per_entry(service: Any) -> None:
    _, exchange = shared_list(service, entries=2000)
    raw = service.client.get(
        "/v1/exchange/feed?limit=5000", headers={**exchange, "Accept-Encoding": "gzip"}
    )
    assert raw.headers["content-encoding"] == "gzip"
    # httpx decodes it; the bytes on the wire are the compressed ones.
    wire = len(gzip.compress(orjson.dumps(raw.json())))
    assert wire / 2000 < 64, wire / 2000


def test_peers_are_an_organisations_own_and_their_keys_never_come_back(service: Any) -> None:
    admin = service.key("kcsc", Role.ADMIN)
    secret = "hm_the-peer-gave-us-this-key-1234567890"
    body = {"name": "ncc", "url": "http://127.0.0.1:9", "key": secret}
    refused = service.client.post("/v1/exchange/peers", json=body, headers=admin)
    assert refused.status_code == 422  # a loopback peer from the API: the operator's call
    assert "non-public" in refused.json()["error"]["message"]
    folder = service.client.post(
        "/v1/exchange/peers", json={**body, "url": "file:///etc"}, headers=admin
    )
    assert folder.status_code == 403
    service.store.peers.add(
        "ncc", url="http://127.0.0.1:9", secret=secret, organisation="kcsc", actor="operator"
    )
    listed = service.client.get("/v1/exchange/peers", headers=admin)
    assert [p["name"] for p in listed.json()] == ["ncc"]
    shown = service.client.get("/v1/exchange/peers/ncc", headers=admin)
    assert secret not in listed.text + shown.text
    other = service.key("third", Role.ADMIN)
    assert service.client.get("/v1/exchange/peers/ncc", headers=other).status_code == 404
    paused = service.client.post("/v1/exchange/peers/ncc/pause", headers=admin).json()
    assert paused["paused"] is True
    scraped = service.client.get("/metrics").text
    assert 'hashmatch_exchange_paused{peer="ncc"} 1.0' in scraped
    assert 'hashmatch_exchange_failures{peer="ncc"} 0.0' in scraped
    audit = service.store.audit.log(target="ncc")
    assert audit and secret not in json.dumps(audit, default=str)


def test_outcomes_from_abroad_count_only_for_lists_shared_with_the_sender(service: Any) -> None:
    owner, exchange = shared_list(service)
    admin = service.key("ncc", Role.ADMIN)
    service.create_list(owner, "private")
    service.add(owner, "private", ("pdq", random_hexes(1, seed=5)[0], "P1"))
    ids = {
        e["reference"]: e["entry_id"]
        for e in service.client.get("/v1/lists/ncii-tw/entries", headers=owner).json()["entries"]
    }
    private_id = service.client.get("/v1/lists/private/entries", headers=owner).json()["entries"][
        0
    ]["entry_id"]
    day = time.strftime("%Y-%m-%d", time.gmtime())
    item = {
        "list": "ncii-tw",
        "id": ids["R0"],
        "day": day,
        "matches": 3,
        "outcomes": {"removed": 2},
        "removal_seconds": [60, 120],
    }
    # Another organisation's exchange key, and ids outside the shared list: counted nowhere.
    stranger = service.key("third", Role.EXCHANGE)
    refused = service.client.post(
        "/v1/exchange/outcomes", headers=stranger, json={"entries": [item]}
    )
    assert refused.json() == {"accepted": 0, "refused": 1}
    smuggled = [{**item, "id": private_id}, {**item, "list": "private", "id": private_id}]
    answer = service.client.post(
        "/v1/exchange/outcomes", headers=exchange, json={"entries": smuggled}
    )
    assert answer.json() == {"accepted": 0, "refused": 2}
    # The partner's own report counts, and a repeat replaces it rather than adding up.
    for _ in range(2):
        done = service.client.post(
            "/v1/exchange/outcomes", headers=exchange, json={"entries": [item]}
        )
        assert done.json() == {"accepted": 1, "refused": 0}
    stats = service.client.get("/v1/lists/ncii-tw/stats", headers=admin).json()
    assert stats["partners"]["kcsc"]["matches"] == 3
    assert stats["partners"]["kcsc"]["outcomes"]["removed"] == 2
    assert stats["partners"]["kcsc"]["median_seconds_to_removal"] == 90
    assert "third" not in stats["partners"]
    private = service.client.get("/v1/lists/private/stats", headers=admin).json()
    assert private["matches"] == 0 and private["partners"] == {}
    bad = service.client.post(
        "/v1/exchange/outcomes", headers=exchange, json={"entries": [{**item, "day": "yesterday"}]}
    )
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_field"
