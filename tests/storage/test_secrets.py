"""storage.secrets: one random secret per name, shared by every process on the database."""
from __future__ import annotations

import asyncio

from xmppd.storage.engine import Database
from xmppd.storage.secrets import SECRET_BYTES, server_secret


async def test_a_secret_is_made_once_and_then_read_back(migrated_db: Database) -> None:
    first = await server_secret(migrated_db, "one")
    assert len(first) == SECRET_BYTES
    assert await server_secret(migrated_db, "one") == first
    assert await server_secret(migrated_db, "two") != first


async def test_processes_starting_together_agree_on_one_secret(migrated_db: Database) -> None:
    others = [Database.from_url(migrated_db.url) for _ in range(3)]
    try:
        values = await asyncio.gather(*(server_secret(d, "shared") for d in [migrated_db, *others, migrated_db]))
    finally:
        for d in others:
            await d.dispose()
    assert len(set(values)) == 1
    assert await server_secret(migrated_db, "shared") == values[0]
