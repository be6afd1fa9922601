"""Group mute: timed bans, the platform keyword list, slow-mode clocks and appeals, in storage.

Revision ID: mute_0002
Revises: mute_0001
Create Date: 2026-12-07

Frozen in time: every constraint name is spelled out here; shared column types come from the
append-only ``xmppd.storage.migrations.ddl``.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from xmppd.storage.migrations.ddl import TABLE_KWARGS as _TABLE_KWARGS
from xmppd.storage.migrations.ddl import utc_datetime as _utc_datetime

revision: str = "mute_0002"
down_revision: str | Sequence[str] | None = "mute_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "mute_bans",
        sa.Column("room", sa.String(191), nullable=False),
        sa.Column("jid", sa.String(191), nullable=False),
        sa.Column("until", _utc_datetime(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("actor", sa.String(191), nullable=False),
        sa.Column("created_at", _utc_datetime(), nullable=False),
        sa.PrimaryKeyConstraint("room", "jid", name=op.f("pk_mute_bans")),
        **_TABLE_KWARGS,
    )
    op.create_index(op.f("ix_mute_bans_until"), "mute_bans", ["until"])
    op.create_table(
        "mute_keywords",
        sa.Column("word", sa.String(191), nullable=False),
        sa.Column("action", sa.String(8), nullable=False),
        sa.Column("minutes", sa.Integer(), nullable=False),
        sa.Column("actor", sa.String(191), nullable=False),
        sa.Column("created_at", _utc_datetime(), nullable=False),
        sa.PrimaryKeyConstraint("word", name=op.f("pk_mute_keywords")),
        sa.CheckConstraint("action IN ('block', 'mask', 'mute')", name=op.f("ck_mute_keywords_action_known")),
        **_TABLE_KWARGS,
    )
    op.create_table(
        "mute_slow",
        sa.Column("room", sa.String(191), nullable=False),
        sa.Column("jid", sa.String(191), nullable=False),
        sa.Column("at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("room", "jid", name=op.f("pk_mute_slow")),
        **_TABLE_KWARGS,
    )
    op.create_table(
        "mute_appeals",
        sa.Column("jid", sa.String(191), nullable=False),
        sa.Column("mute_since_ms", sa.BigInteger(), nullable=False),
        sa.Column("ticket", sa.BigInteger(), nullable=True),
        sa.Column("at", _utc_datetime(), nullable=False),
        sa.PrimaryKeyConstraint("jid", "mute_since_ms", name=op.f("pk_mute_appeals")),
        **_TABLE_KWARGS,
    )


def downgrade() -> None:
    op.drop_table("mute_appeals")
    op.drop_table("mute_slow")
    op.drop_table("mute_keywords")
    op.drop_index(op.f("ix_mute_bans_until"), table_name="mute_bans")
    op.drop_table("mute_bans")
