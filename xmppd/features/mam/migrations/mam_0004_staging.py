"""The archive's staging table: new records on SQLite, moved into ``mam_messages`` in bulk.

Revision ID: mam_0004
Revises: mam_0003
Create Date: 2026-12-07

``mam_staging`` has ``mam_messages``' columns and no index but its primary key, so that a commit
of new records writes a page or two instead of a leaf of each owner index for every owner in the
batch. The server moves its rows into ``mam_messages`` (one transaction) before any read of the
archive and every few thousand records (``xmppd.features.mam.repository``).

Frozen in time: constants and types are spelled out here.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

from xmppd.storage.migrations.ddl import TABLE_KWARGS as _TABLE_KWARGS
from xmppd.storage.migrations.ddl import id_type as _id

revision: str = "mam_0004"
down_revision: str | Sequence[str] | None = "mam_0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "mam_staging",
        sa.Column("seq", _id(), autoincrement=False, nullable=False),
        sa.Column("owner", sa.String(191), nullable=False),
        sa.Column("stanza_id", sa.String(64), nullable=False),
        sa.Column("ts", sa.BigInteger(), nullable=False),
        sa.Column("with_jid", sa.String(191), nullable=False),
        sa.Column("with_resource", sa.String(1023), nullable=False),
        sa.Column("stanza", sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb"), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_mam_staging")),
        **_TABLE_KWARGS,
    )


def downgrade() -> None:
    bind = op.get_bind()
    ignore = "INSERT OR IGNORE" if bind.dialect.name == "sqlite" else "INSERT IGNORE"
    cols = "seq, owner, stanza_id, ts, with_jid, with_resource, stanza"
    op.execute(f"{ignore} INTO mam_messages ({cols}) SELECT {cols} FROM mam_staging")
    op.drop_table("mam_staging")
