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
from hashmatch.api.uploads import read_media
from hashmatch.api.videos import HashedVideo, hash_upload, is_video
from hashmatch.errors import (
    HashFormatError,
    KeySuspended,
    NotReady,
    StoreUnavailable,
)
from hashmatch.matching.counts import Stamp
from hashmatch.matching.lookup import lookup, lookup_video, matchable_lists
from hashmatch.matching.probes import ProbeDetected, ProbeGuard
from hashmatch.matching.state import MatchState
from hashmatch.matching.verdict import Verdict, hit_dict, verdict_dict
from hashmatch.matching.video import QueryFrames
from hashmatch.media import DecodeBudget, MediaLimits
from hashmatch.signals import ORIGINAL, Query, query_hashes
from hashmatch.signals.registry import MAX_DISTANCE
from hashmatch.signals.vpdq import parse_frames
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

    size = len(body.hashes) + sum(len(video.frames) for video in body.videos)
    content = await _guarded(services, key, answer, size)
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
    videos = [_video_frames(video.frames, position) for position, video in enumerate(body.videos)]
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
    video_results = []
    for video, frames in zip(body.videos, videos, strict=True):
        verdict = lookup_video(
            state,
            frames,
            organisation=organisation,
            lists=names,
            max_distance=body.max_distance,
            guard=guard,
        )
        video_results.append(
            {
                "id": video.id,
                "frames_kept": len(frames),
                **verdict_dict(verdict, organisation, stamp),
            }
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
        "match": any(v.match for v in verdicts) or any(v["match"] for v in video_results),
        "results": results,
        "videos": video_results,
        "request_id": uuid.uuid4().hex,
    }
    return orjson.dumps(content)


def _video_frames(frames: list[str] | str, position: int) -> QueryFrames:
    text = frames if isinstance(frames, str) else "\n".join(frames)
    try:
        return QueryFrames.of(parse_frames(text))
    except HashFormatError as exc:
        raise HashFormatError(f"videos[{position}].frames: {exc.message}") from None


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
) -> tuple[dict[str, ImageHashOut], list[Query]] | HashedVideo:
    """The hashes of an uploaded image, or of an uploaded video (told apart by its bytes)."""
    settings = services.settings
    data = await read_media(request, settings.max_upload_bytes, settings.max_video_bytes, is_video)
    return await hash_media(data, services)


async def hash_media(
    data: bytes, services: Services
) -> tuple[dict[str, ImageHashOut], list[Query]] | HashedVideo:
    """The hashes of an image or a video held in memory (told apart by its bytes), decoded
    in a worker thread under the service's decode limits: what ``/v1/match`` looks up."""
    settings = services.settings
    if is_video(data):
        return await anyio.to_thread.run_sync(
            hash_upload, data, settings, limiter=services.video_decoders
        )
    return await anyio.to_thread.run_sync(
        _image_hashes,
        data,
        settings.media_limits,
        services.decode_budget,
        limiter=services.decoders,
    )


@_post("/hash", HashImageOut, "Hash an image or a video (nothing is stored)", IMAGE_ROUTE_BODY)
async def hash_image(request: Request, services: ServicesDep, _: Matching) -> Response:
    """An image's hashes, or a video's: its digests, and its vPDQ frames (one a
    ``HASHMATCH_VIDEO_SECONDS_PER_HASH``) in ``video.frames``, as ``hashmatch hash`` writes
    them and ``/v1/match/hashes`` takes them."""
    hashed = await _hash_upload(request, services)
    if isinstance(hashed, HashedVideo):
        content: dict[str, Any] = {
            "hashes": hashed.hashes(),
            "video": hashed.describe(with_frames=True).model_dump(),
        }
    else:
        shown, _queries = hashed
        content = {"hashes": {name: value.model_dump() for name, value in shown.items()}}
    content["request_id"] = uuid.uuid4().hex
    return Response(orjson.dumps(content), media_type="application/json")


@_post("/match", MatchImageOut, "Match an image or a video", IMAGE_ROUTE_BODY)
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
    (or an owner that trusts it) listed; suppressed hits stay in ``matches``, marked.

    A video (told from an image by its bytes: MP4/MOV, WebM/Matroska, AVI, MPEG-PS/TS, Ogg)
    is hashed as vPDQ and matched against listed videos (each hit with both sides' scores
    and matched stretches, ``video``) and, frame by frame, against listed images (each hit
    with the frame's time, ``query_time``); a listed video found by an image says when the
    matching frame shows (``listed_time``)."""
    names = matchable_lists(state, key.organisation, _wanted(lists))
    hashed = await _hash_upload(request, services)
    if isinstance(hashed, HashedVideo):
        return await _match_video(hashed, state, services, key, names, max_distance)
    shown, queries = hashed

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


async def _match_video(
    video: HashedVideo,
    state: MatchState,
    services: Services,
    key: KeyInfo,
    names: frozenset[str],
    max_distance: int | None,
) -> Response:
    def judge() -> Verdict:
        return lookup_video(
            state,
            video.query,
            video.digest_queries,
            organisation=key.organisation,
            lists=names,
            max_distance=max_distance,
            guard=services.probes,
        )

    verdict = await _guarded(services, key, judge, len(video.frames))
    content = {
        **verdict_dict(verdict, key.organisation, _stamp(services, key)),
        "hashes": video.hashes(),
        "video": video.describe().model_dump(),
        "request_id": uuid.uuid4().hex,
    }
    return Response(orjson.dumps(content), media_type="application/json")
