"""The console in a real browser (Debian's Chromium, driven by Playwright): signing in with and
without a second factor, lockout, keyboard-only use, every language; each page checked by
axe-core and photographed (tests/artifacts/, not committed)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import Dialog, Page, expect

from browser import (
    ConsoleServer,
    Pages,
    check_accessibility,
    live_console,
    screenshot,
    totp_fresh,
)

PASSWORD = "a long enough passphrase"
SCRIPTS = {"zh_TW": r"[\u4e00-\u9fff]", "ko": r"[\uac00-\ud7af]"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleServer]:
    with live_console(tmp_path_factory.mktemp("console")) as running:
        yield running


def sign_in(page: Page, server: ConsoleServer, login: str, password: str = PASSWORD) -> None:
    page.goto(f"{server.url}/console/login")
    page.locator("#login").fill(login)  # by id: the labels are in the page's language
    page.locator("#password").fill(password)
    with page.expect_navigation():
        page.locator("#password").press("Enter")


def test_sign_in_and_out_with_the_keyboard_alone(
    server: ConsoleServer, pages: Pages, request: pytest.FixtureRequest
) -> None:
    server.create_user("kbd", "kcsc", "viewer", password=PASSWORD)
    page = pages()
    page.goto(f"{server.url}/console/login")
    # The login field has the focus from the start; the skip link shows when focused.
    expect(page.get_by_label("Login", exact=True)).to_be_focused()
    page.keyboard.type("kbd")
    page.keyboard.press("Tab")
    expect(page.get_by_label("Password", exact=True)).to_be_focused()
    page.keyboard.type(PASSWORD)
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert urlsplit(page.url).path == "/console/"
    expect(page.get_by_role("heading", level=1)).to_have_text("Overview")
    page.locator(".skip").focus()
    box = page.locator(".skip").bounding_box()
    assert box is not None and box["x"] >= 0 and box["y"] >= 0  # on screen when focused
    # Focus is visible: the focused control has an outline.
    page.keyboard.press("Tab")
    page.get_by_role("link", name="Audit", exact=True).focus()
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline not in ("none", "")
    screenshot(page, request.node.name, "overview")
    check_accessibility(page, "overview")
    sign_out = page.get_by_role("button", name="Sign out")
    sign_out.focus()
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert urlsplit(page.url).path == "/console/login"
    page.goto(f"{server.url}/console/")
    assert urlsplit(page.url).path == "/console/login"


def test_sign_in_with_a_second_factor(
    server: ConsoleServer, pages: Pages, request: pytest.FixtureRequest
) -> None:
    user = server.create_user("twofa", "kcsc", "admin", totp=True, password=PASSWORD)
    secret = user["totp_secret"]
    assert secret
    page = pages()
    sign_in(page, server, "twofa")
    assert urlsplit(page.url).path == "/console/login/totp"
    screenshot(page, request.node.name, "code")
    check_accessibility(page, "second-factor")
    code = page.get_by_label(re.compile("code", re.I))
    code.fill("000000" if totp_fresh(secret) != "000000" else "111111")
    with page.expect_navigation():
        code.press("Enter")
    expect(page.get_by_role("alert")).to_be_visible()
    screenshot(page, request.node.name, "wrong-code")
    code = page.get_by_label(re.compile("code", re.I))
    code.fill(totp_fresh(secret))
    with page.expect_navigation():
        code.press("Enter")
    assert urlsplit(page.url).path == "/console/"
    expect(page.get_by_role("link", name="People")).to_be_visible()  # an admin's page
    screenshot(page, request.node.name, "signed-in")


def test_lockout_after_repeated_wrong_passwords(
    server: ConsoleServer, pages: Pages, request: pytest.FixtureRequest
) -> None:
    server.create_user("guessed", "kcsc", "analyst", password=PASSWORD)
    page = pages()
    for attempt in range(5):
        sign_in(page, server, "guessed", f"wrong guess number {attempt}")
        expect(page.get_by_role("alert")).to_be_visible()
    expect(page.get_by_role("alert")).to_contain_text("locked")
    screenshot(page, request.node.name, "locked")
    check_accessibility(page, "locked")
    sign_in(page, server, "guessed")  # the right password, during the lock
    assert urlsplit(page.url).path == "/console/login"
    expect(page.get_by_role("alert")).to_contain_text("locked")


@pytest.mark.parametrize("language", ["zh_TW", "ko", "en"])
def test_switch_to_each_language(
    server: ConsoleServer, pages: Pages, request: pytest.FixtureRequest, language: str
) -> None:
    login = f"lang-{language.lower().replace('_', '-')}"
    server.create_user(login, "kcsc", "viewer", password=PASSWORD)
    page = pages(locale="en")
    sign_in(page, server, login)
    english = page.get_by_role("heading", level=1).inner_text()
    page.get_by_label("Language", exact=True).first.select_option(language)
    with page.expect_navigation():
        page.locator("form.language button").click()
    assert page.locator("html").get_attribute("lang") == language.replace("_", "-")
    heading = page.get_by_role("heading", level=1).inner_text()
    if language == "en":
        assert heading == english
    else:
        assert heading != english and re.search(SCRIPTS[language], heading), heading
        # Dates follow the language too: the month or day words are in its script.
        assert re.search(SCRIPTS[language], page.locator("main").inner_text())
    screenshot(page, request.node.name, f"overview-{language}")
    check_accessibility(page, f"overview-{language}")
    # The choice sticks to the person, not just this page.
    page.goto(f"{server.url}/console/account")
    assert page.locator("html").get_attribute("lang") == language.replace("_", "-")
    check_accessibility(page, f"account-{language}")


def test_the_browsers_language_is_the_first_guess(server: ConsoleServer, pages: Pages) -> None:
    for header, lang in (("ko-KR", "ko"), ("zh-TW", "zh-TW"), ("en-GB", "en")):
        page = pages(locale=header)
        page.goto(f"{server.url}/console/login")
        assert page.locator("html").get_attribute("lang") == lang


def test_screenshots_for_the_readme(
    server: ConsoleServer, pages: Pages, request: pytest.FixtureRequest
) -> None:
    """The README's pictures (docs/console-zh-TW.png, docs/console-ko.png), made by the same
    browser the tests use; copied into docs/ by hand when the console changes."""
    client = listed(
        server,
        "readme-org",
        "ncii-reports",
        *(f"NCII-2026-{n:04d}" for n in range(1, 31)),
        description="Reports received by the hotline",
        shared_with=["partner"],
    )
    listed(server, "readme-org", "csam-hotline", "C-1", "C-2")
    first = client.get("/v1/lists/ncii-reports/entries").json()["entries"][0]
    withdrawn = client.post(
        "/v1/lists/ncii-reports/withdrawals",
        json={"references": [first["reference"]], "reason": "withdrawn by the victim"},
    )
    assert withdrawn.status_code == 200, withdrawn.text
    server.create_user("shots", "readme-org", "admin", password=PASSWORD, name="Kim")
    for locale, path in (("zh_TW", "/console/"), ("ko", "/console/lists/ncii-reports")):
        page = pages(locale=locale.replace("_", "-"), timezone="Asia/Seoul")
        page.set_viewport_size({"width": 1280, "height": 800})
        sign_in(page, server, "shots")
        page.goto(f"{server.url}{path}")
        assert re.search(SCRIPTS[locale], page.locator("h1").inner_text())
        shot = screenshot(page, request.node.name, f"readme-{locale}")
        assert shot.exists() and shot.stat().st_size > 10_000
        page.screenshot(path=str(shot.with_name(f"readme-{locale}-viewport.png")))
        check_accessibility(page, f"readme-{locale}")


HOSTILE = '<script>window.__pwned = 1</script>"><img src=x onerror="window.__pwned = 2">'


def api(server: ConsoleServer, key: str) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=30)


def listed(
    server: ConsoleServer, org: str, name: str, *refs: str, **fields: object
) -> httpx.Client:
    """A list of ``org`` with one md5 entry per reference, made through the API."""
    client = api(server, server.api_key(org, "admin"))
    created = client.post("/v1/lists", json={"name": name, "category": "ncii", **fields})
    assert created.status_code == 201, created.text
    entries = [
        {"algorithm": "md5", "hash": f"{n:032x}", "reference": ref} for n, ref in enumerate(refs, 1)
    ]
    added = client.post(f"/v1/lists/{name}/entries", json={"entries": entries})
    assert added.status_code == 200, added.text
    return client


@pytest.mark.parametrize("enforce_csp", [False, True])
def test_hostile_descriptions_and_references_render_inert(
    server: ConsoleServer, pages: Pages, request: pytest.FixtureRequest, enforce_csp: bool
) -> None:
    """Escaping alone keeps them inert (the CSP bypassed), and so does the CSP."""
    name = f"hostile-{int(enforce_csp)}"
    listed(server, "kcsc", name, HOSTILE, "plain", description=HOSTILE)
    login = f"xss{int(enforce_csp)}"
    server.create_user(login, "kcsc", "analyst", password=PASSWORD)
    page = pages(bypass_csp=not enforce_csp)
    dialogs: list[str] = []

    def seen(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", seen)
    sign_in(page, server, login)
    page.goto(f"{server.url}/console/lists/{name}")
    expect(page.get_by_role("heading", level=1)).to_contain_text(name)
    main = page.locator("main")
    expect(main).to_contain_text("<script>window.__pwned = 1</script>")  # shown as text
    assert page.evaluate("window.__pwned") is None
    assert page.locator("img[src=x]").count() == 0
    assert page.locator("main script").count() == 0
    page.get_by_label(re.compile("Select entry")).first.check()
    with page.expect_navigation():
        page.get_by_role("button", name="Withdraw selected").click()
    assert page.evaluate("window.__pwned") is None and dialogs == []
    screenshot(page, request.node.name, "escaped")


def test_withdraw_from_the_list_page(
    server: ConsoleServer, pages: Pages, request: pytest.FixtureRequest
) -> None:
    client = listed(server, "kcsc", "to-withdraw", "keep-1", "go-1", "go-2")
    server.create_user("withdrawer", "kcsc", "analyst", password=PASSWORD)
    page = pages()
    sign_in(page, server, "withdrawer")
    page.goto(f"{server.url}/console/lists/to-withdraw")
    check_accessibility(page, "list")
    screenshot(page, request.node.name, "list")
    for row in page.locator("tbody tr").all():
        if "go-" in row.inner_text():
            row.get_by_role("checkbox").check()
    with page.expect_navigation():
        page.get_by_role("button", name="Withdraw selected").click()
    main = page.locator("main")
    expect(main).to_contain_text("These 2 entries will stop matching")
    expect(main).to_contain_text("go-1")
    expect(main).not_to_contain_text("keep-1")
    check_accessibility(page, "withdraw-confirmation")
    screenshot(page, request.node.name, "confirm")
    page.get_by_label(re.compile("^Reason")).fill("withdrawn by the victim")
    with page.expect_navigation():
        page.get_by_role("button", name=re.compile("Withdraw these")).click()
    expect(page.get_by_role("status")).to_contain_text("2 entries were withdrawn")
    screenshot(page, request.node.name, "done")
    entries = client.get("/v1/lists/to-withdraw/entries").json()["entries"]
    assert sorted(e["reference"] for e in entries) == ["keep-1"]


def test_a_form_posted_without_its_token_is_refused(server: ConsoleServer, pages: Pages) -> None:
    client = listed(server, "kcsc", "csrf-target", "r-1")
    server.create_user("victim", "kcsc", "analyst", password=PASSWORD)
    page = pages()
    sign_in(page, server, "victim")
    entry = client.get("/v1/lists/csrf-target/entries").json()["entries"][0]["entry_id"]
    # The session cookie goes with the request, as it would from a forged form.
    refused = page.request.post(
        f"{server.url}/console/lists/csrf-target/withdraw",
        form={"entry": str(entry), "reason": "forged", "reason_class": "other"},
    )
    assert refused.status == 403
    forged_token = page.request.post(
        f"{server.url}/console/lists/csrf-target/withdraw",
        form={"entry": str(entry), "reason": "forged", "csrf": "x" * 43},
    )
    assert forged_token.status == 403
    assert len(client.get("/v1/lists/csrf-target/entries").json()["entries"]) == 1


def test_another_organisations_pages_stay_out_of_reach(
    server: ConsoleServer, pages: Pages, request: pytest.FixtureRequest
) -> None:
    client = listed(server, "kcsc", "kcsc-only", "secret-ref", shared_with=["ncc"])
    entry = client.get("/v1/lists/kcsc-only/entries").json()["entries"][0]["entry_id"]
    server.create_user("outsider", "ncc", "admin", password=PASSWORD)
    page = pages()
    sign_in(page, server, "outsider")
    for path in (
        "/console/lists/kcsc-only",
        f"/console/lists/kcsc-only/withdraw?entry={entry}",
        "/console/lists/kcsc-only/export?format=csv",
        "/console/lists/kcsc-only/upload",
    ):
        response = page.goto(f"{server.url}{path}")
        assert response is not None and response.status == 404, path
        expect(page.locator("main")).not_to_contain_text("secret-ref")
    screenshot(page, request.node.name, "not-found")
    check_accessibility(page, "not-found")
    token = page.locator("input[name=csrf]").first.get_attribute("value")
    changed = page.request.post(
        f"{server.url}/console/lists/kcsc-only",
        form={"csrf": token or "", "description": "taken over"},
    )
    assert changed.status == 404
    assert client.get("/v1/lists/kcsc-only").json()["description"] == ""


def test_create_and_revoke_a_key(
    server: ConsoleServer, pages: Pages, request: pytest.FixtureRequest
) -> None:
    server.create_user("keymaster", "kcsc", "admin", password=PASSWORD)
    page = pages()
    sign_in(page, server, "keymaster")
    page.get_by_role("link", name="Keys").click()
    check_accessibility(page, "keys")
    page.get_by_label(re.compile("^Name")).fill("moderation pipeline")
    page.locator("#key-role-match").check()
    with page.expect_navigation():
        page.get_by_role("button", name="Create key").click()
    secret = page.locator("code.secret").inner_text().strip()
    assert secret.startswith("hm_")
    screenshot(page, request.node.name, "created")
    check_accessibility(page, "key-created")
    pipeline = api(server, secret)
    assert pipeline.post("/v1/match/hashes", json={"hashes": []}).status_code in (200, 422)
    assert pipeline.get("/v1/lists").status_code != 401
    page.goto(f"{server.url}/console/keys")
    assert secret not in page.content()  # shown once
    row = page.locator("tr").filter(has_text="moderation pipeline")
    page.once("dialog", lambda dialog: dialog.accept())  # the confirmation
    with page.expect_navigation():
        row.get_by_role("button", name=re.compile("Revoke")).click()
    screenshot(page, request.node.name, "revoked")
    assert pipeline.get("/v1/lists").status_code == 401


def test_filter_the_audit(
    server: ConsoleServer, pages: Pages, request: pytest.FixtureRequest
) -> None:
    listed(server, "kcsc", "audited-a", "a-1", "a-2")
    listed(server, "kcsc", "audited-b", "b-1")
    listed(server, "ncc", "elsewhere", "n-1")
    server.create_user("auditor", "kcsc", "analyst", password=PASSWORD)
    page = pages()
    sign_in(page, server, "auditor")
    page.goto(f"{server.url}/console/lists/audited-a")
    page.get_by_label(re.compile("Select entry")).first.check()
    with page.expect_navigation():
        page.get_by_role("button", name="Withdraw selected").click()
    page.get_by_label(re.compile("^Reason")).fill("audit trail check")
    with page.expect_navigation():
        page.get_by_role("button", name=re.compile("Withdraw this")).click()
    page.get_by_role("link", name="Audit", exact=True).click()
    rows = page.locator("main table tbody tr")
    assert "elsewhere" not in page.locator("main").inner_text()  # another organisation's
    check_accessibility(page, "audit")
    page.get_by_label("List", exact=True).select_option("audited-a")
    page.get_by_label("Person or key").select_option("user:auditor:kcsc")
    with page.expect_navigation():
        page.get_by_role("button", name="Filter").click()
    assert "list=audited-a" in page.url
    assert rows.count() >= 1
    for text in rows.all_inner_texts():
        assert "audited-a" in text and "audited-b" not in text
        assert "auditor" in text
    expect(rows.first).to_contain_text("entries.withdraw")
    screenshot(page, request.node.name, "filtered")
    page.get_by_label("List", exact=True).select_option("audited-b")
    with page.expect_navigation():
        page.get_by_role("button", name="Filter").click()
    assert not any("entries.withdraw" in text for text in rows.all_inner_texts())
    export = page.request.get(f"{server.url}/console/audit.csv?list=audited-a")
    assert export.status == 200 and "entries.withdraw" in export.text()
    assert "elsewhere" not in export.text()
