"""The exchange over HTTP: the peer feed this instance publishes, and its peers, managed.

``/v1/exchange/feed`` and ``/v1/exchange/digest`` answer keys of role ``exchange`` only (a
partner instance's): they carry hash values, which no other route gives to anyone but a list's
owner. The peer routes are an organisation's ``admin`` key's, for the peers whose mirrors that
organisation holds; a peer's key goes in and never comes out.
"""

from __future__ import annotations

import gzip
from typing import Annotated, Any, Final

import anyio
import orjson
from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from hashmatch.api.auth import Admin, require
from hashmatch.api.bodylimit import body_limit
from hashmatch.api.deps import SettingsDep, StoreDep
from hashmatch.delivery import TargetRefused, check_target
from hashmatch.errors import Forbidden, InvalidField, NotFound
from hashmatch.exchange.fetcher import source_for, verify_peer
from hashmatch.exchange.source import INSTANCE_HEADER
from hashmatch.exchange.wire import (
    DEFAULT_PAGE_ENTRIES,
    MAX_PAGE_ENTRIES,
    MAX_WAIT_SECONDS,
    FeedCursor,
)
from hashmatch.store import Role, Store
from hashmatch.store.feed import wire_name
from hashmatch.store.keys import KeyInfo
from hashmatch.store.peers import PeerInfo

router = APIRouter(prefix="/v1/exchange", tags=["exchange"])
Exchange = Annotated[KeyInfo, Depends(require(Role.EXCHANGE))]
#: How often a waiting feed request looks for a new change.
POLL_SECONDS: Final = 0.1
#: Bodies smaller than this are sent as they are: gzip would not pay for itself.
MIN_GZIP_BYTES: Final = 512


def _page(
    store: Store, key: KeyInfo, cursor: FeedCursor, limit: int, instance: str | None
) -> dict[str, Any]:
    return store.feed.page(key.organisation, cursor, limit, instance).as_dict()


@router.get("/feed", summary="Entry-level changes of the lists shared with this organisation")
async def feed(
    request: Request,
    store: StoreDep,
    key: Exchange,
    cursor: Annotated[str, Query(max_length=64)] = "",
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_ENTRIES)] = DEFAULT_PAGE_ENTRIES,
    wait: Annotated[float, Query(ge=0, le=MAX_WAIT_SECONDS)] = 0.0,
) -> Response:
    """Events after ``cursor`` (empty: from the start) for the lists this organisation
    accepted: each list's metadata and TLP label, entries added (with their hash values),
    entries withdrawn (with the class of reason), and in ``lists`` the names it receives now.
    With ``wait`` the request returns as soon as there is something, or after ``wait``
    seconds. Gzip-compressed when the request accepts it."""
    position = FeedCursor.parse(cursor)
    instance = request.headers.get(INSTANCE_HEADER)
    deadline = anyio.current_time() + wait
    while True:
        latest = await run_in_threadpool(store.changes.latest)
        page = await run_in_threadpool(_page, store, key, position, limit, instance)
        if page["events"] or anyio.current_time() >= deadline:
            break
        # Nothing for this organisation yet: wait for the change log to move, then look again.
        while anyio.current_time() < deadline:
            await anyio.sleep(POLL_SECONDS)
            if await run_in_threadpool(store.changes.latest) != latest:
                break
    body = orjson.dumps(page)
    headers = {"Vary": "Accept-Encoding", "Cache-Control": "no-store"}
    if "gzip" in request.headers.get("accept-encoding", "") and len(body) >= MIN_GZIP_BYTES:
        # Level 1: most of the gain (hex hashes halve) for a fifth of level 6's time.
        body = await run_in_threadpool(gzip.compress, body, 1)
        headers["Content-Encoding"] = "gzip"
    return Response(body, media_type="application/json", headers=headers)


@router.get("/digest", summary="Count and digest of a shared list's live entries")
def digest(
    store: StoreDep, key: Exchange, list: Annotated[str, Query(max_length=200)]
) -> dict[str, Any]:
    found = store.feed.digest(key.organisation, list)
    if found is None:
        raise NotFound(f"no list named {list!r} is shared with {key.organisation!r}")
    return found


