"""The overview: the organisation's lists, the lists offered to it, and matches and removals
per day."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from hashmatch.console import web
from hashmatch.console.web import Viewer

router = APIRouter()


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
    return web.render(
        request,
        "overview.html",
        {
            "owned": owned,
            "offered": offered,
            "counts": counts,
            "loading": not services.ready,
        },
    )
