"""Signing in to the console: passwords, lockout, the second factor, sessions, CSRF, headers,
languages, and what one organisation's people see of another's."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from console import PASSWORD, csrf_of, person, sign_in, staff_client
from hashmatch import credentials
from hashmatch.store import Role, StaffRole
from hashmatch.store.schema import console_sessions
from services import Service, running_service


@pytest.fixture(params=["sqlite", "postgresql"])
def service(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Service]:
    with running_service(request.param, tmp_path) as running:
        yield running


@pytest.fixture
def sqlite_service(tmp_path: Path) -> Iterator[Service]:
    with running_service("sqlite", tmp_path) as running:
        yield running


def browser(service: Service) -> TestClient:
    return TestClient(service.client.app, base_url="http://testserver")


def attempt(client: TestClient, login: str, password: str) -> httpx.Response:
    page = client.get("/console/login")
    response: httpx.Response = client.post(
        "/console/login",
        data={"login": login, "password": password, "csrf": csrf_of(page.text)},
        follow_redirects=False,
    )
    return response


def test_pages_need_a_session_and_send_the_browser_to_sign_in(sqlite_service: Service) -> None:
    client = browser(sqlite_service)
    response = client.get("/console/account?tab=2", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/console/login?next=%2Fconsole%2Faccount%3Ftab%3D2"
    assert client.get("/console/", follow_redirects=False).status_code == 303


def test_every_page_carries_the_security_headers(sqlite_service: Service) -> None:
    client = browser(sqlite_service)
    for path in ("/console/login", "/console/static/console.css", "/console/nowhere"):
        response = client.get(path)
        policy = response.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in policy
        assert "script-src 'self'" in policy and "unsafe-inline" not in policy
        assert "default-src 'none'" in policy
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["x-content-type-options"] == "nosniff"
    assert client.get("/console/login").headers["cache-control"] == "no-store"
    assert client.get("/console/nowhere").status_code == 404


def test_a_right_password_opens_a_session_in_a_strict_http_only_cookie(service: Service) -> None:
    person(service, "kcsc", "alice", StaffRole.ANALYST)
    response = attempt(browser(service), "alice", PASSWORD)
    assert response.status_code == 303
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("hm_session=")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/console" in cookie
    assert "Secure" not in cookie  # plain http here; see the test below for TLS


def test_cookies_are_secure_when_the_operator_says_tls_is_in_front(tmp_path: Path) -> None:
    with running_service("sqlite", tmp_path, console_secure_cookies=True) as service:
        # Behind a proxy the service sees plain http: the setting marks the cookies anyway.
        page = browser(service).get("/console/login")
        assert "Secure" in page.headers["set-cookie"]
        person(service, "kcsc", "alice", StaffRole.ANALYST)
        over_tls = TestClient(service.client.app, base_url="https://testserver")
        response = attempt(over_tls, "alice", PASSWORD)
        assert "Secure" in response.headers["set-cookie"]


def test_wrong_passwords_and_unknown_logins_look_the_same(sqlite_service: Service) -> None:
    person(sqlite_service, "kcsc", "alice", StaffRole.ANALYST)
    client = browser(sqlite_service)
    wrong = attempt(client, "alice", "not the password at all")
    unknown = attempt(client, "mallory", "not the password at all")
    for response in (wrong, unknown):
        assert response.status_code == 401
        assert "hm_session" not in response.headers.get("set-cookie", "")
    assert client.get("/console/", follow_redirects=False).status_code == 303


def test_five_wrong_passwords_lock_the_account_even_for_the_right_one(service: Service) -> None:
    person(service, "kcsc", "alice", StaffRole.ANALYST)
    client = browser(service)
    statuses = [attempt(client, "alice", f"wrong password {n}").status_code for n in range(5)]
    assert statuses == [401, 401, 401, 401, 429]
    locked = attempt(client, "alice", PASSWORD)
    assert locked.status_code == 429
    assert client.get("/console/", follow_redirects=False).status_code == 303
    # Another worker or replica sees the same lock: it lives in the database.
    result = service.store.users.authenticate("alice", PASSWORD)
    assert result.outcome == "locked" and result.retry_after > 0
    later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)
    assert service.store.users.authenticate("alice", PASSWORD, now=later).outcome == "ok"
    assert service.store.users.get("alice").failed_logins == 0


def test_login_and_logout_forms_need_their_csrf_token(sqlite_service: Service) -> None:
    person(sqlite_service, "kcsc", "alice", StaffRole.ANALYST)
    client = browser(sqlite_service)
    client.get("/console/login")
    refused = client.post(
        "/console/login", data={"login": "alice", "password": PASSWORD}, follow_redirects=False
    )
    assert refused.status_code == 403
    forged = client.post(
        "/console/login",
        data={"login": "alice", "password": PASSWORD, "csrf": "guessed"},
        follow_redirects=False,
    )
    assert forged.status_code == 403
    page = client.get("/console/login")
    other_site = client.post(
        "/console/login",
        data={"login": "alice", "password": PASSWORD, "csrf": csrf_of(page.text)},
        headers={"Origin": "https://evil.example"},
        follow_redirects=False,
    )
    assert other_site.status_code == 403
    signed = sign_in(sqlite_service, "alice")
    assert signed.post("/console/logout", data={}, follow_redirects=False).status_code == 403
    assert signed.get("/console/", follow_redirects=False).status_code == 200


def test_logout_ends_the_session_on_the_server(sqlite_service: Service) -> None:
    client = staff_client(sqlite_service, "kcsc", "alice", StaffRole.VIEWER)
    cookie = client.cookies["hm_session"]
    page = client.get("/console/")
    out = client.post("/console/logout", data={"csrf": csrf_of(page.text)}, follow_redirects=False)
    assert out.status_code == 303
    replay = browser(sqlite_service)
    replay.cookies.set("hm_session", cookie, path="/console")
    assert replay.get("/console/", follow_redirects=False).status_code == 303


def test_the_second_factor_is_asked_after_the_password(service: Service) -> None:
    _, _, secret = service.store.users.create(
        "kcsc", "alice", StaffRole.ADMIN, actor="test", password=PASSWORD, totp=True
    )
    assert secret is not None
    client = browser(service)
    first = attempt(client, "alice", PASSWORD)
    assert first.headers["location"].startswith("/console/login/totp")
    pending_cookie = client.cookies["hm_session"]
    # The pending session opens the code page and nothing else.
    assert client.get("/console/", follow_redirects=False).status_code == 303
    page = client.get("/console/login/totp")
    assert page.status_code == 200
    wrong = client.post("/console/login/totp", data={"code": "000000", "csrf": csrf_of(page.text)})
    if credentials.totp_match(secret, "000000") is None:
        assert wrong.status_code == 401
    code = credentials.totp_code(secret, credentials.totp_step())
    done = client.post(
        "/console/login/totp",
        data={"code": code, "csrf": csrf_of(page.text), "next": "/console/account"},
        follow_redirects=False,
    )
    assert done.status_code == 303 and done.headers["location"] == "/console/account"
    assert client.cookies["hm_session"] != pending_cookie  # a new session id after sign-in
    assert client.get("/console/", follow_redirects=False).status_code == 200
    # The same code, replayed in another browser, is refused.
    other = browser(service)
    attempt(other, "alice", PASSWORD)
    again = other.get("/console/login/totp")
    replayed = other.post("/console/login/totp", data={"code": code, "csrf": csrf_of(again.text)})
    assert replayed.status_code == 401
    assert other.get("/console/", follow_redirects=False).status_code == 303


def test_admins_enrol_a_second_factor_when_the_operator_requires_it(tmp_path: Path) -> None:
    with running_service("sqlite", tmp_path, console_require_totp_for_admins=True) as service:
        person(service, "kcsc", "boss", StaffRole.ADMIN)
        person(service, "kcsc", "ana", StaffRole.ANALYST)
        client = browser(service)
        assert attempt(client, "ana", PASSWORD).headers["location"] == "/console/"
        client = browser(service)
        start = attempt(client, "boss", PASSWORD)
        assert start.headers["location"] == "/console/login/enrol"
        assert client.get("/console/", follow_redirects=False).status_code == 303
        page = client.get("/console/login/enrol")
        secret = re.search(r'name="secret" value="([A-Z2-7]+)"', page.text)
        assert secret is not None
        code = credentials.totp_code(secret.group(1), credentials.totp_step())
        done = client.post(
            "/console/login/enrol",
            data={"code": code, "secret": secret.group(1), "csrf": csrf_of(page.text)},
            follow_redirects=False,
        )
        assert done.status_code == 303
        assert client.get("/console/", follow_redirects=False).status_code == 200
        assert service.store.users.get("boss").has_totp


def test_after_sign_in_the_console_goes_only_to_its_own_pages(sqlite_service: Service) -> None:
    person(sqlite_service, "kcsc", "alice", StaffRole.VIEWER)
    for target, expected in (
        ("/console/account", "/console/account"),
        ("https://evil.example/console/", "/console/"),
        ("//evil.example/console/", "/console/"),
        ("/v1/lists", "/console/"),
        ("/console\\@evil.example", "/console/"),
    ):
        client = browser(sqlite_service)
        page = client.get("/console/login")
        response = client.post(
            "/console/login",
            data={
                "login": "alice",
                "password": PASSWORD,
                "csrf": csrf_of(page.text),
                "next": target,
            },
            follow_redirects=False,
        )
        assert response.headers["location"] == expected, target


def test_a_generated_password_is_changed_before_anything_else(service: Service) -> None:
    _, first, _ = service.store.users.create("kcsc", "newbie", StaffRole.ANALYST, actor="test")
    client = browser(service)
    response = attempt(client, "newbie", first)
    assert response.headers["location"] == "/console/account/password"
    blocked = client.get("/console/", follow_redirects=False)
    assert blocked.status_code == 303 and blocked.headers["location"] == "/console/account/password"
    page = client.get("/console/account/password")
    short = client.post(
        "/console/account/password",
        data={
            "current_password": first,
            "new_password": "short",
            "new_password_again": "short",
            "csrf": csrf_of(page.text),
        },
    )
    assert short.status_code == 422
    done = client.post(
        "/console/account/password",
        data={
            "current_password": first,
            "new_password": "a much longer passphrase",
            "new_password_again": "a much longer passphrase",
            "csrf": csrf_of(page.text),
        },
        follow_redirects=False,
    )
    assert done.status_code == 303
    assert client.get("/console/", follow_redirects=False).status_code == 200
    assert service.store.users.authenticate("newbie", first).outcome == "wrong"
    assert service.store.users.authenticate("newbie", "a much longer passphrase").outcome == "ok"
    rows = service.store.audit.log("kcsc")
    assert any(r["action"] == "user.password" and r["actor"] == "user:newbie:kcsc" for r in rows)


def test_sessions_end_when_idle_too_long_and_when_the_person_is_disabled(
    service: Service,
) -> None:
    client = staff_client(service, "kcsc", "alice", StaffRole.VIEWER)
    assert client.get("/console/", follow_redirects=False).status_code == 200
    idle = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=31)
    with service.store.database.write_transaction() as conn:
        conn.execute(update(console_sessions).values(seen_at=idle))
    assert client.get("/console/", follow_redirects=False).status_code == 303
    client = sign_in(service, "alice")
    old = dt.datetime.now(dt.UTC) - dt.timedelta(hours=13)
    with service.store.database.write_transaction() as conn:
        conn.execute(update(console_sessions).values(created_at=old))
    assert client.get("/console/", follow_redirects=False).status_code == 303
    client = sign_in(service, "alice")
    service.store.users.disable("alice", actor="test")
    assert client.get("/console/", follow_redirects=False).status_code == 303
    assert service.store.users.authenticate("alice", PASSWORD).outcome == "disabled"


def test_the_language_follows_the_browser_and_the_switch(sqlite_service: Service) -> None:
    client = browser(sqlite_service)
    for header, lang in (
        ("ko-KR,ko;q=0.9,en;q=0.5", "ko"),
        ("zh-TW,zh;q=0.9", "zh-TW"),
        ("zh-Hant-HK", "zh-TW"),
        ("fr-FR, en;q=0.3", "en"),
        ("de", "en"),
    ):
        page = client.get("/console/login", headers={"Accept-Language": header})
        assert f'<html lang="{lang}">' in page.text, header
    page = client.get("/console/login", headers={"Accept-Language": "en"})
    switched = client.post(
        "/console/language",
        data={"language": "ko", "csrf": csrf_of(page.text), "next": "/console/login"},
        follow_redirects=False,
    )
    assert switched.status_code == 303
    page = client.get("/console/login", headers={"Accept-Language": "en"})
    assert '<html lang="ko">' in page.text
    # Signed in, the choice is the person's and follows them to another browser.
    person(sqlite_service, "kcsc", "alice", StaffRole.VIEWER)
    signed = sign_in(sqlite_service, "alice")
    home = signed.get("/console/")
    signed.post(
        "/console/language",
        data={"language": "zh_TW", "csrf": csrf_of(home.text), "next": "/console/"},
    )
    assert sqlite_service.store.users.get("alice").locale == "zh_TW"
    elsewhere = sign_in(sqlite_service, "alice")
    assert (
        '<html lang="zh-TW">' in elsewhere.get("/console/", headers={"Accept-Language": "ko"}).text
    )


def test_the_overview_shows_only_the_organisations_own_and_offered_lists(
    sqlite_service: Service,
) -> None:
    service = sqlite_service
    kcsc, ncc, other = (service.key(org, Role.ADMIN) for org in ("kcsc", "ncc", "third"))
    service.create_list(kcsc, "kcsc-ncii", shared_with=["ncc"])
    service.create_list(ncc, "ncc-private")
    service.create_list(other, "third-secret")
    service.add(kcsc, "kcsc-ncii", ("md5", "0" * 32, "r1"), ("md5", "1" * 32, "r2"))
    service.follow()
    page = staff_client(service, "kcsc", "alice", StaffRole.VIEWER).get("/console/").text
    assert "kcsc-ncii" in page and "ncc-private" not in page and "third-secret" not in page
    assert re.search(r"<title>[^<>]+</title>", page)  # a plain title, nothing leaked into it
    assert page.count("<h1>") == 1
    assert re.search(r'class="num">2<', page)  # its live entries, from the index
    partner = staff_client(service, "ncc", "bob", StaffRole.VIEWER).get("/console/").text
    assert "kcsc-ncii" in partner and "ncc-private" in partner and "third-secret" not in partner


def test_an_admin_accepts_and_leaves_an_offer_from_the_overview(sqlite_service: Service) -> None:
    service = sqlite_service
    kcsc = service.key("kcsc", Role.ADMIN)
    ncc_match = service.key("ncc", Role.MATCH)
    service.create_list(kcsc, "kcsc-ncii", shared_with=["ncc"])
    service.add(kcsc, "kcsc-ncii", ("md5", "ab" * 16, "r1"))

    def matched() -> bool:
        service.follow()
        body = {"hashes": [{"algorithm": "md5", "value": "ab" * 16}]}
        response = service.client.post("/v1/match/hashes", json=body, headers=ncc_match)
        assert response.status_code == 200, response.text
        return bool(response.json()["results"][0]["matches"])

    assert not matched()
    viewer = staff_client(service, "ncc", "val", StaffRole.VIEWER)
    page = viewer.get("/console/")
    refused = viewer.post(
        "/console/shares/kcsc-ncii", data={"answer": "accept", "csrf": csrf_of(page.text)}
    )
    assert refused.status_code == 403 and not matched()
    outsider = staff_client(service, "third", "tom", StaffRole.ADMIN)
    page = outsider.get("/console/")
    hidden = outsider.post(
        "/console/shares/kcsc-ncii", data={"answer": "accept", "csrf": csrf_of(page.text)}
    )
    assert hidden.status_code == 404
    admin = staff_client(service, "ncc", "ada", StaffRole.ADMIN)
    page = admin.get("/console/")
    assert admin.post("/console/shares/kcsc-ncii", data={"answer": "accept"}).status_code == 403
    assert not matched()
    done = admin.post(
        "/console/shares/kcsc-ncii",
        data={"answer": "accept", "csrf": csrf_of(page.text)},
        follow_redirects=False,
    )
    assert done.status_code == 303 and matched()
    rows = service.store.audit.log("kcsc-ncii")
    assert rows[0]["action"] == "share.accept" and rows[0]["actor"] == "user:ada:ncc"
    page = admin.get("/console/")
    admin.post("/console/shares/kcsc-ncii", data={"answer": "leave", "csrf": csrf_of(page.text)})
    assert not matched()


def test_the_services_address_leads_to_the_console(sqlite_service: Service) -> None:
    response = browser(sqlite_service).get("/", follow_redirects=False)
    assert response.status_code == 307 and response.headers["location"] == "/console/"
