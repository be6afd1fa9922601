"""Blocklists (XEP-0191).

Revision ID: blocking_0001
Revises:
Create Date: 2025-01-02

Frozen in time: every constraint name is spelled out here; shared column types come from the
append-only ``xmppd.storage.migrations.ddl``.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from xmppd.storage.migrations.ddl import TABLE_KWARGS as _TABLE_KWARGS

revision: str = "blocking_0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("blocking",)
depends_on: str | Sequence[str] | None = "core_0001"


def upgrade() -> None:
    op.create_table(
        "blocklist",
        sa.Column("account_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=False, nullable=False),
        sa.Column("jid", sa.String(191), nullable=False),
        sa.PrimaryKeyConstraint("account_id", "jid", name=op.f("pk_blocklist")),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_blocklist_account_id_accounts"), ondelete="CASCADE"
        ),
        **_TABLE_KWARGS,
    )


def downgrade() -> None:
    op.drop_table("blocklist")
