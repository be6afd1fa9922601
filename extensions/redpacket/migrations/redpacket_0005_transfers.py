"""Red packets: 转账 transfers (a one-share, one-to-one packet the recipient accepts, or that
returns to its sender when it expires); a row marks the packet a transfer.

Revision ID: redpacket_0005
Revises: redpacket_0004
Create Date: 2026-12-07

Frozen in time: every constraint name is spelled out here.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from xmppd.storage.migrations.ddl import TABLE_KWARGS as _TABLE_KWARGS

revision: str = "redpacket_0005"
down_revision: str | Sequence[str] | None = "redpacket_0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "redpacket_transfers",
        sa.Column("packet_id", sa.String(32), nullable=False),
        sa.ForeignKeyConstraint(["packet_id"], ["redpacket_packets.id"],
                                name=op.f("fk_redpacket_transfers_packet_id_redpacket_packets")),
        sa.PrimaryKeyConstraint("packet_id", name=op.f("pk_redpacket_transfers")),
        **_TABLE_KWARGS,
    )


def downgrade() -> None:
    op.drop_table("redpacket_transfers")
