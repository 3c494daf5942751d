"""A list of the person's organisation: its details (analysts edit them, admins its sharing
too), its entries page by page with a search, withdrawing selected entries after a
confirmation, and exporting its live entries.

Only the owning organisation reaches these pages: another organisation's list is a 404 even
when it is offered to the person's, so a URL reveals nothing. A mirror of a peer's list is
shown read-only: it changes at its origin.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any, Final, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from hashmatch import fields
from hashmatch.console import web
from hashmatch.console.web import Analyst, Staff, Viewer
from hashmatch.errors import Forbidden, InvalidField, NotFound, ReadOnlyMirror
from hashmatch.exchange.tlp import Tlp
from hashmatch.hashsets.write import ExportWriter, Format
from hashmatch.matching.policy import VIDEO_PERCENTS
from hashmatch.signals import Hash, hamming_signals
from hashmatch.store import ListInfo, StaffRole, Store
from hashmatch.store.browse import LABEL_SCAN_WINDOW, EntryDetail, SearchPage

router = APIRouter()

#: Entries a page shows.
PAGE: Final = 50
#: Ids are 64-bit signed integers in both databases.
MAX_ID: Final = 2**63 - 1
#: Hex digits of a hash the table shows before the rest is folded away.
SHORT_HASH: Final = 16
#: Entries one withdrawal from the console may name (a page's worth, with room to spare).
MAX_WITHDRAW: Final = 1_000
EXPORT_TYPES: Final = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson"}
TLP_LABELS: Final = tuple(label.value for label in Tlp)

EntryId = Annotated[int, Query(ge=1, le=MAX_ID)]


@dataclass(frozen=True)
class Threshold:
    """One threshold of a list as the form shows it: its value and this instance's bound."""

    name: str
    value: int | None
    bound: int


@dataclass(frozen=True)
class Search:
    """The entries filter of a list page, as given in its query string."""

    reference: str = ""
    match: Literal["prefix", "exact"] = "prefix"
    hash: str = ""
    label: str = ""
    withdrawn: bool = False

    def query(self, **extra: int) -> str:
        """This filter (and ``after`` or ``before``) as a query string."""
        values: dict[str, str | int] = {}
        if self.reference:
            values["reference"] = self.reference
            values["match"] = self.match
        if self.hash:
            values["hash"] = self.hash
        if self.label:
            values["label"] = self.label
        if self.withdrawn:
            values["withdrawn"] = "1"
        values.update(extra)
        return urlencode(values)

    @property
    def active(self) -> bool:
        return bool(self.reference or self.hash or self.label)

    @property
    def windowed(self) -> bool:
        """A search by label alone: it reads a window of the list's entries at a time, in id
        order, and may stop before it fills a page."""
        return bool(self.label) and not self.reference and not self.hash


def list_path(name: str, tail: str = "") -> str:
    return web.url(f"/lists/{name}{tail}")


async def _owned(store: Store, name: str, staff: Staff) -> ListInfo:
    """The list, if the person's organisation owns it; another's is no list at all."""
    info = await run_in_threadpool(store.lists.get, name)
    if info.owner != staff.organisation:
        raise NotFound(f"no list named {name[:128]!r}")
    return info


def _thresholds(store: Store, info: ListInfo) -> list[Threshold]:
    bounds = store.lists.bounds
    shown = [
        Threshold(signal.name, info.thresholds.get(signal.name), bounds.maximum(signal))
        for signal in hamming_signals()
    ]
    shown += [Threshold(name, info.thresholds.get(name), 100) for name in VIDEO_PERCENTS]
    return shown


def short_hash(entry: EntryDetail) -> str:
    value = entry.hash.hex
    return value if len(value) <= SHORT_HASH else value[:SHORT_HASH] + "…"


def _live_count(request: Request, info: ListInfo) -> int | None:
    services = web.console_services(request)
    if services.follower is None or not services.ready:
        return None
    return services.follower.state.live_counts().get(info.id, 0)


@dataclass
class EntriesPage:
    """The entries a page shows, the links to the pages before and after (None: there is no
    such page), why the search could not run, and where a search by label alone goes on
    reading when it stopped before it filled the page (after or before the entries shown)."""

    rows: list[EntryDetail]
    next_url: str | None
    previous_url: str | None
    error: str | None = None
    further_url: str | None = None
    further_back_url: str | None = None


