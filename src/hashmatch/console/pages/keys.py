"""The organisation's API keys, for its admins: the list, a new key (its secret shown once,
on the answer to the form), and revocation. Another organisation's key is not found here."""

from __future__ import annotations

from typing import Any, Final

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from hashmatch.console import web
from hashmatch.console.web import Admin, Staff
from hashmatch.errors import InvalidField, NotFound
from hashmatch.store import KeyInfo, Role, Store
from hashmatch.store.keys import parse_roles

router = APIRouter()

#: The roles a key can be given, in the order the form offers them.
KEY_ROLES: Final = (Role.MATCH, Role.CONTRIBUTE, Role.ADMIN, Role.EXCHANGE)


def own_keys(store: Store, organisation: str) -> list[KeyInfo]:
    return [key for key in store.keys.all() if key.organisation == organisation]


def _own_key(store: Store, staff: Staff, key_id: int) -> KeyInfo:
    for key in own_keys(store, staff.organisation):
        if key.id == key_id:
            return key
    raise NotFound(f"no key with id {key_id}")


def _page(request: Request, keys: list[KeyInfo], *, status: int = 200, **extra: Any) -> Response:
    context = {
        "keys": sorted(keys, key=lambda k: (k.revoked_at is not None, -k.id)),
        "key_roles": [role.value for role in KEY_ROLES],
        "error": None,
        "detail": "",
        "revoked": None,
        "form": {"name": "", "roles": []},
        **extra,
    }
    return web.render(request, "keys.html", context, status=status)


@router.get("/keys")
async def keys_page(request: Request, staff: Admin, revoked: int | None = None) -> Response:
    keys = await run_in_threadpool(own_keys, web.store_of(request), staff.organisation)
    done = next((k for k in keys if k.id == revoked and k.revoked_at is not None), None)
    return _page(request, keys, revoked=done)


@router.post("/keys")
async def create_key(request: Request, staff: Admin) -> Response:
    fields = await web.form(request, staff)
    store = web.store_of(request)
    name = str(fields.get("name", "")).strip()
    chosen = [str(value) for value in fields.getlist("roles")]
    try:
        roles = parse_roles(chosen)
        key, secret = await run_in_threadpool(
            lambda: store.keys.create(staff.organisation, roles, actor=staff.actor, name=name)
        )
    except InvalidField as error:
        keys = await run_in_threadpool(own_keys, store, staff.organisation)
        form = {"name": name[:200], "roles": chosen}
        return _page(request, keys, status=422, error=error.field, detail=error.message, form=form)
    # The one time the secret exists outside the caller's hands: on this answer only (the
    # console's answers are never cached), not behind a redirect.
    return web.render(request, "keys_created.html", {"key": key, "secret": secret}, status=201)


@router.post("/keys/{key_id}/revoke")
async def revoke_key(request: Request, staff: Admin, key_id: int) -> Response:
    await web.form(request, staff)
    store = web.store_of(request)
    key = await run_in_threadpool(_own_key, store, staff, key_id)
    if key.revoked_at is not None:
        raise NotFound(f"no live key with id {key_id}")
    await run_in_threadpool(lambda: store.keys.revoke(key.id, actor=staff.actor))
    cache = web.console_services(request).keys
    if cache is not None:
        cache.forget(key.id)  # at once here; other replicas within seconds
    return RedirectResponse(web.url(f"/keys?revoked={key.id}"), 303)
