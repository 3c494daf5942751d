"""List management routes: the store's operations over HTTP, scoped to the caller."""

from __future__ import annotations

import io
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Query, Request
from starlette.concurrency import run_in_threadpool

from hashmatch.api.auth import caller, require
from hashmatch.api.models import EntriesIn, ListIn, ListPatch, WithdrawIn, parse_hashes
from hashmatch.api.uploads import read_body
from hashmatch.errors import Forbidden, HashFormatError, NotFound
from hashmatch.formats_in import HashRow, RowError, read_hash_set
from hashmatch.hashing import Hash, parse_algorithm
from hashmatch.keys import KeyInfo, Role
from hashmatch.store import ListInfo, Store

router = APIRouter(prefix="/v1", tags=["lists"])
#: Ids and cursors are 64-bit signed integers in both databases; a larger one names nothing.
MAX_ID: Final = 2**63 - 1
#: Caps on what one upload may hold in memory: ~100,000 JSON entries, ~2.5M CSV rows.
MAX_JSON_BYTES = 64 * 1024 * 1024
MAX_FILE_BYTES = 256 * 1024 * 1024
Caller = Annotated[KeyInfo, Depends(caller)]
Contributor = Annotated[KeyInfo, Depends(require(Role.CONTRIBUTE))]


def _store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


def _visible(info: ListInfo, key: KeyInfo) -> bool:
    return key.can_see(info.owner, info.shared_with)


def _owned(store: Store, name: str, key: KeyInfo) -> ListInfo:
    """A list the caller may change: its own organisation's (admins: any)."""
    info = store.get_list(name)
    if not _visible(info, key):
        raise NotFound(f"no list named {name!r}")  # never confirm another's list exists
    if Role.ADMIN not in key.roles and info.owner != key.organisation:
        raise Forbidden(f"list {name!r} belongs to another organisation")
    return info


def _actor(key: KeyInfo) -> str:
    return f"key:{key.id}:{key.organisation}"


@router.get("/lists", summary="Lists this key can see")
def get_lists(request: Request, key: Caller) -> list[dict[str, Any]]:
    return [info.as_dict() for info in _store(request).lists() if _visible(info, key)]


@router.post("/lists", status_code=201, summary="Create a list owned by the key's organisation")
def create_list(body: ListIn, request: Request, key: Contributor) -> dict[str, Any]:
    info = _store(request).create_list(
        body.name,
        owner=key.organisation,
        category=body.category,
        actor=_actor(key),
        kind=body.kind,
        source=body.source,
        jurisdiction=body.jurisdiction,
        description=body.description,
        thresholds=body.thresholds,
        shared_with=body.shared_with,
    )
    return info.as_dict()


@router.get("/lists/{name}", summary="One list")
def get_list(name: str, request: Request, key: Caller) -> dict[str, Any]:
    info = _store(request).get_list(name)
    if not _visible(info, key):
        raise NotFound(f"no list named {name!r}")
    return info.as_dict()


@router.patch("/lists/{name}", summary="Enable, disable, share or re-describe a list")
def patch_list(name: str, body: ListPatch, request: Request, key: Contributor) -> dict[str, Any]:
    store = _store(request)
    _owned(store, name, key)
    changes = body.model_dump(exclude_unset=True)
    return store.update_list(name, actor=_actor(key), **changes).as_dict()


@router.post("/lists/{name}/entries", summary="Add entries (JSON, or a hash-set file as body)")
async def add_entries(name: str, request: Request, key: Contributor) -> dict[str, Any]:
    store = _store(request)
    await run_in_threadpool(_owned, store, name, key)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json":
        body = EntriesIn.model_validate_json(await read_body(request, MAX_JSON_BYTES))
        rows: list[HashRow | RowError] = []
        for position, entry in enumerate(body.entries, 1):
            try:
                value = Hash.from_hex(parse_algorithm(entry.algorithm), entry.hash)
                rows.append(HashRow(position, value, entry.reference, tuple(entry.labels)))
            except HashFormatError as exc:
                rows.append(RowError(position, f"entries[{position - 1}]: {exc.message}"))
        strict = body.strict
    else:
        data = await read_body(request, MAX_FILE_BYTES)
        rows = list(read_hash_set(io.BytesIO(data)))
        strict = request.query_params.get("strict", "false").lower() in ("1", "true", "yes")
    report = await run_in_threadpool(
        store.import_rows, name, rows, actor=_actor(key), strict=strict
    )
    return report.as_dict()


@router.post("/lists/{name}/withdrawals", summary="Withdraw entries by reference or hash")
def withdraw(name: str, body: WithdrawIn, request: Request, key: Contributor) -> dict[str, Any]:
    store = _store(request)
    _owned(store, name, key)
    hashes = parse_hashes(body.hashes)
    count = store.withdraw(
        name, actor=_actor(key), reason=body.reason, references=body.references, hashes=hashes
    )
    return {"list": name, "withdrawn": count}


@router.get("/lists/{name}/entries", summary="Entries of a list, page by page")
def list_entries(
    name: str,
    request: Request,
    key: Contributor,
    after: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    include_withdrawn: bool = False,
) -> dict[str, Any]:
    store = _store(request)
    _owned(store, name, key)
    page = list(
        store.entries(name, include_withdrawn=include_withdrawn, after_id=after, limit=limit)
    )
    return {
        "entries": [
            {
                "entry_id": e.id,
                "algorithm": e.hash.algorithm.value,
                "hash": e.hash.hex,
                "reference": e.reference,
                "labels": list(e.labels),
                "added_at": e.added_at.isoformat(),
                "withdrawn_at": e.withdrawn_at.isoformat() if e.withdrawn_at else None,
            }
            for e in page
        ],
        "next": page[-1].id if len(page) == limit else None,
    }


@router.get("/changes", summary="The change log after a cursor (for mirrors and replicas)")
def changes(
    request: Request,
    key: Caller,
    cursor: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    store = _store(request)
    visible = {info.id: info.name for info in store.lists() if _visible(info, key)}
    page = store.changes_after(cursor, limit=limit)
    return {
        "changes": [
            {
                "cursor": c.cursor,
                "kind": c.kind,
                "list": visible[c.list_id],
                "count": c.count,
                "at": c.at.isoformat(),
            }
            for c in page
            if c.list_id in visible
        ],
        "next_cursor": page[-1].cursor if page else cursor,
    }
