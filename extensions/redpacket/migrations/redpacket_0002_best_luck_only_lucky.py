"""Red packets: best luck only for lucky packets of two shares or more.

Before this revision a finished equal packet, or a packet of one share, stored the grabber of
its (first) largest share as ``best_luck``; there is no luck in those, so the value is cleared.

Revision ID: redpacket_0002
Revises: redpacket_0001
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "redpacket_0002"
down_revision: str | Sequence[str] | None = "redpacket_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("UPDATE redpacket_packets SET best_luck = NULL WHERE kind <> 'lucky' OR count < 2")


def downgrade() -> None:
    pass  # the cleared values were wrong; nothing to restore
