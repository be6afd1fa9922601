"""Customer service: canned replies, shared per queue and personal.

Revision ID: cs_0005
Revises: cs_0004
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from xmppd.storage.migrations.ddl import TABLE_KWARGS as _TABLE_KWARGS

revision: str = "cs_0005"
down_revision: str | Sequence[str] | None = "cs_0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "cs_canned",
        sa.Column("queue", sa.String(64), nullable=False),
        sa.Column("owner", sa.String(191), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("queue", "owner", "name", name="pk_cs_canned"),
        sa.ForeignKeyConstraint(["queue"], ["cs_queues.name"], name="fk_cs_canned_queue_cs_queues", ondelete="CASCADE"),
        **_TABLE_KWARGS,
    )


def downgrade() -> None:
    op.drop_table("cs_canned")
