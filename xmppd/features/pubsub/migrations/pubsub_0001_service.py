"""PubSub service nodes, items, affiliations and subscriptions (XEP-0060).

Revision ID: pubsub_0001
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

revision: str = "pubsub_0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("pubsub",)
depends_on: str | Sequence[str] | None = "core_0001"


def upgrade() -> None:
    op.create_table(
        "pubsub_nodes",
        sa.Column("id", id_type(), autoincrement=True, nullable=False),
        sa.Column("node", sa.String(191), nullable=False),
        sa.Column("config", sa.Text(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pubsub_nodes")),
        sa.UniqueConstraint("node", name=op.f("uq_pubsub_nodes_node")),
        **_TABLE_KWARGS,
    )
    op.create_table(
        "pubsub_items",
        sa.Column("node_id", id_type(), autoincrement=False, nullable=False),
        sa.Column("item_id", sa.String(191), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("publisher", sa.String(191), nullable=False),
        sa.Column("published_at", utc_datetime(), nullable=False),
        sa.Column("payload", sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb"), nullable=False),
        sa.PrimaryKeyConstraint("node_id", "item_id", name=op.f("pk_pubsub_items")),
        sa.ForeignKeyConstraint(["node_id"], ["pubsub_nodes.id"], name=op.f("fk_pubsub_items_node_id_pubsub_nodes"), ondelete="CASCADE"),
        **_TABLE_KWARGS,
    )
    op.create_index("ix_pubsub_items_node_seq", "pubsub_items", ["node_id", "seq"])
    op.create_table(
        "pubsub_affiliations",
        sa.Column("node_id", id_type(), autoincrement=False, nullable=False),
        sa.Column("jid", sa.String(191), nullable=False),
        sa.Column("affiliation", sa.String(16), nullable=False),
        sa.PrimaryKeyConstraint("node_id", "jid", name=op.f("pk_pubsub_affiliations")),
        sa.ForeignKeyConstraint(["node_id"], ["pubsub_nodes.id"], name=op.f("fk_pubsub_affiliations_node_id_pubsub_nodes"), ondelete="CASCADE"),
        **_TABLE_KWARGS,
    )
    op.create_index("ix_pubsub_affiliations_jid", "pubsub_affiliations", ["jid"])
    op.create_table(
        "pubsub_subscriptions",
        sa.Column("node_id", id_type(), autoincrement=False, nullable=False),
        sa.Column("jid", sa.String(191), nullable=False),
        sa.Column("bare", sa.String(191), nullable=False),
        sa.Column("subid", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("node_id", "jid", name=op.f("pk_pubsub_subscriptions")),
        sa.ForeignKeyConstraint(["node_id"], ["pubsub_nodes.id"], name=op.f("fk_pubsub_subscriptions_node_id_pubsub_nodes"), ondelete="CASCADE"),
        **_TABLE_KWARGS,
    )
    op.create_index("ix_pubsub_subscriptions_bare", "pubsub_subscriptions", ["bare"])


def downgrade() -> None:
    op.drop_index("ix_pubsub_subscriptions_bare", table_name="pubsub_subscriptions")
    op.drop_table("pubsub_subscriptions")
    op.drop_index("ix_pubsub_affiliations_jid", table_name="pubsub_affiliations")
    op.drop_table("pubsub_affiliations")
    op.drop_index("ix_pubsub_items_node_seq", table_name="pubsub_items")
    op.drop_table("pubsub_items")
    op.drop_table("pubsub_nodes")