def _entries_page(
    store: Store, info: ListInfo, search: Search, after: int | None, before: int | None
) -> EntriesPage:
    """One page of entries and the links to its neighbours (each probed: a link is shown
    only when there is a page behind it, or may be: a search by label alone reads a window of
    entries, and a probe that stopped before it found a match shows the link too)."""

    def find(**where: Any) -> SearchPage:
        return store.browse.search(
            info.name,
            reference=search.reference if search.match == "exact" else None,
            reference_prefix=search.reference if search.match == "prefix" else None,
            hash_hex_prefix=search.hash or None,
            label=search.label or None,
            include_withdrawn=search.withdrawn,
            label_window=LABEL_SCAN_WINDOW,
            **where,
        )

    def more(probe: SearchPage) -> bool:
        return bool(probe.rows) or probe.scanned_to is not None

    def url(**extra: int) -> str:
        return f"{list_path(info.name)}?{search.query(**extra)}#entries"

    further = further_back = None
    try:
        if before is not None:
            found = find(before_id=before, limit=PAGE + 1)
            rows = found.rows[-PAGE:]
            earlier = len(found.rows) > PAGE
            further_back = found.scanned_to
            later = bool(rows) and more(find(after_id=rows[-1].id, limit=1))
        else:
            found = find(after_id=after, limit=PAGE + 1)
            rows = found.rows[:PAGE]
            later = len(found.rows) > PAGE
            further = found.scanned_to
            # From the list's start nothing comes earlier; else any earlier match is at or
            # before ``after``: the search read on from there.
            earlier = bool(rows) and after is not None and more(find(before_id=rows[0].id, limit=1))
        next_url = url(after=rows[-1].id) if later else None
        previous_url = url(before=rows[0].id) if earlier else None
        if not rows and after is not None:
            previous_url = url(before=_back_from(store, info, search, after, further))
        if not rows and before is not None:
            start = _on_from(store, info, search, before, further_back)
            next_url = url() if start is None else url(after=start)
    except InvalidField as exc:
        return EntriesPage([], None, None, error=exc.message)
    return EntriesPage(
        rows,
        next_url,
        previous_url,
        further_url=None if further is None else url(after=further),
        further_back_url=None if further_back is None else url(before=further_back),
    )


def _back_from(
    store: Store, info: ListInfo, search: Search, after: int, scanned_to: int | None
) -> int:
    """Where the page before an empty one (of the entries after ``after``) starts reading
    back: before ``after``, or, for a search by label alone (which may have shown ``after``
    itself, the last entry a scan read), before an entry past it the search read without a
    match (where the scan stopped, or the next entry of the list), so that ``after`` is read
    again."""
    if not search.windowed:
        return after
    if scanned_to is not None:
        return scanned_to
    following = store.browse.search(info.name, include_withdrawn=True, after_id=after, limit=1)
    return following.rows[0].id if following.rows else after


def _on_from(
    store: Store, info: ListInfo, search: Search, before: int, scanned_to: int | None
) -> int | None:
    """Where the page after an empty one (of the entries before ``before``) starts reading
    on: after ``before``, or, for a search by label alone, after an entry ahead of it the
    search read without a match (where the scan stopped, or the previous entry of the list;
    None: from the list's first entry), so that ``before`` is read again."""
    if not search.windowed:
        return before
    if scanned_to is not None:
        return scanned_to
    preceding = store.browse.search(info.name, include_withdrawn=True, before_id=before, limit=1)
    return preceding.rows[0].id if preceding.rows else None


def _form_values(info: ListInfo) -> dict[str, str]:
    values = {
        "description": info.description,
        "source": info.source,
        "jurisdiction": info.jurisdiction,
        "category": info.category,
        "enabled": "true" if info.enabled else "false",
        "shared_with": ", ".join(info.shared_with),
        "tlp": info.tlp,
    }
    values.update({f"threshold-{k}": str(v) for k, v in info.thresholds.items()})
    return values


