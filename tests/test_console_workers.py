"""The console behind ``--workers 3``: sessions, CSRF tokens, lockouts and staged uploads live
in the database, so whichever worker answers, a person stays signed in, a form from one worker
is accepted by another, and a lockout counted by one holds in all."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from browser import live_console

PASSWORD = "a long enough passphrase"


def csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found is not None
    return found.group(1)


def sign_in(client: httpx.Client, login: str, password: str = PASSWORD) -> httpx.Response:
    page = client.get("/console/login")
    return client.post(
        "/console/login",
        data={"login": login, "password": password, "csrf": csrf(page.text)},
        follow_redirects=False,
    )


def test_sessions_forms_and_lockouts_hold_across_three_workers(tmp_path: Path) -> None:
    with live_console(tmp_path, env_extra={"HASHMATCH_WORKERS": "3"}) as server:
        server.create_user("alice", "kcsc", "admin", password=PASSWORD)
        server.create_user("bob", "kcsc", "viewer", password=PASSWORD)
        key = server.api_key("kcsc", "admin")
        api = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"})
        assert api.post("/v1/lists", json={"name": "l1", "category": "ncii"}).status_code == 201
        # A new connection per request: the kernel spreads them over the workers.
        fresh_connections = httpx.Limits(max_keepalive_connections=0)
        with httpx.Client(base_url=server.url, timeout=30, limits=fresh_connections) as client:
            assert sign_in(client, "alice").status_code == 303
            pages = [client.get("/console/keys", follow_redirects=False) for _ in range(30)]
            assert {page.status_code for page in pages} == {200}
            # Forms shown by one worker are accepted by whichever answers the post.
            created = 0
            for n in range(6):
                form = client.get("/console/keys")
                done = client.post(
                    "/console/keys",
                    data={"name": f"k{n}", "roles": "match", "csrf": csrf(form.text)},
                )
                created += done.status_code == 201
            assert created == 6
        failures = []
        for n in range(6):
            with httpx.Client(base_url=server.url, timeout=30) as fresh:
                failures.append(sign_in(fresh, "bob", f"wrong password {n}").status_code)
        assert failures[:4] == [401] * 4 and failures[4:] == [429, 429]
        with httpx.Client(base_url=server.url, timeout=30) as fresh:
            assert sign_in(fresh, "bob").status_code == 429  # locked everywhere
