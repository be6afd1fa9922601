"""Migration offline_0002 (a size column for the byte quota) on rows stored under offline_0001,
on SQLite and MariaDB: each gets its size in UTF-8 bytes, and the quota counts them."""
from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import command

from xmppd.features.offline.repository import SqlOfflineRepository, StoreResult
from xmppd.storage.engine import Database
from xmppd.storage.migrations import upgrade

from .test_mam_migration import _alembic

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
OLD = ["<message xmlns='jabber:client'><body>" + "é" * 100 + "</body></message>", "<m/>"]


async def test_rows_stored_before_the_byte_quota_get_their_size_in_bytes(db: Database, migration_locations: list[str]) -> None:
    await _alembic(db, migration_locations, command.upgrade, "offline_0001")
    async with db.transaction() as conn:
        await conn.execute(sa.text("INSERT INTO accounts (username, domain, created_at) VALUES ('bob', 'localhost', :t)"), {"t": T0.replace(tzinfo=None)})
        account_id = (await conn.execute(sa.text("SELECT id FROM accounts WHERE username = 'bob'"))).scalar_one()
        for stanza in OLD:
            await conn.execute(
                sa.text("INSERT INTO offline_messages (account_id, created_at, stanza) VALUES (:a, :t, :s)"),
                {"a": account_id, "t": T0.replace(tzinfo=None), "s": stanza},
            )
    assert await upgrade(db, migration_locations)
    async with db.transaction(readonly=True) as conn:
        sizes = [r.size for r in await conn.execute(sa.text("SELECT size FROM offline_messages ORDER BY id"))]
    assert sizes == [len(s.encode()) for s in OLD]
    repo = SqlOfflineRepository(db)
    used = sum(sizes)
    assert await repo.usage("bob", "localhost") == (2, used)
    assert await repo.store("bob", "localhost", "<n/>", T0, 100, used + 3) is StoreResult.FULL
    assert await repo.store("bob", "localhost", "<n/>", T0, 100, used + 4) is StoreResult.STORED
