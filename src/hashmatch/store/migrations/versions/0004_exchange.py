"""exchange between instances: TLP labels, mirrors, peers, leases

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01

Lists get a TLP label (AMBER unless set) and, for mirrors of a peer's list, their origin.
Entries get the class of their withdrawal and, when mirrored, their id at the origin. Shares
remember the change that recorded their acceptance, where a peer feed sends the list whole;
shares accepted before this revision take their list's latest change.
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("lists", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("tlp", sa.String(length=16), server_default="AMBER", nullable=False)
        )
        batch_op.add_column(sa.Column("origin", sa.JSON(), nullable=True))
    with op.batch_alter_table("entries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("withdrawal_class", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("origin_id", sa.BigInteger(), nullable=True))
        batch_op.create_index("uq_entries_list_origin_id", ["list_id", "origin_id"], unique=True)
        batch_op.create_index("ix_entries_list_id_id", ["list_id", "id"], unique=False)
    with op.batch_alter_table("list_shares", schema=None) as batch_op:
        batch_op.add_column(sa.Column("accepted_change", sa.BigInteger(), nullable=True))
    op.execute(
        "UPDATE list_shares SET accepted_change = (SELECT max(changes.cursor) FROM changes "
        "WHERE changes.list_id = list_shares.list_id) WHERE accepted_at IS NOT NULL"
    )
    op.create_table(
        "peers",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("url", sa.String(length=512), nullable=False),
        sa.Column("secret", sa.Text(), nullable=False),
        sa.Column("organisation_id", _ID, nullable=False),
        sa.Column("lists", sa.JSON(), nullable=True),
        sa.Column("paused", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("cursor", sa.String(length=64), server_default="", nullable=False),
        sa.Column("remote_instance", sa.String(length=128), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_success_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_change_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("failures", sa.Integer(), server_default="0", nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("verified_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("verify_report", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(
            ["organisation_id"],
            ["organisations.id"],
            name=op.f("fk_peers_organisation_id_organisations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_peers")),
        sa.UniqueConstraint("name", name=op.f("uq_peers_name")),
    )
    op.create_table(
        "leases",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("holder", sa.String(length=128), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_leases")),
    )
    op.create_table(
        "instance",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_instance")),
    )


def downgrade() -> None:
    op.drop_table("instance")
    op.drop_table("leases")
    op.drop_table("peers")
    with op.batch_alter_table("list_shares", schema=None) as batch_op:
        batch_op.drop_column("accepted_change")
    with op.batch_alter_table("entries", schema=None) as batch_op:
        batch_op.drop_index("ix_entries_list_id_id")
        batch_op.drop_index("uq_entries_list_origin_id")
        batch_op.drop_column("origin_id")
        batch_op.drop_column("withdrawal_class")
    with op.batch_alter_table("lists", schema=None) as batch_op:
        batch_op.drop_column("origin")
        batch_op.drop_column("tlp")
