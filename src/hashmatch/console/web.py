"""What every console page shares: who is signed in, the language they read, the CSRF check
on every form, and rendering a template in their language.

Pages are plain routes that depend on :data:`Viewer`, :data:`Analyst` or :data:`Admin` (the
person, checked for the role) and return :func:`render`. Domain errors raised by the store
become an error page with the status :func:`hashmatch.api.errors.status_for` gives them.
"""

from __future__ import annotations

import functools
import hmac
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Final
from urllib.parse import urlsplit

import jinja2
from fastapi import Depends, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from hashmatch.api.deps import Services, services_of
from hashmatch.console import i18n
from hashmatch.errors import BadRequest, Forbidden, HashmatchError, NotReady
from hashmatch.store import Session, SessionRules, StaffRole, Store, UserInfo

TEMPLATES: Final = Path(__file__).parent / "templates"
SESSION_COOKIE: Final = "hm_session"
#: Before sign-in there is no session to tie a CSRF token to: a cookie and a field must agree.
LOGIN_CSRF_COOKIE: Final = "hm_login_csrf"
LANGUAGE_COOKIE: Final = "hm_lang"
MAX_FORM_BYTES: Final = 1024 * 1024
PREFIX: Final = "/console"


class LoginRequired(HashmatchError, code="login_required"):
    """No live session: the console sends the browser to the sign-in page."""


class PasswordChangeRequired(HashmatchError, code="password_change_required"):
    """A password set by someone else: the person chooses their own before anything else."""


class CsrfRejected(Forbidden, code="csrf_rejected"):
    """A form without the token of the session that showed it (or from another site)."""


@functools.cache
def environment(locale: str) -> jinja2.Environment:
    """Templates in ``locale``: autoescaped everywhere, messages from its catalog (new-style
    gettext, so placeholders are escaped too)."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        extensions=["jinja2.ext.i18n"],
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.install_gettext_translations(i18n.translations(locale), newstyle=True)  # type: ignore[attr-defined]
    return env


@dataclass(frozen=True)
class Staff:
    """The person behind a request, with their session and how they read."""

    user: UserInfo
    token: str
    csrf: str
    formats: i18n.Formats

    @property
    def organisation(self) -> str:
        return self.user.organisation

    @property
    def actor(self) -> str:
        return self.user.actor

    def allows(self, role: StaffRole) -> bool:
        return self.user.allows(role)


def console_services(request: Request) -> Services:
    return services_of(request.app)


def store_of(request: Request) -> Store:
    store = console_services(request).store
    if store is None:
        raise NotReady("the service is starting")
    return store


def session_rules(services: Services) -> SessionRules:
    import datetime as dt

    settings = services.settings
    return SessionRules(
        idle=dt.timedelta(minutes=settings.console_idle_minutes),
        absolute=dt.timedelta(hours=settings.console_absolute_hours),
    )


def locale_of(request: Request, user: UserInfo | None = None) -> str:
    chosen = (user.locale if user else None, request.cookies.get(LANGUAGE_COOKIE))
    return i18n.negotiate(request.headers.get("accept-language"), chosen)


def formats_for(request: Request, user: UserInfo | None) -> i18n.Formats:
    fallback = console_services(request).settings.console_timezone
    return i18n.Formats(
        locale_of(request, user), i18n.zone(user.timezone if user else None, fallback)
    )


async def session_of(request: Request) -> tuple[str, Session] | None:
    token = request.cookies.get(SESSION_COOKIE, "")
    if not token:
        return None
    store = store_of(request)
    rules = session_rules(console_services(request))
    found = await run_in_threadpool(store.sessions.resume, token, rules)
    return None if found is None else (token, found)


async def _staff(request: Request) -> Staff:
    found = await session_of(request)
    if found is None or found[1].stage != "full":
        raise LoginRequired("sign in to continue")
    token, session = found
    staff = Staff(session.user, token, session.csrf, formats_for(request, session.user))
    request.state.staff = staff
    if session.user.must_change_password and request.url.path != url("/account/password"):
        raise PasswordChangeRequired("choose your own password first")
    return staff


def require(role: StaffRole) -> Callable[[Staff], Awaitable[Staff]]:
    async def check(staff: Annotated[Staff, Depends(_staff)]) -> Staff:
        if not staff.allows(role):
            raise Forbidden(f"this page needs the {role.value} role")
        return staff

    return check


Viewer = Annotated[Staff, Depends(require(StaffRole.VIEWER))]
Analyst = Annotated[Staff, Depends(require(StaffRole.ANALYST))]
Admin = Annotated[Staff, Depends(require(StaffRole.ADMIN))]


def same_origin(request: Request) -> bool:
    """Whether a form post comes from the console's own pages: browsers send ``Origin`` with
    every POST; when it is there it must be this host."""
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    return urlsplit(origin).netloc == request.headers.get("host", "")


def check_csrf(request: Request, expected: str, given: object) -> None:
    if (
        not isinstance(given, str)
        or not expected
        or not hmac.compare_digest(given.encode(), expected.encode())
        or not same_origin(request)
    ):
        raise CsrfRejected("the form has expired or did not come from this console; reload it")


async def form(request: Request, staff: Staff) -> FormData:
    """The fields of a URL-encoded form post, once its CSRF token is checked."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise BadRequest("this form is sent URL-encoded")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_FORM_BYTES:
        raise BadRequest("the form is too large")
    fields = await request.form(max_files=0, max_fields=10_000)
    check_csrf(request, staff.csrf, fields.get("csrf"))
    return fields


def url(path: str = "/") -> str:
    return PREFIX + path


def render(
    request: Request,
    template: str,
    context: Mapping[str, Any] | None = None,
    *,
    status: int = 200,
    staff: Staff | None = None,
    headers: Mapping[str, str] | None = None,
) -> HTMLResponse:
    staff = staff or getattr(request.state, "staff", None)
    formats = staff.formats if staff else formats_for(request, None)
    page = environment(formats.locale).get_template(template)
    body = page.render(
        {
            "staff": staff,
            "fmt": formats,
            "lang": formats.locale,
            "html_lang": formats.locale.replace("_", "-"),
            "languages": i18n.LANGUAGES,
            "url": url,
            "path": request.url.path,
            "csrf": staff.csrf if staff else "",
            "roles": StaffRole,
            **(context or {}),
        }
    )
    return HTMLResponse(body, status_code=status, headers=dict(headers or {}))
