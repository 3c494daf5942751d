"""Uploading a hash-set file to a list: the file is staged, checked (the real import, run and
rolled back), shown as a report, and imported only when the person commits it.

The multipart body is streamed: its CSRF token (the first field) is checked before anything is
kept, and the file goes to the database a few chunks at a time as it arrives, never to a
temporary file and never whole into memory; its report is then computed from the staged chunks
in a worker thread. Committing re-reads the chunks as a stream through the same import, audited
under the person. Only the person who uploaded a file sees its report or commits it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Final

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from hashmatch.api.bodylimit import body_limit
from hashmatch.api.errors import status_for
from hashmatch.api.lists import MAX_FILE_BYTES
from hashmatch.console import web
from hashmatch.console.multipart import FRAMING_BYTES, MultipartForm
from hashmatch.console.web import Analyst, Staff
from hashmatch.errors import Conflict, InvalidField, NotFound, ReadOnlyMirror
from hashmatch.store import ListInfo, Store
from hashmatch.store.staging import CHUNK_BYTES, StagedUpload

router = APIRouter()

#: The whole multipart body: the file under the API's cap on hash-set files, and its framing.
UPLOAD_BODY: Final = MAX_FILE_BYTES + FRAMING_BYTES
#: Chunks written to the database per transaction while the file arrives.
CHUNKS_PER_WRITE: Final = 4


def owned_list(store: Store, name: str, staff: Staff) -> ListInfo:
    """A list the person's organisation owns and imports into (not a mirror); another
    organisation's list does not exist, as far as the person can tell."""
    info = store.lists.get(name)
    if info.owner != staff.organisation:
        raise NotFound(f"no list named {name!r}")
    if info.is_mirror:
        raise ReadOnlyMirror(f"list {name!r} is a mirror: its entries come from its origin")
    return info


def _staged(store: Store, upload_id: str, staff: Staff) -> StagedUpload:
    """The person's own staged upload, to a list still their organisation's."""
    upload = store.staging.get(upload_id, staff.user.id)
    owned_list(store, upload.list_name, staff)
    return upload


def _form_page(
    request: Request,
    info: ListInfo,
    *,
    error: str | None = None,
    message: str = "",
    status: int = 200,
    discarded: bool = False,
) -> Response:
    return web.render(
        request,
        "upload.html",
        {
            "info": info,
            "error": error,
            "message": message,
            "discarded": discarded,
            "max_bytes": MAX_FILE_BYTES,
        },
        status=status,
    )


@router.get("/lists/{name}/upload")
async def upload_form(
    name: str, request: Request, staff: Analyst, discarded: bool = False
) -> Response:
    info = await run_in_threadpool(owned_list, web.store_of(request), name, staff)
    return _form_page(request, info, discarded=discarded)


@router.post("/lists/{name}/upload", openapi_extra=body_limit(UPLOAD_BODY))
async def upload(name: str, request: Request, staff: Analyst) -> Response:
    store = web.store_of(request)
    info = await run_in_threadpool(owned_list, store, name, staff)
    form = MultipartForm(request, UPLOAD_BODY)
    await form.csrf(staff)  # before anything is kept
    filename, data = await form.file("file", MAX_FILE_BYTES)
    upload_id = await run_in_threadpool(store.staging.start, staff.user.id, info.name, filename)
    try:
        size = await _stage(store, upload_id, data)
        await form.finish()
        if size == 0:
            await run_in_threadpool(store.staging.abandon, upload_id)
            error = InvalidField("file", "the file is empty: choose a hash-set file")
            return _form_page(
                request, info, error="empty", message=error.message, status=status_for(error)
            )
        await run_in_threadpool(store.staging.validate, upload_id)
    except BaseException:
        # Whatever stopped it (a bad body, a client gone, the database), nothing stays staged.
        with anyio.CancelScope(shield=True):
            await run_in_threadpool(store.staging.abandon, upload_id)
        raise
    return RedirectResponse(web.url(f"/uploads/{upload_id}"), 303)


async def _stage(store: Store, upload_id: str, data: AsyncIterator[bytes]) -> int:
    """The file's bytes into the upload's chunks as they arrive; returns its size."""
    size = 0
    seq = 0
    buffer = bytearray()
    ready: list[bytes] = []
    async for piece in data:
        size += len(piece)
        buffer += piece
        while len(buffer) >= CHUNK_BYTES:
            ready.append(bytes(buffer[:CHUNK_BYTES]))
            del buffer[:CHUNK_BYTES]
        if len(ready) >= CHUNKS_PER_WRITE:
            await run_in_threadpool(store.staging.append, upload_id, seq, ready)
            seq += len(ready)
            ready = []
    if buffer:
        ready.append(bytes(buffer))
    await run_in_threadpool(store.staging.append, upload_id, seq, ready)
    return size


@router.get("/uploads/{upload_id}")
async def report(upload_id: str, request: Request, staff: Analyst) -> Response:
    upload = await run_in_threadpool(_staged, web.store_of(request), upload_id, staff)
    if upload.report is None:
        raise Conflict("this upload is being checked or committed; reload the page in a moment")
    return web.render(request, "upload_report.html", {"upload": upload, "report": upload.report})


@router.post("/uploads/{upload_id}/commit")
async def commit(upload_id: str, request: Request, staff: Analyst) -> Response:
    await web.form(request, staff)
    store = web.store_of(request)

    def run() -> tuple[str, int]:
        upload = _staged(store, upload_id, staff)
        done = store.staging.commit(upload_id, staff.user.id, actor=staff.actor)
        return upload.list_name, done.added

    list_name, added = await run_in_threadpool(run)
    return RedirectResponse(web.url(f"/lists/{list_name}?imported={added}"), 303)


@router.post("/uploads/{upload_id}/discard")
async def discard(upload_id: str, request: Request, staff: Analyst) -> Response:
    await web.form(request, staff)
    store = web.store_of(request)

    def run() -> str:
        _staged(store, upload_id, staff)
        return store.staging.discard(upload_id, staff.user.id).list_name

    list_name = await run_in_threadpool(run)
    return RedirectResponse(web.url(f"/lists/{list_name}/upload?discarded=1"), 303)
