"""List management routes: the store's operations over HTTP, scoped to the caller.

A key acts for its own organisation only, whatever its roles: it sees the lists its
organisation owns and those offered to it, and changes only its own. Instance-wide work is the
operator's, from the CLI.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Final

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool

from hashmatch.api.auth import Caller, Contributor
from hashmatch.api.bodylimit import body_limit
from hashmatch.api.deps import StoreDep
from hashmatch.api.models import (
    EntriesIn,
    EntriesPage,
    ListIn,
    ListOut,
    ListPatch,
    WithdrawIn,
    parse_hashes,
)
from hashmatch.api.uploads import file_stream, media_type, read_body
from hashmatch.errors import Forbidden, NotFound
from hashmatch.hashsets.read import HashRow, RowError, entry_row, read_hash_set
from hashmatch.matching.policy import can_match, can_see
from hashmatch.store import ListInfo, Store
from hashmatch.store.keys import KeyInfo
from hashmatch.store.withdrawals import EntryReport

router = APIRouter(prefix="/v1", tags=["lists"])
#: Ids and cursors are 64-bit signed integers in both databases; a larger one names nothing.
MAX_ID: Final = 2**63 - 1
#: Caps on uploads: JSON is parsed whole (~100,000 entries), a hash-set file is streamed.
MAX_JSON_BYTES: Final = 16 * 1024 * 1024
MAX_FILE_BYTES: Final = 256 * 1024 * 1024
MAX_WITHDRAWAL_BYTES: Final = 16 * 1024 * 1024


def _visible(store: Store, name: str, key: KeyInfo) -> ListInfo:
    info = store.lists.get(name)
    if not can_see(info, key.organisation):
        raise NotFound(f"no list named {name!r}")  # never confirm another's list exists
    return info


def _owned(store: Store, name: str, key: KeyInfo) -> ListInfo:
    """A list the caller may change: its own organisation's."""
    info = _visible(store, name, key)
    if info.owner != key.organisation:
        raise Forbidden(f"list {name!r} belongs to another organisation")
    return info


@router.get("/lists", summary="Lists this key's organisation owns or is offered")
def get_lists(store: StoreDep, key: Caller) -> list[ListOut]:
    return [
        info.report(key.organisation)
        for info in store.lists.all()
        if can_see(info, key.organisation)
    ]


@router.post("/lists", status_code=201, summary="Create a list owned by the key's organisation")
def create_list(body: ListIn, store: StoreDep, key: Contributor) -> ListOut:
    info = store.lists.create(
        body.name,
        owner=key.organisation,
        category=body.category,
        actor=key.actor,
        kind=body.kind,
        source=body.source,
        jurisdiction=body.jurisdiction,
        description=body.description,
        thresholds=body.thresholds,
        shared_with=body.shared_with,
        tlp=body.tlp,
    )
    return info.report(key.organisation)


@router.get("/lists/{name}", summary="One list")
def get_list(name: str, store: StoreDep, key: Caller) -> ListOut:
    return _visible(store, name, key).report(key.organisation)


@router.patch("/lists/{name}", summary="Enable, disable, offer or re-describe a list")
def patch_list(name: str, body: ListPatch, store: StoreDep, key: Contributor) -> ListOut:
    _owned(store, name, key)
    changes = body.model_dump(exclude_unset=True)
    return store.lists.update(name, actor=key.actor, **changes).report(key.organisation)


@router.post(
    "/lists/{name}/entries",
    summary="Add entries (JSON, or a hash-set file as the body or multipart field 'file')",
    openapi_extra=body_limit(MAX_FILE_BYTES),
)
async def add_entries(
    name: str, request: Request, store: StoreDep, key: Contributor
) -> dict[str, Any]:
    await run_in_threadpool(_owned, store, name, key)
    kind, _ = media_type(request)
    if kind == "application/json":
        raw = await read_body(request, MAX_JSON_BYTES)
        body = await run_in_threadpool(EntriesIn.model_validate_json, raw)
        # Videos' frames are parsed here too: off the event loop.
        rows = await run_in_threadpool(_entry_rows, body)
        report = await run_in_threadpool(
            store.entries.import_rows, name, rows, actor=key.actor, strict=body.strict
        )
        return report.as_dict()
    strict = request.query_params.get("strict", "false").lower() in ("1", "true", "yes")
    stream = file_stream(request, MAX_FILE_BYTES)

    def import_file() -> dict[str, Any]:
        # Rows are parsed while the body arrives, in this worker thread: nothing is held
        # beyond a chunk and an import batch.
        report = store.entries.import_rows(
            name, read_hash_set(stream), actor=key.actor, strict=strict
        )
        return report.as_dict()

    return await run_in_threadpool(import_file)


def _entry_rows(body: EntriesIn) -> list[HashRow | RowError]:
    """Each entry of a JSON body as a row; a video (``vpdq``) with its frames."""
    return [
        entry_row(
            position,
            entry.algorithm,
            entry.hash,
            entry.reference,
            entry.labels,
            frames=entry.frames,
        )
        for position, entry in enumerate(body.entries, 1)
    ]


def _entry_route(action: str) -> Callable[..., dict[str, Any]]:
    def route(name: str, body: WithdrawIn, store: StoreDep, key: Contributor) -> dict[str, Any]:
        _owned(store, name, key)
        act: Callable[..., EntryReport] = getattr(store.withdrawals, action)
        extra = {"reason_class": body.reason_class} if action == "withdraw" else {}
        report = act(
            name,
            actor=key.actor,
            reason=body.reason,
            **extra,
            references=body.references,
            hashes=parse_hashes(body.hashes),
        )
        return report.as_dict()

    return route


for _path, _action, _summary, _description in (
    (
        "withdrawals",
        "withdraw",
        "Withdraw entries by reference or hash",
        "What happened to each name: withdrawn, already withdrawn, or matching nothing (404\n"
        "when nothing at all matched; then nothing changed).",
    ),
    ("revivals", "revive", "Bring withdrawn entries back, with a reason (audited)", None),
):
    router.add_api_route(
        f"/lists/{{name}}/{_path}",
        _entry_route(_action),
        methods=["POST"],
        name=f"{_action}_entries",
        summary=_summary,
        description=_description,
        openapi_extra=body_limit(MAX_WITHDRAWAL_BYTES),
    )


@router.get("/lists/{name}/entries", summary="Entries of a list, page by page")
def list_entries(
    name: str,
    store: StoreDep,
    key: Contributor,
    after: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    include_withdrawn: bool = False,
) -> EntriesPage:
    _owned(store, name, key)
    page = list(
        store.entries.listed(name, include_withdrawn=include_withdrawn, after_id=after, limit=limit)
    )
    return EntriesPage(
        entries=[entry.report() for entry in page],
        next=page[-1].id if len(page) == limit else None,
    )


@router.get("/changes", summary="The change log after a cursor, for the lists this key matches")
def changes(
    store: StoreDep,
    key: Caller,
    cursor: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    matched = {
        info.id: info.name for info in store.lists.all() if can_match(info, key.organisation)
    }
    page = store.changes.after(cursor, limit=limit)
    return {
        "changes": [
            {
                "cursor": c.cursor,
                "kind": c.kind,
                "list": matched[c.list_id],
                "count": c.count,
                "at": c.at.isoformat(),
            }
            for c in page
            if c.list_id in matched
        ],
        "next_cursor": page[-1].cursor if page else cursor,
    }