async def _list_page(
    request: Request,
    staff: Staff,
    info: ListInfo,
    search: Search,
    *,
    after: int | None = None,
    before: int | None = None,
    submitted: FormData | None = None,
    error: str | None = None,
    status: int = 200,
) -> Response:
    store = web.store_of(request)
    page = await run_in_threadpool(_entries_page, store, info, search, after, before)
    values = _form_values(info)
    if submitted is not None:
        values.update({key: str(value) for key, value in submitted.items() if key != "csrf"})
    flags = request.query_params
    return web.render(
        request,
        "list.html",
        {
            "info": info,
            "list_url": list_path(info.name),
            "thresholds": _thresholds(store, info),
            "live_count": _live_count(request, info),
            "page": page,
            "search": search,
            "label_window": LABEL_SCAN_WINDOW,
            "form": values,
            "error": error,
            "tlp_labels": TLP_LABELS,
            "may_edit": staff.allows(StaffRole.ANALYST) and not info.is_mirror,
            "may_share": staff.allows(StaffRole.ADMIN),
            "may_export": staff.allows(StaffRole.ANALYST),
            "saved": flags.get("saved") == "1" and submitted is None,
            "withdrawn_count": _count_flag(flags.get("withdrawn_count")),
            "short_hash": short_hash,
        },
        status=422 if page.error and status == 200 else status,
    )


def _count_flag(value: str | None) -> int | None:
    return int(value) if value is not None and value.isdigit() and len(value) < 8 else None


@router.get("/lists/{name}")
async def list_page(
    request: Request,
    name: str,
    staff: Viewer,
    reference: Annotated[str, Query(max_length=1024)] = "",
    match: Literal["prefix", "exact"] = "prefix",
    hash: Annotated[str, Query(max_length=256)] = "",
    label: Annotated[str, Query(max_length=1024)] = "",
    withdrawn: bool = False,
    after: EntryId | None = None,
    before: EntryId | None = None,
) -> Response:
    info = await _owned(web.store_of(request), name, staff)
    search = Search(reference.strip(), match, hash.strip(), label.strip(), withdrawn)
    return await _list_page(request, staff, info, search, after=after, before=before)


def _changes(info: ListInfo, submitted: FormData, staff: Staff) -> dict[str, Any]:
    """What the form changes, field by field; fields it leaves as they are are not sent (so
    the audit log records only what changed, and an untouched form writes nothing)."""
    changes: dict[str, Any] = {}
    for key in ("description", "source", "jurisdiction", "category"):
        if key in submitted:
            value = str(submitted[key]).replace("\r\n", "\n").replace("\r", "\n")
            current = getattr(info, key)
            if value.strip() != current and (key != "category" or value.strip().lower() != current):
                changes[key] = value
    if "enabled" in submitted:
        enabled = submitted["enabled"] == "true"
        if enabled != info.enabled:
            changes["enabled"] = enabled
    thresholds: dict[str, int] = {}
    for name in [*(s.name for s in hamming_signals()), *VIDEO_PERCENTS]:
        raw = str(submitted.get(f"threshold-{name}", "")).strip()
        if not raw:
            continue
        if not raw.isascii() or not raw.lstrip("-").isdigit() or len(raw) > 9:
            raise InvalidField(f"thresholds.{name}", "must be a whole number")
        if int(raw) != info.thresholds.get(name):
            thresholds[name] = int(raw)
    if thresholds:
        changes["thresholds"] = thresholds
    if "shared_with" in submitted or "tlp" in submitted:
        if not staff.allows(StaffRole.ADMIN):
            raise Forbidden("changing who a list is shared with needs the admin role")
        if "shared_with" in submitted:
            offers = [o.strip() for o in str(submitted["shared_with"]).split(",") if o.strip()]
            if {o.lower() for o in offers} != set(info.shared_with):
                changes["shared_with"] = offers
        if "tlp" in submitted and str(submitted["tlp"]) != info.tlp:
            changes["tlp"] = str(submitted["tlp"])
    return changes


@router.post("/lists/{name}")
async def save_list(request: Request, name: str, staff: Analyst) -> Response:
    submitted = await web.form(request, staff)
    store = web.store_of(request)
    info = await _owned(store, name, staff)
    if info.is_mirror:
        raise ReadOnlyMirror(f"list {name!r} mirrors a peer's list: it changes at its origin")
    try:
        changes = _changes(info, submitted, staff)
        if changes:
            await run_in_threadpool(store.lists.update, name, actor=staff.actor, **changes)
    except InvalidField as exc:
        return await _list_page(
            request, staff, info, Search(), submitted=submitted, error=exc.message, status=422
        )
    return RedirectResponse(list_path(name, "?saved=1"), 303)


