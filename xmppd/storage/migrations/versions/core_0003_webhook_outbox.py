"""Core: the webhook outbox (events written in the transaction of the change they report).

Revision ID: core_0003
Revises: core_0002
Create Date: 2026-12-07

Frozen in time: every constraint name is spelled out here; shared column types come from the
append-only ``xmppd.storage.migrations.ddl``.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from xmppd.storage.migrations.ddl import TABLE_KWARGS as _TABLE_KWARGS
from xmppd.storage.migrations.ddl import id_type as _id_type
from xmppd.storage.migrations.ddl import utc_datetime as _utc_datetime

revision: str = "core_0003"
down_revision: str | Sequence[str] | None = "core_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "webhook_outbox",
        sa.Column("id", _id_type(), autoincrement=True, nullable=False),
        sa.Column("event_id", sa.String(32), nullable=False),
        sa.Column("event", sa.String(64), nullable=False),
        sa.Column("subject", sa.String(191), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", _utc_datetime(), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("next_at", _utc_datetime(), nullable=False),
        sa.Column("claim", sa.String(32), nullable=True),
        sa.Column("claimed_until", _utc_datetime(), nullable=True),
        sa.Column("dead_at", _utc_datetime(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_outbox")),
        sa.UniqueConstraint("event_id", name=op.f("uq_webhook_outbox_event_id")),
        sqlite_autoincrement=True,
        **_TABLE_KWARGS,
    )
    op.create_index(op.f("ix_webhook_outbox_subject_id"), "webhook_outbox", ["subject", "id"])
    op.create_index(op.f("ix_webhook_outbox_dead_at_next_at"), "webhook_outbox", ["dead_at", "next_at"])
    op.create_index(op.f("ix_webhook_outbox_claim"), "webhook_outbox", ["claim"])


def downgrade() -> None:
    op.drop_table("webhook_outbox")
