"""The one rule that turns an item's hits into a verdict, for every front end.

An *item* is what a platform asks about: one image (its PDQ variants, pHash and digests), or
one hash, or hashes a caller grouped as one item. ``/v1/match``, ``/v1/match/hashes`` and
``hashmatch match`` all call :func:`decide`, so they cannot disagree.

- Each entry counts once, at its closest hash (the variant that found it is kept).
- A hit in an allow-list (known false positives) suppresses block hits only of lists owned by
  the allow-list's owner, or by owners that accepted that allow-list as trusted
  (:func:`.policy.may_suppress`): nobody can switch off another organisation's matches.
- A perceptual allow hit never suppresses an exact digest hit: MD5/SHA-256 equality is the
  strongest evidence there is, and a near-duplicate cannot outweigh it.
- Suppressed hits stay in the verdict, marked with the allow-list that suppressed them.
- ``match`` is whether any block hit is left standing.

:func:`shown_distance` is what a caller may learn of a hit's distance: the exact integer for
lists it owns; for others only a band, so that distances cannot be used to rebuild another
organisation's hash values bit by bit (see :mod:`.probes` for the rest of that rule).
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field

from hashmatch.matching.policy import may_suppress

if TYPE_CHECKING:
    from hashmatch.matching.counts import Stamp
    from hashmatch.matching.state import Match, VideoScore
    from hashmatch.signals import Variant
    from hashmatch.store import ListInfo


class Band(StrEnum):
    EXACT = "exact"  # distance 0: the listed hash itself
    NEAR = "near"  # within the list's threshold


@dataclass(frozen=True, slots=True)
class Hit:
    match: Match
    variant: Variant | None = None
    query: int = 0  # which of the item's hashes found it
    suppressed_by: str | None = None  # the allow-list that suppressed this block hit


@dataclass(frozen=True, slots=True)
class Verdict:
    match: bool
    blocks: tuple[Hit, ...]  # closest first; suppressed ones marked
    allows: tuple[Hit, ...]


def closest_per_entry(found: Iterable[Hit]) -> list[Hit]:
    """Each entry once, at its closest hash; closest first."""
    best: dict[int, Hit] = {}
    for hit in found:
        current = best.get(hit.match.entry_id)
        if current is None or hit.match.distance < current.match.distance:
            best[hit.match.entry_id] = hit
    return sorted(best.values(), key=lambda hit: (hit.match.distance, hit.match.entry_id))


def decide(found: Iterable[Hit], lists: Mapping[int, ListInfo]) -> Verdict:
    """The verdict on one item from every hit of its hashes."""
    hits = closest_per_entry(found)
    allows = tuple(hit for hit in hits if hit.match.kind == "allow")
    blocks: list[Hit] = []
    for hit in hits:
        if hit.match.kind == "allow":
            continue
        suppressor = _suppressor(hit, allows, lists)
        blocks.append(
            hit if suppressor is None else Hit(hit.match, hit.variant, hit.query, suppressor)
        )
    standing = any(hit.suppressed_by is None for hit in blocks)
    return Verdict(standing, tuple(blocks), allows)


def _suppressor(block: Hit, allows: Iterable[Hit], lists: Mapping[int, ListInfo]) -> str | None:
    for allow in allows:
        info = lists.get(allow.match.list_id)
        if info is None or not may_suppress(info, block.match.owner):
            continue
        if allow.match.algorithm.perceptual and not block.match.algorithm.perceptual:
            continue
        return allow.match.list
    return None


def band(distance: int) -> Band:
    return Band.EXACT if distance == 0 else Band.NEAR


def shown_distance(match: Match, organisation: str | None) -> int | None:
    """The exact distance for the list's owner (or the operator, ``None``); else nothing."""
    if organisation is None or match.owner == organisation:
        return match.distance
    return None


