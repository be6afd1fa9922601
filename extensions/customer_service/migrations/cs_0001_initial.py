"""Customer service: queues, members, sessions (with the waiting line), transcripts, tickets.

Revision ID: cs_0001
Revises:
Create Date: 2026-11-27

Frozen in time: every constraint name is spelled out here; shared column types come from the
append-only ``xmppd.storage.migrations.ddl``.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from xmppd.storage.migrations.ddl import TABLE_KWARGS as _TABLE_KWARGS
from xmppd.storage.migrations.ddl import id_type as _id
from xmppd.storage.migrations.ddl import utc_datetime as _utc

revision: str = "cs_0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("cs",)
depends_on: str | Sequence[str] | None = "core_0001"


def upgrade() -> None:
    op.create_table(
        "cs_queues",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("display_name", sa.String(191), nullable=False),
        sa.Column("welcome", sa.Text(), nullable=False),
        sa.Column("offline_text", sa.Text(), nullable=False),
        sa.Column("strategy", sa.String(16), nullable=False),
        sa.Column("capacity", sa.Integer(), nullable=False),
        sa.Column("idle_timeout", sa.Integer(), nullable=False),
        sa.Column("offer_timeout", sa.Integer(), nullable=False),
        sa.Column("max_misses", sa.Integer(), nullable=False),
        sa.Column("hours", sa.String(191), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_cs_queues"),
        sa.CheckConstraint("capacity >= 1", name="ck_cs_queues_capacity_positive"),
        **_TABLE_KWARGS,
    )
    op.create_table(
        "cs_members",
        sa.Column("queue", sa.String(64), nullable=False),
        sa.Column("jid", sa.String(191), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("nick", sa.String(191), nullable=False),
        sa.PrimaryKeyConstraint("queue", "jid", name="pk_cs_members"),
        sa.ForeignKeyConstraint(["queue"], ["cs_queues.name"], name="fk_cs_members_queue_cs_queues", ondelete="CASCADE"),
        **_TABLE_KWARGS,
    )
    op.create_table(
        "cs_sessions",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("queue", sa.String(64), nullable=False),
        sa.Column("entry", sa.String(64), nullable=False),
        sa.Column("visitor", sa.String(191), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("line_seq", sa.BigInteger(), nullable=False),
        sa.Column("agent", sa.String(191), nullable=True),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("last_visitor_at", _utc(), nullable=False),
        sa.Column("assigned_at", _utc(), nullable=True),
        sa.Column("closed_at", _utc(), nullable=True),
        sa.Column("close_reason", sa.String(32), nullable=True),
        sa.Column("rating", sa.SmallInteger(), nullable=True),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_cs_sessions"),
        sa.CheckConstraint("rating IS NULL OR (rating >= 1 AND rating <= 5)", name="ck_cs_sessions_rating_range"),
        **_TABLE_KWARGS,
    )
    op.create_index("ix_cs_sessions_queue_visitor", "cs_sessions", ["queue", "visitor"])
    op.create_index("ix_cs_sessions_state", "cs_sessions", ["state"])
    op.create_table(
        "cs_transcripts",
        sa.Column("id", _id(), autoincrement=True, nullable=False),
        sa.Column("session_id", sa.String(32), nullable=False),
        sa.Column("at", _utc(), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("nick", sa.String(191), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_cs_transcripts"),
        sa.ForeignKeyConstraint(["session_id"], ["cs_sessions.id"], name="fk_cs_transcripts_session_id_cs_sessions", ondelete="CASCADE"),
        sqlite_autoincrement=True,
        **_TABLE_KWARGS,
    )
    op.create_index("ix_cs_transcripts_session_id", "cs_transcripts", ["session_id"])
    op.create_table(
        "cs_tickets",
        sa.Column("id", _id(), autoincrement=True, nullable=False),
        sa.Column("queue", sa.String(64), nullable=False),
        sa.Column("visitor", sa.String(191), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_cs_tickets"),
        sqlite_autoincrement=True,
        **_TABLE_KWARGS,
    )
    op.create_index("ix_cs_tickets_queue", "cs_tickets", ["queue"])


def downgrade() -> None:
    op.drop_table("cs_tickets")
    op.drop_table("cs_transcripts")
    op.drop_table("cs_sessions")
    op.drop_table("cs_members")
    op.drop_table("cs_queues")
