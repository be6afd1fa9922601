"""MUC: persistent rooms, affiliations and MUC/Sub subscriptions.

Revision ID: muc_0001
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

revision: str = "muc_0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("muc",)
depends_on: str | Sequence[str] | None = "core_0001"


def upgrade() -> None:
    op.create_table(
        "muc_rooms",
        sa.Column("id", _id(), autoincrement=True, nullable=False),
        sa.Column("jid", sa.String(191), nullable=False),
        sa.Column("config", sa.Text(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("subject_nick", sa.String(1023), nullable=False),
        sa.Column("created_at", sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb"), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_muc_rooms")),
        sa.UniqueConstraint("jid", name=op.f("uq_muc_rooms_jid")),
        sqlite_autoincrement=True,
        **_TABLE_KWARGS,
    )
    for name, cols in (
        ("muc_affiliations", [
            sa.Column("affiliation", sa.String(16), nullable=False),
            sa.Column("nick", sa.String(1023), nullable=True),
            sa.Column("reason", sa.Text(), nullable=True),
        ]),
        ("muc_subscriptions", [
            sa.Column("nick", sa.String(1023), nullable=False),
            sa.Column("nodes", sa.Text(), nullable=False),
        ]),
    ):
        op.create_table(
            name,
            sa.Column("room_id", _id(), autoincrement=False, nullable=False),
            sa.Column("jid", sa.String(191), nullable=False),
            *cols,
            sa.PrimaryKeyConstraint("room_id", "jid", name=op.f(f"pk_{name}")),
            sa.ForeignKeyConstraint(["room_id"], ["muc_rooms.id"], name=op.f(f"fk_{name}_room_id_muc_rooms"), ondelete="CASCADE"),
            **_TABLE_KWARGS,
        )


def downgrade() -> None:
    op.drop_table("muc_subscriptions")
    op.drop_table("muc_affiliations")
    op.drop_table("muc_rooms")
