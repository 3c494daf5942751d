"""Matching routes: an image or a batch of hashes in, what it matches out."""

from __future__ import annotations

import uuid
from typing import Annotated, Final

import orjson
from fastapi import APIRouter, Depends, Request, Response
from starlette.concurrency import run_in_threadpool

from hashmatch.api.auth import require
from hashmatch.api.models import (
    HashImageOut,
    ImageHashOut,
    MatchHashesIn,
    MatchHashesOut,
    MatchImageOut,
    MatchOut,
    parse_hashes,
)
from hashmatch.api.uploads import read_image
from hashmatch.errors import NotReady
from hashmatch.hashing import Algorithm, Hash, Variant, query_hashes
from hashmatch.keys import KeyInfo, Role
from hashmatch.matcher import Match, Matcher
from hashmatch.media import MediaLimits

router = APIRouter(prefix="/v1", tags=["matching"])
Matching = Annotated[KeyInfo, Depends(require(Role.MATCH))]


def visible_lists(request: Request, key: KeyInfo, wanted: list[str] | None) -> list[str]:
    """Names of the enabled lists this key may match against, narrowed to ``wanted``."""
    matcher = _matcher(request)
    names = [info.name for info in matcher.lists() if key.can_see(info.owner, info.shared_with)]
    if wanted is not None:
        names = [name for name in names if name in set(wanted)]
    return names


def _matcher(request: Request) -> Matcher:
    matcher: Matcher | None = getattr(request.app.state, "matcher", None)
    if matcher is None or not request.app.state.ready:
        raise NotReady("the index is still loading")
    return matcher


def _out(match: Match, variant: str | None = None, suppressed: bool = False) -> MatchOut:
    return MatchOut(**match.as_dict(), variant=variant, suppressed=suppressed)


#: Batches up to this size are matched on the event loop: a thread hop would cost more than
#: the lookups themselves. Larger ones go to the thread pool, off the loop.
INLINE_BATCH: Final = 16


def _match_dict(match: Match) -> dict[str, object]:
    return {**match.as_dict(), "variant": None, "suppressed": False}


def _hash_results(
    matcher: Matcher, hashes: list[Hash], lists: list[str], max_distance: int | None
) -> bytes:
    found = matcher.match(hashes, lists=lists, max_distance=max_distance)
    results = [
        {
            "algorithm": h.algorithm.value,
            "value": h.hex,
            "match": bool(m),
            "matches": [_match_dict(x) for x in m],
        }
        for h, m in zip(hashes, found, strict=True)
    ]
    body = {"match": any(found), "results": results, "request_id": uuid.uuid4().hex}
    return orjson.dumps(body)


@router.post("/match/hashes", response_model=MatchHashesOut, summary="Match up to 10,000 hashes")
async def match_hashes(body: MatchHashesIn, request: Request, key: Matching) -> Response:
    """Each hash's matches in the visible lists. The body is ``MatchHashesOut``, written
    directly: a batch of 10,000 results is not worth validating again on the way out."""
    hashes = parse_hashes(body.hashes)
    lists = visible_lists(request, key, body.lists)
    matcher = _matcher(request)
    if len(hashes) <= INLINE_BATCH:
        content = _hash_results(matcher, hashes, lists, body.max_distance)
    else:
        content = await run_in_threadpool(_hash_results, matcher, hashes, lists, body.max_distance)
    return Response(content, media_type="application/json")


def _image_hashes(
    data: bytes, limits: MediaLimits
) -> tuple[dict[str, ImageHashOut], list[tuple[Hash, str | None]]]:
    _, queries = query_hashes(data, limits)
    shown: dict[str, ImageHashOut] = {}
    for value, variant in queries:
        if variant in (None, Variant.ORIGINAL.value):
            shown[value.algorithm.value] = ImageHashOut(
                algorithm=value.algorithm.value,
                value=value.hex,
                quality=value.quality,
                low_quality=value.low_quality if value.algorithm is Algorithm.PDQ else None,
            )
    return shown, queries


@router.post("/hash", response_model=HashImageOut, summary="Hash an image (nothing is stored)")
async def hash_image(request: Request, _: Matching) -> HashImageOut:
    data = await read_image(request, request.app.state.settings.max_upload_bytes)
    shown, _queries = await run_in_threadpool(
        _image_hashes, data, request.app.state.settings.media_limits
    )
    return HashImageOut(hashes=shown, request_id=uuid.uuid4().hex)


@router.post("/match", response_model=MatchImageOut, summary="Match an image")
async def match_image(
    request: Request,
    key: Matching,
    lists: str | None = None,
    max_distance: int | None = None,
) -> MatchImageOut:
    """An image as multipart field ``file`` or as the raw body. Flipped and rotated copies
    match too (the 8 dihedral PDQ variants); each match says which variant found it. A hit in
    a visible allow-list suppresses the block hits of the same image."""
    data = await read_image(request, request.app.state.settings.max_upload_bytes)
    shown, queries = await run_in_threadpool(
        _image_hashes, data, request.app.state.settings.media_limits
    )
    names = visible_lists(request, key, lists.split(",") if lists else None)
    found = _matcher(request).closest_matches(queries, lists=names, max_distance=max_distance)
    best = [_out(match, variant) for match, variant in found]
    allowed = [m for m in best if m.kind == "allow"]
    blocked = [m for m in best if m.kind != "allow"]
    if allowed:
        blocked = [m.model_copy(update={"suppressed": True}) for m in blocked]
    return MatchImageOut(
        match=bool(blocked) and not allowed,
        hashes=shown,
        matches=blocked,
        allowed=allowed,
        request_id=uuid.uuid4().hex,
    )
