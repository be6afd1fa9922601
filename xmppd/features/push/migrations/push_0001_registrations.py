"""Push registrations (XEP-0357).

Revision ID: push_0001
Revises:
Create Date: 2025-01-03

Frozen in time: every constraint name is spelled out here; shared column types come from the
append-only ``xmppd.storage.migrations.ddl``.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from xmppd.storage.migrations.ddl import TABLE_KWARGS as _TABLE_KWARGS
from xmppd.storage.migrations.ddl import id_type as _id

revision: str = "push_0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("push",)
depends_on: str | Sequence[str] | None = "core_0001"


def upgrade() -> None:
    op.create_table(
        "push_registrations",
        sa.Column("id", _id(), autoincrement=True, nullable=False),
        sa.Column("account_id", _id(), autoincrement=False, nullable=False),
        sa.Column("service", sa.String(191), nullable=False),
        sa.Column("node", sa.String(191), nullable=False),
        sa.Column("options", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_push_registrations")),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_push_registrations_account_id_accounts"), ondelete="CASCADE"
        ),
        sa.UniqueConstraint("account_id", "service", "node", name=op.f("uq_push_registrations_account_id_service_node")),
        sqlite_autoincrement=True,
        **_TABLE_KWARGS,
    )


def downgrade() -> None:
    op.drop_table("push_registrations")
