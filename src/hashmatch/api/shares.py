"""Offers made to the caller's organisation: see them, accept them, leave them.

A list shared with an organisation reaches that organisation's matches only once one of its
``admin`` keys accepts the offer; accepting an allow-list with ``trust`` also lets it suppress
hits of the organisation's own block lists. Every answer is audited with the old and new state.
"""

from __future__ import annotations

from fastapi import APIRouter

from hashmatch.api.auth import Admin, Caller
from hashmatch.api.deps import StoreDep
from hashmatch.api.models import AcceptIn, ShareOut
from hashmatch.errors import NotFound
from hashmatch.store import ListInfo, Store

router = APIRouter(prefix="/v1", tags=["sharing"])


def _share(info: ListInfo, organisation: str) -> ShareOut:
    return info.offer_to(organisation)


def _offered(store: Store, name: str, organisation: str) -> ListInfo:
    info = store.lists.get(name)
    if organisation not in info.shared_with:
        raise NotFound(f"no list named {name!r} is offered to {organisation!r}")
    return info


@router.get("/shares", summary="Lists offered to this key's organisation, and their state")
def get_shares(store: StoreDep, key: Caller) -> list[ShareOut]:
    return [
        _share(info, key.organisation)
        for info in store.lists.all()
        if key.organisation in info.shared_with
    ]


@router.post("/shares/{name}/accept", summary="Accept an offered list into this org's matches")
def accept(name: str, store: StoreDep, key: Admin, body: AcceptIn | None = None) -> ShareOut:
    _offered(store, name, key.organisation)
    info = store.lists.answer_offer(
        name,
        key.organisation,
        actor=key.actor,
        accept=True,
        trust=body.trust if body is not None else False,
    )
    return _share(info, key.organisation)


@router.post("/shares/{name}/leave", summary="Stop matching an accepted list (the offer stays)")
def leave(name: str, store: StoreDep, key: Admin) -> ShareOut:
    _offered(store, name, key.organisation)
    info = store.lists.answer_offer(name, key.organisation, actor=key.actor, accept=False)
    return _share(info, key.organisation)
