"""Private XML storage (XEP-0049).

Revision ID: private_0001
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

revision: str = "private_0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("private",)
depends_on: str | Sequence[str] | None = "core_0001"


def upgrade() -> None:
    op.create_table(
        "private_storage",
        sa.Column("account_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=False, nullable=False),
        sa.Column("namespace", sa.String(191), nullable=False),
        sa.Column("xml", sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb"), nullable=False),
        sa.PrimaryKeyConstraint("account_id", "namespace", name=op.f("pk_private_storage")),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_private_storage_account_id_accounts"), ondelete="CASCADE"
        ),
        **_TABLE_KWARGS,
    )


def downgrade() -> None:
    op.drop_table("private_storage")
