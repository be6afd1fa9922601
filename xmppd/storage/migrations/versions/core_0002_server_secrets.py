"""Core: server secrets shared by every node (the key of the fake SCRAM answers for unknown users).

Revision ID: core_0002
Revises: core_0001
Create Date: 2026-12-06

Frozen in time: every constraint name is spelled out here; shared column types come from the
append-only ``xmppd.storage.migrations.ddl``.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from xmppd.storage.migrations.ddl import TABLE_KWARGS as _TABLE_KWARGS
from xmppd.storage.migrations.ddl import utc_datetime as _utc_datetime

revision: str = "core_0002"
down_revision: str | Sequence[str] | None = "core_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "server_secrets",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("value", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", _utc_datetime(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_server_secrets")),
        **_TABLE_KWARGS,
    )


def downgrade() -> None:
    op.drop_table("server_secrets")
