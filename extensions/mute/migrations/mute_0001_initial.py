"""Group mute: mutes (room or platform), mute-all per room, and the audit log.

Revision ID: mute_0001
Revises:
Create Date: 2025-01-01

Frozen in time: every constraint name is spelled out here; shared column types come from the
append-only ``xmppd.storage.migrations.ddl``.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from xmppd.storage.migrations.ddl import TABLE_KWARGS as _TABLE_KWARGS
from xmppd.storage.migrations.ddl import id_type as _id
from xmppd.storage.migrations.ddl import utc_datetime as _utc_datetime

revision: str = "mute_0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("mute",)
depends_on: str | Sequence[str] | None = "core_0001"


def upgrade() -> None:
    op.create_table(
        "mute_mutes",
        sa.Column("room", sa.String(191), nullable=False),
        sa.Column("jid", sa.String(191), nullable=False),
        sa.Column("until", _utc_datetime(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("actor", sa.String(191), nullable=False),
        sa.Column("created_at", _utc_datetime(), nullable=False),
        sa.Column("source", sa.String(8), nullable=False),
        sa.PrimaryKeyConstraint("room", "jid", name=op.f("pk_mute_mutes")),
        sa.CheckConstraint("source IN ('mute', 'voice')", name=op.f("ck_mute_mutes_source_known")),
        **_TABLE_KWARGS,
    )
    op.create_index(op.f("ix_mute_mutes_jid"), "mute_mutes", ["jid"])
    op.create_table(
        "mute_rooms",
        sa.Column("room", sa.String(191), nullable=False),
        sa.Column("actor", sa.String(191), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("since", _utc_datetime(), nullable=False),
        sa.PrimaryKeyConstraint("room", name=op.f("pk_mute_rooms")),
        **_TABLE_KWARGS,
    )
    op.create_table(
        "mute_audit",
        sa.Column("id", _id(), autoincrement=True, nullable=False),
        sa.Column("at", _utc_datetime(), nullable=False),
        sa.Column("actor", sa.String(191), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("room", sa.String(191), nullable=False),
        sa.Column("target", sa.String(191), nullable=True),
        sa.Column("seconds", sa.BigInteger(), nullable=True),
        sa.Column("until", _utc_datetime(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mute_audit")),
        sa.CheckConstraint(
            "action IN ('mute', 'unmute', 'expire', 'mute-all', 'unmute-all')",
            name=op.f("ck_mute_audit_action_known"),
        ),
        sqlite_autoincrement=True,
        **_TABLE_KWARGS,
    )
    op.create_index(op.f("ix_mute_audit_room_id"), "mute_audit", ["room", "id"])
    op.create_index(op.f("ix_mute_audit_target_id"), "mute_audit", ["target", "id"])


def downgrade() -> None:
    op.drop_table("mute_audit")
    op.drop_table("mute_rooms")
    op.drop_index(op.f("ix_mute_mutes_jid"), table_name="mute_mutes")
    op.drop_table("mute_mutes")
