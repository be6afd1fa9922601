"""Offline messages (XEP-0160).

Revision ID: offline_0001
Revises:
Create Date: 2025-01-02

Frozen in time: every constraint name is spelled out here; shared column types come from the
append-only ``xmppd.storage.migrations.ddl``.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

from xmppd.storage.migrations.ddl import TABLE_KWARGS as _TABLE_KWARGS
from xmppd.storage.migrations.ddl import id_type as _id

revision: str = "offline_0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("offline",)
depends_on: str | Sequence[str] | None = "core_0001"


def upgrade() -> None:
    op.create_table(
        "offline_messages",
        sa.Column("id", _id(), autoincrement=True, nullable=False),
        sa.Column("account_id", _id(), autoincrement=False, nullable=False),
        sa.Column("created_at", sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb"), nullable=False),
        sa.Column("stanza", sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb"), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_offline_messages")),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_offline_messages_account_id_accounts"), ondelete="CASCADE"
        ),
        sqlite_autoincrement=True,
        **_TABLE_KWARGS,
    )
    op.create_index(op.f("ix_offline_messages_account_id_id"), "offline_messages", ["account_id", "id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_offline_messages_account_id_id"), table_name="offline_messages")
    op.drop_table("offline_messages")
