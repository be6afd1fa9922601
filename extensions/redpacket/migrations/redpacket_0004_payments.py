"""Red packets: payment requests the app confirms (top-ups and withdrawals, docs/webhooks.md).

Revision ID: redpacket_0004
Revises: redpacket_0003
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

revision: str = "redpacket_0004"
down_revision: str | Sequence[str] | None = "redpacket_0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = "core_0003"


def upgrade() -> None:
    op.create_table(
        "redpacket_payments",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("owner", sa.String(191), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("client_id", sa.String(64), nullable=False),
        sa.Column("reference", sa.Text(), nullable=True),
        sa.Column("created_at", _utc_datetime(), nullable=False),
        sa.Column("settled_at", _utc_datetime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_redpacket_payments")),
        sa.UniqueConstraint("owner", "client_id", name=op.f("uq_redpacket_payments_owner_client_id")),
        sa.CheckConstraint("amount > 0", name=op.f("ck_redpacket_payments_amount_positive")),
        sa.CheckConstraint("kind IN ('topup', 'withdraw')", name=op.f("ck_redpacket_payments_kind_known")),
        sa.CheckConstraint(
            "status IN ('pending', 'confirmed', 'rejected')", name=op.f("ck_redpacket_payments_status_known")
        ),
        **_TABLE_KWARGS,
    )
    op.create_index(op.f("ix_redpacket_payments_status"), "redpacket_payments", ["status"])


def downgrade() -> None:
    op.drop_table("redpacket_payments")
