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
    Date,
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
    # FIRST TLP 2.0 label: how far the list may travel (see hashmatch.exchange.tlp).
    Column("tlp", String(16), nullable=False, server_default="AMBER"),
    # A mirror of a peer's list: where it comes from (peer, instance, list, owner, category,
    # jurisdiction, the origin's thresholds and the local tightening). Null for local lists.
    Column("origin", JSON, nullable=True),
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
    # The change that recorded the acceptance: a peer feed sends the list whole from there.
    Column("accepted_change", BigInteger, nullable=True),
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
    # Why, as a class a peer may learn (the reason's free text stays with the owner).
    Column("withdrawal_class", String(32), nullable=True),
    # A mirrored entry: its id on the origin instance (what makes applying a page idempotent).
    Column("origin_id", BigInteger, nullable=True),
    # A video (vpdq) entry's frames, packed (hashmatch.signals.vpdq.pack_frames); its ``hash``
    # is their SHA-256. Null for every other entry.
    Column("frames", LargeBinary, nullable=True),
    Index("ix_entries_added_change", "added_change"),
    Index("uq_entries_list_origin_id", "list_id", "origin_id", unique=True),
    # A list's entries in id order (a peer feed's snapshot pages), without a sort.
    Index("ix_entries_list_id_id", "list_id", "id"),
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

