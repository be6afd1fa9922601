"""Red packets: wallets, the append-only ledger, packets and their precomputed shares.

Revision ID: redpacket_0001
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

revision: str = "redpacket_0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("redpacket",)
depends_on: str | Sequence[str] | None = "core_0001"


def upgrade() -> None:
    op.create_table(
        "redpacket_wallets",
        sa.Column("owner", sa.String(191), nullable=False),
        sa.Column("balance", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", _utc_datetime(), nullable=False),
        sa.PrimaryKeyConstraint("owner", name=op.f("pk_redpacket_wallets")),
        sa.CheckConstraint("balance >= 0", name=op.f("ck_redpacket_wallets_balance_non_negative")),
        **_TABLE_KWARGS,
    )
    op.create_table(
        "redpacket_packets",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("sender", sa.String(191), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("total", sa.BigInteger(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("greeting", sa.Text(), nullable=False),
        sa.Column("target", sa.String(191), nullable=False),
        sa.Column("is_room", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("exclusive_to", sa.String(191), nullable=True),
        sa.Column("client_id", sa.String(64), nullable=False),
        sa.Column("lang", sa.String(35), nullable=False),
        sa.Column("created_at", _utc_datetime(), nullable=False),
        sa.Column("expires_at", _utc_datetime(), nullable=False),
        sa.Column("status", sa.String(8), nullable=False),
        sa.Column("remaining_count", sa.Integer(), nullable=False),
        sa.Column("remaining_amount", sa.BigInteger(), nullable=False),
        sa.Column("refunded", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("refund_amount", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("finished_at", _utc_datetime(), nullable=True),
        sa.Column("best_luck", sa.String(191), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_redpacket_packets")),
        sa.UniqueConstraint("sender", "client_id", name=op.f("uq_redpacket_packets_sender_client_id")),
        sa.CheckConstraint("total > 0", name=op.f("ck_redpacket_packets_total_positive")),
        sa.CheckConstraint("count > 0", name=op.f("ck_redpacket_packets_count_positive")),
        sa.CheckConstraint(
            "remaining_count >= 0 AND remaining_count <= count",
            name=op.f("ck_redpacket_packets_remaining_count_range"),
        ),
        sa.CheckConstraint(
            "remaining_amount >= 0 AND remaining_amount <= total",
            name=op.f("ck_redpacket_packets_remaining_amount_range"),
        ),
        sa.CheckConstraint("kind IN ('lucky', 'equal')", name=op.f("ck_redpacket_packets_kind_known")),
        **_TABLE_KWARGS,
    )
    op.create_index(
        op.f("ix_redpacket_packets_refunded_expires_at"),
        "redpacket_packets",
        ["refunded", "expires_at"],
    )
    op.create_table(
        "redpacket_shares",
        sa.Column("packet_id", sa.String(32), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("grabbed_by", sa.String(191), nullable=True),
        sa.Column("grabbed_at", _utc_datetime(), nullable=True),
        sa.PrimaryKeyConstraint("packet_id", "seq", name=op.f("pk_redpacket_shares")),
        sa.UniqueConstraint("packet_id", "grabbed_by", name=op.f("uq_redpacket_shares_packet_id_grabbed_by")),
        sa.ForeignKeyConstraint(
            ["packet_id"], ["redpacket_packets.id"], name=op.f("fk_redpacket_shares_packet_id_redpacket_packets")
        ),
        sa.CheckConstraint("amount > 0", name=op.f("ck_redpacket_shares_amount_positive")),
        **_TABLE_KWARGS,
    )
    op.create_index(op.f("ix_redpacket_shares_grabbed_by"), "redpacket_shares", ["grabbed_by"])
    op.create_table(
        "redpacket_ledger",
        sa.Column("id", _id(), autoincrement=True, nullable=False),
        sa.Column("owner", sa.String(191), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("balance_after", sa.BigInteger(), nullable=False),
        sa.Column("packet_id", sa.String(32), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("created_at", _utc_datetime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_redpacket_ledger")),
        sa.ForeignKeyConstraint(
            ["owner"], ["redpacket_wallets.owner"], name=op.f("fk_redpacket_ledger_owner_redpacket_wallets")
        ),
        sa.ForeignKeyConstraint(
            ["packet_id"], ["redpacket_packets.id"], name=op.f("fk_redpacket_ledger_packet_id_redpacket_packets")
        ),
        sa.CheckConstraint("amount <> 0", name=op.f("ck_redpacket_ledger_amount_non_zero")),
        sa.CheckConstraint("balance_after >= 0", name=op.f("ck_redpacket_ledger_balance_after_non_negative")),
        sa.CheckConstraint(
            "kind IN ('topup', 'send_debit', 'grab_credit', 'refund', 'adjust')",
            name=op.f("ck_redpacket_ledger_kind_known"),
        ),
        sqlite_autoincrement=True,
        **_TABLE_KWARGS,
    )
    op.create_index(op.f("ix_redpacket_ledger_owner_id"), "redpacket_ledger", ["owner", "id"])
    op.create_index(op.f("ix_redpacket_ledger_packet_id"), "redpacket_ledger", ["packet_id"])


def downgrade() -> None:
    op.drop_table("redpacket_ledger")
    op.drop_table("redpacket_shares")
    op.drop_table("redpacket_packets")
    op.drop_table("redpacket_wallets")
