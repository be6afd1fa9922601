"""Per-archive byte usage, for the archive quota (``[mam] max_bytes_per_user``).

Revision ID: mam_0003
Revises: mam_0002
Create Date: 2026-12-06

``mam_usage`` keeps, per archive owner, the UTF-8 bytes of its stored stanzas: the server adds
each batch's bytes in the transaction that inserts it and subtracts what the retention purge or
an account's deletion removes, so the quota check never sums the archive. Filled here from the
rows already stored (SQLite: ``length(CAST(stanza AS BLOB))``, MariaDB/MySQL: ``LENGTH``, both
bytes).

Frozen in time: constants and types are spelled out here.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from xmppd.storage.migrations.ddl import TABLE_KWARGS as _TABLE_KWARGS

revision: str = "mam_0003"
down_revision: str | Sequence[str] | None = "mam_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "mam_usage",
        sa.Column("owner", sa.String(191), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("owner", name=op.f("pk_mam_usage")),
        **_TABLE_KWARGS,
    )
    size = "length(CAST(stanza AS BLOB))" if op.get_bind().dialect.name == "sqlite" else "LENGTH(stanza)"
    op.execute(f"INSERT INTO mam_usage (owner, bytes) SELECT owner, SUM({size}) FROM mam_messages GROUP BY owner")


def downgrade() -> None:
    op.drop_table("mam_usage")