# A peer instance this one subscribes to: its feed's address, the key it gave us (never shown,
# never logged), the local organisation its mirrors belong to, and how far we have read.
peers = Table(
    "peers",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("url", String(512), nullable=False),
    Column("secret", Text, nullable=False),
    Column("organisation_id", ForeignKey("organisations.id"), nullable=False),
    Column("lists", JSON, nullable=True),  # origin list names to mirror; null: every one
    Column("paused", Boolean, nullable=False, server_default=false()),
    Column("cursor", String(64), nullable=False, server_default=""),
    Column("remote_instance", String(128), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("last_attempt_at", DateTime(timezone=True), nullable=True),
    Column("last_success_at", DateTime(timezone=True), nullable=True),
    Column("last_change_at", DateTime(timezone=True), nullable=True),
    Column("last_error", Text, nullable=True),
    Column("failures", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", DateTime(timezone=True), nullable=True),
    Column("verified_at", DateTime(timezone=True), nullable=True),
    Column("verify_report", JSON, nullable=True),
    # Outcomes on its mirrors were sent back up to this moment (totals from its day on).
    Column("outcomes_sent_at", DateTime(timezone=True), nullable=True),
)

# Who runs a singleton job (the exchange fetcher) across workers and replicas: a row per job,
# held until ``expires_at`` and renewed by its holder.
leases = Table(
    "leases",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("holder", String(128), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
)

# Values of this instance that every worker and replica shares: its name on the exchange.
instance = Table(
    "instance",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

# What platforms did about their matches, one row per match id (the latest report wins; the
# audit log keeps the values it replaced). No foreign key to entries or lists: the match id
# proves they existed, and these rows must never block a change to either.
outcomes = Table(
    "outcomes",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("match_id", String(64), nullable=False, unique=True),
    Column("organisation_id", ForeignKey("organisations.id"), nullable=False),
    Column("list_id", BigInteger, nullable=False),
    Column("entry_id", BigInteger, nullable=False),
    Column("matched_at", DateTime(timezone=True), nullable=False),
    Column("outcome", String(16), nullable=False),  # removed | actioned | false_positive | ...
    Column("acted_at", DateTime(timezone=True), nullable=False),
    # A false positive's query hash, for the list's owner to review.
    Column("algorithm", String(16), nullable=True),
    Column("hash", LargeBinary(64), nullable=True),
    Column("note", Text, nullable=True),
    Column("reported_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    # The owner's answer to a false positive: withdrawn | allowed.
    Column("resolution", String(16), nullable=True),
    Column("resolved_at", DateTime(timezone=True), nullable=True),
    Column("resolved_by", String(128), nullable=True),
    Column("resolution_reason", Text, nullable=True),
    Index("ix_outcomes_list_id_outcome", "list_id", "outcome"),
    Index("ix_outcomes_entry_id", "entry_id"),
)

# Matches per entry and UTC day, added to by every worker's periodic flush (additive upserts).
match_counts = Table(
    "match_counts",
    metadata,
    Column("list_id", BigInteger, primary_key=True),
    Column("entry_id", BigInteger, primary_key=True),
    Column("day", Date, primary_key=True),
    Column("matches", BigInteger, nullable=False),
)

# A platform's endpoint for withdrawal notices, and the secret their bodies are signed with.
webhooks = Table(
    "webhooks",
    metadata,
    Column(
        "organisation_id", ForeignKey("organisations.id"), primary_key=True, autoincrement=False
    ),
    Column("url", String(2048), nullable=False),
    Column("secret", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("updated_by", String(128), nullable=False),
)

# One notice per (platform, withdrawn entry), queued with the withdrawal, sent until a 2xx.
webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("organisation_id", ForeignKey("organisations.id"), nullable=False),
    Column("list_id", BigInteger, nullable=False),
    Column("entry_id", BigInteger, nullable=False),
    Column("payload", JSON, nullable=False),
    Column("status", String(16), nullable=False),  # pending | delivered | failed
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("next_attempt_at", DateTime(timezone=True), nullable=True),
    Column("last_attempt_at", DateTime(timezone=True), nullable=True),
    Column("last_status", Integer, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("delivered_at", DateTime(timezone=True), nullable=True),
    Index("ix_webhook_deliveries_status_next_attempt_at", "status", "next_attempt_at"),
)

# What a partner instance's platforms did with the entries of a list it mirrors, sent back over
# the exchange: totals per entry and day of match, replaced whole by every report (idempotent).
remote_outcomes = Table(
    "remote_outcomes",
    metadata,
    Column(
        "organisation_id", ForeignKey("organisations.id"), primary_key=True, autoincrement=False
    ),
    Column("entry_id", BigInteger, primary_key=True, autoincrement=False),
    Column("day", Date, primary_key=True),
    Column("list_id", BigInteger, nullable=False),
    Column("matches", BigInteger, nullable=False),
    Column("outcomes", JSON, nullable=False),  # {"removed": 3, ...}
    Column("removal_seconds", JSON, nullable=False),  # at most 100 samples
    Column("platforms", JSON, nullable=True),  # only if the partner's operator allows
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index("ix_remote_outcomes_list_id", "list_id"),
)

# Staff of an organisation, who use the console: a login, an Argon2 password hash, a role
# (viewer < analyst < admin) and an optional TOTP second factor. ``failed_logins`` and
# ``locked_until`` carry the back-off after wrong passwords across workers and replicas;
# ``totp_step`` is the last time step accepted, so a code is never accepted twice.
users = Table(
    "users",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("organisation_id", ForeignKey("organisations.id"), nullable=False),
    Column("login", String(64), nullable=False, unique=True),
    Column("name", String(128), nullable=False, server_default=""),
    Column("role", String(16), nullable=False),
    Column("password_hash", String(256), nullable=False),
    Column("must_change_password", Boolean, nullable=False, server_default=false()),
    Column("totp_secret", String(64), nullable=True),
    Column("totp_step", BigInteger, nullable=True),
    Column("locale", String(16), nullable=True),
    Column("timezone", String(64), nullable=True),
    Column("failed_logins", Integer, nullable=False, server_default="0"),
    Column("locked_until", DateTime(timezone=True), nullable=True),
    Column("disabled_at", DateTime(timezone=True), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("created_by", String(128), nullable=False),
    Column("last_login_at", DateTime(timezone=True), nullable=True),
)

# A console session: only the SHA-256 of its cookie is stored. ``stage`` is ``password`` while
# the second factor is awaited, ``full`` once signed in. Idle and absolute expiry are checked
# against ``seen_at`` and ``created_at`` on every request.
console_sessions = Table(
    "console_sessions",
    metadata,
    Column("id", LargeBinary(32), primary_key=True),
    Column("user_id", ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("stage", String(16), nullable=False),
    Column("csrf", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("seen_at", DateTime(timezone=True), nullable=False),
    Index("ix_console_sessions_user_id", "user_id"),
)

# A hash-set file uploaded in the console, held (in chunks, across replicas) between its
# validation report and the analyst's confirmation, then deleted. Hash sets only: media never.
staged_uploads = Table(
    "staged_uploads",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("user_id", ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("list_id", ForeignKey("lists.id", ondelete="CASCADE"), nullable=False),
    Column("filename", String(256), nullable=False, server_default=""),
    Column("size", BigInteger, nullable=False, server_default="0"),
    Column("report", JSON, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

staged_chunks = Table(
    "staged_chunks",
    metadata,
    Column(
        "upload_id",
        ForeignKey("staged_uploads.id", ondelete="CASCADE"),
        primary_key=True,
        autoincrement=False,
    ),
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("data", LargeBinary, nullable=False),
)

# The console's audit filters: by person, by action, by date, newest first.
Index("ix_audit_actor_id", audit.c.actor, audit.c.id)
Index("ix_audit_action_id", audit.c.action, audit.c.id)
Index("ix_audit_at", audit.c.at)
