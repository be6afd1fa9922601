"""Customer service: skills (queues, agents, the chats that need them), the opening hours' time
zone and holidays.

Revision ID: cs_0003
Revises: cs_0002
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "cs_0003"
down_revision: str | Sequence[str] | None = "cs_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("cs_queues") as t:
        t.add_column(sa.Column("skills", sa.String(191), nullable=False, server_default=""))
        t.add_column(sa.Column("timezone", sa.String(64), nullable=False, server_default="UTC"))
        t.add_column(sa.Column("holidays", sa.String(1000), nullable=False, server_default=""))
    with op.batch_alter_table("cs_members") as t:
        t.add_column(sa.Column("skills", sa.String(191), nullable=False, server_default=""))
    with op.batch_alter_table("cs_sessions") as t:
        t.add_column(sa.Column("skills", sa.String(191), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("cs_sessions") as t:
        t.drop_column("skills")
    with op.batch_alter_table("cs_members") as t:
        t.drop_column("skills")
    with op.batch_alter_table("cs_queues") as t:
        t.drop_column("holidays")
        t.drop_column("timezone")
        t.drop_column("skills")
