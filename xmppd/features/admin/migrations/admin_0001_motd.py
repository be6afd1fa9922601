"""XEP-0133 admin: the message of the day and who has seen which version.

Revision ID: admin_0001
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

revision: str = "admin_0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("admin",)
depends_on: str | Sequence[str] | None = "core_0001"


def upgrade() -> None:
    op.create_table(
        "motd",
        sa.Column("domain", sa.String(191), nullable=False),
        sa.Column("body", sa.Text(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb"), nullable=False),
        sa.PrimaryKeyConstraint("domain", name="pk_motd"),
        sa.CheckConstraint("version > 0", name="ck_motd_version_positive"),
        **_TABLE_KWARGS,
    )
    op.create_table(
        "motd_seen",
        sa.Column("account_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=False, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("account_id", name="pk_motd_seen"),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name="fk_motd_seen_account_id_accounts", ondelete="CASCADE"
        ),
        **_TABLE_KWARGS,
    )


def downgrade() -> None:
    op.drop_table("motd_seen")
    op.drop_table("motd")
