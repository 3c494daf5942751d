"""The browser test harness itself: Chromium drives the real console's login page, axe-core
judges it, and the harness's own oracles (TOTP, axe) are checked against known answers."""

from __future__ import annotations

import base64
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Locator, Page, expect

from browser import (
    ConsoleServer,
    Pages,
    check_accessibility,
    csp_violations,
    screenshot,
    totp_fresh,
    totp_now,
)

# RFC 6238 appendix B, HMAC-SHA-1: the ASCII secret "12345678901234567890", 8 digits.
RFC6238_SECRET = base64.b32encode(b"12345678901234567890").decode()
RFC6238_SHA1 = [
    (59, "94287082"),
    (1111111109, "07081804"),
    (1111111111, "14050471"),
    (1234567890, "89005924"),
    (2000000000, "69279037"),
    (20000000000, "65353130"),
]


@pytest.mark.parametrize(("at", "code"), RFC6238_SHA1)
def test_totp_matches_the_rfc_6238_vectors(at: int, code: str) -> None:
    assert totp_now(RFC6238_SECRET, at=at, digits=8) == code
    assert totp_now(RFC6238_SECRET, at=at) == code[-6:]
    # the way authenticator apps show secrets: lower case, grouped, unpadded
    grouped = " ".join(RFC6238_SECRET[i : i + 4] for i in range(0, 32, 4)).lower()
    assert totp_now(grouped, at=at, digits=8) == code


def test_accessibility_check_fails_on_serious_violations(pages: Pages) -> None:
    page = pages()
    page.set_content(
        '<html lang="en"><title>bad</title><main><img src="data:,">'
        '<form><input name="q"><button></button></form></main></html>'
    )
    with pytest.raises(pytest.fail.Exception) as failed:
        check_accessibility(page, "deliberately-inaccessible")
    message = str(failed.value)
    for rule in ("image-alt", "label", "button-name"):
        assert rule in message
    page.set_content(
        '<html lang="en"><title>good</title><main><h1>Fine</h1>'
        '<form><label>Query <input name="q"></label><button>Search</button></form></main></html>'
    )
    check_accessibility(page, "accessible")


def test_login_page(
    console_server: ConsoleServer, pages: Pages, request: pytest.FixtureRequest
) -> None:
    page = pages(locale="en")
    response = page.goto(f"{console_server.url}/console/login")
    assert response is not None and response.status == 200, console_server.output()[-2000:]
    login = page.get_by_label("Login", exact=True)
    password = page.get_by_label("Password", exact=True)
    expect(login).to_have_attribute("name", "login")
    expect(password).to_have_attribute("name", "password")
    expect(password).to_have_attribute("type", "password")
    form = page.locator("form").filter(has=password)
    expect(
        form.locator("button[type=submit], input[type=submit], button:not([type])")
    ).to_have_count(1)
    screenshot(page, request.node.name, "login")
    check_accessibility(page, "login")


def test_login_page_keeps_to_its_csp(console_server: ConsoleServer, pages: Pages) -> None:
    """The other tests bypass the CSP (for axe): this one enforces it."""
    page = pages(bypass_csp=False)
    violations = csp_violations(page)
    page.goto(f"{console_server.url}/console/login")
    expect(page.get_by_label("Password", exact=True)).to_be_visible()
    assert violations == []


def submit(page: Page, field: Locator) -> None:
    """Submits the form holding ``field`` (its one submit button) and waits for the next page."""
    form = page.locator("form").filter(has=field)
    with page.expect_navigation():
        form.locator("button[type=submit], input[type=submit], button:not([type])").click()


def test_login_with_totp_leaves_the_login_pages(
    console_server: ConsoleServer, pages: Pages, request: pytest.FixtureRequest
) -> None:
    """The harness against the real thing: a CLI-made account, its password and a code from
    ``totp_now`` get through both login pages."""
    user = console_server.create_user("mina", "kcsc", "analyst", totp=True)
    assert user["totp_secret"]
    page = pages()
    page.goto(f"{console_server.url}/console/login")
    page.get_by_label("Login", exact=True).fill(user["login"])
    page.get_by_label("Password", exact=True).fill(user["password"])
    submit(page, page.get_by_label("Password", exact=True))
    assert urlsplit(page.url).path == "/console/login/totp", page.url
    screenshot(page, request.node.name, "totp")
    check_accessibility(page, "login-totp")
    code = page.locator("input[name=code]")
    code.fill(totp_fresh(user["totp_secret"]))
    submit(page, code)
    # on to /console/ (or first to the change of a generated password)
    path = urlsplit(page.url).path
    assert path.startswith("/console/") and not path.startswith("/console/login"), page.url
    screenshot(page, request.node.name, "signed-in")
