"""The organisation's people, for its admins: who they are, invitations (a first password
shown once, to be changed at the first sign-in), disabling and enabling, and resetting a
password or a second factor. Another organisation's people are not found here."""

from __future__ import annotations

import datetime as dt
from typing import Any, Final
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from hashmatch.console import web
from hashmatch.console.web import Admin, Staff
from hashmatch.errors import Conflict, Forbidden, InvalidField
from hashmatch.store import StaffRole, Store, UserInfo, utcnow
from hashmatch.store.users import staff_role

router = APIRouter()

#: What a redirect back to the page may say was done (anything else says nothing).
OUTCOMES: Final = frozenset({"disabled", "enabled", "totp"})


def _page(request: Request, people: list[UserInfo], *, status: int = 200, **extra: Any) -> Response:
    now = utcnow()
    context = {
        "people": people,
        "locked": {person.login for person in people if _locked(person, now)},
        "staff_roles": [role.value for role in StaffRole],
        "error": None,
        "detail": "",
        "done": None,
        "who": None,
        "form": {"login": "", "name": "", "role": StaffRole.VIEWER.value},
        **extra,
    }
    return web.render(request, "people.html", context, status=status)


def _locked(user: UserInfo, now: dt.datetime) -> bool:
    return user.locked_until is not None and user.locked_until > now


@router.get("/people")
async def people_page(request: Request, staff: Admin, done: str = "", who: str = "") -> Response:
    people = await run_in_threadpool(web.store_of(request).users.all, staff.organisation)
    shown = next((p for p in people if p.login == who), None)
    outcome = done if done in OUTCOMES and shown is not None else None
    return _page(request, people, done=outcome, who=shown)


@router.post("/people")
async def invite(request: Request, staff: Admin) -> Response:
    fields = await web.form(request, staff)
    store = web.store_of(request)
    login = str(fields.get("login", "")).strip()
    name = str(fields.get("name", "")).strip()
    role = str(fields.get("role", ""))
    try:
        user, password, _ = await run_in_threadpool(
            lambda: store.users.create(
                staff.organisation, login, staff_role(role), actor=staff.actor, name=name
            )
        )
    except (InvalidField, Conflict) as error:
        people = await run_in_threadpool(store.users.all, staff.organisation)
        code = error.field if isinstance(error, InvalidField) else "taken"
        form = {"login": login[:64], "name": name[:128], "role": role[:16]}
        status = 409 if isinstance(error, Conflict) else 422
        return _page(request, people, status=status, error=code, detail=error.message, form=form)
    return web.render(
        request,
        "people_password.html",
        {"person": user, "password": password, "invited": True},
        status=201,
    )


def _not_self(staff: Staff, login: str, what: str) -> None:
    if login.strip().lower() == staff.user.login:
        raise Forbidden(f"you cannot {what} your own account here")


def _own(store: Store, staff: Staff, login: str) -> UserInfo:
    """The person, if they are the organisation's (else not found, whether they exist)."""
    return store.users.get(login, staff.organisation)


@router.post("/people/{login}/disable")
async def disable(request: Request, staff: Admin, login: str) -> Response:
    await web.form(request, staff)
    store = web.store_of(request)
    user = await run_in_threadpool(_own, store, staff, login)
    _not_self(staff, user.login, "disable")
    await run_in_threadpool(
        lambda: store.users.disable(user.login, actor=staff.actor, organisation=staff.organisation)
    )
    return _back("disabled", user.login)


@router.post("/people/{login}/enable")
async def enable(request: Request, staff: Admin, login: str) -> Response:
    await web.form(request, staff)
    store = web.store_of(request)
    user = await run_in_threadpool(_own, store, staff, login)
    await run_in_threadpool(
        lambda: store.users.enable(user.login, actor=staff.actor, organisation=staff.organisation)
    )
    return _back("enabled", user.login)


@router.post("/people/{login}/password")
async def reset_password(request: Request, staff: Admin, login: str) -> Response:
    """A new password for the person, shown once (they choose their own at the next
    sign-in); their sessions end and the lockout is cleared. Their second factor stays."""
    await web.form(request, staff)
    store = web.store_of(request)
    user = await run_in_threadpool(_own, store, staff, login)
    _not_self(staff, user.login, "reset the password of")
    user, password = await run_in_threadpool(
        lambda: store.users.reset(
            user.login,
            actor=staff.actor,
            organisation=staff.organisation,
            password=True,
            totp=False,
        )
    )
    return web.render(
        request, "people_password.html", {"person": user, "password": password, "invited": False}
    )


@router.post("/people/{login}/totp")
async def reset_totp(request: Request, staff: Admin, login: str) -> Response:
    """Remove the person's second factor (lost phone): they set one up again at the next
    sign-in where admins must have one; their sessions end."""
    await web.form(request, staff)
    store = web.store_of(request)
    user = await run_in_threadpool(_own, store, staff, login)
    _not_self(staff, user.login, "reset the second factor of")
    await run_in_threadpool(
        lambda: store.users.reset(
            user.login,
            actor=staff.actor,
            organisation=staff.organisation,
            password=False,
            totp=True,
        )
    )
    return _back("totp", user.login)


def _back(done: str, login: str) -> Response:
    return RedirectResponse(web.url("/people?" + urlencode({"done": done, "who": login})), 303)
