"""Signing in and out, the second factor, and the person's own settings.

Sign-in is two steps when the person has a TOTP second factor: the password opens a pending
session that reaches only the code page; the code replaces it with a full session under a new
cookie. Where the operator requires a second factor for admins, an admin without one enrols
before anything else. A generated (first or reset) password is changed before anything else.
"""

from __future__ import annotations

import secrets
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from hashmatch import credentials
from hashmatch.console import i18n, web
from hashmatch.console.web import Staff, Viewer
from hashmatch.errors import InvalidField
from hashmatch.store import Session, StaffRole

router = APIRouter()


def _secure(request: Request) -> bool:
    return (
        request.url.scheme == "https"
        or web.console_services(request).settings.console_secure_cookies
    )


def set_cookie(request: Request, response: Response, name: str, value: str, **extra: Any) -> None:
    response.set_cookie(
        name,
        value,
        httponly=True,
        samesite="strict",
        secure=_secure(request),
        path=web.PREFIX,
        **extra,
    )


def _next(target: str | None) -> str:
    """Where to go after sign-in: a console path only (never another site)."""
    if not target:
        return web.url("/")
    parts = urlsplit(target)
    if (
        parts.scheme
        or parts.netloc
        or not parts.path.startswith(web.PREFIX + "/")
        or "\\" in target
    ):
        return web.url("/")
    return target


def _login_page(
    request: Request, *, error: str | None = None, status: int = 200, next_: str = ""
) -> Response:
    token = secrets.token_urlsafe(32)
    response = web.render(
        request,
        "login.html",
        {"login_csrf": token, "error": error, "next": next_},
        status=status,
    )
    set_cookie(request, response, web.LOGIN_CSRF_COOKIE, token)
    return response


@router.get("/login")
async def login_form(request: Request, next: str = "") -> Response:
    return _login_page(request, next_=_next(next) if next else "")


@router.post("/login")
async def login(request: Request) -> Response:
    fields = await request.form(max_files=0, max_fields=10)
    web.check_csrf(request, request.cookies.get(web.LOGIN_CSRF_COOKIE, ""), fields.get("csrf"))
    store = web.store_of(request)
    login_name, password = str(fields.get("login", "")), str(fields.get("password", ""))
    next_ = _next(str(fields.get("next", "")))
    result = await run_in_threadpool(store.users.authenticate, login_name, password)
    if result.outcome == "locked":
        return _login_page(request, error="locked", status=429, next_=next_)
    if result.user is None:
        return _login_page(request, error="wrong", status=401, next_=next_)
    user = result.user
    settings = web.console_services(request).settings
    needs_enrolment = (
        not user.has_totp
        and user.role is StaffRole.ADMIN
        and settings.console_require_totp_for_admins
    )
    stage = "password" if user.has_totp or needs_enrolment else "full"
    token = await run_in_threadpool(store.sessions.start, user.id, stage)
    if stage == "full":
        await run_in_threadpool(store.users.signed_in, user.id)
        target = web.url("/account/password") if user.must_change_password else next_
    elif needs_enrolment:
        target = web.url("/login/enrol")
    else:
        target = web.url("/login/totp") + "?next=" + next_
    response = RedirectResponse(target, 303)
    set_cookie(request, response, web.SESSION_COOKIE, token)
    response.delete_cookie(web.LOGIN_CSRF_COOKIE, path=web.PREFIX)
    return response


async def _pending(request: Request) -> tuple[str, Session]:
    found = await web.session_of(request)
    if found is None or found[1].stage != "password":
        raise web.LoginRequired("sign in to continue")
    return found


Pending = Annotated[tuple[str, Session], Depends(_pending)]


def _pending_page(request: Request, session: Session, template: str, **context: Any) -> Response:
    formats = web.formats_for(request, session.user)
    staff = Staff(session.user, "", session.csrf, formats)
    return web.render(request, template, context, staff=staff, status=context.pop("status", 200))


@router.get("/login/totp")
async def totp_form(request: Request, pending: Pending, next: str = "") -> Response:
    return _pending_page(request, pending[1], "totp.html", next=_next(next), error=None)


@router.post("/login/totp")
async def totp(request: Request, pending: Pending) -> Response:
    token, session = pending
    fields = await request.form(max_files=0, max_fields=10)
    web.check_csrf(request, session.csrf, fields.get("csrf"))
    store = web.store_of(request)
    next_ = _next(str(fields.get("next", "")))
    user = await run_in_threadpool(store.users.by_id, session.user.id)
    if user.locked_until is not None and user.failed_logins >= 5:
        from hashmatch.store.database import utcnow

        if user.locked_until > utcnow():
            return _pending_page(
                request, session, "totp.html", next=next_, error="locked", status=429
            )
    if not await run_in_threadpool(store.users.check_totp, user.id, str(fields.get("code", ""))):
        return _pending_page(request, session, "totp.html", next=next_, error="wrong", status=401)
    full = await run_in_threadpool(store.sessions.promote, token)
    target = web.url("/account/password") if user.must_change_password else next_
    response = RedirectResponse(target, 303)
    set_cookie(request, response, web.SESSION_COOKIE, full)
    return response


@router.get("/login/enrol")
async def enrol_form(request: Request, pending: Pending) -> Response:
    _, session = pending
    secret = credentials.new_totp_secret()
    return _enrol_page(request, session, secret, error=None)


