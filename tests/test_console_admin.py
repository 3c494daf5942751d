"""The console's admin pages: API keys, people and exchanges, through the real ASGI app.

Each is an organisation admin's only: viewers and analysts are refused (403); another
organisation's key, person or peer is not found (404) and stays as it was; a post without the
session's CSRF token is refused (403) and changes nothing; every change is audited under the
person (``user:<login>:<org>``); a secret (a key, a first or reset password) is shown once, on
the answer to the form, and never again."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from console import PASSWORD, csrf_of, person, post_form, sign_in, staff_client
from hashmatch.store import Role, StaffRole, Store
from services import Service, running_service

ADMIN_PAGES = ("/console/keys", "/console/people", "/console/exchanges")


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    with running_service("sqlite", tmp_path) as running:
        yield running


@pytest.fixture
def admin(service: Service) -> TestClient:
    return staff_client(service, "acme", "ann", StaffRole.ADMIN)


def audited(store: Store, org: str, action: str) -> list[tuple[str, str]]:
    return [(r["actor"], r["target"]) for r in store.audit.search(org, action=action)]


def post_without_csrf(client: TestClient, action: str, data: dict[str, str]) -> None:
    """A post with a made-up token, and one with none: both refused."""
    forged = client.post(action, data={**data, "csrf": "forged"}, follow_redirects=False)
    # (a form with some field: an empty body is not a form at all, a 400)
    missing = client.post(action, data={**data, "go": "1"}, follow_redirects=False)
    assert forged.status_code == missing.status_code == 403, (forged.text, missing.text)


# --- roles ------------------------------------------------------------------------------


@pytest.mark.parametrize("role", [StaffRole.VIEWER, StaffRole.ANALYST])
def test_admin_pages_refuse_viewers_and_analysts(service: Service, role: StaffRole) -> None:
    client = staff_client(service, "acme", f"someone-{role.value}", role)
    key, _ = service.store.keys.create("acme", frozenset({Role.MATCH}), actor="test")
    person(service, "acme", "other", StaffRole.VIEWER)
    service.store.peers.add(
        "feed", url="http://127.0.0.1:1", secret="hm_peer_secret", organisation="acme", actor="t"
    )
    token = csrf_of(client.get("/console/account").text)
    for page in ADMIN_PAGES:
        assert client.get(page).status_code == 403
        assert "/console/keys" not in client.get("/console/").text  # not in the menu
    for action, data in (
        ("/console/keys", {"name": "x", "roles": "match"}),
        (f"/console/keys/{key.id}/revoke", {}),
        ("/console/people", {"login": "newbie", "role": "admin"}),
        ("/console/people/other/disable", {}),
        ("/console/people/other/password", {}),
        ("/console/exchanges/feed/pause", {}),
    ):
        answer = client.post(action, data={**data, "csrf": token}, follow_redirects=False)
        assert answer.status_code == 403, (action, answer.text)
    store = service.store
    assert [k.id for k in store.keys.all()] == [key.id] and store.keys.all()[0].revoked_at is None
    assert {u.login for u in store.users.all()} == {f"someone-{role.value}", "other"}
    assert store.users.get("other").disabled_at is None
    assert not store.peers.get("feed").paused
    # Any signed-in person reads the audit page.
    assert client.get("/console/audit").status_code == 200


# --- keys -------------------------------------------------------------------------------


def _secret_of(html: str) -> str:
    found = re.search(r'<code class="secret">([^<]+)</code>', html)
    assert found is not None, html
    return found.group(1)


def test_a_key_is_created_with_its_secret_shown_once(service: Service, admin: TestClient) -> None:
    answer = post_form(
        admin, "/console/keys", "/console/keys", {"name": "platform one", "roles": "contribute"}
    )
    assert answer.status_code == 201, answer.text
    assert answer.headers["cache-control"] == "no-store"
    assert "not shown again" in answer.text
    secret = _secret_of(answer.text)
    key = service.store.keys.authenticate(secret)
    assert key is not None and key.organisation == "acme" and key.name == "platform one"
    assert key.roles == frozenset({Role.CONTRIBUTE})
    page = admin.get("/console/keys")
    assert page.status_code == 200
    assert secret not in page.text and secret[10:] not in page.text
    assert key.prefix in page.text and "platform one" in page.text
    assert audited(service.store, "acme", "key.create") == [("user:ann:acme", "acme")]
    # The key works on the API.
    listed = service.client.get("/v1/lists", headers={"Authorization": f"Bearer {secret}"})
    assert listed.status_code == 200


def test_a_key_with_several_roles_and_without_any(service: Service, admin: TestClient) -> None:
    page = admin.get("/console/keys")
    token = csrf_of(page.text)
    answer = admin.post(
        "/console/keys",
        data={"csrf": token, "name": "partner", "roles": ["match", "exchange"]},
    )
    assert answer.status_code == 201
    key = service.store.keys.authenticate(_secret_of(answer.text))
    assert key is not None and key.roles == frozenset({Role.MATCH, Role.EXCHANGE})
    none = admin.post("/console/keys", data={"csrf": token, "name": "no roles"})
    assert none.status_code == 422
    assert "Choose at least one role" in none.text
    bad = admin.post("/console/keys", data={"csrf": token, "roles": "superuser"})
    assert bad.status_code == 422
    assert len(service.store.keys.all()) == 1


def test_revoking_keys_own_and_others(service: Service, admin: TestClient) -> None:
    store = service.store
    own, own_secret = store.keys.create("acme", frozenset({Role.MATCH}), actor="test")
    theirs, their_secret = store.keys.create("beta", frozenset({Role.ADMIN}), actor="test")
    page = admin.get("/console/keys")
    assert f"/console/keys/{own.id}/revoke" in page.text
    assert f"/console/keys/{theirs.id}/revoke" not in page.text
    assert 'data-confirm="Revoke key' in page.text
    # Without the token: refused, and the key still works.
    post_without_csrf(admin, f"/console/keys/{own.id}/revoke", {})
    assert store.keys.authenticate(own_secret) is not None
    # Another organisation's key: not found, and it still works.
    answer = post_form(admin, "/console/keys", f"/console/keys/{theirs.id}/revoke", {})
    assert answer.status_code == 404
    assert store.keys.authenticate(their_secret) is not None
    assert post_form(admin, "/console/keys", "/console/keys/99999/revoke", {}).status_code == 404
    # Its own: revoked, audited under the person.
    answer = post_form(admin, "/console/keys", f"/console/keys/{own.id}/revoke", {})
    assert answer.status_code == 303
    assert answer.headers["location"] == f"/console/keys?revoked={own.id}"
    assert store.keys.authenticate(own_secret) is None
    assert audited(store, "acme", "key.revoke") == [("user:ann:acme", str(own.id))]
    assert audited(store, "beta", "key.revoke") == []
    shown = admin.get(answer.headers["location"])
    assert f"Key {own.id} is revoked" in shown.text
    # Twice: there is no live key to revoke.
    again = post_form(admin, "/console/keys", f"/console/keys/{own.id}/revoke", {})
    assert again.status_code == 404


def test_a_key_post_without_csrf_creates_nothing(service: Service, admin: TestClient) -> None:
    post_without_csrf(admin, "/console/keys", {"name": "x", "roles": "admin"})
    assert service.store.keys.all() == []


# --- people -----------------------------------------------------------------------------


def test_an_invited_person_gets_a_first_password_once(service: Service, admin: TestClient) -> None:
    answer = post_form(
        admin,
        "/console/people",
        "/console/people",
        {"login": "Carol@Example.org", "name": "Carol <C>", "role": "analyst"},
    )
    assert answer.status_code == 201, answer.text
    assert "not shown again" in answer.text
    assert "Carol &lt;C&gt;" in answer.text
    password = _secret_of(answer.text)
    store = service.store
    carol = store.users.get("carol@example.org", "acme")
    assert carol.role is StaffRole.ANALYST and carol.must_change_password
    assert store.users.authenticate("carol@example.org", password).outcome == "ok"
    page = admin.get("/console/people")
    assert password not in page.text and "carol@example.org" in page.text
    assert audited(store, "acme", "user.create")[0] == ("user:ann:acme", "acme")  # newest
    # She signs in, and must choose her own password first.
    client = sign_in(service, "carol@example.org", password)
    assert client.get("/console/", follow_redirects=False).headers["location"] == (
        "/console/account/password"
    )


def test_inviting_a_taken_or_bad_login(service: Service, admin: TestClient) -> None:
    person(service, "beta", "bob", StaffRole.ADMIN)
    taken = post_form(
        admin, "/console/people", "/console/people", {"login": "bob", "role": "viewer"}
    )
    assert taken.status_code == 409 and "That login is taken" in taken.text
    assert service.store.users.get("bob").organisation == "beta"
    bad = post_form(admin, "/console/people", "/console/people", {"login": "-x-", "role": "viewer"})
    assert bad.status_code == 422
    role = post_form(admin, "/console/people", "/console/people", {"login": "dan", "role": "root"})
    assert role.status_code == 422
    assert {u.login for u in service.store.users.all("acme")} == {"ann"}
    post_without_csrf(admin, "/console/people", {"login": "eve", "role": "admin"})
    assert {u.login for u in service.store.users.all("acme")} == {"ann"}


def test_disable_and_enable(service: Service, admin: TestClient) -> None:
    store = service.store
    dave = staff_client(service, "acme", "dave", StaffRole.ANALYST)
    assert dave.get("/console/").status_code == 200
    post_without_csrf(admin, "/console/people/dave/disable", {})
    assert store.users.get("dave").disabled_at is None
    answer = post_form(admin, "/console/people", "/console/people/dave/disable", {})
    assert answer.status_code == 303
    assert store.users.get("dave").disabled_at is not None
    # Signed out at once, and cannot sign in.
    assert dave.get("/console/", follow_redirects=False).status_code == 303
    assert store.users.authenticate("dave", PASSWORD).outcome == "disabled"
    assert "dave is disabled" in admin.get(answer.headers["location"]).text
    answer = post_form(admin, "/console/people", "/console/people/dave/enable", {})
    assert answer.status_code == 303
    assert store.users.authenticate("dave", PASSWORD).outcome == "ok"
    actions = [(r["actor"], r["action"]) for r in store.audit.search("acme", actor="user:ann:acme")]
    assert ("user:ann:acme", "user.disable") in actions
    assert ("user:ann:acme", "user.enable") in actions


def test_an_admin_cannot_disable_or_reset_themselves(service: Service, admin: TestClient) -> None:
    page = admin.get("/console/people")
    assert "/console/people/ann/disable" not in page.text
    for action in ("disable", "password", "totp"):
        answer = post_form(admin, "/console/people", f"/console/people/ann/{action}", {})
        assert answer.status_code == 403, action
    assert service.store.users.get("ann").disabled_at is None
    assert admin.get("/console/people").status_code == 200  # still signed in


def test_another_organisations_people_are_not_found(service: Service, admin: TestClient) -> None:
    store = service.store
    bob = staff_client(service, "beta", "bob", StaffRole.ADMIN)
    page = admin.get("/console/people")
    assert "bob" not in page.text
    for action in ("disable", "enable", "password", "totp"):
        answer = post_form(admin, "/console/people", f"/console/people/bob/{action}", {})
        assert answer.status_code == 404, action
        nobody = post_form(admin, "/console/people", f"/console/people/nobody/{action}", {})
        assert nobody.status_code == 404, action
    assert store.users.get("bob").disabled_at is None
    assert store.users.authenticate("bob", PASSWORD).outcome == "ok"
    assert bob.get("/console/").status_code == 200  # not signed out
    assert audited(store, "beta", "user.reset") == []


def test_reset_password_and_second_factor(service: Service, admin: TestClient) -> None:
    from hashmatch import credentials

    store = service.store
    erin = staff_client(service, "acme", "erin", StaffRole.VIEWER)
    secret = credentials.new_totp_secret()
    code = credentials.totp_code(secret, credentials.totp_step())
    assert store.users.enrol_totp(store.users.get("erin").id, secret, code, actor="test")
    post_without_csrf(admin, "/console/people/erin/password", {})
    assert store.users.authenticate("erin", PASSWORD).outcome == "ok"
    answer = post_form(admin, "/console/people", "/console/people/erin/password", {})
    assert answer.status_code == 200 and "not shown again" in answer.text
    new = _secret_of(answer.text)
    assert store.users.authenticate("erin", PASSWORD).outcome == "wrong"
    assert store.users.authenticate("erin", new).outcome == "ok"
    assert store.users.get("erin").must_change_password
    assert store.users.get("erin").has_totp  # the password only
    assert erin.get("/console/", follow_redirects=False).status_code == 303  # signed out
    assert new not in admin.get("/console/people").text
    page = admin.get("/console/people")
    assert "/console/people/erin/totp" in page.text
    answer = post_form(admin, "/console/people", "/console/people/erin/totp", {})
    assert answer.status_code == 303
    assert not store.users.get("erin").has_totp
    assert store.users.authenticate("erin", new).outcome == "ok"  # the password stays
    resets = [(r["actor"], r["counts"]) for r in store.audit.search("acme", action="user.reset")]
    assert resets == [
        ("user:ann:acme", {"user": "erin", "password": False, "totp": True}),
        ("user:ann:acme", {"user": "erin", "password": True, "totp": False}),
    ]


# --- exchanges --------------------------------------------------------------------------


def test_exchanges_page_without_peers(service: Service, admin: TestClient) -> None:
    service.store.peers.add(
        "theirs", url="http://127.0.0.1:1", secret="hm_x", organisation="beta", actor="t"
    )
    page = admin.get("/console/exchanges")
    assert page.status_code == 200
    assert "subscribes to no partner instance" in page.text
    assert "theirs" not in page.text


def test_exchanges_pause_resume_and_no_secret(service: Service, admin: TestClient) -> None:
    store = service.store
    store.peers.add(
        "ncc", url="http://127.0.0.1:1", secret="hm_the_peer_secret", organisation="acme", actor="t"
    )
    store.peers.add(
        "theirs", url="http://127.0.0.1:2", secret="hm_their_secret", organisation="beta", actor="t"
    )
    store.peers.record_failure("ncc", "connection refused", store.peers.get("ncc").created_at)
    page = admin.get("/console/exchanges")
    assert page.status_code == 200
    assert "ncc" in page.text and "http://127.0.0.1:1" in page.text
    assert "connection refused" in page.text and "never read" in page.text
    assert "theirs" not in page.text and "hm_the_peer_secret" not in page.text
    post_without_csrf(admin, "/console/exchanges/ncc/pause", {})
    assert not store.peers.get("ncc").paused
    theirs = post_form(admin, "/console/exchanges", "/console/exchanges/theirs/pause", {})
    assert theirs.status_code == 404 and not store.peers.get("theirs").paused
    assert (
        post_form(admin, "/console/exchanges", "/console/exchanges/x/pause", {}).status_code == 404
    )
    answer = post_form(admin, "/console/exchanges", "/console/exchanges/ncc/pause", {})
    assert answer.status_code == 303 and store.peers.get("ncc").paused
    page = admin.get(answer.headers["location"])
    assert "Paused" in page.text and "/console/exchanges/ncc/resume" in page.text
    assert "hm_the_peer_secret" not in page.text
    answer = post_form(admin, "/console/exchanges", "/console/exchanges/ncc/resume", {})
    assert answer.status_code == 303 and not store.peers.get("ncc").paused
    assert audited(store, "acme", "peer.pause") == [("user:ann:acme", "ncc")]
    assert audited(store, "acme", "peer.resume") == [("user:ann:acme", "ncc")]
    assert audited(store, "beta", "peer.pause") == []
