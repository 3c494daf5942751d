"""video entries: a vPDQ entry's frame hashes, carried with the entry

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01

A listed video is one entry (algorithm ``vpdq``, its hash the SHA-256 of its frames) whose
frames (number, timestamp, quality, PDQ) are packed in ``frames``: the change feed carries it
as one entry and a withdrawal withdraws every frame at once.
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("entries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("frames", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("entries", schema=None) as batch_op:
        batch_op.drop_column("frames")
