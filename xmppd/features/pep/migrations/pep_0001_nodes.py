"""PEP nodes and items (XEP-0163).

Revision ID: pep_0001
Revises:
Create Date: 2026-12-07

Frozen in time: every constraint name is spelled out here; shared column types come from the
append-only ``xmppd.storage.migrations.ddl``.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

from xmppd.storage.migrations.ddl import TABLE_KWARGS as _TABLE_KWARGS
from xmppd.storage.migrations.ddl import id_type, utc_datetime

revision: str = "pep_0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("pep",)
depends_on: str | Sequence[str] | None = "core_0001"


def upgrade() -> None:
    op.create_table(
        "pep_nodes",
        sa.Column("id", id_type(), autoincrement=True, nullable=False),
        sa.Column("account_id", id_type(), nullable=False),
        sa.Column("node", sa.String(191), nullable=False),
        sa.Column("config", sa.Text(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pep_nodes")),
        sa.UniqueConstraint("account_id", "node", name=op.f("uq_pep_nodes_account_id_node")),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], name=op.f("fk_pep_nodes_account_id_accounts"), ondelete="CASCADE"),
        **_TABLE_KWARGS,
    )
    op.create_table(
        "pep_items",
        sa.Column("node_id", id_type(), autoincrement=False, nullable=False),
        sa.Column("item_id", sa.String(191), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("publisher", sa.String(191), nullable=False),
        sa.Column("published_at", utc_datetime(), nullable=False),
        sa.Column("payload", sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb"), nullable=False),
        sa.PrimaryKeyConstraint("node_id", "item_id", name=op.f("pk_pep_items")),
        sa.ForeignKeyConstraint(["node_id"], ["pep_nodes.id"], name=op.f("fk_pep_items_node_id_pep_nodes"), ondelete="CASCADE"),
        **_TABLE_KWARGS,
    )
    op.create_index("ix_pep_items_node_seq", "pep_items", ["node_id", "seq"])


def downgrade() -> None:
    op.drop_index("ix_pep_items_node_seq", table_name="pep_items")
    op.drop_table("pep_items")
    op.drop_table("pep_nodes")
