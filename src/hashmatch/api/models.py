"""Request and response bodies of the HTTP API.

Lengths here are the store's own (:mod:`hashmatch.fields`), so a request is refused with the
field named before it is parsed further; the store checks the same rules again for every other
path (files, the CLI).
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from typing import Final, Literal

from pydantic import BaseModel, Field, model_validator

from hashmatch import fields, signals
from hashmatch.errors import HashFormatError
from hashmatch.matching.lookup import MAX_LIST_FILTER
from hashmatch.matching.verdict import MatchOut
from hashmatch.signals import Hash
from hashmatch.signals.registry import MAX_DISTANCE, MAX_NAME_CHARS, MAX_TEXT_CHARS
from hashmatch.store.records import EntryOut, ListOut, ShareOut

#: Videos one ``/v1/match/hashes`` request may carry (each judged as one item).
MAX_VIDEOS: Final = 100


class HashIn(BaseModel):
    algorithm: str = Field(max_length=MAX_NAME_CHARS, examples=["pdq"])
    value: str = Field(
        max_length=MAX_TEXT_CHARS,
        description="lowercase or uppercase hex",
        examples=["f8f8f0cce0f4a84f" * 4],
    )


class GroupedHashIn(HashIn):
    group: str | None = Field(
        default=None,
        max_length=fields.MAX_GROUP_CHARS,
        description="hashes with the same group are judged as one item (e.g. one image's PDQ "
        "and MD5): an allow-list hit on one may suppress block hits on the others",
    )


def parse_hashes(items: Sequence[HashIn], field: str = "hashes") -> builtins.list[Hash]:
    """Validated hashes, an error naming the first bad one's position."""
    hashes = []
    for position, item in enumerate(items):
        try:
            hashes.append(Hash.from_hex(signals.get(item.algorithm), item.value))
        except HashFormatError as exc:
            raise HashFormatError(f"{field}[{position}]: {exc.message}") from None
    return hashes


class VideoFramesIn(BaseModel):
    """A video hashed on the caller's side (``hashmatch hash``, or ``/v1/hash``): its vPDQ
    frames, matched as a bag of frames against listed videos, and frame by frame against
    listed images."""

    id: str | None = Field(
        default=None, max_length=fields.MAX_GROUP_CHARS, description="echoed in the result"
    )
    frames: list[str] | str = Field(
        description="Meta's text form, 'frame_number,quality,pdq_hex,timestamp' a frame: a "
        "list of lines, or one string of lines",
    )


class MatchHashesIn(BaseModel):
    hashes: list[GroupedHashIn] = Field(default_factory=list, max_length=10_000)
    videos: list[VideoFramesIn] = Field(
        default_factory=list,
        max_length=MAX_VIDEOS,
        description="videos as vPDQ frame sets (each judged as one item)",
    )

    @model_validator(mode="after")
    def _something(self) -> MatchHashesIn:
        if not self.hashes and not self.videos:
            raise ValueError("send at least one hash or one video")
        return self

    lists: list[str] | None = Field(
        default=None,
        max_length=MAX_LIST_FILTER,
        description="only these lists (each must be one the key may match)",
    )
    max_distance: int | None = Field(
        default=None, ge=0, le=MAX_DISTANCE, description="only tightens"
    )


class VideoResultOut(BaseModel):
    id: str | None = None
    frames_kept: int = Field(description="distinct frames of quality >= 50 compared")
    match: bool
    matches: list[MatchOut]
    allowed: list[MatchOut] = Field(default_factory=list, description="allow-list hits")


class HashResultOut(BaseModel):
    algorithm: str
    value: str
    group: str | None = None
    match: bool = Field(description="the verdict on this hash's item (its group, or itself)")
    matches: list[MatchOut]
    allowed: list[MatchOut] = Field(default_factory=list, description="allow-list hits")


class MatchHashesOut(BaseModel):
    match: bool
    results: list[HashResultOut]
    videos: list[VideoResultOut] = Field(default_factory=list)
    request_id: str


class ImageHashOut(BaseModel):
    algorithm: str
    value: str
    quality: int | None = None
    low_quality: bool | None = None


class VideoOut(BaseModel):
    """What was hashed of a submitted video."""

    container: str
    codec: str
    width: int
    height: int
    fps: float
    duration: float | None = Field(description="seconds, as the container declares it")
    seconds_per_hash: float
    frames_hashed: int = Field(description="frames sampled and hashed")
    frames_kept: int = Field(
        description="distinct frame hashes of quality >= 50: what is compared (vPDQ)"
    )
    frames: list[str] | None = Field(
        default=None,
        description="/v1/hash only: each frame in Meta's text form, "
        "'frame_number,quality,pdq_hex,timestamp'",
    )


