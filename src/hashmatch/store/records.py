"""What the store hands out: a list as it is now, an entry, an import's report."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from hashmatch import fields
from hashmatch.hashsets.read import HashRow, RowError
from hashmatch.signals import Hash

#: Rows an import reports by line (the counts are always exact).
MAX_REPORTED_ERRORS: Final = 1_000


class ListOut(BaseModel):
    """A list as every front end reports it: the one declaration of a list's fields."""

    model_config = ConfigDict(frozen=True)

    name: str
    owner: str
    kind: str
    category: str
    source: str
    jurisdiction: str
    description: str
    enabled: bool
    thresholds: dict[str, int]
    shared_with: tuple[str, ...] = Field(description="organisations offered it")
    accepted_by: tuple[str, ...] = Field(description="those that accepted it")
    trusted_by: tuple[str, ...] = Field(
        description="those that let it (an allow-list) suppress their block lists"
    )
    tlp: str = Field(
        default="AMBER",
        description="FIRST TLP 2.0 label: RED and AMBER+STRICT stay with the receiving "
        "organisation, AMBER may reach its platforms, GREEN and CLEAR may be re-shared",
    )
    origin: dict[str, Any] | None = Field(
        default=None,
        description="for a mirror of a peer instance's list: where it comes from (peer, "
        "instance, list, owner, category, jurisdiction); null for a local list",
    )


class ShareOut(BaseModel):
    """A list offered to an organisation, as that organisation sees it."""

    list: str
    owner: str
    kind: str
    category: str
    state: Literal["offered", "accepted"]
    trusted: bool


class EntryOut(BaseModel):
    """An entry as every front end reports it to its list's owner."""

    entry_id: int
    algorithm: str
    hash: str
    reference: str | None
    labels: list[str]
    added_at: str
    withdrawn_at: str | None


#: What a list's owner may change, as the store changes it and the audit log records it.
EDITABLE_FIELDS: Final = (
    "enabled",
    "description",
    "source",
    "jurisdiction",
    "category",
    "thresholds",
    "shared_with",
    "tlp",
)
#: The fields that say who else has the list: an organisation sees only its own part of them.
SHARING_FIELDS: Final = ("shared_with", "accepted_by", "trusted_by")


class ListInfo(ListOut):
    """A list as the store has it now: what is reported, and its identity and times."""

    id: int
    created_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None

    @property
    def is_mirror(self) -> bool:
        return self.origin is not None

    def report(self, organisation: str | None = None) -> ListOut:
        """The list as ``organisation`` may see it: its sharing in full for the owner (and
        the operator, ``None``), only its own offer for anyone else."""
        values = self.model_dump(include=set(ListOut.model_fields))
        if organisation is not None and organisation != self.owner:
            for name in SHARING_FIELDS:
                values[name] = tuple(org for org in values[name] if org == organisation)
        return ListOut.model_validate(values)

    def as_dict(self, organisation: str | None = None) -> dict[str, Any]:
        return self.report(organisation).model_dump(mode="json")

    def offer_to(self, organisation: str) -> ShareOut:
        """The offer of this list to ``organisation``, as that organisation sees it."""
        state: Literal["offered", "accepted"] = (
            "accepted" if organisation in self.accepted_by else "offered"
        )
        return ShareOut(
            **self.model_dump(include={"owner", "kind", "category"}),
            list=self.name,
            state=state,
            trusted=organisation in self.trusted_by,
        )

    def editable(self) -> dict[str, Any]:
        """The values an owner may change, as the audit log records them."""
        values = self.as_dict()
        return {name: values[name] for name in EDITABLE_FIELDS}


@dataclass
class ImportReport:
    list_name: str
    cursor: int | None = None
    added: int = 0
    duplicates: int = 0
    rejected: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    #: Rows whose hash was withdrawn from this list: never revived by an import.
    previously_withdrawn: int = 0
    withdrawn_rows: list[dict[str, Any]] = field(default_factory=list)

    def reject(self, error: RowError) -> None:
        self.rejected += 1
        if len(self.errors) < MAX_REPORTED_ERRORS:
            # A reason may quote the file's own text: it must still encode as the report.
            self.errors.append({"line": error.line, "reason": fields.printable(error.reason)})

    def skip_withdrawn(self, row: HashRow) -> None:
        self.previously_withdrawn += 1
        if len(self.withdrawn_rows) < MAX_REPORTED_ERRORS:
            self.withdrawn_rows.append(
                {
                    "line": row.line,
                    "reason": "withdrawn from this list before; not revived by an import "
                    "(revive it explicitly, with a reason)",
                }
            )

    def as_dict(self) -> dict[str, Any]:
        return {
            "list": self.list_name,
            "cursor": self.cursor,
            "added": self.added,
            "duplicates": self.duplicates,
            "previously_withdrawn": self.previously_withdrawn,
            "rejected": self.rejected,
            "errors": self.errors,
            "errors_truncated": self.rejected > len(self.errors),
            "withdrawn_rows": self.withdrawn_rows,
        }


@dataclass(frozen=True)
class EntryRow:
    id: int
    list_id: int
    hash: Hash
    reference: str | None
    labels: tuple[str, ...]
    added_at: dt.datetime
    withdrawn_at: dt.datetime | None = None
    origin_id: int | None = None
    #: A video entry's frames, packed (:func:`hashmatch.signals.vpdq.pack_frames`).
    frames: bytes | None = None

    def report(self) -> EntryOut:
        return EntryOut(
            entry_id=self.id,
            algorithm=self.hash.algorithm.name,
            hash=self.hash.hex,
            reference=self.reference,
            labels=list(self.labels),
            added_at=self.added_at.isoformat(),
            withdrawn_at=self.withdrawn_at.isoformat() if self.withdrawn_at else None,
        )
