"""Offline messages carry their size, for the per-account byte quota (offline.max_bytes).

Revision ID: offline_0002
Revises: offline_0001
Create Date: 2026-12-06

Rows stored before this revision get their size from the stored text: its bytes on
MySQL/MariaDB (``LENGTH``) and on SQLite (``LENGTH`` of the text cast to a blob).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "offline_0002"
down_revision: str | Sequence[str] | None = "offline_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("offline_messages", sa.Column("size", sa.Integer(), nullable=False, server_default="0"))
    if op.get_bind().dialect.name == "sqlite":
        op.execute("UPDATE offline_messages SET size = LENGTH(CAST(stanza AS BLOB))")
    else:
        op.execute("UPDATE offline_messages SET size = LENGTH(stanza)")


def downgrade() -> None:
    with op.batch_alter_table("offline_messages") as batch:
        batch.drop_column("size")
