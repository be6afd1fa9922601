"""Red packets: idempotency keys of wallet moves (the REST API's Idempotency-Key).

Revision ID: redpacket_0003
Revises: redpacket_0002
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from xmppd.storage.migrations.ddl import TABLE_KWARGS as _TABLE_KWARGS
from xmppd.storage.migrations.ddl import id_type as _id
from xmppd.storage.migrations.ddl import utc_datetime as _utc_datetime

revision: str = "redpacket_0003"
down_revision: str | Sequence[str] | None = "redpacket_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "redpacket_idempotency",
        sa.Column("key", sa.String(191), nullable=False),
        sa.Column("owner", sa.String(191), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("ledger_id", _id(), nullable=False),
        sa.Column("created_at", _utc_datetime(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_redpacket_idempotency")),
        sa.ForeignKeyConstraint(
            ["ledger_id"], ["redpacket_ledger.id"], name=op.f("fk_redpacket_idempotency_ledger_id_redpacket_ledger")
        ),
        **_TABLE_KWARGS,
    )


def downgrade() -> None:
    op.drop_table("redpacket_idempotency")
