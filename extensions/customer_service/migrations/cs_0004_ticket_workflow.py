"""Customer service: tickets as a workflow (state, assignee, closing) and agents' replies.

Revision ID: cs_0004
Revises: cs_0003
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from xmppd.storage.migrations.ddl import TABLE_KWARGS as _TABLE_KWARGS
from xmppd.storage.migrations.ddl import id_type as _id
from xmppd.storage.migrations.ddl import utc_datetime as _utc

revision: str = "cs_0004"
down_revision: str | Sequence[str] | None = "cs_0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("cs_tickets") as t:
        t.add_column(sa.Column("state", sa.String(16), nullable=False, server_default="open"))
        t.add_column(sa.Column("assignee", sa.String(191), nullable=True))
        t.add_column(sa.Column("closed_at", _utc(), nullable=True))
    op.create_table(
        "cs_ticket_replies",
        sa.Column("id", _id(), autoincrement=True, nullable=False),
        sa.Column("ticket_id", _id(), nullable=False),
        sa.Column("at", _utc(), nullable=False),
        sa.Column("agent", sa.String(191), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_cs_ticket_replies"),
        sa.ForeignKeyConstraint(["ticket_id"], ["cs_tickets.id"], name="fk_cs_ticket_replies_ticket_id_cs_tickets", ondelete="CASCADE"),
        sqlite_autoincrement=True,
        **_TABLE_KWARGS,
    )
    op.create_index("ix_cs_ticket_replies_ticket_id", "cs_ticket_replies", ["ticket_id"])


def downgrade() -> None:
    op.drop_index("ix_cs_ticket_replies_ticket_id", table_name="cs_ticket_replies")
    op.drop_table("cs_ticket_replies")
    with op.batch_alter_table("cs_tickets") as t:
        t.drop_column("closed_at")
        t.drop_column("assignee")
        t.drop_column("state")
