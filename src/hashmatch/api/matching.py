"""Matching routes: an image or a batch of hashes in, a verdict out.

The routes only translate HTTP: the lists a key may match, the search, the probe check and the
verdict are :mod:`hashmatch.matching.lookup`'s, the same as ``hashmatch match``'s.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Annotated, Any, Final, TypeVar

import anyio.to_thread
import orjson
from fastapi import APIRouter, Request, Response
from fastapi import Query as Param
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from hashmatch import fields
from hashmatch.api.auth import Matching
from hashmatch.api.bodylimit import body_limit
from hashmatch.api.deps import Services, ServicesDep, StateDep
from hashmatch.api.models import (
    HashImageOut,
    ImageHashOut,
    MatchHashesIn,
    MatchHashesOut,
    MatchImageOut,
    parse_hashes,
)
from hashmatch.api.uploads import read_image
from hashmatch.errors import KeySuspended, NotReady, StoreUnavailable
from hashmatch.matching.counts import Stamp
from hashmatch.matching.lookup import lookup, matchable_lists
from hashmatch.matching.probes import ProbeDetected, ProbeGuard
from hashmatch.matching.state import MatchState
from hashmatch.matching.verdict import Verdict, hit_dict, verdict_dict
from hashmatch.media import DecodeBudget, MediaLimits
from hashmatch.signals import ORIGINAL, Query, query_hashes
from hashmatch.signals.registry import MAX_DISTANCE
from hashmatch.store.keys import KeyInfo

T = TypeVar("T")
Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])
log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1", tags=["matching"])
ListsQuery = Annotated[
    list[str] | None,
    Param(description="only these lists (repeat the parameter, or separate names by commas)"),
]

#: Batches up to this size are matched on the event loop: a thread hop would cost more than
#: the lookups themselves. Larger ones go to the thread pool, off the loop.
INLINE_BATCH: Final = 16
#: 10,000 hashes with their groups, as JSON.
MAX_HASHES_BODY: Final = 4 * 1024 * 1024
#: Image routes read their bodies under the configured upload cap themselves
#: (``HASHMATCH_MAX_UPLOAD_BYTES``); this only lifts the default cap for small bodies.
IMAGE_ROUTE_BODY: Final = 1 << 40


def _post(
    path: str, model: type[BaseModel], summary: str, limit: int
) -> Callable[[Endpoint], Endpoint]:
    """A POST route answering ``model``, taking bodies up to ``limit`` bytes."""
    return router.post(path, response_model=model, summary=summary, openapi_extra=body_limit(limit))


def _wanted(lists: list[str] | None) -> list[str] | None:
    if lists is None:
        return None
    return [name.strip() for value in lists for name in value.split(",") if name.strip()]


async def _guarded(services: Services, key: KeyInfo, work: Callable[[], T], size: int) -> T:
    """Run ``work`` (a lookup and what is made of it) on the loop when small, else in the
    thread pool; a probe it detects suspends the key."""
    try:
        return work() if size <= INLINE_BATCH else await run_in_threadpool(work)
    except ProbeDetected as probe:
        await run_in_threadpool(_suspend, services, key, probe)
        raise KeySuspended(
            "this key is suspended: its queries probed another organisation's list "
            f"{probe.list_name!r}; the operator can reinstate it"
        ) from None


def _stamp(services: Services, key: KeyInfo) -> Stamp:
    """What gives this response's hits their match ids (and counts them)."""
    if services.recorder is None:
        raise NotReady("the service is starting")
    return services.recorder.stamp(key.organisation)


def _suspend(services: Services, key: KeyInfo, probe: ProbeDetected) -> None:
    assert services.keys is not None and services.store is not None  # a key got here
    services.keys.suspend(key.id)  # this replica stops the key at once
    log.warning("suspending key %d of %r: %s", key.id, key.organisation, probe)
    try:
        services.store.keys.suspend(
            key.id,
            actor="probe-guard",
            reason=str(probe),
            probed_list=probe.list_name,
        )
    except StoreUnavailable:
        log.error("could not record the suspension of key %d: database unavailable", key.id)


@_post("/match/hashes", MatchHashesOut, "Match up to 10,000 hashes", MAX_HASHES_BODY)
async def match_hashes(
    body: MatchHashesIn, state: StateDep, services: ServicesDep, key: Matching
) -> Response:
    """Each hash's verdict. Hashes with the same ``group`` are judged as one item (one
    image's PDQ and MD5, say); the others each alone. The body is ``MatchHashesOut``, written
    directly: a batch of 10,000 results is not worth validating again on the way out."""
    names = matchable_lists(state, key.organisation, body.lists)
    stamp = _stamp(services, key)

    def answer() -> bytes:
        return _answer_hashes(state, body, key.organisation, names, services.probes, stamp)

    content = await _guarded(services, key, answer, len(body.hashes))
    return Response(content, media_type="application/json")


