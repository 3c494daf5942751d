"""outcomes sent back to a list's origin over the exchange

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01

A subscriber reports, per mirrored entry and day, what its platforms did (totals, replaced
whole by each report); the origin keeps them per partner organisation for the list's owner.
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "remote_outcomes",
        sa.Column("organisation_id", _ID, autoincrement=False, nullable=False),
        sa.Column("entry_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("list_id", sa.BigInteger(), nullable=False),
        sa.Column("matches", sa.BigInteger(), nullable=False),
        sa.Column("outcomes", sa.JSON(), nullable=False),
        sa.Column("removal_seconds", sa.JSON(), nullable=False),
        sa.Column("platforms", sa.JSON(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["organisation_id"],
            ["organisations.id"],
            name=op.f("fk_remote_outcomes_organisation_id_organisations"),
        ),
        sa.PrimaryKeyConstraint(
            "organisation_id", "entry_id", "day", name=op.f("pk_remote_outcomes")
        ),
    )
    with op.batch_alter_table("remote_outcomes", schema=None) as batch_op:
        batch_op.create_index("ix_remote_outcomes_list_id", ["list_id"], unique=False)
    with op.batch_alter_table("peers", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("outcomes_sent_at", sa.DateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("peers", schema=None) as batch_op:
        batch_op.drop_column("outcomes_sent_at")
    op.drop_table("remote_outcomes")
