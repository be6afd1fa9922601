"""Server secrets: random keys made once and shared by every node through the database.

A key that must be the same on every node and after every restart (the key of the fake SCRAM
answers for unknown users, ``protocol.sasl``) cannot be made per process. :func:`server_secret`
reads it, or makes it with the operating system's CSPRNG the first time; two processes starting
together both try to insert, the primary key lets one win, and both then read the winner's.
The values are secrets: never log them; whoever reads the database can read them too.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Final

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from xmppd.storage.engine import Database, is_unique_violation
from xmppd.storage.metadata import MYSQL_TABLE_KWARGS, UtcDateTime, metadata

__all__ = ["SECRET_BYTES", "server_secret", "server_secrets"]

#: Length of a new secret (256 bits).
SECRET_BYTES: Final = 32

server_secrets: Final = sa.Table(
    "server_secrets",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("value", sa.LargeBinary(), nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    **MYSQL_TABLE_KWARGS,
)

_SELECT = sa.select(server_secrets.c.value).where(server_secrets.c.name == sa.bindparam("name"))


async def server_secret(db: Database, name: str, size: int = SECRET_BYTES) -> bytes:
    """The secret called ``name``, made (``size`` random bytes) if the database has none yet."""
    row = await db.fetch_one(_SELECT, {"name": name})
    if row is not None:
        return bytes(row[0])
    try:
        async with db.transaction() as conn:
            await conn.execute(
                server_secrets.insert().values(name=name, value=secrets.token_bytes(size), created_at=datetime.now(UTC))
            )
    except IntegrityError as exc:
        if not is_unique_violation(exc):
            raise
        # Another process made it first: its value is the one everybody uses.
    row = await db.fetch_one(_SELECT, {"name": name})
    assert row is not None
    return bytes(row[0])
