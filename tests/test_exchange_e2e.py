"""Two real instances on loopback, each with its own database (origin on SQLite, subscriber on
PostgreSQL), the subscriber reading the origin's feed through a proxy that injects faults."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from conftest import random_hexes
from dbs import database
from faultproxy import FaultProxy
from test_e2e import free_port

FAULTS = ("reset", "error500", "error503", "truncate", "duplicate", "replay", "garbage", "delay")


def instance_env(
    folder: Path, name: str, database_url: str = "", **settings: str
) -> dict[str, str]:
    """One instance's settings: its own data directory and database (SQLite when no URL)."""
    env = {
        "HASHMATCH_DATA_DIR": str(folder / name),
        "HASHMATCH_DATABASE_URL": database_url,
        "HASHMATCH_INSTANCE_NAME": name,
    }
    env.update({f"HASHMATCH_{key.upper()}": value for key, value in settings.items()})
    return env


def cli(env: dict[str, str], *args: str) -> Any:
    result = subprocess.run(
        [sys.executable, "-m", "hashmatch", *args],
        env={**os.environ, **env},
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()
    return json.loads(result.stdout) if result.stdout.strip() else None


def key(env: dict[str, str], org: str, *roles: str) -> str:
    args = ["keys", "create", "--org", org]
    for role in roles:
        args += ["--role", role]
    return str(cli(env, *args)["key"])


@contextmanager
def serve(
    env: dict[str, str], port: int | None = None
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = port or free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "hashmatch", "serve", "--port", str(port)],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _ready(base), 60, "service ready")
        yield base, process
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=20)