class VideoMatchOut(BaseModel):
    """How a query video matched a listed video, as vPDQ scores it."""

    query_percent: float = Field(
        description="share of the query's distinct frames (quality >= 50) that found a frame "
        "of the listed video"
    )
    listed_percent: float = Field(
        description="share of the listed video's distinct frames that were found"
    )
    query_frames: int
    query_kept: int
    listed_frames: int
    listed_kept: int
    query_ranges: builtins.list[tuple[float, float]] = Field(
        description="matched stretches of the query, [start, end] in seconds"
    )
    listed_ranges: builtins.list[tuple[float, float]] = Field(
        description="matched stretches of the listed video, [start, end] in seconds"
    )
    query_coverage: float = Field(
        description="share of the query's seconds holding a matched frame: what the list's "
        "vpdq_query_percent is compared with (vPDQ's query % when sampled once a second)"
    )
    listed_coverage: float = Field(
        description="share of the listed video's seconds holding a matched frame: what "
        "vpdq_listed_percent and vpdq_contained_percent are compared with"
    )

    @classmethod
    def of(cls, score: VideoScore) -> VideoMatchOut:
        return cls(
            query_percent=round(score.query_percent, 2),
            listed_percent=round(score.listed_percent, 2),
            query_frames=score.query_frames,
            query_kept=score.query_kept,
            listed_frames=score.listed_frames,
            listed_kept=score.listed_kept,
            query_ranges=builtins.list(score.query_ranges),
            listed_ranges=builtins.list(score.listed_ranges),
            query_coverage=round(score.query_coverage, 2),
            listed_coverage=round(score.listed_coverage, 2),
        )


class MatchOut(BaseModel):
    """A hit as every front end reports it (the HTTP API's schema, the CLI's JSON)."""

    list: str
    kind: str
    category: str
    entry_id: int
    reference: str | None
    labels: builtins.list[str]
    algorithm: str
    distance: int | None = Field(
        description="exact Hamming distance, for lists the caller owns; null for others"
    )
    band: Literal["exact", "near"] = Field(
        description="exact: distance 0; near: within the list's threshold"
    )
    variant: str | None = None
    suppressed: bool = False
    suppressed_by: str | None = Field(default=None, description="the allow-list that did")
    origin: dict[str, Any] | None = Field(
        default=None,
        description="for a list mirrored from another instance: the entry's origin "
        "(instance, list, owner, category, jurisdiction, its entry id there)",
    )
    match_id: str = Field(
        description="this match, for reporting its outcome (POST /v1/outcomes)",
        examples=["AQAAAAAAAAAqAAAAAAAAAAFnTbWA3q2-7w8uX8z1bWQkC4xG3A"],
    )
    listed_time: float | None = Field(
        default=None,
        description="a listed video found by an image: when (seconds) the matching frame shows",
    )
    query_time: float | None = Field(
        default=None,
        description="a listed image found in a query video: when (seconds) the frame shows",
    )
    video: VideoMatchOut | None = Field(
        default=None, description="a listed video found by a query video: both sides' scores"
    )

    @classmethod
    def of(cls, hit: Hit, organisation: str | None, stamp: Stamp) -> MatchOut:
        """``hit`` as reported to ``organisation`` (``None``: the operator), stamped with its
        match id (and counted) by ``stamp``."""
        match = hit.match
        return cls(
            list=match.list,
            kind=match.kind,
            category=match.category,
            entry_id=match.entry_id,
            reference=match.reference,
            labels=builtins.list(match.labels),
            algorithm=match.algorithm.name,
            distance=shown_distance(match, organisation),
            band=band(match.distance).value,
            variant=None if hit.variant is None else str(hit.variant),
            suppressed=hit.suppressed_by is not None,
            suppressed_by=hit.suppressed_by,
            origin=match.origin,
            match_id=stamp.match_id(match),
            listed_time=match.listed_time,
            query_time=match.query_time,
            video=None if match.video is None else VideoMatchOut.of(match.video),
        )


def hit_dict(hit: Hit, organisation: str | None, stamp: Stamp) -> dict[str, Any]:
    return MatchOut.of(hit, organisation, stamp).model_dump()


def verdict_dict(verdict: Verdict, organisation: str | None, stamp: Stamp) -> dict[str, Any]:
    return {
        "match": verdict.match,
        "matches": [hit_dict(hit, organisation, stamp) for hit in verdict.blocks],
        "allowed": [hit_dict(hit, organisation, stamp) for hit in verdict.allows],
    }