class OutcomesIn(BaseModel):
    entries: list[dict[str, Any]] = Field(max_length=10_000)


@router.post(
    "/outcomes",
    summary="Report what this organisation's platforms did with the entries shared with it",
    openapi_extra=body_limit(8 * 1024 * 1024),
)
def receive_outcomes(body: OutcomesIn, store: StoreDep, key: Exchange) -> dict[str, Any]:
    """Totals per entry (its id here) and day of match: matches, outcomes by kind, seconds
    from match to removal. Each report replaces the earlier one for the same entry and day."""
    shared = {wire_name(r.info): r.info.id for r in store.feed.received(key.organisation)}
    return store.remote_outcomes.receive(key.organisation, shared, body.entries)


class PeerIn(BaseModel):
    name: str = Field(min_length=1, max_length=32)
    url: str = Field(min_length=1, max_length=512)
    key: str = Field(min_length=1, max_length=512, description="the key the peer gave you")
    lists: list[str] | None = Field(default=None, max_length=10_000)


def _own_peer(store: Store, name: str, key: KeyInfo) -> PeerInfo:
    info = store.peers.get(name)
    if info.organisation != key.organisation:
        raise NotFound(f"no peer named {name!r}")
    return info


@router.get("/peers", summary="Peers whose lists this organisation mirrors")
def get_peers(store: StoreDep, key: Admin) -> list[dict[str, Any]]:
    return [p.as_dict() for p in store.peers.all() if p.organisation == key.organisation]


@router.post("/peers", status_code=201, summary="Subscribe to a peer instance's feed")
def add_peer(body: PeerIn, store: StoreDep, settings: SettingsDep, key: Admin) -> dict[str, Any]:
    if not body.url.lower().startswith(("http://", "https://")):
        # A folder source reads this machine's files: the operator's decision, from the CLI.
        raise Forbidden("over HTTP a peer is an http(s) address; folders are added from the CLI")
    try:
        # Nor may a key make this instance call into its own network (the operator may).
        check_target(body.url, settings.exchange_private_peers)
    except TargetRefused as exc:
        raise InvalidField("url", exc.message) from None
    info = store.peers.add(
        body.name,
        url=body.url,
        secret=body.key,
        organisation=key.organisation,
        actor=key.actor,
        lists=body.lists,
    )
    return info.as_dict()


@router.get("/peers/{name}", summary="One peer: cursor, lag, last error, last verification")
def get_peer(name: str, store: StoreDep, key: Admin) -> dict[str, Any]:
    info = _own_peer(store, name, key)
    mirrors = [
        m.report(key.organisation).model_dump(mode="json") for m in store.mirrors.of_peer(name)
    ]
    return {**info.as_dict(), "mirrors": mirrors}


@router.delete("/peers/{name}", status_code=204, summary="Stop following a peer")
def remove_peer(name: str, store: StoreDep, key: Admin) -> Response:
    _own_peer(store, name, key)
    store.peers.remove(name, actor=key.actor)
    return Response(status_code=204)


@router.post("/peers/{name}/pause", summary="Pause fetching from a peer")
def pause_peer(name: str, store: StoreDep, key: Admin) -> dict[str, Any]:
    _own_peer(store, name, key)
    return store.peers.set_paused(name, True, actor=key.actor).as_dict()


@router.post("/peers/{name}/resume", summary="Resume fetching from a peer")
def resume_peer(name: str, store: StoreDep, key: Admin) -> dict[str, Any]:
    _own_peer(store, name, key)
    return store.peers.set_paused(name, False, actor=key.actor).as_dict()


@router.post("/peers/{name}/verify", summary="Compare the mirrors with the origin; resync if not")
def verify(name: str, store: StoreDep, settings: SettingsDep, key: Admin) -> dict[str, Any]:
    info = _own_peer(store, name, key)
    source = source_for(
        info,
        store.peers.secret(name),
        own_instance=store.instance,
        bounds=settings.threshold_bounds,
    )
    try:
        return verify_peer(store, info, source)
    finally:
        getattr(source, "close", lambda: None)()
