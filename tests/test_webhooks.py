"""Withdrawal webhooks: platforms that removed content hear of the entry's withdrawal, signed,
retried until a 2xx, sent by one sender per database (a real HTTP server, real databases)."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from conftest import hashmatch_env, random_hexes, run_hashmatch
from dbs import BACKENDS, database
from hashmatch.delivery import SIGNATURE_HEADER, TIMESTAMP_HEADER, SenderSettings, WebhookSender
from hashmatch.hashsets.read import HashRow
from hashmatch.signals import Hash
from hashmatch.store import Role, Store
from services import Service, running_service

FAST = SenderSettings(retry_seconds=0.05, poll_seconds=0.05, allow_private_targets=True)


class Receiver:
    """A platform's endpoint: records each request, answers the scripted statuses (then 200)."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.statuses: list[int] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append((dict(self.headers.items()), body))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver()
    yield running
    running.close()


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A store with no app (and so no sender of its own) beside the test's senders."""
    with database(request.param, tmp_path) as url:
        opened = Store.open(url)
        try:
            yield opened
        finally:
            opened.close()


@pytest.fixture(params=BACKENDS)
def service(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Service]:
    overrides = {"webhook_private_targets": True, "webhook_retry_seconds": 0.05}
    with running_service(request.param, tmp_path, **overrides) as running:
        yield running


def listed(store: Store, count: int = 2, seed: int = 21) -> tuple[int, list[int], list[str]]:
    store.lists.create("l", owner="kcsc", category="ncii", actor="t")
    hexes = random_hexes(count, seed=seed)
    rows = [HashRow(i + 1, Hash.from_hex("pdq", h), f"case-{i}") for i, h in enumerate(hexes)]
    store.entries.import_rows("l", rows, actor="t")
    return store.lists.get("l").id, [e.id for e in store.entries.listed("l")], hexes


def report(store: Store, org: str, entry_id: int, list_id: int, outcome: str, ago: int = 60) -> str:
    """Report on ``org``'s match of the entry ``ago`` seconds ago (one match a second)."""
    at = int(time.time()) - ago
    token = store.outcomes.tokens().issue(entry_id, list_id, org, at)
    done = store.outcomes.report(org, [{"match_id": token, "outcome": outcome}], actor="t")
    assert done.rejected == 0, done.errors
    return token


def verify(secret: str, headers: dict[str, str], body: bytes) -> dict[str, Any]:
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers[SIGNATURE_HEADER], expected)
    payload: dict[str, Any] = json.loads(body)
    assert int(headers[TIMESTAMP_HEADER]) == payload["sent_at"]
    return payload


def test_a_withdrawal_notice_is_signed_and_retried_after_a_500(
    store: Store, receiver: Receiver
) -> None:
    list_id, ids, hexes = listed(store)
    _, secret = store.webhooks.set("ncc", receiver.url, actor="t")
    store.webhooks.set("meta", receiver.url, actor="t")
    removed = report(store, "ncc", ids[0], list_id, "removed")
    actioned = report(store, "ncc", ids[0], list_id, "actioned", ago=120)  # a second upload
    report(store, "meta", ids[0], list_id, "not_actioned")  # kept it up: nothing to restore
    report(store, "tiktok", ids[0], list_id, "removed")  # no webhook: nothing to send
    report(store, "ncc", ids[1], list_id, "removed")  # another entry, not withdrawn
    store.withdrawals.withdraw(
        "l", actor="victim", reason="asked", hashes=[Hash.from_hex("pdq", hexes[0])]
    )
    pending = store.webhooks.deliveries()
    assert [(d["organisation"], d["status"], d["entry_id"]) for d in pending] == [
        ("ncc", "pending", ids[0])
    ]

    receiver.statuses = [500]
    sender = WebhookSender(store, FAST, holder="a")
    assert sender.run_once() == 0
    (failed,) = store.webhooks.deliveries()
    assert (failed["status"], failed["attempts"], failed["last_status"]) == ("pending", 1, 500)
    deadline = time.monotonic() + 10
    while sender.run_once() == 0:
        assert time.monotonic() < deadline, "never retried"
        time.sleep(0.02)
    assert len(receiver.requests) == 2
    headers, body = receiver.requests[-1]
    payload = verify(secret, headers, body)
    assert payload["event"] == "entry.withdrawn" and payload["list"] == "l"
    assert payload["entry_id"] == ids[0] and sorted(payload["match_ids"]) == sorted(
        [removed, actioned]
    )
    assert dt.datetime.fromisoformat(payload["withdrawn_at"]).tzinfo is not None
    assert "reason_class" in payload and payload["delivery_id"] == failed["id"]
    assert "asked" not in body.decode()  # the owner's free-text reason stays with the owner
    (done,) = store.webhooks.deliveries()
    assert (done["status"], done["attempts"]) == ("delivered", 2)
    assert sender.run_once() == 0 and len(receiver.requests) == 2  # delivered once
    (ncc,) = store.webhooks.all("ncc")
    assert ncc["deliveries"] == {"pending": 0, "delivered": 1, "failed": 0}
    sender.stop()


