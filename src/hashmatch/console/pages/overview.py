"""The overview: the organisation's lists, the lists offered to it, and matches and removals
per day."""

from __future__ import annotations

import datetime as dt
from typing import Final

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from hashmatch.console import web
from hashmatch.console.chart import chart
from hashmatch.console.web import Admin, Viewer
from hashmatch.errors import NotFound

router = APIRouter()

CHART_DAYS: Final = 30


@router.get("/")
async def overview(request: Request, staff: Viewer) -> Response:
    store = web.store_of(request)
    infos = await run_in_threadpool(store.lists.all)
    services = web.console_services(request)
    counts = (
        services.follower.state.live_counts()
        if services.follower is not None and services.ready
        else {}
    )
    owned = [info for info in infos if info.owner == staff.organisation]
    offered = [
        info
        for info in infos
        if info.owner != staff.organisation and staff.organisation in info.shared_with
    ]
    today = dt.datetime.now(dt.UTC).date()
    daily = await run_in_threadpool(
        store.reviews.daily,
        [info.id for info in owned],
        today - dt.timedelta(days=CHART_DAYS - 1),
        today,
    )
    return web.render(
        request,
        "overview.html",
        {
            "owned": owned,
            "offered": offered,
            "counts": counts,
            "loading": not services.ready,
            "chart": chart(daily),
            "request_answered": request.query_params.get("answered"),
        },
    )


@router.post("/shares/{name}")
async def answer_offer(request: Request, name: str, staff: Admin) -> Response:
    """Accept an offered list into the organisation's matches, or leave it (admins)."""
    fields = await web.form(request, staff)
    store = web.store_of(request)
    info = await run_in_threadpool(store.lists.get, name)
    if staff.organisation not in info.shared_with or info.owner == staff.organisation:
        raise NotFound(f"no list named {name!r} is offered to your organisation")
    accept = fields.get("answer") == "accept"
    await run_in_threadpool(
        lambda: store.lists.answer_offer(name, staff.organisation, actor=staff.actor, accept=accept)
    )
    return RedirectResponse(web.url("/?answered=" + ("accepted" if accept else "left")), 303)
