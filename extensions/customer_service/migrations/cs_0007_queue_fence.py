"""Customer service: queues carry the fencing token of the cluster node that owns them (docs/cluster.md §5).

Revision ID: cs_0007
Revises: cs_0006
Create Date: 2026-12-07

A queue is owned by the holder of the lease ``csq:<queue>``; its chats are written with the
lease's token, conditioned on ``cs_queues.fence <= :token``: a node whose lease was taken over
(paused, cut off, declared dead) cannot overwrite what its successor wrote. Rows stored before
this revision (and every queue of a server without the cluster) have fence 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "cs_0007"
down_revision: str | Sequence[str] | None = "cs_0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("cs_queues", sa.Column("fence", sa.BigInteger(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("cs_queues") as batch:
        batch.drop_column("fence")
