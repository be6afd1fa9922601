"""Customer service: pre-chat forms (a queue's definition, a chat's answers).

Revision ID: cs_0006
Revises: cs_0005
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "cs_0006"
down_revision: str | Sequence[str] | None = "cs_0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("cs_queues") as t:
        t.add_column(sa.Column("prechat", sa.Text(), nullable=True))  # the form's definition (JSON); NULL: none
    with op.batch_alter_table("cs_sessions") as t:
        t.add_column(sa.Column("answers", sa.Text(), nullable=True))  # the visitor's answers (JSON); NULL: none


def downgrade() -> None:
    with op.batch_alter_table("cs_sessions") as t:
        t.drop_column("answers")
    with op.batch_alter_table("cs_queues") as t:
        t.drop_column("prechat")