class MatchImageOut(BaseModel):
    match: bool
    hashes: dict[str, ImageHashOut]
    video: VideoOut | None = Field(default=None, description="a video: what was hashed of it")
    matches: list[MatchOut]
    allowed: list[MatchOut] = Field(default_factory=list, description="allow-list hits")
    request_id: str


class HashImageOut(BaseModel):
    hashes: dict[str, ImageHashOut]
    video: VideoOut | None = Field(
        default=None, description="a video: what was hashed of it, and its frames"
    )
    request_id: str


class ListIn(BaseModel):
    name: str = Field(min_length=1, max_length=fields.MAX_LIST_NAME_CHARS)
    category: str = Field(min_length=1, max_length=fields.MAX_CATEGORY_CHARS)
    kind: Literal["block", "allow"] = "block"
    source: str = Field(default="", max_length=fields.MAX_SOURCE_CHARS)
    jurisdiction: str = Field(default="", max_length=fields.MAX_JURISDICTION_CHARS)
    description: str = Field(default="", max_length=fields.MAX_DESCRIPTION_CHARS)
    thresholds: dict[str, int] | None = Field(default=None, max_length=8)
    shared_with: list[str] = Field(
        default_factory=list,
        max_length=1000,
        description="organisations offered the list; each must accept before it is matched",
    )
    tlp: Literal["CLEAR", "GREEN", "AMBER", "AMBER+STRICT", "RED"] = Field(
        default="AMBER", description="FIRST TLP 2.0 label: how far the list may travel"
    )


class ListPatch(BaseModel):
    enabled: bool | None = None
    description: str | None = Field(default=None, max_length=fields.MAX_DESCRIPTION_CHARS)
    source: str | None = Field(default=None, max_length=fields.MAX_SOURCE_CHARS)
    jurisdiction: str | None = Field(default=None, max_length=fields.MAX_JURISDICTION_CHARS)
    category: str | None = Field(default=None, max_length=fields.MAX_CATEGORY_CHARS)
    thresholds: dict[str, int] | None = Field(default=None, max_length=8)
    shared_with: list[str] | None = Field(default=None, max_length=1000)
    tlp: Literal["CLEAR", "GREEN", "AMBER", "AMBER+STRICT", "RED"] | None = None


class EntryIn(BaseModel):
    algorithm: str = Field(max_length=MAX_NAME_CHARS)
    hash: str | None = Field(
        default=None,
        max_length=MAX_TEXT_CHARS,
        description="the hash; for a video (vpdq), optional: the SHA-256 of its frames",
    )
    frames: list[str] | str | None = Field(
        default=None,
        description="a video (vpdq): its frames in Meta's text form, one "
        "'frame_number,quality,pdq_hex,timestamp' a line (a list of lines, or one string)",
    )
    reference: str | None = Field(default=None, max_length=fields.MAX_REFERENCE_CHARS)
    labels: list[str] = Field(default_factory=list, max_length=fields.MAX_LABELS)


class EntriesIn(BaseModel):
    entries: list[EntryIn] = Field(min_length=1, max_length=100_000)
    strict: bool = False


class WithdrawIn(BaseModel):
    reason: str = Field(min_length=1, max_length=fields.MAX_REASON_CHARS)
    reason_class: Literal["victim_request", "listed_in_error", "legal", "expired", "other"] = Field(
        default="other",
        description="why, as peers and platforms learn it (the reason itself stays with you)",
    )
    references: list[str] = Field(default_factory=list, max_length=100_000)
    hashes: list[HashIn] = Field(default_factory=list, max_length=100_000)


class AcceptIn(BaseModel):
    trust: bool = Field(
        default=False,
        description="an allow-list only: let its hits suppress hits of your own block lists",
    )


class EntriesPage(BaseModel):
    entries: list[EntryOut]
    next: int | None = Field(description="the ``after`` of the next page; null on the last")


__all__ = [
    "AcceptIn",
    "EntriesIn",
    "EntriesPage",
    "EntryIn",
    "EntryOut",
    "HashImageOut",
    "HashIn",
    "HashResultOut",
    "ImageHashOut",
    "ListIn",
    "ListOut",
    "ListPatch",
    "MatchHashesIn",
    "MatchHashesOut",
    "MatchImageOut",
    "MatchOut",
    "ShareOut",
    "WithdrawIn",
]