def _enrol_page(
    request: Request, session: Session, secret: str, *, error: str | None, status: int = 200
) -> Response:
    uri = credentials.totp_uri(secret, session.user.login, "hashmatch")
    return _pending_page(
        request, session, "enrol.html", secret=secret, uri=uri, error=error, status=status
    )


@router.post("/login/enrol")
async def enrol(request: Request, pending: Pending) -> Response:
    token, session = pending
    fields = await request.form(max_files=0, max_fields=10)
    web.check_csrf(request, session.csrf, fields.get("csrf"))
    secret = str(fields.get("secret", ""))
    try:
        credentials.totp_code(secret, 0)
    except (ValueError, TypeError):
        secret = credentials.new_totp_secret()
    store = web.store_of(request)
    enrolled = await run_in_threadpool(
        store.users.enrol_totp,
        session.user.id,
        secret,
        str(fields.get("code", "")),
        actor=session.user.actor,
    )
    if not enrolled:
        return _enrol_page(request, session, secret, error="wrong", status=401)
    full = await run_in_threadpool(store.sessions.promote, token)
    target = web.url("/account/password") if session.user.must_change_password else web.url("/")
    response = RedirectResponse(target, 303)
    set_cookie(request, response, web.SESSION_COOKIE, full)
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    found = await web.session_of(request)
    if found is not None:
        token, session = found
        fields = await request.form(max_files=0, max_fields=10)
        web.check_csrf(request, session.csrf, fields.get("csrf"))
        await run_in_threadpool(web.store_of(request).sessions.end, token)
    response = RedirectResponse(web.url("/login"), 303)
    response.delete_cookie(web.SESSION_COOKIE, path=web.PREFIX)
    return response


@router.post("/language")
async def language(request: Request) -> Response:
    """Switch the language: kept in a cookie, and as the person's setting when signed in."""
    found = await web.session_of(request)
    fields = await request.form(max_files=0, max_fields=10)
    csrf = found[1].csrf if found else request.cookies.get(web.LOGIN_CSRF_COOKIE, "")
    web.check_csrf(request, csrf, fields.get("csrf"))
    chosen = i18n.known(str(fields.get("language", ""))) or i18n.DEFAULT_LOCALE
    if found is not None and found[1].stage == "full":
        user = found[1].user
        await run_in_threadpool(
            web.store_of(request).users.set_preferences,
            user.id,
            locale=chosen,
            timezone=user.timezone,
        )
    back = _next(str(fields.get("next", ""))) if fields.get("next") else web.url("/")
    if back == web.url("/") and found is None:
        back = web.url("/login")
    response = RedirectResponse(back, 303)
    set_cookie(request, response, web.LANGUAGE_COOKIE, chosen, max_age=365 * 24 * 3600)
    return response


@router.get("/account")
async def account(request: Request, staff: Viewer) -> Response:
    return web.render(request, "account.html", _account_context(staff))


def _account_context(staff: Staff, **extra: Any) -> dict[str, Any]:
    import zoneinfo

    zones = sorted(
        z
        for z in zoneinfo.available_timezones()
        if "/" in z and not z.startswith(("Etc/", "SystemV/"))
    )
    return {
        "zones": zones,
        "current_zone": str(staff.formats.timezone),
        "error": None,
        "saved": False,
        **extra,
    }


@router.post("/account")
async def save_account(request: Request, staff: Viewer) -> Response:
    fields = await web.form(request, staff)
    locale = i18n.known(str(fields.get("language", ""))) or staff.formats.locale
    zone_name = str(fields.get("timezone", ""))
    if str(i18n.zone(zone_name)) != zone_name:
        raise InvalidField("timezone", "must be an IANA time zone name")
    await run_in_threadpool(
        web.store_of(request).users.set_preferences,
        staff.user.id,
        locale=locale,
        timezone=zone_name,
    )
    response = RedirectResponse(web.url("/account?saved=1"), 303)
    set_cookie(request, response, web.LANGUAGE_COOKIE, locale, max_age=365 * 24 * 3600)
    return response


@router.get("/account/password")
async def password_form(request: Request, staff: Viewer) -> Response:
    return web.render(request, "password.html", {"error": None})


@router.post("/account/password")
async def change_password(request: Request, staff: Viewer) -> Response:
    fields = await web.form(request, staff)
    new, again = str(fields.get("new_password", "")), str(fields.get("new_password_again", ""))
    if new != again:
        return web.render(request, "password.html", {"error": "mismatch"}, status=422)
    try:
        credentials.password_rule(new)
    except InvalidField:
        return web.render(request, "password.html", {"error": "short"}, status=422)
    store = web.store_of(request)
    changed = await run_in_threadpool(
        store.users.change_password,
        staff.user.id,
        str(fields.get("current_password", "")),
        new,
        actor=staff.actor,
    )
    if not changed:
        return web.render(request, "password.html", {"error": "wrong"}, status=401)
    # Every other session of the person ends; this one goes on under a new cookie.
    await run_in_threadpool(store.sessions.end_all, staff.user.id)
    token = await run_in_threadpool(store.sessions.start, staff.user.id, "full")
    response = RedirectResponse(web.url("/"), 303)
    set_cookie(request, response, web.SESSION_COOKIE, token)
    return response
