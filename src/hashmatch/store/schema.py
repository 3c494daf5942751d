"""The database schema (SQLAlchemy Core). Migrations in ``hashmatch/migrations`` build it.

The change log is the ``changes`` table: one row per committed operation (an import, a
withdrawal, a list update), numbered by a monotonic ``cursor``. Entries point at the change that
added them and the change that withdrew them, so a replica that has applied everything up to
cursor ``c`` catches up by reading the changes after ``c`` and the entries they touched: a
million-row import is one change row, not a million.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    false,
    text,
)

# SQLite only autoincrements INTEGER PRIMARY KEY; BigInteger elsewhere.
Id = BigInteger().with_variant(Integer(), "sqlite")

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

organisations = Table(
    "organisations",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("name", String(128), nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

lists = Table(
    "lists",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("name", String(128), nullable=False, unique=True),
    Column("owner_id", ForeignKey("organisations.id"), nullable=False),
    Column("kind", String(16), nullable=False),  # block | allow
    Column("category", String(32), nullable=False),
    Column("source", String(256), nullable=False, server_default=""),
    Column("jurisdiction", String(64), nullable=False, server_default=""),
    Column("description", Text, nullable=False, server_default=""),
    Column("enabled", Boolean, nullable=False, server_default=text("true")),
    Column("thresholds", JSON, nullable=False),  # {"pdq": 31, "phash": 6}
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# A share is an offer to one organisation; it reaches that organisation's matches only once
# accepted (``accepted_at``). ``trusted``: the organisation lets this allow-list suppress hits
# of its own block lists.
list_shares = Table(
    "list_shares",
    metadata,
    Column("list_id", ForeignKey("lists.id", ondelete="CASCADE"), primary_key=True),
    Column("organisation_id", ForeignKey("organisations.id"), primary_key=True),
    Column("offered_at", DateTime(timezone=True), nullable=True),
    Column("offered_by", String(128), nullable=False, server_default=""),
    Column("accepted_at", DateTime(timezone=True), nullable=True),
    Column("accepted_by", String(128), nullable=True),
    Column("trusted", Boolean, nullable=False, server_default=false()),
)

changes = Table(
    "changes",
    metadata,
    Column("cursor", Id, primary_key=True, autoincrement=True),
    Column("kind", String(16), nullable=False),  # add | withdraw | list
    Column("list_id", ForeignKey("lists.id"), nullable=False),
    Column("count", Integer, nullable=False, server_default="0"),
    Column("at", DateTime(timezone=True), nullable=False),
)

entries = Table(
    "entries",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("list_id", ForeignKey("lists.id"), nullable=False),
    Column("algorithm", String(16), nullable=False),
    Column("hash", LargeBinary(64), nullable=False),
    Column("reference", String(256), nullable=True),
    Column("labels", JSON, nullable=False),
    Column("added_at", DateTime(timezone=True), nullable=False),
    Column("added_by", String(128), nullable=False),
    Column("added_change", ForeignKey("changes.cursor"), nullable=False),
    Column("withdrawn_at", DateTime(timezone=True), nullable=True),
    Column("withdrawn_by", String(128), nullable=True),
    Column("withdrawal_reason", Text, nullable=True),
    Column("withdrawn_change", ForeignKey("changes.cursor"), nullable=True),
    Index("ix_entries_added_change", "added_change"),
    Index("ix_entries_withdrawn_change", "withdrawn_change"),
    Index("ix_entries_list_reference", "list_id", "reference"),
    Index("ix_entries_list_algorithm_hash", "list_id", "algorithm", "hash"),
    # One live entry per (list, algorithm, hash): re-imports are counted as duplicates.
    Index(
        "uq_entries_live_hash",
        "list_id",
        "algorithm",
        "hash",
        unique=True,
        sqlite_where=text("withdrawn_at IS NULL"),
        postgresql_where=text("withdrawn_at IS NULL"),
    ),
)

audit = Table(
    "audit",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("actor", String(128), nullable=False),
    Column("action", String(64), nullable=False),
    Column("target", String(256), nullable=False),
    Column("counts", JSON, nullable=False),
    Column("reason", Text, nullable=True),
    Column("details", JSON, nullable=True),  # old and new values of what changed
    Index("ix_audit_target", "target"),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("organisation_id", ForeignKey("organisations.id"), nullable=False),
    Column("name", String(128), nullable=False, server_default=""),
    Column("prefix", String(16), nullable=False),  # shown in listings; the rest is secret
    Column("secret_hash", LargeBinary(32), nullable=False, unique=True),  # sha256 of the key
    Column("roles", JSON, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("created_by", String(128), nullable=False),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
    Column("suspended_at", DateTime(timezone=True), nullable=True),
    Column("suspended_reason", Text, nullable=True),
    Column("reinstated_at", DateTime(timezone=True), nullable=True),
)
