"""Roster: items with subscription state, groups, and the per-account roster version.

Revision ID: roster_0001
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
from xmppd.storage.migrations.ddl import id_type as _id

revision: str = "roster_0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("roster",)
depends_on: str | Sequence[str] | None = "core_0001"


def upgrade() -> None:
    op.create_table(
        "roster_items",
        sa.Column("account_id", _id(), autoincrement=False, nullable=False),
        sa.Column("contact", sa.String(191), nullable=False),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("subscription", sa.String(4), server_default="none", nullable=False),
        sa.Column("ask", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("approved", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("pending_in", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("pending_stanza", sa.Text(), nullable=True),
        sa.Column("listed", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("version", sa.BigInteger(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("account_id", "contact", name=op.f("pk_roster_items")),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_roster_items_account_id_accounts"), ondelete="CASCADE"
        ),
        **_TABLE_KWARGS,
    )
    op.create_index(op.f("ix_roster_items_account_id_version"), "roster_items", ["account_id", "version"])
    op.create_table(
        "roster_groups",
        sa.Column("account_id", _id(), autoincrement=False, nullable=False),
        sa.Column("contact", sa.String(191), nullable=False),
        sa.Column("name", sa.String(191), nullable=False),
        sa.PrimaryKeyConstraint("account_id", "contact", "name", name=op.f("pk_roster_groups")),
        sa.ForeignKeyConstraint(
            ["account_id", "contact"],
            ["roster_items.account_id", "roster_items.contact"],
            name=op.f("fk_roster_groups_account_id_contact_roster_items"),
            ondelete="CASCADE",
        ),
        **_TABLE_KWARGS,
    )
    op.create_table(
        "roster_versions",
        sa.Column("account_id", _id(), autoincrement=False, nullable=False),
        sa.Column("version", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("floor", sa.BigInteger(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_roster_versions")),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_roster_versions_account_id_accounts"), ondelete="CASCADE"
        ),
        **_TABLE_KWARGS,
    )


def downgrade() -> None:
    op.drop_table("roster_versions")
    op.drop_table("roster_groups")
    op.drop_index(op.f("ix_roster_items_account_id_version"), table_name="roster_items")
    op.drop_table("roster_items")
