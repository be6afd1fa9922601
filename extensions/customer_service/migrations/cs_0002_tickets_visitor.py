"""Customer service: an index on the visitor of a ticket, for a visitor's own tickets
(the ``#my-tickets`` ad-hoc command).

Revision ID: cs_0002
Revises: cs_0001
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "cs_0002"
down_revision: str | Sequence[str] | None = "cs_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_cs_tickets_visitor", "cs_tickets", ["visitor"])


def downgrade() -> None:
    op.drop_index("ix_cs_tickets_visitor", table_name="cs_tickets")
