"""Core: accounts and their SCRAM credentials.

Revision ID: core_0001
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

revision: str = "core_0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("core",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("id", _id(), autoincrement=True, nullable=False),
        sa.Column("username", sa.String(191), nullable=False),
        sa.Column("domain", sa.String(191), nullable=False),
        sa.Column("created_at", _utc_datetime(), nullable=False),
        sa.Column("disabled", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("disabled_reason", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_accounts")),
        sa.UniqueConstraint("domain", "username", name=op.f("uq_accounts_domain_username")),
        sqlite_autoincrement=True,  # never reuse an id (InnoDB doesn't either)
        **_TABLE_KWARGS,
    )
    op.create_table(
        "account_credentials",
        sa.Column("account_id", _id(), autoincrement=False, nullable=False),
        sa.Column("mechanism", sa.String(32), nullable=False),
        sa.Column("salt", sa.LargeBinary(), nullable=False),
        sa.Column("iterations", sa.Integer(), nullable=False),
        sa.Column("stored_key", sa.LargeBinary(), nullable=False),
        sa.Column("server_key", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("account_id", "mechanism", name=op.f("pk_account_credentials")),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_account_credentials_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.CheckConstraint(
            "iterations > 0", name=op.f("ck_account_credentials_iterations_positive")
        ),
        **_TABLE_KWARGS,
    )


def downgrade() -> None:
    op.drop_table("account_credentials")
    op.drop_table("accounts")
