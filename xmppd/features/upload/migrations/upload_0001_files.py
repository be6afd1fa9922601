"""HTTP file upload (XEP-0363): one row per slot.

Revision ID: upload_0001
Revises:
Create Date: 2026-12-07

Frozen in time: every constraint name is spelled out here; shared column types come from the
append-only ``xmppd.storage.migrations.ddl``.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from xmppd.storage.migrations.ddl import TABLE_KWARGS as _TABLE_KWARGS
from xmppd.storage.migrations.ddl import id_type as _id

revision: str = "upload_0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("upload",)
depends_on: str | Sequence[str] | None = "core_0001"


def upgrade() -> None:
    op.create_table(
        "upload_files",
        sa.Column("id", _id(), autoincrement=True, nullable=False),
        sa.Column("slot", sa.String(64), nullable=False),
        sa.Column("account_id", _id(), autoincrement=False, nullable=False),
        sa.Column("filename", sa.String(255), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("content_type", sa.String(255), nullable=False),
        sa.Column("created", sa.BigInteger(), nullable=False),
        sa.Column("uploaded", sa.BigInteger(), nullable=True),
        sa.Column("expires", sa.BigInteger(), nullable=True),
        sa.Column("thumb_width", sa.Integer(), nullable=True),
        sa.Column("thumb_height", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_upload_files")),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_upload_files_account_id_accounts"), ondelete="CASCADE"
        ),
        sa.UniqueConstraint("slot", name=op.f("uq_upload_files_slot")),
        sqlite_autoincrement=True,
        **_TABLE_KWARGS,
    )
    op.create_index(op.f("ix_upload_files_account_id"), "upload_files", ["account_id"])
    op.create_index(op.f("ix_upload_files_expires"), "upload_files", ["expires"])


def downgrade() -> None:
    op.drop_table("upload_files")
