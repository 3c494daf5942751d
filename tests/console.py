"""Signing people in to the console for tests, through the real ASGI app."""

from __future__ import annotations

import re

import httpx
from fastapi.testclient import TestClient

from hashmatch.store import StaffRole
from services import Service

PASSWORD = "correct horse battery staple"
_CSRF = re.compile(r'name="csrf" value="([^"]*)"')


def csrf_of(html: str) -> str:
    """The CSRF token of the first form on a page."""
    found = _CSRF.search(html)
    assert found is not None, "no form with a CSRF token on the page"
    return found.group(1)


def person(service: Service, org: str, login: str, role: StaffRole) -> None:
    service.store.users.create(org, login, role, actor="test", password=PASSWORD)


def sign_in(service: Service, login: str, password: str = PASSWORD) -> TestClient:
    """A browser of its own (its own cookies), signed in as ``login``."""
    client = TestClient(service.client.app, base_url="http://testserver")
    page = client.get("/console/login")
    assert page.status_code == 200, page.text
    done = client.post(
        "/console/login",
        data={"login": login, "password": password, "csrf": csrf_of(page.text)},
        follow_redirects=False,
    )
    assert done.status_code == 303, done.text
    assert done.headers["location"].startswith("/console/"), done.headers["location"]
    return client


def staff_client(service: Service, org: str, login: str, role: StaffRole) -> TestClient:
    """A new person of ``org`` with ``role``, signed in."""
    person(service, org, login, role)
    return sign_in(service, login)


def post_form(
    client: TestClient, page_path: str, action: str, data: dict[str, str]
) -> httpx.Response:
    """Post ``data`` to ``action`` with the CSRF token read from ``page_path``."""
    page = client.get(page_path)
    assert page.status_code == 200, page.text
    response: httpx.Response = client.post(
        action, data={**data, "csrf": csrf_of(page.text)}, follow_redirects=False
    )
    return response