def test_a_notice_is_given_up_after_the_configured_attempts(
    store: Store, receiver: Receiver
) -> None:
    list_id, ids, _hexes = listed(store, seed=22)
    store.webhooks.set("ncc", receiver.url, actor="t")
    report(store, "ncc", ids[0], list_id, "removed")
    store.withdrawals.withdraw("l", actor="v", reason="r", references=["case-0"])
    receiver.statuses = [503] * 10
    sender = WebhookSender(store, SenderSettings(**{**FAST.__dict__, "max_attempts": 3}), "a")
    deadline = time.monotonic() + 10
    while store.webhooks.deliveries()[0]["status"] == "pending":
        assert time.monotonic() < deadline
        sender.run_once()
        time.sleep(0.02)
    (gave_up,) = store.webhooks.deliveries()
    assert (gave_up["status"], gave_up["attempts"], gave_up["last_error"]) == (
        "failed",
        3,
        "HTTP 503",
    )
    assert len(receiver.requests) == 3
    env = hashmatch_env(database_url=store.database.engine.url.render_as_string(False))
    listing = run_hashmatch("webhooks", "ls", env=env)
    assert json.loads(listing.stdout)[0]["deliveries"]["failed"] == 1
    sender.stop()


def test_one_sender_holds_the_lease(store: Store, receiver: Receiver) -> None:
    list_id, ids, _hexes = listed(store, seed=23)
    store.webhooks.set("ncc", receiver.url, actor="t")
    for entry_id in ids:
        report(store, "ncc", entry_id, list_id, "removed")
    first, second = WebhookSender(store, FAST, "one"), WebhookSender(store, FAST, "two")
    store.withdrawals.withdraw("l", actor="v", reason="r", references=["case-0"])
    assert first.run_once() == 1
    store.withdrawals.withdraw("l", actor="v", reason="r", references=["case-1"])
    assert second.run_once() == 0  # pending, but the lease is the first's
    assert len(receiver.requests) == 1 and not second.holds_lease()
    first.stop()  # releases the lease: the second takes over at once
    assert second.run_once() == 1
    assert [json.loads(body)["entry_id"] for _, body in receiver.requests] == ids
    second.stop()


def test_private_targets_are_refused_unless_allowed(store: Store, receiver: Receiver) -> None:
    list_id, ids, _ = listed(store, seed=24)
    store.webhooks.set("ncc", receiver.url, actor="t")
    report(store, "ncc", ids[0], list_id, "removed")
    store.withdrawals.withdraw("l", actor="v", reason="r", references=["case-0"])
    strict = WebhookSender(store, SenderSettings(retry_seconds=60), "strict")
    assert strict.run_once() == 0
    (refused,) = store.webhooks.deliveries()
    assert "non-public" in refused["last_error"] and refused["status"] == "pending"
    assert receiver.requests == []
    strict.stop()


def test_webhooks_over_http_end_to_end(service: Service, receiver: Receiver) -> None:
    kcsc = service.key("kcsc", Role.CONTRIBUTE)
    ncc = service.key("ncc", Role.ADMIN)
    platform = service.key("ncc", Role.MATCH)
    value = random_hexes(1, seed=25)[0]
    service.share_one(kcsc, ncc, value)
    assert (
        service.client.put("/v1/webhooks", json={"url": receiver.url}, headers=platform).status_code
        == 403
    )
    bad = service.client.put("/v1/webhooks", json={"url": "ftp://x/y"}, headers=ncc)
    assert bad.status_code == 422
    registered = service.client.put("/v1/webhooks", json={"url": receiver.url}, headers=ncc)
    assert registered.status_code == 200, registered.text
    secret = registered.json()["secret"]
    query = {"hashes": [{"algorithm": "pdq", "value": value}]}
    match = service.post("/v1/match/hashes", platform, json=query).json()
    match_id = match["results"][0]["matches"][0]["match_id"]
    reported = service.post(
        "/v1/outcomes", platform, json={"outcomes": [{"match_id": match_id, "outcome": "removed"}]}
    )
    assert reported.json()["accepted"] == 1
    withdrawn = service.post(
        "/v1/lists/ncii-kr/withdrawals", kcsc, json={"reason": "victim", "references": ["case-1"]}
    )
    assert withdrawn.json()["withdrawn"] == 1
    deadline = time.monotonic() + 15  # the app's own sender, started by its lifespan
    while not receiver.requests:
        assert time.monotonic() < deadline, "the app's sender never delivered"
        time.sleep(0.05)
    headers, body = receiver.requests[0]
    assert verify(secret, headers, body)["match_ids"] == [match_id]
    status = service.client.get("/v1/webhooks", headers=ncc).json()
    assert status["url"] == receiver.url and "secret" not in status
    deadline = time.monotonic() + 5
    while (
        service.client.get("/v1/webhooks", headers=ncc).json()["recent"][0]["status"] != "delivered"
    ):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    set_by_cli = service.cli("webhooks", "set", "meta", "--url", receiver.url)
    assert set_by_cli.returncode == 0 and json.loads(set_by_cli.stdout)["secret"].startswith(
        "whsec_"
    )
    assert b"not shown again" in set_by_cli.stderr
