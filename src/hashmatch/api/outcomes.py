"""Outcome routes: platforms report what they did about their matches; list owners see the
numbers and answer false positives. Also what the app runs beside the routes for them: the
match recorder (match ids, counts) with its flusher, and the webhook sender.

Reports are the platform's (role ``match``) and name matches by match id only. Stats and false
positives are the list owner's (``contribute`` or ``admin``): for anyone else the list is not
found, or, when it is offered to them, not theirs to read.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from dataclasses import dataclass
from typing import Annotated, Any, Final, Literal

from fastapi import APIRouter, Query, Response
from fastapi import Path as PathParam
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from hashmatch import fields
from hashmatch.api.auth import Contributor, Matching
from hashmatch.api.bodylimit import body_limit
from hashmatch.api.deps import StoreDep
from hashmatch.config import Settings
from hashmatch.delivery import SenderSettings, WebhookSender
from hashmatch.errors import Forbidden, NotFound
from hashmatch.matching.counts import CountFlusher, MatchRecorder
from hashmatch.matching.policy import can_see
from hashmatch.store import ListInfo, Store
from hashmatch.store.keys import KeyInfo
from hashmatch.store.outcomes import MAX_BATCH, OutcomeItem
from hashmatch.store.stats import CSV_COLUMNS

router = APIRouter(prefix="/v1", tags=["outcomes"])
MAX_ID: Final = 2**63 - 1
#: 10,000 reports with notes, as JSON.
MAX_OUTCOMES_BODY: Final = 8 * 1024 * 1024
#: The last day a period may end on (a day later must still be a date).
_LAST_DAY: Final = dt.date(9999, 12, 30)


@dataclass
class Background:
    """The outcome work of one worker process: stamping and counting matches, writing the
    counts, and (while it holds the lease) sending withdrawal webhooks."""

    recorder: MatchRecorder
    flusher: CountFlusher
    sender: WebhookSender

    @classmethod
    def start(cls, store: Store, settings: Settings) -> Background:
        recorder = MatchRecorder(store.outcomes.tokens())
        flusher = CountFlusher(
            recorder.counter, store.outcomes.add_counts, settings.match_count_flush_seconds
        )
        sender = WebhookSender(
            store,
            SenderSettings(
                max_attempts=settings.webhook_max_attempts,
                retry_seconds=settings.webhook_retry_seconds,
                allow_private_targets=settings.webhook_private_targets,
            ),
        )
        flusher.start()
        sender.start()
        return cls(recorder, flusher, sender)

    def stop(self) -> None:
        self.sender.stop()
        self.flusher.stop()  # writes what is still counted


# --- bodies -------------------------------------------------------------------------------


class OutcomeIn(BaseModel):
    """One report. Values are checked item by item: a bad one is listed, the rest applied."""

    match_id: str = Field(max_length=128, description="from a match response")
    outcome: str = Field(
        max_length=32,
        description="removed | actioned | false_positive | under_review | not_actioned",
    )
    acted_at: str | None = Field(
        default=None,
        max_length=64,
        description="ISO-8601 with a zone; default now. Not before the match, not in the future",
    )
    hash: str | None = Field(
        default=None,
        max_length=1100,
        description="ALG:HEX of the uploaded image, only with false_positive (for review)",
    )
    note: str | None = Field(default=None, max_length=2000, description="at most 500 chars")


class OutcomesIn(BaseModel):
    outcomes: list[OutcomeIn] = Field(min_length=1, max_length=MAX_BATCH)


class OutcomeErrorOut(BaseModel):
    index: int
    code: str
    message: str


class OutcomesOut(BaseModel):
    accepted: int = Field(description="match ids reported for the first time")
    updated: int = Field(description="match ids reported before: their outcome replaced")
    rejected: int
    errors: list[OutcomeErrorOut]
    errors_truncated: bool


class ResolveIn(BaseModel):
    action: Literal["withdraw", "allow"]
    reason: str = Field(max_length=fields.MAX_REASON_CHARS)
    allow_list: str | None = Field(
        default=None,
        max_length=fields.MAX_LIST_NAME_CHARS,
        description="with allow: the owner's allow-list that gets the reported hash",
    )


# --- routes -------------------------------------------------------------------------------


def _owned(store: Store, name: str, key: KeyInfo) -> ListInfo:
    info = store.lists.get(name)
    if not can_see(info, key.organisation):
        raise NotFound(f"no list named {name!r}")  # never confirm another's list exists
    if info.owner != key.organisation:
        raise Forbidden(f"list {name!r} belongs to another organisation")
    return info


@router.post(
    "/outcomes",
    response_model=OutcomesOut,
    summary="Report what was done about matches (by match id, up to 10,000)",
    openapi_extra=body_limit(MAX_OUTCOMES_BODY),
)
async def report_outcomes(body: OutcomesIn, store: StoreDep, key: Matching) -> dict[str, Any]:
    """Idempotent by match id: a match reported again has its outcome replaced (the audit log
    keeps the old one), never counted twice. The whole batch is one transaction; items that
    fail a check are listed by index and code, and the others applied."""
    items: list[OutcomeItem] = [
        {
            "match_id": item.match_id,
            "outcome": item.outcome,
            "acted_at": item.acted_at,
            "hash": item.hash,
            "note": item.note,
        }
        for item in body.outcomes
    ]
    report = await run_in_threadpool(
        store.outcomes.report, key.organisation, items, actor=key.actor
    )
    return report.as_dict()


Day = Annotated[dt.date | None, Query(description="UTC day, inclusive (YYYY-MM-DD)")]


@router.get("/lists/{name}/stats", summary="Matches, outcomes and time to removal of a list")
def list_stats(
    name: str,
    store: StoreDep,
    key: Contributor,
    since: Day = None,
    until: Day = None,
    per_entry: bool = False,
    format: Literal["json", "csv"] = "json",
) -> Any:
    _owned(store, name, key)
    if until is not None and until > _LAST_DAY:
        until = None
    stats = store.reviews.stats(name, since, until)
    if format == "json":
        return stats.as_dict(per_entry)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    writer.writerows(stats.csv_rows(per_entry))
    return Response(buffer.getvalue(), media_type="text/csv; charset=utf-8")


@router.get("/lists/{name}/false-positives", summary="False-positive reports on a list")
def false_positives(
    name: str,
    store: StoreDep,
    key: Contributor,
    state: Literal["open", "all"] = "open",
    after: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    _owned(store, name, key)
    reports = store.reviews.false_positives(
        name, open_only=state == "open", after=after, limit=limit
    )
    return {
        "false_positives": reports,
        "next": reports[-1]["report_id"] if len(reports) == limit else None,
    }


@router.post(
    "/lists/{name}/false-positives/{report_id}/resolve",
    summary="Answer a false positive: withdraw the entry, or allow the reported hash",
)
def resolve_false_positive(
    name: str,
    report_id: Annotated[int, PathParam(ge=0, le=MAX_ID)],
    body: ResolveIn,
    store: StoreDep,
    key: Contributor,
) -> dict[str, Any]:
    _owned(store, name, key)
    if body.allow_list is not None and body.action == "allow":
        _owned(store, body.allow_list, key)
    return store.reviews.resolve(
        name,
        report_id,
        action=body.action,
        reason=body.reason,
        actor=key.actor,
        allow_list=body.allow_list,
    )
