"""Staff accounts: ``hashmatch users ...`` as real processes on a real SQLite data directory;
RFC 6238 codes; and the store's lockout and one-time codes on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import datetime as dt
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import hashmatch_env, run_hashmatch
from dbs import BACKENDS, database
from hashmatch import credentials
from hashmatch.store import SessionRules, StaffRole, Store, database_url
from hashmatch.store.users import FIRST_LOCK, FREE_FAILURES, MAX_LOCK, lock_for

PASSWORD = "correct horse battery staple"


def cli(
    data_dir: Path, *args: str, stdin: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    return run_hashmatch("users", *args, env=hashmatch_env(data_dir=data_dir), stdin=stdin)


def ok(result: subprocess.CompletedProcess[bytes]) -> Any:
    assert result.returncode == 0, result.stderr.decode()
    return json.loads(result.stdout)


def no_traceback(result: subprocess.CompletedProcess[bytes]) -> str:
    stderr = result.stderr.decode()
    assert "Traceback" not in stderr, stderr
    assert result.stdout == b"" or b"Traceback" not in result.stdout
    return stderr


def open_store(data_dir: Path) -> Store:
    return Store.open(database_url(data_dir, None))


def test_create_prints_a_first_password_once_that_signs_in(tmp_path: Path) -> None:
    data = tmp_path / "index"
    result = cli(data, "create", "ann", "--org", "acme", "--role", "admin", "--name", "Ann")
    made = ok(result)
    assert made["login"] == "ann" and made["organisation"] == "acme" and made["role"] == "admin"
    assert made["must_change_password"] is True and made["totp_secret"] is None
    assert "not shown again" in result.stderr.decode()
    password = made["password"]
    assert len(password) >= credentials.MIN_PASSWORD_CHARS
    store = open_store(data)
    try:
        signed = store.users.authenticate("ann", password)
        assert signed.outcome == "ok" and signed.user is not None
        assert signed.user.must_change_password
        assert store.users.authenticate("ann", password + "x").outcome == "wrong"
        # Audited under the operator (cli:USER by default, --actor when given).
        rows = store.audit.search("acme", action="user.create")
        assert len(rows) == 1 and rows[0]["actor"].startswith("cli")
        assert rows[0]["counts"] == {"user": "ann", "role": "admin", "totp": False}
    finally:
        store.close()
    # `ls` never shows a password or its hash, nor another organisation's people.
    ok(cli(data, "create", "bob", "--org", "beta", "--role", "viewer"))
    listing = cli(data, "ls", "--org", "acme")
    people = ok(listing)
    assert [p["login"] for p in people] == ["ann"]
    assert password.encode() not in listing.stdout and b"argon2" not in listing.stdout
    assert {p["login"] for p in ok(cli(data, "ls"))} == {"ann", "bob"}


def test_password_from_stdin_and_a_second_factor(tmp_path: Path) -> None:
    data = tmp_path / "index"
    chosen = "a passphrase of my own choosing"
    made = ok(
        cli(
            data,
            "create",
            "carol",
            "--org",
            "acme",
            "--role",
            "analyst",
            "--password-stdin",
            "--totp",
            "--actor",
            "ops:jane",
            stdin=chosen.encode() + b"\n",
        )
    )
    assert made["must_change_password"] is False and made["has_totp"] is True
    secret = made["totp_secret"]
    assert base64.b32decode(secret) and len(base64.b32decode(secret)) == 20
    store = open_store(data)
    try:
        signed = store.users.authenticate("carol", chosen)
        assert signed.outcome == "ok" and signed.user is not None
        code = credentials.totp_code(secret, credentials.totp_step())
        assert store.users.check_totp(signed.user.id, code)
        assert not store.users.check_totp(signed.user.id, code)  # never twice
        assert [r["actor"] for r in store.audit.search("acme", action="user.create")] == [
            "ops:jane"
        ]
    finally:
        store.close()
    short = cli(
        data, "create", "dan", "--org", "acme", "--role", "viewer", "--password-stdin",
        stdin=b"short\n",
    )  # fmt: skip
    assert short.returncode != 0
    assert "at least 12 characters" in no_traceback(short)


def test_errors_are_clear_and_have_exit_codes(tmp_path: Path) -> None:
    data = tmp_path / "index"
    ok(cli(data, "create", "ann", "--org", "acme", "--role", "admin"))
    again = cli(data, "create", "ann", "--org", "beta", "--role", "viewer")
    assert again.returncode == 73  # EX_CANTCREAT: a conflict
    assert "conflicts" in no_traceback(again)
    role = cli(data, "create", "eve", "--org", "acme", "--role", "root")
    assert role.returncode == 2  # a usage error, from argparse
    assert "invalid choice" in no_traceback(role)
    login = cli(data, "create", "Not A Login!", "--org", "acme", "--role", "viewer")
    assert login.returncode != 0 and "login" in no_traceback(login)
    missing = cli(data, "disable", "nobody")
    assert missing.returncode == 66  # EX_NOINPUT: not found
    assert "nobody" in no_traceback(missing)
    store = open_store(data)
    try:
        assert [u.login for u in store.users.all()] == ["ann"]
        assert store.users.get("ann").organisation == "acme"
    finally:
        store.close()


def test_disable_enable_and_reset(tmp_path: Path) -> None:
    data = tmp_path / "index"
    made = ok(
        cli(data, "create", "ann", "--org", "acme", "--role", "admin", "--password-stdin",
            "--totp", stdin=PASSWORD.encode())
    )  # fmt: skip
    store = open_store(data)
    try:
        user_id = made["id"]
        session = store.sessions.start(user_id, "full")
        assert store.sessions.resume(session, SessionRules()) is not None
        disabled = ok(cli(data, "disable", "ann"))
        assert disabled["disabled_at"] is not None
        assert store.users.authenticate("ann", PASSWORD).outcome == "disabled"
        assert store.sessions.resume(session, SessionRules()) is None  # ended
        ok(cli(data, "enable", "ann"))
        assert store.users.authenticate("ann", PASSWORD).outcome == "ok"
        session = store.sessions.start(user_id, "full")
        reset = ok(cli(data, "reset", "ann"))
        new = reset["password"]
        assert new and new != PASSWORD
        assert reset["has_totp"] is False and reset["must_change_password"] is True
        assert store.users.authenticate("ann", PASSWORD).outcome == "wrong"
        assert store.users.authenticate("ann", new).outcome == "ok"
        assert store.sessions.resume(session, SessionRules()) is None
        code = credentials.totp_code(made["totp_secret"], credentials.totp_step())
        assert not store.users.check_totp(user_id, code)  # the old second factor is gone
        # --totp-only keeps the password.
        store.users.enrol_totp(user_id, made["totp_secret"], code, actor="test")
        only = ok(cli(data, "reset", "ann", "--totp-only"))
        assert only["password"] is None and only["has_totp"] is False
        assert store.users.authenticate("ann", new).outcome == "ok"
        actions = [r["action"] for r in store.audit.search("acme")]
        assert actions[:5] == [
            "user.reset",
            "user.totp_enrol",
            "user.reset",
            "user.enable",
            "user.disable",
        ]
    finally:
        store.close()


# --- RFC 6238 ---------------------------------------------------------------------------

RFC6238_SECRET = base64.b32encode(b"12345678901234567890").decode()


@pytest.mark.parametrize(
    ("at", "code"),
    [
        (59, "94287082"),
        (1111111109, "07081804"),
        (1111111111, "14050471"),
        (1234567890, "89005924"),
        (2000000000, "69279037"),
        (20000000000, "65353130"),
    ],
)
def test_totp_codes_are_rfc_6238s(at: int, code: str) -> None:
    step = credentials.totp_step(at)
    assert step == at // 30
    assert credentials.totp_code(RFC6238_SECRET, step, digits=8) == code
    six = code[-6:]
    assert credentials.totp_code(RFC6238_SECRET, step) == six
    assert credentials.totp_match(RFC6238_SECRET, six, at) == step
    # One step either side is accepted (phone clocks drift); two are not. (Not around the
    # epoch's first step: a window reaching before step 0 is not a time anyone signs in at.)
    if at >= 60:
        assert credentials.totp_match(RFC6238_SECRET, six, at + 30) == step
        assert credentials.totp_match(RFC6238_SECRET, six, at - 30) == step
        assert credentials.totp_match(RFC6238_SECRET, six, at + 60) is None
    # Lowercase and spaced, as authenticator apps show secrets.
    spaced = " ".join(RFC6238_SECRET[i : i + 4] for i in range(0, 32, 4)).lower()
    assert credentials.totp_code(spaced, step) == six


def test_totp_match_refuses_what_is_not_a_code() -> None:
    at = 1234567890
    for bad in ("", "12345", "1234567", "abcdef", "８９００５９２４"[-6:], "005924 "[:-2]):
        assert credentials.totp_match(RFC6238_SECRET, bad, at) is None
    assert credentials.totp_match(RFC6238_SECRET, " 005 924 ", at) == at // 30


def test_passwords_hash_and_verify() -> None:
    stored = credentials.hash_password(PASSWORD)
    assert stored.startswith("$argon2id$") and PASSWORD not in stored
    assert credentials.verify_password(stored, PASSWORD)
    assert not credentials.verify_password(stored, PASSWORD + " ")
    assert not credentials.verify_password(None, PASSWORD)
    assert not credentials.verify_password("not a hash", PASSWORD)
    assert not credentials.needs_rehash(stored)
    with pytest.raises(Exception, match="at least 12"):
        credentials.hash_password("short")
    assert credentials.new_password() != credentials.new_password()


# --- the store: lockout and one-time codes, on both databases ---------------------------


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    with database(request.param, tmp_path) as url:
        opened = Store.open(url)
        try:
            yield opened
        finally:
            opened.close()


def test_lock_for_grows_and_is_capped() -> None:
    assert [lock_for(n) for n in range(FREE_FAILURES)] == [dt.timedelta(0)] * FREE_FAILURES
    assert lock_for(FREE_FAILURES) == FIRST_LOCK
    assert lock_for(FREE_FAILURES + 1) == 2 * FIRST_LOCK
    assert lock_for(FREE_FAILURES + 2) == 4 * FIRST_LOCK
    assert lock_for(100) == MAX_LOCK


def test_wrong_passwords_lock_the_account_with_growing_backoff(store: Store) -> None:
    user, _, _ = store.users.create("acme", "ann", StaffRole.ADMIN, actor="t", password=PASSWORD)
    now = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    for _ in range(FREE_FAILURES - 1):
        assert store.users.authenticate("ann", "wrong password!", now).outcome == "wrong"
    fifth = store.users.authenticate("ann", "wrong password!", now)
    assert fifth.outcome == "locked" and fifth.retry_after == 30
    # The right password during the lock is refused, and does not end it.
    during = store.users.authenticate("ann", PASSWORD, now + dt.timedelta(seconds=29))
    assert during.outcome == "locked" and during.user is None
    assert during.retry_after == 1
    # The lock is in the database: another process (a fresh repository) sees it.
    assert store.users.get("ann").failed_logins == FREE_FAILURES
    # After it, a wrong password locks for twice as long, then four times.
    later = now + dt.timedelta(seconds=31)
    sixth = store.users.authenticate("ann", "wrong password!", later)
    assert sixth.outcome == "locked" and sixth.retry_after == 60
    assert store.users.authenticate("ann", PASSWORD, later + dt.timedelta(seconds=59)).outcome == (
        "locked"
    )
    later += dt.timedelta(seconds=61)
    seventh = store.users.authenticate("ann", "wrong password!", later)
    assert seventh.outcome == "locked" and seventh.retry_after == 120
    # After the lock: the right password works and clears the count.
    later += dt.timedelta(seconds=121)
    right = store.users.authenticate("ann", PASSWORD, later)
    assert right.outcome == "ok" and right.user is not None and right.user.failed_logins == 0
    fresh = store.users.get("ann")
    assert fresh.failed_logins == 0 and fresh.locked_until is None
    assert store.users.authenticate("ann", "wrong password!", later).outcome == "wrong"
    # The lock was audited once, when it began, under the console.
    locks = store.audit.search("acme", action="user.locked")
    assert [(r["actor"], r["counts"]) for r in locks] == [
        ("console", {"user": "ann", "failures": FREE_FAILURES})
    ]
    assert user.id == fresh.id


def test_unknown_and_disabled_logins_are_refused_alike(store: Store) -> None:
    store.users.create("acme", "ann", StaffRole.ADMIN, actor="t", password=PASSWORD)
    assert store.users.authenticate("nobody", PASSWORD).outcome == "wrong"
    assert store.users.authenticate("NOT VALID!", PASSWORD).outcome == "wrong"
    store.users.disable("ann", actor="t")
    assert store.users.authenticate("ann", PASSWORD).outcome == "disabled"


def test_a_totp_code_is_accepted_once(store: Store) -> None:
    user, _, secret = store.users.create(
        "acme", "ann", StaffRole.ADMIN, actor="t", password=PASSWORD, totp=True
    )
    assert secret is not None
    at = 2_000_000_000.0
    step = credentials.totp_step(at)
    code = credentials.totp_code(secret, step)
    assert store.users.check_totp(user.id, code, at)
    assert not store.users.check_totp(user.id, code, at)
    assert not store.users.check_totp(user.id, code, at + 5)
    # Nor an older step's code once a newer one was used.
    assert store.users.check_totp(user.id, credentials.totp_code(secret, step + 1), at + 30)
    assert not store.users.check_totp(user.id, code, at + 30)
    wrong = "000000" if code != "000000" else "111111"
    assert not store.users.check_totp(user.id, wrong, at + 60)
    assert store.users.get("ann").failed_logins == 1  # a wrong code counts as a failure
    # Someone without a second factor has no code at all.
    plain, _, _ = store.users.create("acme", "bob", StaffRole.VIEWER, actor="t", password=PASSWORD)
    assert not store.users.check_totp(plain.id, code, at)
