"""sharing by consent, tombstone lookups, key suspension, audit details

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01

Shares become offers: ``accepted_at`` is set when the receiving organisation accepts, and
``trusted`` when it lets an accepted allow-list suppress its own block lists. Shares that
existed before this revision were never consented to, so they start as open offers: the
receiving organisation must accept them before they affect its matches again.
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("list_shares", schema=None) as batch_op:
        batch_op.add_column(sa.Column("offered_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(
            sa.Column("offered_by", sa.String(length=128), server_default="", nullable=False)
        )
        batch_op.add_column(sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("accepted_by", sa.String(length=128), nullable=True))
        batch_op.add_column(
            sa.Column("trusted", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
    with op.batch_alter_table("entries", schema=None) as batch_op:
        # Tombstones are looked up by hash at every import: a withdrawn hash must not return.
        batch_op.create_index(
            "ix_entries_list_algorithm_hash", ["list_id", "algorithm", "hash"], unique=False
        )
    with op.batch_alter_table("audit", schema=None) as batch_op:
        batch_op.add_column(sa.Column("details", sa.JSON(), nullable=True))
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("suspended_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("suspended_reason", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("reinstated_at", sa.DateTime(timezone=True), nullable=True))
    # Organisation names are case-insensitive from now on: fold the ones that do not collide.
    op.execute(
        "UPDATE organisations SET name = lower(name) WHERE name <> lower(name) "
        "AND lower(name) NOT IN (SELECT name FROM organisations)"
    )


def downgrade() -> None:
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_column("reinstated_at")
        batch_op.drop_column("suspended_reason")
        batch_op.drop_column("suspended_at")
    with op.batch_alter_table("audit", schema=None) as batch_op:
        batch_op.drop_column("details")
    with op.batch_alter_table("entries", schema=None) as batch_op:
        batch_op.drop_index("ix_entries_list_algorithm_hash")
    with op.batch_alter_table("list_shares", schema=None) as batch_op:
        batch_op.drop_column("trusted")
        batch_op.drop_column("accepted_by")
        batch_op.drop_column("accepted_at")
        batch_op.drop_column("offered_by")
        batch_op.drop_column("offered_at")
