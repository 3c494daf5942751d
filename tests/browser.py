"""Browser tests of the staff console: a real ``hashmatch serve`` on loopback, Debian's Chromium
driven by Playwright, axe-core's accessibility rules and screenshots kept as CI artefacts.

    from browser import chromium, console_server, pages  # fixtures, found by name

    def test_login(console_server: ConsoleServer, pages: Pages) -> None:
        user = console_server.create_user("ana", "kcsc", "analyst")
        page = pages(locale="ko")
        page.goto(f"{console_server.url}/console/login")
        check_accessibility(page, "login")

Playwright never downloads a browser here (``playwright install`` does not work): every launch
uses ``/usr/bin/chromium`` (``apt-get install chromium``; ``.ci/run`` does it on CI).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import hmac
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, TypedDict, cast

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page, sync_playwright
from playwright.sync_api import Error as PlaywrightError

from conftest import hashmatch_env, run_hashmatch
from test_e2e import free_port

TESTS = Path(__file__).resolve().parent
ARTIFACTS = TESTS / "artifacts"

CHROMIUM = Path("/usr/bin/chromium")
#: ``--disable-background-networking`` and its neighbours matter: without them Chromium keeps
#: calling home (updates, field trials, sync) against a network that is closed here.
CHROMIUM_ARGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
#: What a Playwright wait (click, fill, goto...) allows before it fails: a local server answers
#: in milliseconds, so Playwright's default 30 s only makes a broken page slow to report.
DEFAULT_TIMEOUT_MS = 10_000

AXE_VERSION = "4.14.1"
AXE_CACHE = Path.home() / ".cache" / "hashmatch-test" / "axe-core"
#: Violations of these impacts fail a test; ``minor`` and ``moderate`` ones do not.
AXE_FAILING_IMPACTS = frozenset({"serious", "critical"})

StaffRole = Literal["viewer", "analyst", "admin"]


# --- the service ----------------------------------------------------------------------------


class StaffUser(TypedDict):
    """What ``hashmatch users create`` prints."""

    login: str
    organisation: str
    role: str
    password: str
    totp_secret: str | None


class ConsoleServer:
    """A running ``hashmatch serve``: its base ``url`` (no trailing slash) and the ``env`` its
    CLI commands need to act on the same data (data dir, database)."""

    def __init__(self, url: str, env: dict[str, str], log: Path) -> None:
        self.url = url
        self.env = env
        self.log = log

    def output(self) -> str:
        """What the server wrote so far (stdout and stderr), for failure messages."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def create_user(
        self,
        login: str,
        org: str,
        role: StaffRole,
        *,
        totp: bool = False,
        password: str | None = None,
        name: str | None = None,
    ) -> StaffUser:
        """``hashmatch users create``: a staff account; its JSON (with the password, generated
        unless given, and the TOTP secret when ``totp``)."""
        args = ["users", "create", login, "--org", org, "--role", role]
        if name is not None:
            args += ["--name", name]
        if password is not None:
            args.append("--password-stdin")
        if totp:
            args.append("--totp")
        stdin = password.encode() if password is not None else None
        result = run_hashmatch(*args, env=self.env, stdin=stdin, timeout=60)
        assert result.returncode == 0, (
            f"hashmatch {' '.join(args)} failed ({result.returncode}):\n"
            f"{result.stderr.decode(errors='replace')}"
        )
        return cast(StaffUser, json.loads(result.stdout))

    def api_key(self, org: str, *roles: str) -> str:
        """``hashmatch keys create``: an API key's secret for ``org`` with ``roles`` (match,
        contribute, admin, exchange; ``match`` and ``contribute`` when none are given)."""
        args = ["keys", "create", "--org", org]
        for role in roles or ("match", "contribute"):
            args += ["--role", role]
        result = run_hashmatch(*args, env=self.env, timeout=60)
        assert result.returncode == 0, result.stderr.decode(errors="replace")
        return str(json.loads(result.stdout)["key"])


@contextmanager
def live_console(
    tmp_path: Path, *, env_extra: Mapping[str, str] | None = None
) -> Iterator[ConsoleServer]:
    """A real ``hashmatch serve`` on a free loopback port, ready (``/readyz``) when yielded,
    stopped (its whole process group) afterwards.

    Its data dir is ``tmp_path/console`` (SQLite there unless ``env_extra`` names a
    ``HASHMATCH_DATABASE_URL``); entering again with the same ``tmp_path`` restarts on the
    same data. ``HASHMATCH_*`` variables of the test's own environment never reach it.
    ``env_extra`` holds whole variable names: ``{"HASHMATCH_WORKERS": "2"}``.
    """
    data_dir = tmp_path / "console"
    env = hashmatch_env(data_dir=data_dir)
    env.update(env_extra or {})
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / f"console-{port}.log"
    with log.open("wb") as sink:
        # A file, not a pipe: nobody reads the output while the test runs, and a full pipe
        # would stall the server. Its own session, so that stopping it reaches its workers.
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "hashmatch",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = ConsoleServer(url, env, log)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, f"hashmatch serve exited:\n{server.output()}"
            assert time.monotonic() < deadline, f"not ready within 60 s:\n{server.output()}"
            time.sleep(0.1)
        yield server
    finally:
        _stop_group(process)


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the server's process group (a clean shutdown), SIGKILL after 20 s, then
    SIGKILL to whatever of the group outlived its leader."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