def _answer_hashes(
    state: MatchState,
    body: MatchHashesIn,
    organisation: str,
    names: frozenset[str],
    guard: ProbeGuard,
    stamp: Stamp,
) -> bytes:
    hashes = parse_hashes(body.hashes)
    members: list[list[Query]] = []
    slots: list[tuple[int, int]] = []  # (item, position in it) of each hash
    grouped: dict[str, int] = {}
    for position, (value, given) in enumerate(zip(hashes, body.hashes, strict=True)):
        index = len(members)
        if given.group is not None:
            group = fields.text(given.group, f"hashes[{position}].group", fields.MAX_GROUP_CHARS)
            index = grouped.setdefault(group, index)
        if index == len(members):
            members.append([])
        slots.append((index, len(members[index])))
        members[index].append(Query(value))
    verdicts = lookup(
        state,
        members,
        organisation=organisation,
        lists=names,
        max_distance=body.max_distance,
        guard=guard,
    )
    results = []
    for value, given, (index, position) in zip(hashes, body.hashes, slots, strict=True):
        verdict = verdicts[index]
        results.append(
            {
                "algorithm": value.algorithm.name,
                "value": value.hex,
                "group": given.group,
                "match": verdict.match,
                "matches": [
                    hit_dict(hit, organisation, stamp)
                    for hit in verdict.blocks
                    if hit.query == position
                ],
                "allowed": [
                    hit_dict(hit, organisation, stamp)
                    for hit in verdict.allows
                    if hit.query == position
                ],
            }
        )
    content = {
        "match": any(v.match for v in verdicts),
        "results": results,
        "request_id": uuid.uuid4().hex,
    }
    return orjson.dumps(content)


def _image_hashes(
    data: bytes, limits: MediaLimits, budget: DecodeBudget
) -> tuple[dict[str, ImageHashOut], list[Query]]:
    _, queries = query_hashes(data, limits, budget)
    shown: dict[str, ImageHashOut] = {}
    for query in queries:
        value = query.hash
        if query.variant in (None, ORIGINAL):
            shown[value.algorithm.name] = ImageHashOut(
                algorithm=value.algorithm.name,
                value=value.hex,
                quality=value.quality,
                low_quality=value.low_quality if value.quality is not None else None,
            )
    return shown, queries


async def _hash_upload(
    request: Request, services: Services
) -> tuple[dict[str, ImageHashOut], list[Query]]:
    settings = services.settings
    data = await read_image(request, settings.max_upload_bytes)
    return await anyio.to_thread.run_sync(
        _image_hashes,
        data,
        settings.media_limits,
        services.decode_budget,
        limiter=services.decoders,
    )


@_post("/hash", HashImageOut, "Hash an image (nothing is stored)", IMAGE_ROUTE_BODY)
async def hash_image(request: Request, services: ServicesDep, _: Matching) -> HashImageOut:
    shown, _queries = await _hash_upload(request, services)
    return HashImageOut(hashes=shown, request_id=uuid.uuid4().hex)


@_post("/match", MatchImageOut, "Match an image", IMAGE_ROUTE_BODY)
async def match_image(
    request: Request,
    state: StateDep,
    services: ServicesDep,
    key: Matching,
    lists: ListsQuery = None,
    max_distance: Annotated[int | None, Param(ge=0, le=MAX_DISTANCE)] = None,
) -> Response:
    """An image as multipart field ``file`` or as the raw body. Flipped and rotated copies
    match too (the 8 dihedral PDQ variants), and so does the picture inside a frame; each
    match says which variant found it. An allow-list hit suppresses the block hits its owner
    (or an owner that trusts it) listed; suppressed hits stay in ``matches``, marked."""
    names = matchable_lists(state, key.organisation, _wanted(lists))
    shown, queries = await _hash_upload(request, services)

    def judge() -> Verdict:
        (verdict,) = lookup(
            state,
            [queries],
            organisation=key.organisation,
            lists=names,
            max_distance=max_distance,
            guard=services.probes,
        )
        return verdict

    verdict = await _guarded(services, key, judge, len(queries))
    content = {
        **verdict_dict(verdict, key.organisation, _stamp(services, key)),
        "hashes": {name: value.model_dump() for name, value in shown.items()},
        "request_id": uuid.uuid4().hex,
    }
    return Response(orjson.dumps(content), media_type="application/json")
