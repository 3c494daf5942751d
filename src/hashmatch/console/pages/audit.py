"""The audit log of the person's organisation: the rows that concern it only (see
:meth:`hashmatch.store.AuditLog.search`), filtered by person or key, action, list and dates (in
the person's time zone), newest first, a page at a time; and the same rows as CSV."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any, Final
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from hashmatch import fields
from hashmatch.console import web
from hashmatch.console.web import Staff, Viewer
from hashmatch.errors import InvalidField, NotFound
from hashmatch.store import Store
from hashmatch.store.audit import KEY_ACTIONS, MAX_ID, search_all

router = APIRouter()

PAGE_ROWS: Final = 50
EXPORT_BATCH: Final = 1000
MAX_FILTER_CHARS: Final = 256
CSV_COLUMNS: Final = ("id", "at", "actor", "action", "target", "counts", "reason", "details")
#: A spreadsheet runs a cell that starts with one of these as a formula.
_FORMULA_STARTS: Final = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class Filters:
    """The page's filters, as asked (for the form and the links) and as the store takes them."""

    who: str
    actor: str
    action: str
    list_name: str
    date_from: str
    date_to: str

    @property
    def chosen_actor(self) -> str | None:
        return self.actor.strip() or self.who or None

    def query(self, **extra: Any) -> str:
        values = {
            "who": self.who,
            "actor": self.actor,
            "action": self.action,
            "list": self.list_name,
            "from": self.date_from,
            "to": self.date_to,
            **extra,
        }
        return urlencode({k: v for k, v in values.items() if v not in ("", None)})

    def as_dict(self) -> dict[str, str]:
        values = {
            "actor": self.chosen_actor or "",
            "action": self.action,
            "list": self.list_name,
            "from": self.date_from,
            "to": self.date_to,
        }
        return {k: v for k, v in values.items() if v}


def _text(value: str, field: str) -> str:
    """A filter's text: checked here, not by the database half way through an export (no
    control characters: PostgreSQL refuses a NUL)."""
    return fields.text(value, field, MAX_FILTER_CHARS)


def _day(value: str, field: str) -> dt.date | None:
    if not value:
        return None
    try:
        day = dt.date.fromisoformat(value)
    except ValueError:
        raise InvalidField(field, "must be a date, YYYY-MM-DD") from None
    if not dt.MINYEAR < day.year < dt.MAXYEAR:
        # (a day in year 1 or 9999 may not be a time in UTC at all)
        raise InvalidField(
            field, f"must be a date between the years {dt.MINYEAR + 1} and {dt.MAXYEAR - 1}"
        )
    return day


def _search_arguments(staff: Staff, filters: Filters) -> dict[str, Any]:
    """The store's arguments: dates are whole days in the person's time zone (``to``
    included)."""
    zone = staff.formats.timezone
    first, last = _day(filters.date_from, "from"), _day(filters.date_to, "to")
    since = dt.datetime.combine(first, dt.time(), zone) if first else None
    until = dt.datetime.combine(last + dt.timedelta(days=1), dt.time(), zone) if last else None
    return {
        "actor": filters.chosen_actor,
        "action": filters.action or None,
        "list_name": filters.list_name or None,
        "since": since,
        "until": until,
    }


def _filters(
    who: str = "",
    actor: str = "",
    action: str = "",
    list_name: Annotated[str, Query(alias="list")] = "",
    date_from: Annotated[str, Query(alias="from")] = "",
    date_to: Annotated[str, Query(alias="to")] = "",
) -> Filters:
    """The filters of the page and of its CSV, from the query string (one declaration)."""
    return Filters(
        _text(who, "who"),
        _text(actor, "actor"),
        _text(action, "action"),
        _text(list_name, "list"),
        _text(date_from, "from"),
        _text(date_to, "to"),
    )


def _own_lists(store: Store, organisation: str) -> list[str]:
    return [info.name for info in store.lists.all() if info.owner == organisation]


def _check_list(store: Store, staff: Staff, filters: Filters) -> None:
    """A list filter names one of the organisation's lists; any other name is not found,
    whether it exists or not."""
    if filters.list_name and filters.list_name not in _own_lists(store, staff.organisation):
        raise NotFound(f"no list named {filters.list_name[:128]!r}")


def _actor_labels(store: Store, organisation: str) -> dict[str, dict[str, str]]:
    """The organisation's people and keys, by their audit actor."""
    people = {
        user.actor: {"kind": "person", "login": user.login, "name": user.name}
        for user in store.users.all(organisation)
    }
    keys = {
        key.actor: {"kind": "key", "id": str(key.id), "name": key.name}
        for key in store.keys.all()
        if key.organisation == organisation
    }
    return {**people, **keys}


def _page_data(store: Store, staff: Staff, filters: Filters, before: int | None) -> dict[str, Any]:
    _check_list(store, staff, filters)
    arguments = _search_arguments(staff, filters)
    rows = store.audit.search(
        staff.organisation, before_id=before, limit=PAGE_ROWS + 1, **arguments
    )
    more = len(rows) > PAGE_ROWS
    rows = rows[:PAGE_ROWS]
    return {
        "rows": rows,
        "older": filters.query(before=rows[-1]["id"]) if more else None,
        "labels": _actor_labels(store, staff.organisation),
        "actions": store.audit.actions(),
        "lists": _own_lists(store, staff.organisation),
        "key_actions": KEY_ACTIONS,
    }


AuditFilters = Annotated[Filters, Depends(_filters)]


@router.get("/audit")
async def audit_page(
    request: Request,
    staff: Viewer,
    filters: AuditFilters,
    before: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
) -> Response:
    store = web.store_of(request)
    data = await run_in_threadpool(_page_data, store, staff, filters, before)
    return web.render(
        request,
        "audit.html",
        {
            **data,
            "filters": filters,
            "paged": before is not None,
            "first_page": filters.query(),
            "csv": filters.query(),
        },
    )


def _cell(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    if value is None:
        text = ""
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def _csv_lines(store: Store, organisation: str, arguments: dict[str, Any]) -> Iterator[str]:
    """The CSV, a batch of rows at a time (each batch one bounded query)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    rows = search_all(store.audit, organisation, batch=EXPORT_BATCH, **arguments)
    for count, row in enumerate(rows, 1):
        writer.writerow([row["id"], *(_cell(row[name]) for name in CSV_COLUMNS[1:])])
        if count % EXPORT_BATCH == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


@router.get("/audit.csv")
async def audit_csv(request: Request, staff: Viewer, filters: AuditFilters) -> Response:
    store = web.store_of(request)
    await run_in_threadpool(_check_list, store, staff, filters)
    arguments = _search_arguments(staff, filters)
    await run_in_threadpool(
        store.audit.note,
        staff.actor,
        "audit.export",
        staff.organisation,
        {},
        {"filters": filters.as_dict()},
    )
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    name = f"audit-{staff.organisation}-{stamp}.csv"
    return StreamingResponse(
        _csv_lines(store, staff.organisation, arguments),
        media_type="text/csv; charset=utf-8",
        headers={"content-disposition": f'attachment; filename="{name}"'},
    )