# --- the browser ----------------------------------------------------------------------------


@contextmanager
def browser_session() -> Iterator[Browser]:
    """Playwright and one headless Debian Chromium, closed afterwards."""
    assert CHROMIUM.exists(), f"{CHROMIUM} is missing: apt-get install chromium"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=list(CHROMIUM_ARGS)
        )
        try:
            yield browser
        finally:
            browser.close()


def new_page(
    browser: Browser,
    locale: str = "en",
    timezone: str = "Asia/Taipei",
    *,
    bypass_csp: bool = True,
) -> Page:
    """A page in a fresh context (no cookies) whose ``Accept-Language`` is ``locale`` alone,
    as are ``navigator.language`` and the formats, and whose clock reads ``timezone``.
    Close it with ``page.context.close()`` (the ``pages`` fixture does).

    ``bypass_csp=True`` by default so that ``check_accessibility`` can inject axe-core: the
    console's ``script-src 'self'`` would block the inline script otherwise. The price is that
    such a page does not enforce the console's CSP: a test of the CSP itself passes
    ``bypass_csp=False`` (and may watch ``csp_violations``)."""
    context = browser.new_context(
        locale=locale,
        timezone_id=timezone,
        extra_http_headers={"Accept-Language": locale},
        bypass_csp=bypass_csp,
    )
    context.set_default_timeout(DEFAULT_TIMEOUT_MS)
    context.set_default_navigation_timeout(DEFAULT_TIMEOUT_MS)
    return context.new_page()


class Pages:
    """``new_page`` for one test, bound to the session's browser; closes what it opened."""

    def __init__(self, browser: Browser) -> None:
        self.browser = browser
        self.contexts: list[BrowserContext] = []

    def __call__(
        self, locale: str = "en", timezone: str = "Asia/Taipei", *, bypass_csp: bool = True
    ) -> Page:
        page = new_page(self.browser, locale, timezone, bypass_csp=bypass_csp)
        self.contexts.append(page.context)
        return page

    def close(self) -> None:
        for context in self.contexts:
            with contextlib.suppress(Exception):
                context.close()
        self.contexts.clear()


