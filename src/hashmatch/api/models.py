"""Request and response bodies of the HTTP API."""

from __future__ import annotations

import builtins
from typing import Literal

from pydantic import BaseModel, Field

from hashmatch.errors import HashFormatError
from hashmatch.hashing import Hash, parse_algorithm


class HashIn(BaseModel):
    algorithm: str = Field(examples=["pdq"])
    value: str = Field(description="lowercase or uppercase hex", examples=["f8f8f0cce0f4a84f" * 4])


def parse_hashes(items: builtins.list[HashIn]) -> builtins.list[Hash]:
    """Validated hashes, an error naming the first bad one's position."""
    hashes = []
    for position, item in enumerate(items):
        try:
            hashes.append(Hash.from_hex(parse_algorithm(item.algorithm), item.value))
        except HashFormatError as exc:
            raise HashFormatError(f"hashes[{position}]: {exc.message}") from None
    return hashes


class MatchHashesIn(BaseModel):
    hashes: list[HashIn] = Field(min_length=1, max_length=10_000)
    lists: list[str] | None = Field(default=None, description="only these visible lists")
    max_distance: int | None = Field(default=None, ge=0, le=128, description="only tightens")


class MatchOut(BaseModel):
    list: str
    kind: str
    category: str
    entry_id: int
    reference: str | None
    labels: builtins.list[str]
    algorithm: str
    distance: int
    variant: str | None = None
    suppressed: bool = False


class HashResultOut(BaseModel):
    algorithm: str
    value: str
    match: bool
    matches: list[MatchOut]


class MatchHashesOut(BaseModel):
    match: bool
    results: list[HashResultOut]
    request_id: str


class ImageHashOut(BaseModel):
    algorithm: str
    value: str
    quality: int | None = None
    low_quality: bool | None = None


class MatchImageOut(BaseModel):
    match: bool
    hashes: dict[str, ImageHashOut]
    matches: list[MatchOut]
    allowed: list[MatchOut] = Field(default_factory=list, description="allow-list hits")
    request_id: str


class HashImageOut(BaseModel):
    hashes: dict[str, ImageHashOut]
    request_id: str


class ListIn(BaseModel):
    name: str = Field(min_length=1, max_length=128)
    category: str = Field(min_length=1, max_length=32)
    kind: Literal["block", "allow"] = "block"
    source: str = ""
    jurisdiction: str = ""
    description: str = ""
    thresholds: dict[str, int] | None = None
    shared_with: list[str] = Field(default_factory=list)


class ListPatch(BaseModel):
    enabled: bool | None = None
    description: str | None = None
    source: str | None = None
    jurisdiction: str | None = None
    category: str | None = None
    thresholds: dict[str, int] | None = None
    shared_with: list[str] | None = None


class EntryIn(BaseModel):
    algorithm: str
    hash: str
    reference: str | None = Field(default=None, max_length=256)
    labels: list[str] = Field(default_factory=list, max_length=32)


class EntriesIn(BaseModel):
    entries: list[EntryIn] = Field(min_length=1, max_length=100_000)
    strict: bool = False


class WithdrawIn(BaseModel):
    reason: str = Field(min_length=1, max_length=2000)
    references: list[str] = Field(default_factory=list, max_length=100_000)
    hashes: list[HashIn] = Field(default_factory=list, max_length=100_000)