def _entry_ids(values: list[str]) -> list[int]:
    if len(values) > MAX_WITHDRAW:
        raise InvalidField("entry", f"at most {MAX_WITHDRAW} entries at a time")
    ids = []
    for value in values:
        if not value.isascii() or not value.isdigit() or not 1 <= int(value) <= MAX_ID:
            raise InvalidField("entry", "entries are named by their ids")
        ids.append(int(value))
    return ids


async def _withdrawable(
    request: Request, staff: Staff, name: str, values: list[str]
) -> tuple[ListInfo, list[EntryDetail], int]:
    """The list, the live entries of it named, and how many named ones were left out (not
    in the list, or already withdrawn)."""
    store = web.store_of(request)
    info = await _owned(store, name, staff)
    if info.is_mirror:
        raise ReadOnlyMirror(
            f"list {name!r} is a mirror: withdraw at its origin, or disable the mirror"
        )
    ids = _entry_ids(values)
    found = await run_in_threadpool(store.browse.by_ids, name, ids)
    live = [entry for entry in found if entry.withdrawn_at is None]
    return info, live, len(set(ids)) - len(live)


def _confirm_page(
    request: Request,
    info: ListInfo,
    live: list[EntryDetail],
    left_out: int,
    *,
    reason: str = "",
    reason_class: str = "victim_request",
    error: str | None = None,
    status: int = 200,
) -> Response:
    return web.render(
        request,
        "list_withdraw.html",
        {
            "info": info,
            "list_url": list_path(info.name),
            "entries": live,
            "left_out": left_out,
            "reason": reason,
            "reason_class": reason_class,
            "classes": fields.WITHDRAWAL_CLASSES,
            "error": error,
            "short_hash": short_hash,
        },
        status=status,
    )


@router.get("/lists/{name}/withdraw")
async def confirm_withdrawal(request: Request, name: str, staff: Analyst) -> Response:
    """What withdrawing the selected entries will do, and the form that does it."""
    info, live, left_out = await _withdrawable(
        request, staff, name, request.query_params.getlist("entry")
    )
    return _confirm_page(request, info, live, left_out, status=200 if live else 422)


@router.post("/lists/{name}/withdraw")
async def withdraw(request: Request, name: str, staff: Analyst) -> Response:
    submitted = await web.form(request, staff)
    values = [str(v) for v in submitted.getlist("entry")]
    info, live, left_out = await _withdrawable(request, staff, name, values)
    reason = str(submitted.get("reason", "")).replace("\r\n", "\n")
    reason_class = str(submitted.get("reason_class", ""))
    if not live:
        return _confirm_page(request, info, live, left_out, status=422)
    try:
        fields.reason(reason)
        fields.withdrawal_class(reason_class)
    except InvalidField as exc:
        return _confirm_page(
            request,
            info,
            live,
            left_out,
            reason=reason,
            reason_class=reason_class,
            error=exc.message,
            status=422,
        )
    # A list holds one live entry per hash: naming the live entries' hashes names exactly them.
    hashes: list[Hash] = [entry.hash for entry in live]
    report = await run_in_threadpool(
        web.store_of(request).withdrawals.withdraw,
        name,
        actor=staff.actor,
        reason=reason,
        reason_class=reason_class,
        hashes=hashes,
    )
    return RedirectResponse(list_path(name, f"?withdrawn_count={report.count}#entries"), 303)


@router.get("/lists/{name}/export")
async def export(
    request: Request,
    name: str,
    staff: Analyst,
    export_format: Annotated[Literal["csv", "jsonl"], Query(alias="format")] = "csv",
) -> Response:
    """The list's live entries as a file, streamed a batch at a time, on the record."""
    store = web.store_of(request)
    info = await _owned(store, name, staff)
    await run_in_threadpool(
        store.browse.record_export, name, actor=staff.actor, export_format=export_format
    )

    def body() -> Iterator[bytes]:
        buffer = io.StringIO()
        writer = ExportWriter(buffer, Format(export_format))
        for batch in store.browse.batches(info.name):
            for entry in batch:
                writer.write(entry)
            yield buffer.getvalue().encode()
            buffer.seek(0)
            buffer.truncate()
        if buffer.getvalue():  # a CSV's header, when the list has no live entry
            yield buffer.getvalue().encode()

    filename = f"{info.name.replace(':', '_')}-entries.{export_format}"
    return StreamingResponse(
        body(),
        media_type=EXPORT_TYPES[export_format],
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
