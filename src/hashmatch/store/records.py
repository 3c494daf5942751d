"""What the store hands out: a list as it is now, an entry, an import's report."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Final

from hashmatch import fields
from hashmatch.hashsets.read import HashRow, RowError
from hashmatch.signals import Hash

#: Rows an import reports by line (the counts are always exact).
MAX_REPORTED_ERRORS: Final = 1_000


@dataclass(frozen=True)
class ListInfo:
    id: int
    name: str
    owner: str
    kind: str
    category: str
    source: str
    jurisdiction: str
    description: str
    enabled: bool
    thresholds: dict[str, int]
    #: Organisations the list is offered to; of those, the ones that accepted it, and the
    #: ones that let it (an allow-list) suppress hits of their own block lists.
    shared_with: tuple[str, ...] = ()
    accepted_by: tuple[str, ...] = ()
    trusted_by: tuple[str, ...] = ()
    created_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None

    def as_dict(self, organisation: str | None = None) -> dict[str, Any]:
        """The list as ``organisation`` may see it: its sharing in full for the owner (and
        the operator, ``None``), only its own offer for anyone else."""

        def seen(names: tuple[str, ...]) -> list[str]:
            if organisation is None or organisation == self.owner:
                return list(names)
            return [name for name in names if name == organisation]

        return {
            "name": self.name,
            "owner": self.owner,
            "kind": self.kind,
            "category": self.category,
            "source": self.source,
            "jurisdiction": self.jurisdiction,
            "description": self.description,
            "enabled": self.enabled,
            "thresholds": self.thresholds,
            "shared_with": seen(self.shared_with),
            "accepted_by": seen(self.accepted_by),
            "trusted_by": seen(self.trusted_by),
        }

    def offer_to(self, organisation: str) -> dict[str, Any]:
        """The offer of this list to ``organisation``, as that organisation sees it."""
        return {
            "list": self.name,
            "owner": self.owner,
            "kind": self.kind,
            "category": self.category,
            "state": "accepted" if organisation in self.accepted_by else "offered",
            "trusted": organisation in self.trusted_by,
        }

    def editable(self) -> dict[str, Any]:
        """The values an owner may change, as the audit log records them."""
        return {
            "enabled": self.enabled,
            "description": self.description,
            "source": self.source,
            "jurisdiction": self.jurisdiction,
            "category": self.category,
            "thresholds": dict(self.thresholds),
            "shared_with": list(self.shared_with),
        }


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
