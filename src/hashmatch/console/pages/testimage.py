"""Testing an image: what the service computes for it and what it matches, for anyone signed in.

The image goes through the API's own path (``POST /v1/match``): read in memory under the upload
cap (:func:`hashmatch.api.uploads.collect_media`), decoded and hashed under the service's
decode limits (:func:`hashmatch.api.matching.hash_media`), and looked up with
:func:`hashmatch.matching.lookup.lookup` in the lists the person's organisation may match (its
own, and those offered to it that it accepted: what a key of that organisation matches), with
the same probe guard. Nothing is written anywhere: not the image, not its hashes, not a match
count (a staff check is not a platform's upload).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from hashmatch.api.bodylimit import body_limit
from hashmatch.api.deps import Services
from hashmatch.api.errors import status_for
from hashmatch.api.matching import IMAGE_ROUTE_BODY, hash_media
from hashmatch.api.uploads import collect_media
from hashmatch.api.videos import HashedVideo, is_video
from hashmatch.console import web
from hashmatch.console.multipart import FRAMING_BYTES, MultipartForm
from hashmatch.console.web import Staff, Viewer
from hashmatch.errors import (
    BadRequest,
    EmptyMedia,
    Forbidden,
    HashmatchError,
    MediaError,
    NotReady,
    PayloadTooLarge,
    UnsupportedContentType,
    UnsupportedMedia,
)
from hashmatch.matching.lookup import lookup, matchable_lists
from hashmatch.matching.probes import ProbeDetected
from hashmatch.matching.state import MatchState
from hashmatch.matching.verdict import Hit, Verdict, band, shown_distance
from hashmatch.signals import Query

router = APIRouter()

#: What a failed test shows as a form error (with its own status); anything else is the
#: console's error page.
FORM_ERRORS = (MediaError, PayloadTooLarge, UnsupportedContentType, BadRequest, NotReady)


@dataclass(frozen=True)
class Found:
    """One hit as the page shows it."""

    list: str
    kind: str
    category: str
    owner: str
    entry_id: int
    reference: str | None
    labels: tuple[str, ...]
    algorithm: str
    distance: int | None  # exact for the organisation's own lists only, as in the API
    band: str
    variant: str | None  # as the API reports it: "flip_horizontal", "trimmed+rotate90", ...
    turn: str | None
    trimmed: bool
    suppressed_by: str | None

    @classmethod
    def of(cls, hit: Hit, organisation: str) -> Found:
        match = hit.match
        return cls(
            list=match.list,
            kind=match.kind,
            category=match.category,
            owner=match.owner,
            entry_id=match.entry_id,
            reference=match.reference,
            labels=tuple(match.labels),
            algorithm=match.algorithm.name,
            distance=shown_distance(match, organisation),
            band=band(match.distance).value,
            variant=None if hit.variant is None else str(hit.variant),
            turn=None if hit.variant is None else hit.variant.turn.value,
            trimmed=hit.variant is not None and hit.variant.trimmed,
            suppressed_by=hit.suppressed_by,
        )


def _page(request: Request, status: int = 200, **context: Any) -> Response:
    values: dict[str, Any] = {"result": None, "error": None, "message": ""}
    values.update(context)
    return web.render(request, "test_image.html", values, status=status)


@router.get("/test")
async def test_form(request: Request, staff: Viewer) -> Response:
    return _page(request)


def _state(services: Services) -> MatchState:
    if services.follower is None or not services.ready:
        raise NotReady("the index is still loading; try again in a moment")
    return services.follower.state


@router.post("/test", openapi_extra=body_limit(IMAGE_ROUTE_BODY))
async def test_image(request: Request, staff: Viewer) -> Response:
    services = web.console_services(request)
    limit = services.settings.max_upload_bytes
    try:
        form = MultipartForm(request, limit + FRAMING_BYTES)
        await form.csrf(staff)
        filename, chunks = await form.file("file", limit)
        # The image cap for videos too: this page tests images, and refuses a video as such.
        data = await collect_media(chunks, limit, limit, is_video)
        await form.finish()
        if not data:
            raise EmptyMedia("choose an image to test")
        if is_video(data):
            raise UnsupportedMedia("this page tests images; match videos through the API")
        state = _state(services)
        names = matchable_lists(state, staff.organisation)
        hashed = await hash_media(data, services)
        del data
        assert not isinstance(hashed, HashedVideo)
        shown, queries = hashed
        verdict = await run_in_threadpool(_judge, services, state, staff, names, queries)
    except FORM_ERRORS as exc:
        assert isinstance(exc, HashmatchError)
        return _page(request, status=status_for(exc), error=exc.code, message=exc.message)
    blocks = [Found.of(hit, staff.organisation) for hit in verdict.blocks]
    allows = [Found.of(hit, staff.organisation) for hit in verdict.allows]
    return _page(
        request,
        result={
            "filename": filename,
            "match": verdict.match,
            "hashes": sorted(shown.values(), key=lambda value: value.algorithm),
            "blocks": blocks,
            "allows": allows,
            "lists": len(names),
        },
    )


def _judge(
    services: Services,
    state: MatchState,
    staff: Staff,
    names: frozenset[str],
    queries: list[Query],
) -> Verdict:
    try:
        (verdict,) = lookup(
            state,
            [queries],
            organisation=staff.organisation,
            lists=names,
            guard=services.probes,
        )
    except ProbeDetected as probe:
        raise Forbidden(
            "these tests vary an image around another organisation's listed hash "
            f"({probe.list_name!r}); testing is refused for now"
        ) from None
    return verdict
