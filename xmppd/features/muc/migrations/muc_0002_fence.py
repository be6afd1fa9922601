"""MUC: rooms carry the fencing token of the cluster node that last wrote them (docs/cluster.md §5).

Revision ID: muc_0002
Revises: muc_0001
Create Date: 2026-12-07

A room owned by a lease holder is written with ``WHERE fence <= :token``: a node whose lease was
taken over (paused, cut off, declared dead) cannot overwrite what its successor wrote. Rows
stored before this revision (and every room of a server without the cluster) have fence 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "muc_0002"
down_revision: str | Sequence[str] | None = "muc_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("muc_rooms", sa.Column("fence", sa.BigInteger(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("muc_rooms") as batch:
        batch.drop_column("fence")
