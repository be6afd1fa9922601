"""Archive ids assigned by the server: time-ordered seq, encrypted public ids, two indexes.

Revision ID: mam_0002
Revises: mam_0001
Create Date: 2025-06-01

``mam_messages.seq`` becomes ``(µs since 2020-01-01 UTC) << 11 | node``, issued by the server
(no AUTOINCREMENT), and the public XEP-0359 id is that seq encrypted with a key kept in the new
``mam_settings`` table; node ids are leased in the new ``mam_nodes`` table (see
``xmppd.features.mam.ids``). Time filters and the retention purge become ``seq`` ranges and ids
are decoded rather than looked up, so the ``(owner, ts)``, ``(ts)`` and unique ``(owner,
stanza_id)`` indexes go: ``(owner, seq)`` and ``(owner, with_jid, seq)`` remain.

Existing rows are rewritten into the new id space, in their old order: in old ``seq`` order,
``new = max(t << 11, previous new + 1)`` with ``t`` the row's ``ts`` in µs since 2020 (0 before
that) -- the rule the server itself follows, so a row's new id has the time of its ``ts``
(later only where the old timestamps went backwards, or more than 2048 rows share one µs), and
the ids are unique and increasing. Computed with window functions (SQLite >= 3.25, MariaDB >=
10.2) as ``rn + running max(t * 2048 - rn)``. The table is rebuilt (copy, drop, rename; the two
indexes built after the copy): the primary key of every row changes anyway, and on SQLite
AUTOINCREMENT can only go that way. Old rows keep their random ids in ``stanza_id`` and
``mam_settings.legacy_max_seq`` records the largest rewritten seq, so ids that clients already
hold still resolve (see ``xmppd.features.mam.repository``).

Frozen in time: constants and types are spelled out here (shared column types from the
append-only ``xmppd.storage.migrations.ddl``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

from xmppd.storage.migrations.ddl import TABLE_KWARGS as _TABLE_KWARGS
from xmppd.storage.migrations.ddl import id_type as _id

revision: str = "mam_0002"
down_revision: str | Sequence[str] | None = "mam_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_EPOCH_US = 1_577_836_800_000_000  # 2020-01-01T00:00:00Z
_NODES = 2048  # 1 << 11
_COLUMNS = "owner, stanza_id, ts, with_jid, with_resource, stanza"


def _messages_table(name: str, autoincrement: bool) -> None:
    op.create_table(
        name,
        sa.Column("seq", _id(), autoincrement=autoincrement, nullable=False),
        sa.Column("owner", sa.String(191), nullable=False),
        sa.Column("stanza_id", sa.String(64), nullable=False),
        sa.Column("ts", sa.BigInteger(), nullable=False),
        sa.Column("with_jid", sa.String(191), nullable=False),
        sa.Column("with_resource", sa.String(1023), nullable=False),
        sa.Column("stanza", sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb"), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_mam_messages")),
        sqlite_autoincrement=autoincrement,
        **_TABLE_KWARGS,
    )


def _drop_leftover(name: str) -> None:
    # On MariaDB every DDL statement commits by itself: a run that failed half-way may have
    # left the copy behind (SQLite rolls the whole upgrade back).
    if name in sa.inspect(op.get_bind()).get_table_names():
        op.drop_table(name)


def upgrade() -> None:
    bind = op.get_bind()
    sqlite = bind.dialect.name == "sqlite"
    rows = bind.execute(sa.text("SELECT COUNT(*) FROM mam_messages")).scalar_one()
    if rows and sqlite and sqlite3.sqlite_version_info < (3, 25):
        raise RuntimeError(f"migrating the message archive needs SQLite 3.25 or later (window functions); this is {sqlite3.sqlite_version}")

    _drop_leftover("mam_messages_new")
    _messages_table("mam_messages_new", autoincrement=False)
    t = f"CASE WHEN ts > {_EPOCH_US} THEN ts - {_EPOCH_US} ELSE 0 END"
    rn = f"CAST(ROW_NUMBER() OVER (ORDER BY seq) AS {'INTEGER' if sqlite else 'SIGNED'})"  # MariaDB's is unsigned
    # new seq of the i-th row in old order: max over j <= i of (t_j * 2048 + i - j)
    mapping = (
        f"SELECT seq, rn + MAX(t * {_NODES} - rn) OVER (ORDER BY seq ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS new_seq "
        f"FROM (SELECT seq, {rn} AS rn, {t} AS t FROM mam_messages) numbered"
    )
    cols = ", ".join(f"m.{c}" for c in _COLUMNS.split(", "))
    op.execute(
        f"INSERT INTO mam_messages_new (seq, {_COLUMNS}) "
        f"SELECT x.new_seq, {cols} FROM mam_messages m JOIN ({mapping}) x ON x.seq = m.seq"
    )
    copied = bind.execute(sa.text("SELECT COUNT(*) FROM mam_messages_new")).scalar_one()
    if copied != rows:
        raise RuntimeError(f"mam_0002: copied {copied} of {rows} archived messages")
    op.drop_table("mam_messages")  # and its five indexes
    op.rename_table("mam_messages_new", "mam_messages")
    op.create_index("ix_mam_messages_owner_seq", "mam_messages", ["owner", "seq"])
    op.create_index("ix_mam_messages_owner_with_jid_seq", "mam_messages", ["owner", "with_jid", "seq"])

    op.create_table(
        "mam_settings",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("value", sa.String(255), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_mam_settings")),
        **_TABLE_KWARGS,
    )
    op.create_table(
        "mam_nodes",
        sa.Column("node", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("holder", sa.String(128), nullable=False),
        sa.Column("expires", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("node", name=op.f("pk_mam_nodes")),
        **_TABLE_KWARGS,
    )
    if rows:
        legacy_max = bind.execute(sa.text("SELECT MAX(seq) FROM mam_messages")).scalar_one()
        bind.execute(sa.text("INSERT INTO mam_settings (name, value) VALUES ('legacy_max_seq', :v)"), {"v": str(legacy_max)})


def downgrade() -> None:
    # Back to mam_0001's schema, every row kept with its seq: rows written since store their
    # public id in stanza_id (unique per archive), which mam_0001 code reads and looks up.
    _drop_leftover("mam_messages_old")
    _messages_table("mam_messages_old", autoincrement=True)
    op.execute(f"INSERT INTO mam_messages_old (seq, {_COLUMNS}) SELECT seq, {_COLUMNS} FROM mam_messages")
    op.drop_table("mam_messages")
    op.rename_table("mam_messages_old", "mam_messages")
    op.create_index("ix_mam_messages_owner_seq", "mam_messages", ["owner", "seq"])
    op.create_index("ix_mam_messages_owner_ts", "mam_messages", ["owner", "ts"])
    op.create_index("ix_mam_messages_owner_with_jid_seq", "mam_messages", ["owner", "with_jid", "seq"])
    op.create_index("uq_mam_messages_owner_stanza_id", "mam_messages", ["owner", "stanza_id"], unique=True)
    op.create_index("ix_mam_messages_ts", "mam_messages", ["ts"])
    op.drop_table("mam_nodes")
    op.drop_table("mam_settings")
