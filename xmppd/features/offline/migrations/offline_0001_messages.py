"""Offline messages (XEP-0160).

Revision ID: offline_0001
Revises:
Create Date: 2025-01-02

Frozen in time: every type and constraint name is spelled out here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "offline_0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("offline",)
depends_on: str | Sequence[str] | None = "core_0001"

_TABLE_KWARGS: dict[str, Any] = {
    f"{prefix}_{key}": value
    for prefix in ("mysql", "mariadb")
    for key, value in (("engine", "InnoDB"), ("charset", "utf8mb4"), ("collate", "utf8mb4_bin"))
}


def _id() -> sa.types.TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


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
