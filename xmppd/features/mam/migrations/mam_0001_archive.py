"""Message archive (XEP-0313) and archiving preferences.

Revision ID: mam_0001
Revises:
Create Date: 2025-01-03

Frozen in time: every constraint name is spelled out here; shared column types come from the
append-only ``xmppd.storage.migrations.ddl``. The indexes make a page
an index range scan: (owner, seq) for paging, (owner, with_jid, seq) for 'with',
(owner, ts) for start/end, unique (owner, stanza_id) for RSM ids, (ts) for the retention purge.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

from xmppd.storage.migrations.ddl import TABLE_KWARGS as _TABLE_KWARGS
from xmppd.storage.migrations.ddl import id_type as _id

revision: str = "mam_0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("mam",)
depends_on: str | Sequence[str] | None = "core_0001"


def upgrade() -> None:
    op.create_table(
        "mam_messages",
        sa.Column("seq", _id(), autoincrement=True, nullable=False),
        sa.Column("owner", sa.String(191), nullable=False),
        sa.Column("stanza_id", sa.String(64), nullable=False),
        sa.Column("ts", sa.BigInteger(), nullable=False),
        sa.Column("with_jid", sa.String(191), nullable=False),
        sa.Column("with_resource", sa.String(1023), nullable=False),
        sa.Column("stanza", sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb"), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_mam_messages")),
        sqlite_autoincrement=True,
        **_TABLE_KWARGS,
    )
    op.create_index("ix_mam_messages_owner_seq", "mam_messages", ["owner", "seq"])
    op.create_index("ix_mam_messages_owner_ts", "mam_messages", ["owner", "ts"])
    op.create_index("ix_mam_messages_owner_with_jid_seq", "mam_messages", ["owner", "with_jid", "seq"])
    op.create_index("uq_mam_messages_owner_stanza_id", "mam_messages", ["owner", "stanza_id"], unique=True)
    op.create_index("ix_mam_messages_ts", "mam_messages", ["ts"])
    op.create_table(
        "mam_prefs",
        sa.Column("owner", sa.String(191), nullable=False),
        sa.Column("default_mode", sa.String(8), nullable=False),
        sa.Column("always_jids", sa.Text(), nullable=False),
        sa.Column("never_jids", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("owner", name=op.f("pk_mam_prefs")),
        **_TABLE_KWARGS,
    )


def downgrade() -> None:
    op.drop_table("mam_prefs")
    for name in ("ix_mam_messages_ts", "uq_mam_messages_owner_stanza_id", "ix_mam_messages_owner_with_jid_seq", "ix_mam_messages_owner_ts", "ix_mam_messages_owner_seq"):
        op.drop_index(name, table_name="mam_messages")
    op.drop_table("mam_messages")
