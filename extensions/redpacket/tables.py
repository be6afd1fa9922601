"""Red packets: the live SQLAlchemy tables (the migrations spell the same thing out, frozen)."""

from __future__ import annotations

import sqlalchemy as sa

from xmppd.storage.metadata import MYSQL_TABLE_KWARGS, UtcDateTime, id_type, indexed_string, metadata

# -- live tables (the migration spells the same thing out, frozen) ---------------------------

wallets = sa.Table(
    "redpacket_wallets",
    metadata,
    sa.Column("owner", indexed_string(), primary_key=True),
    sa.Column("balance", sa.BigInteger(), nullable=False),
    sa.Column("updated_at", UtcDateTime(), nullable=False),
    sa.CheckConstraint("balance >= 0", name="balance_non_negative"),
    **MYSQL_TABLE_KWARGS,
)

packets = sa.Table(
    "redpacket_packets",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("sender", indexed_string(), nullable=False),
    sa.Column("kind", sa.String(8), nullable=False),
    sa.Column("total", sa.BigInteger(), nullable=False),
    sa.Column("count", sa.Integer(), nullable=False),
    sa.Column("greeting", sa.Text(), nullable=False),
    sa.Column("target", indexed_string(), nullable=False),
    sa.Column("is_room", sa.Boolean(), server_default=sa.false(), nullable=False),
    sa.Column("exclusive_to", indexed_string(), nullable=True),
    sa.Column("client_id", sa.String(64), nullable=False),
    sa.Column("lang", sa.String(35), nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("expires_at", UtcDateTime(), nullable=False),
    sa.Column("status", sa.String(8), nullable=False),
    sa.Column("remaining_count", sa.Integer(), nullable=False),
    sa.Column("remaining_amount", sa.BigInteger(), nullable=False),
    sa.Column("refunded", sa.Boolean(), server_default=sa.false(), nullable=False),
    sa.Column("refund_amount", sa.BigInteger(), server_default="0", nullable=False),
    sa.Column("finished_at", UtcDateTime(), nullable=True),
    sa.Column("best_luck", indexed_string(), nullable=True),
    sa.UniqueConstraint("sender", "client_id"),
    sa.CheckConstraint("total > 0", name="total_positive"),
    sa.CheckConstraint("count > 0", name="count_positive"),
    sa.CheckConstraint("remaining_count >= 0 AND remaining_count <= count", name="remaining_count_range"),
    sa.CheckConstraint("remaining_amount >= 0 AND remaining_amount <= total", name="remaining_amount_range"),
    sa.CheckConstraint("kind IN ('lucky', 'equal')", name="kind_known"),
    sa.Index(None, "refunded", "expires_at"),
    **MYSQL_TABLE_KWARGS,
)

shares = sa.Table(
    "redpacket_shares",
    metadata,
    sa.Column("packet_id", sa.String(32), sa.ForeignKey("redpacket_packets.id"), primary_key=True),
    sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=False),
    sa.Column("amount", sa.BigInteger(), nullable=False),
    sa.Column("grabbed_by", indexed_string(), nullable=True),
    sa.Column("grabbed_at", UtcDateTime(), nullable=True),
    sa.UniqueConstraint("packet_id", "grabbed_by"),
    sa.CheckConstraint("amount > 0", name="amount_positive"),
    sa.Index(None, "grabbed_by"),
    **MYSQL_TABLE_KWARGS,
)

# 转账 transfers: a one-share, one-to-one packet (kind 'equal') that its recipient accepts (the
# grab) or that returns to its sender when it expires (the refund): the same money rules, the
# same audit. A row here marks the packet a transfer (migration redpacket_0005).
transfers = sa.Table(
    "redpacket_transfers",
    metadata,
    sa.Column("packet_id", sa.String(32), sa.ForeignKey("redpacket_packets.id"), primary_key=True),
    **MYSQL_TABLE_KWARGS,
)

ledger = sa.Table(
    "redpacket_ledger",
    metadata,
    sa.Column("id", id_type(), primary_key=True, autoincrement=True),
    sa.Column("owner", indexed_string(), sa.ForeignKey("redpacket_wallets.owner"), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("amount", sa.BigInteger(), nullable=False),
    sa.Column("balance_after", sa.BigInteger(), nullable=False),
    sa.Column("packet_id", sa.String(32), sa.ForeignKey("redpacket_packets.id"), nullable=True),
    sa.Column("reason", sa.Text(), nullable=True),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.CheckConstraint("amount <> 0", name="amount_non_zero"),
    sa.CheckConstraint("balance_after >= 0", name="balance_after_non_negative"),
    sa.CheckConstraint(
        "kind IN ('topup', 'send_debit', 'grab_credit', 'refund', 'adjust')", name="kind_known"
    ),
    sa.Index(None, "owner", "id"),
    sa.Index(None, "packet_id"),
    sqlite_autoincrement=True,
    **MYSQL_TABLE_KWARGS,
)

# Wallet moves asked for with an idempotency key (the REST API's Idempotency-Key): written in
# the transaction of the ledger entry they made, so a retried request finds it and changes nothing.
idempotency = sa.Table(
    "redpacket_idempotency",
    metadata,
    sa.Column("key", indexed_string(), primary_key=True),
    sa.Column("owner", indexed_string(), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("amount", sa.BigInteger(), nullable=False),
    sa.Column("ledger_id", id_type(), sa.ForeignKey("redpacket_ledger.id"), nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    **MYSQL_TABLE_KWARGS,
)