def csp_violations(page: Page) -> list[str]:
    """A list that fills with the page's Content-Security-Policy violations (the console
    messages Chromium logs for them) from now on; call it before ``goto``."""
    seen: list[str] = []

    def record(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text:
            seen.append(message.text)

    page.on("console", record)
    return seen


# --- fixtures (tests/conftest.py loads this module as a plugin: one browser per session) -----


@pytest.fixture(scope="session")
def chromium() -> Iterator[Browser]:
    """The session's one browser (Playwright's sync API allows one driver at a time)."""
    with browser_session() as browser:
        yield browser


@pytest.fixture
def pages(chromium: Browser) -> Iterator[Pages]:
    """``pages(locale="zh-TW")`` opens a fresh page; all are closed after the test."""
    opened = Pages(chromium)
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def console_server(tmp_path: Path) -> Iterator[ConsoleServer]:
    """``live_console(tmp_path)`` for one test."""
    with live_console(tmp_path) as server:
        yield server


# --- TOTP: the tests' own oracle, never the application's code -------------------------------


def totp_now(
    secret_base32: str, *, at: float | None = None, digits: int = 6, step: int = 30
) -> str:
    """RFC 6238 TOTP (HMAC-SHA-1) of ``secret_base32`` at ``at`` (Unix seconds; now)."""
    compact = re.sub(r"[\s-]", "", secret_base32).upper().rstrip("=")
    key = base64.b32decode(compact + "=" * (-len(compact) % 8))
    counter = int((time.time() if at is None else at) // step)
    digest = hmac.new(key, struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    code = struct.unpack(">I", digest[offset : offset + 4])[0] & 0x7FFFFFFF
    return str(code % 10**digits).zfill(digits)


def totp_fresh(secret_base32: str, *, margin: float = 3.0, step: int = 30) -> str:
    """``totp_now``, but first sleeps out the current step when fewer than ``margin`` seconds
    of it remain, so that the code is still current when the server checks it."""
    remaining = step - time.time() % step
    if remaining < margin:
        time.sleep(remaining + 0.05)
    return totp_now(secret_base32, step=step)


# --- axe-core -------------------------------------------------------------------------------


def axe_source() -> str:
    """``axe.min.js`` of axe-core ``AXE_VERSION``, installed from npm into ``AXE_CACHE`` on
    first use (under a file lock: parallel test processes install it once)."""
    package = AXE_CACHE / "node_modules" / "axe-core"
    script = package / "axe.min.js"
    if not _axe_installed(package):
        AXE_CACHE.mkdir(parents=True, exist_ok=True)
        with (AXE_CACHE.parent / "axe-core.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                if not _axe_installed(package):
                    _npm_install_axe()
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
    assert _axe_installed(package), (
        f"axe-core {AXE_VERSION} is not at {script} after "
        f"`npm install --no-save --prefix {AXE_CACHE} axe-core@{AXE_VERSION}`"
    )
    return script.read_text(encoding="utf-8")


def _axe_installed(package: Path) -> bool:
    try:
        manifest = json.loads((package / "package.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return manifest.get("version") == AXE_VERSION and (package / "axe.min.js").is_file()


def _npm_install_axe() -> None:
    npm = shutil.which("npm")
    assert npm, "npm is missing: the accessibility checks install axe-core with it"
    command = [npm, "install", "--no-save", "--no-audit", "--no-fund", "--prefix"]
    command += [str(AXE_CACHE), f"axe-core@{AXE_VERSION}"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, (
        f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout}{result.stderr}"
    )


def check_accessibility(page: Page, name: str) -> list[dict[str, Any]]:
    """Runs axe-core on ``page`` as it is now and fails, listing each one, on any violation of
    impact ``serious`` or ``critical``; returns all violations (the milder ones included).

    The page's context must bypass CSP (``new_page``'s default): axe is an inline script.
    The whole report of a failing page is saved as ``tests/artifacts/axe/<name>.json``."""
    if not page.evaluate("() => typeof window.axe === 'object'"):
        hint = f"{name}: axe-core cannot load; open the page with new_page(bypass_csp=True)"
        try:
            page.add_script_tag(content=axe_source())
        except PlaywrightError as error:
            raise AssertionError(f"{hint}\n{error.message}") from None
        assert page.evaluate("() => typeof window.axe === 'object'"), hint
    results = page.evaluate("() => axe.run(document, {resultTypes: ['violations']})")
    violations: list[dict[str, Any]] = list(results["violations"])
    failing = [v for v in violations if v.get("impact") in AXE_FAILING_IMPACTS]
    if failing:
        report = ARTIFACTS / "axe" / f"{_safe(name)}.json"
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(json.dumps(violations, indent=2, ensure_ascii=False), encoding="utf-8")
        lines = [f"{name} ({page.url}): {len(failing)} serious or critical axe violation(s):"]
        for violation in failing:
            nodes = violation.get("nodes", [])
            # a target is a list of selectors: the frames' down to the element's
            targets = ", ".join(" >>> ".join(map(str, n.get("target", []))) for n in nodes[:3])
            more = f" and {len(nodes) - 3} more" if len(nodes) > 3 else ""
            lines.append(
                f"  {violation['id']} [{violation['impact']}] {violation['help']}: "
                f"{targets}{more} ({violation.get('helpUrl', '')})"
            )
        pytest.fail("\n".join(lines), pytrace=False)
    return violations


# --- screenshots ----------------------------------------------------------------------------

_SHOTS: dict[str, int] = {}


def screenshot(page: Page, test_name: str, step: str) -> Path:
    """A full-page PNG at ``tests/artifacts/<test_name>/<nn>-<step>.png``, numbered in the order
    of the test's steps; the test's folder is emptied at its first screenshot of a run."""
    folder = ARTIFACTS / _safe(test_name)
    if test_name not in _SHOTS:
        shutil.rmtree(folder, ignore_errors=True)
        _SHOTS[test_name] = 0
    _SHOTS[test_name] += 1
    path = folder / f"{_SHOTS[test_name]:02d}-{_safe(step)}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=path, full_page=True)
    return path


def _safe(name: str) -> str:
    """``name`` as one file name: parametrised test ids carry brackets, slashes, spaces."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "_"


__all__ = [
    "ARTIFACTS",
    "ConsoleServer",
    "Pages",
    "StaffUser",
    "axe_source",
    "browser_session",
    "check_accessibility",
    "chromium",
    "console_server",
    "csp_violations",
    "live_console",
    "new_page",
    "pages",
    "screenshot",
    "totp_fresh",
    "totp_now",
]