def _ready(base: str) -> bool:
    try:
        return httpx.get(f"{base}/readyz", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def wait_for(condition: Callable[[], bool], seconds: float, what: str) -> float:
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < seconds, f"timed out waiting for {what}"
        time.sleep(0.05)
    return time.monotonic() - start


class Hook:
    """A platform's webhook endpoint: records every body it is sent."""

    def __init__(self) -> None:
        import http.server
        import threading

        received: list[bytes] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                received.append(self.rfile.read(int(self.headers["Content-Length"])))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.received = received
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hook"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> Hook:
        self._thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self._server.shutdown()
        self._server.server_close()


def exported(env: dict[str, str], name: str) -> list[tuple[str, str]]:
    result = subprocess.run(
        [sys.executable, "-m", "hashmatch", "lists", "export", name, "--format", "jsonl"],
        env={**os.environ, **env},
        capture_output=True,
        timeout=60,
        check=True,
    )
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    return [(row["hash"], row["reference"]) for row in rows]


def matches(base: str, auth: dict[str, str], value: str) -> list[dict[str, Any]]:
    body = {"hashes": [{"algorithm": "pdq", "value": value}]}
    answer = httpx.post(f"{base}/v1/match/hashes", json=body, headers=auth, timeout=10).json()
    return list(answer["results"][0]["matches"])


def test_two_instances_exchange_a_list_through_faults(tmp_path: Path) -> None:
    hexes = random_hexes(300, seed=11)
    with database("postgresql", tmp_path) as subscriber_url:
        origin_env = instance_env(tmp_path, "ncc")
        subscriber_env = instance_env(
            tmp_path,
            "kcsc",
            subscriber_url,
            exchange_wait="2",
            exchange_max_backoff="0.5",
            exchange_outcomes_every="0.5",
            match_count_flush_seconds="0.2",
            webhook_private_targets="true",
            webhook_retry_seconds="0.2",
        )
        cli(
            origin_env,
            "lists",
            "create",
            "ncii-tw",
            "--owner",
            "ncc",
            "--category",
            "ncii",
            "--jurisdiction",
            "TW",
            "--share",
            "kcsc",
            "--tlp",
            "GREEN",
        )
        csv = "algorithm,hash,reference\n" + "".join(
            f"pdq,{h},R{i}\n" for i, h in enumerate(hexes[:200])
        )
        (tmp_path / "set.csv").write_text(csv)
        cli(origin_env, "lists", "import", "ncii-tw", str(tmp_path / "set.csv"))
        cli(origin_env, "shares", "accept", "ncii-tw", "--org", "kcsc")
        exchange_key = key(origin_env, "kcsc", "exchange")
        owner = {"Authorization": f"Bearer {key(origin_env, 'ncc', 'contribute')}"}
        platform = {"Authorization": f"Bearer {key(subscriber_env, 'kcsc', 'match')}"}
        platform_admin = {"Authorization": f"Bearer {key(subscriber_env, 'kcsc', 'admin')}"}
        (tmp_path / "peer.key").write_text(exchange_key + "\n")
        with serve(origin_env) as (origin, _), FaultProxy(origin) as proxy, Hook() as hook:
            proxy.timeout_delay = 3.0
            for fault in FAULTS:  # every kind at least once, then at random
                proxy.inject(fault)
            proxy.random_faults(0.3, seed=5, kinds=FAULTS)
            added = cli(
                subscriber_env,
                "exchange",
                "add",
                "ncc",
                "--url",
                proxy.url,
                "--key-file",
                str(tmp_path / "peer.key"),
                "--org",
                "kcsc",
            )
            assert exchange_key not in json.dumps(added)  # the key goes in, never out
            with serve(subscriber_env) as (subscriber, process):
                # Initial sync through the faults: every listed hash matches, with its origin.
                wait_for(lambda: bool(matches(subscriber, platform, hexes[199])), 60, "sync")
                (hit,) = matches(subscriber, platform, hexes[0])
                assert hit["list"] == "ncc:ncii-tw" and hit["reference"] == "R0"
                assert hit["origin"]["instance"] == "ncc" and hit["origin"]["jurisdiction"] == "TW"
                # The platform removes the content and says so; it wants to hear of a withdrawal.
                webhook = httpx.put(
                    f"{subscriber}/v1/webhooks", headers=platform_admin, json={"url": hook.url}
                )
                assert webhook.status_code == 200, webhook.text
                reported = httpx.post(
                    f"{subscriber}/v1/outcomes",
                    headers=platform,
                    json={"outcomes": [{"match_id": hit["match_id"], "outcome": "removed"}]},
                )
                assert reported.status_code == 200 and reported.json()["accepted"] == 1, (
                    reported.text
                )
                # Adds and withdrawals at the origin reach the mirror, faults or not.
                for i in range(200, 230):
                    entry = {"algorithm": "pdq", "hash": hexes[i], "reference": f"R{i}"}
                    response = httpx.post(
                        f"{origin}/v1/lists/ncii-tw/entries",
                        headers=owner,
                        json={"entries": [entry]},
                    )
                    assert response.status_code == 200, response.text
                withdrawn = [f"R{i}" for i in range(0, 200, 10)]
                response = httpx.post(
                    f"{origin}/v1/lists/ncii-tw/withdrawals",
                    headers=owner,
                    json={
                        "reason": "victim asked",
                        "references": withdrawn,
                        "reason_class": "victim_request",
                    },
                )
                assert response.status_code == 200, response.text
                # The subscriber killed mid-stream: it resumes from its last applied page.
                process.send_signal(signal.SIGKILL)
                process.wait()
            with serve(subscriber_env) as (subscriber, _):
                wait_for(lambda: bool(matches(subscriber, platform, hexes[229])), 60, "adds")
                wait_for(lambda: not matches(subscriber, platform, hexes[190]), 60, "withdrawal")
                assert set(proxy.stats.faults) >= set(FAULTS) - {"replay"}, proxy.stats
                # R0 was withdrawn at the origin: the platform that removed it is told.
                wait_for(lambda: bool(hook.received), 30, "the withdrawal webhook")
                notice = json.loads(hook.received[0])
                assert notice["event"] == "entry.withdrawn" and notice["list"] == "ncc:ncii-tw"
                assert notice["match_ids"] == [hit["match_id"]]

                # And the origin's owner learns what happened abroad.
                def removed_abroad() -> bool:
                    stats = httpx.get(f"{origin}/v1/lists/ncii-tw/stats", headers=owner).json()
                    partner = stats.get("partners", {}).get("kcsc", {})
                    return bool(partner.get("outcomes", {}).get("removed") == 1)

                wait_for(removed_abroad, 30, "outcomes sent back to the origin")
                proxy.clear()
                verified = cli(subscriber_env, "exchange", "verify", "ncc", "--no-repair")
                assert verified["equal"], verified
                # Exactly once: the mirror holds each live origin entry once, and nothing else.
                theirs = exported(origin_env, "ncii-tw")
                ours = exported(subscriber_env, "ncc:ncii-tw")
                assert len(set(theirs)) == len(theirs) == 230 - 20
                assert sorted(ours) == sorted(theirs)
            shown = cli(subscriber_env, "exchange", "show", "ncc")
            assert exchange_key not in json.dumps(shown)
            assert shown["mirrors"][0]["tlp"] == "GREEN"


def test_tlp_labels_and_unsharing_hold_across_two_instances(tmp_path: Path) -> None:
    labels = {"red": "RED", "strict": "AMBER+STRICT", "amber": "AMBER", "green": "GREEN"}
    hexes = dict(zip(labels, random_hexes(len(labels), seed=12), strict=True))
    with database("postgresql", tmp_path) as subscriber_url:
        origin_env = instance_env(tmp_path, "ncc")
        subscriber_env = instance_env(tmp_path, "kcsc", subscriber_url, exchange_wait="1")
        for name, label in labels.items():
            cli(
                origin_env,
                "lists",
                "create",
                name,
                "--owner",
                "ncc",
                "--category",
                "ncii",
                "--share",
                "kcsc",
                "--tlp",
                label,
            )
            (tmp_path / f"{name}.csv").write_text(
                f"algorithm,hash,reference\npdq,{hexes[name]},{name}-1\n"
            )
            cli(origin_env, "lists", "import", name, str(tmp_path / f"{name}.csv"))
            cli(origin_env, "shares", "accept", name, "--org", "kcsc")
        (tmp_path / "peer.key").write_text(key(origin_env, "kcsc", "exchange"))
        kcsc = {"Authorization": f"Bearer {key(subscriber_env, 'kcsc', 'match', 'admin')}"}
        platform = {
            "Authorization": f"Bearer {key(subscriber_env, 'platform-a', 'match', 'admin')}"
        }
        partner = {"Authorization": f"Bearer {key(subscriber_env, 'partner', 'admin')}"}
        relay = {"Authorization": f"Bearer {key(subscriber_env, 'partner', 'exchange')}"}
        with serve(origin_env) as (origin, _):
            cli(
                subscriber_env,
                "exchange",
                "add",
                "ncc",
                "--url",
                origin,
                "--key-file",
                str(tmp_path / "peer.key"),
                "--org",
                "kcsc",
            )
            with serve(subscriber_env) as (subscriber, _):
                for name in labels:
                    value = hexes[name]
                    wait_for(lambda: bool(matches(subscriber, kcsc, value)), 30, name)  # noqa: B023
                    (hit,) = matches(subscriber, kcsc, value)
                    assert hit["list"] == f"ncc:{name}"

                def offer(name: str, *orgs: str) -> httpx.Response:
                    return httpx.patch(
                        f"{subscriber}/v1/lists/ncc:{name}",
                        headers=kcsc,
                        json={"shared_with": list(orgs)},
                    )

                # RED and AMBER+STRICT: matched for kcsc only, offered to nobody.
                for name in ("red", "strict"):
                    refused = offer(name, "platform-a")
                    assert refused.status_code == 409, refused.text
                    assert refused.json()["error"]["code"] == "read_only_mirror"
                # AMBER reaches kcsc's own platforms; GREEN may go on to another instance.
                assert offer("amber", "platform-a").status_code == 200
                assert offer("green", "platform-a", "partner").status_code == 200
                for name in ("amber", "green"):
                    accepted = httpx.post(
                        f"{subscriber}/v1/shares/ncc:{name}/accept", headers=platform
                    )
                    assert accepted.status_code == 200, accepted.text
                assert (
                    httpx.post(
                        f"{subscriber}/v1/shares/ncc:green/accept", headers=partner
                    ).status_code
                    == 200
                )
                wait_for(lambda: bool(matches(subscriber, platform, hexes["amber"])), 10, "amber")
                assert not matches(subscriber, platform, hexes["red"])
                feed = httpx.get(f"{subscriber}/v1/exchange/feed", headers=relay).json()
                assert feed["lists"] == ["ncc.green"]  # AMBER is never re-exported
                echo = httpx.get(
                    f"{subscriber}/v1/exchange/feed",
                    headers={**relay, "X-Hashmatch-Instance": "ncc"},
                )
                assert echo.json()["lists"] == []  # nor anything sent back where it came from
                # A label is made stricter locally, never looser.
                looser = httpx.patch(
                    f"{subscriber}/v1/lists/ncc:amber", headers=kcsc, json={"tlp": "GREEN"}
                )
                assert looser.status_code == 409
                # The origin's list left: its mirror stops matching, for everyone.
                cli(origin_env, "shares", "leave", "amber", "--org", "kcsc")
                wait_for(lambda: not matches(subscriber, kcsc, hexes["amber"]), 30, "unshared")
                assert not matches(subscriber, platform, hexes["amber"])
                assert matches(subscriber, kcsc, hexes["green"])  # the others stay
