"""Offers made to the caller's organisation: see them, accept them, leave them.

A list shared with an organisation reaches that organisation's matches only once one of its
``admin`` keys accepts the offer; accepting an allow-list with ``trust`` also lets it suppress
hits of the organisation's own block lists. Every answer is audited with the old and new state.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from hashmatch.api.auth import caller, require
from hashmatch.api.models import AcceptIn, ShareOut
from hashmatch.errors import NotFound
from hashmatch.keys import KeyInfo, Role
from hashmatch.store import ListInfo, Store

router = APIRouter(prefix="/v1", tags=["sharing"])
Caller = Annotated[KeyInfo, Depends(caller)]
Admin = Annotated[KeyInfo, Depends(require(Role.ADMIN))]


def _share(info: ListInfo, organisation: str) -> ShareOut:
    return ShareOut(**info.offer_to(organisation))


def _offered(store: Store, name: str, organisation: str) -> ListInfo:
    info = store.get_list(name)
    if organisation not in info.shared_with:
        raise NotFound(f"no list named {name!r} is offered to {organisation!r}")
    return info


@router.get("/shares", summary="Lists offered to this key's organisation, and their state")
def get_shares(request: Request, key: Caller) -> list[ShareOut]:
    store: Store = request.app.state.store
    return [
        _share(info, key.organisation)
        for info in store.lists()
        if key.organisation in info.shared_with
    ]


@router.post("/shares/{name}/accept", summary="Accept an offered list into this org's matches")
def accept(name: str, request: Request, key: Admin, body: AcceptIn | None = None) -> ShareOut:
    store: Store = request.app.state.store
    _offered(store, name, key.organisation)
    info = store.answer_offer(
        name,
        key.organisation,
        actor=key.actor,
        accept=True,
        trust=body.trust if body is not None else False,
    )
    return _share(info, key.organisation)


@router.post("/shares/{name}/leave", summary="Stop matching an accepted list (the offer stays)")
def leave(name: str, request: Request, key: Admin) -> ShareOut:
    store: Store = request.app.state.store
    _offered(store, name, key.organisation)
    info = store.answer_offer(name, key.organisation, actor=key.actor, accept=False)
    return _share(info, key.organisation)
