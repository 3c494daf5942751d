"""The peers whose lists the organisation mirrors, for its admins: where each stands (cursor,
how long since its feed was last read, the last error) and pausing or resuming it. A peer's
key is never read here (:class:`hashmatch.store.peers.PeerInfo` does not carry it)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from babel.dates import format_timedelta
from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from hashmatch.console import web
from hashmatch.console.web import Admin, Staff
from hashmatch.errors import NotFound
from hashmatch.store import Store, utcnow
from hashmatch.store.peers import PeerInfo

router = APIRouter()


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    return value if value is None or value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


def own_peers(store: Store, organisation: str) -> list[PeerInfo]:
    """The peers whose mirrors belong to ``organisation`` (as the API's ``GET /v1/peers``)."""
    return [peer for peer in store.peers.all() if peer.organisation == organisation]


def _own_peer(store: Store, staff: Staff, name: str) -> PeerInfo:
    for peer in own_peers(store, staff.organisation):
        if peer.name == name:
            return peer
    raise NotFound(f"no peer named {name[:64]!r}")


def _row(staff: Staff, peer: PeerInfo, now: dt.datetime) -> dict[str, Any]:
    """A peer as the page shows it; ``lag``: how long since a page of its feed was last
    applied (None: never)."""
    success = _aware(peer.last_success_at)
    lag = None
    if success is not None:
        lag = format_timedelta(
            max(now - success, dt.timedelta(0)),
            threshold=1.5,
            locale=staff.formats.babel_locale,
        )
    return {
        "name": peer.name,
        "url": peer.url,
        "cursor": peer.cursor,
        "lists": peer.lists,
        "paused": peer.paused,
        "remote_instance": peer.remote_instance,
        "last_success_at": success,
        "last_attempt_at": _aware(peer.last_attempt_at),
        "next_attempt_at": _aware(peer.next_attempt_at),
        "lag": lag,
        "last_error": peer.last_error,
        "failures": peer.failures,
    }


@router.get("/exchanges")
async def exchanges_page(request: Request, staff: Admin, done: str = "") -> Response:
    peers = await run_in_threadpool(own_peers, web.store_of(request), staff.organisation)
    now = utcnow()
    rows = [_row(staff, peer, now) for peer in peers]
    outcome = done if done in {"paused", "resumed"} else None
    return web.render(request, "exchanges.html", {"peers": rows, "done": outcome})


async def _set_paused(request: Request, staff: Staff, name: str, paused: bool) -> Response:
    await web.form(request, staff)
    store = web.store_of(request)
    peer = await run_in_threadpool(_own_peer, store, staff, name)
    await run_in_threadpool(lambda: store.peers.set_paused(peer.name, paused, actor=staff.actor))
    return RedirectResponse(web.url("/exchanges?done=" + ("paused" if paused else "resumed")), 303)


@router.post("/exchanges/{name}/pause")
async def pause(request: Request, staff: Admin, name: str) -> Response:
    return await _set_paused(request, staff, name, True)


@router.post("/exchanges/{name}/resume")
async def resume(request: Request, staff: Admin, name: str) -> Response:
    return await _set_paused(request, staff, name, False)
