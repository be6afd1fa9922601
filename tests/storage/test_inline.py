"""The login read on the event loop's thread (SQLite file): same values as the async path, never
waits for a lock (busy: the async path answers), and sees writes of other connections at once."""

from __future__ import annotations

import sqlite3

import pytest

from tests.storage_fixtures import open_database
from xmppd.storage.accounts import _CREDENTIALS_QUERY, SqlAccountRepository, StoredCredentials
from xmppd.storage.engine import Database
from xmppd.storage.inline import InlineQuery, InlineReader, InlineUnavailable

pytestmark = pytest.mark.asyncio

CREDS = [
    StoredCredentials("SCRAM-SHA-1", b"salt1-salt1-", 4096, b"k1" * 10, b"s1" * 10),
    StoredCredentials("SCRAM-SHA-256", b"salt2-salt2-", 4096, b"k2" * 16, b"s2" * 16),
]
NEW = [StoredCredentials("SCRAM-SHA-1", b"salt3-salt3-", 4096, b"k3" * 10, b"s3" * 10)]


async def test_only_sqlite_files_get_an_inline_reader(tmp_path) -> None:
    memory = Database.from_url("sqlite+aiosqlite://")
    file = Database.from_url(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    try:
        assert InlineReader.for_database(memory) is None
        assert InlineReader.for_database(file) is not None
    finally:
        await memory.dispose()
        await file.dispose()


async def test_inline_row_equals_the_async_row(request) -> None:
    async with open_database(request, "sqlite") as db:
        repo = SqlAccountRepository(db)
        await repo.create("alice", "example.com", CREDS)
        await repo.set_disabled("alice", "example.com", True, "why")
        params = {"username": "alice", "domain": "example.com", "mechanism": "SCRAM-SHA-256"}
        reader = InlineReader.for_database(db)
        assert reader is not None
        try:
            inline = reader.fetch_one(InlineQuery(_CREDENTIALS_QUERY, db), params)
        finally:
            reader.close()
        row = await db.fetch_one(_CREDENTIALS_QUERY, params)
        assert row is not None and inline is not None
        assert tuple(inline) == tuple(row)
        assert inline[3].tzinfo is not None and inline[4] is True  # created_at aware, disabled a bool
        repo.close()


async def test_inline_read_sees_another_connections_writes_at_once(request) -> None:
    async with open_database(request, "sqlite") as db:
        repo = SqlAccountRepository(db)
        await repo.create("alice", "example.com", CREDS)
        assert (await repo.get_credentials("alice", "example.com", "SCRAM-SHA-1"))[1] == CREDS[0]  # type: ignore[index]
        # Another process's view of the same file (xmppctl passwd / user del).
        other_db = Database.from_url(db.url)
        other = SqlAccountRepository(other_db)
        try:
            await other.set_credentials("alice", "example.com", NEW)
            assert (await repo.get_credentials("alice", "example.com", "SCRAM-SHA-1"))[1] == NEW[0]  # type: ignore[index]
            assert await repo.get_credentials("alice", "example.com", "SCRAM-SHA-256") is None
            await other.set_disabled("alice", "example.com", True)
            assert (await repo.get_credentials("alice", "example.com", "SCRAM-SHA-1"))[0].disabled  # type: ignore[index]
            assert await other.delete("alice", "example.com")
            assert await repo.get_credentials("alice", "example.com", "SCRAM-SHA-1") is None
        finally:
            other.close()
            await other_db.dispose()
            repo.close()


async def test_a_locked_database_is_not_waited_for_inline(request) -> None:
    async with open_database(request, "sqlite") as db:
        repo = SqlAccountRepository(db)
        await repo.create("alice", "example.com", CREDS)
        path = db.url.database
        assert path
        # Another process holds the file exclusively: readers get SQLITE_BUSY.
        await db.dispose()  # the pool's connections let go of the file (the engine reconnects later)
        locker = sqlite3.connect(path, isolation_level=None, timeout=1)
        locker.execute("PRAGMA locking_mode = EXCLUSIVE")
        locker.execute("BEGIN EXCLUSIVE")
        locker.execute("UPDATE accounts SET disabled_reason = NULL")
        reader = InlineReader.for_database(db)
        assert reader is not None
        try:
            with pytest.raises(InlineUnavailable):
                reader.fetch_one(
                    InlineQuery(_CREDENTIALS_QUERY, db), {"username": "alice", "domain": "example.com", "mechanism": "SCRAM-SHA-1"}
                )
        finally:
            reader.close()
            locker.execute("ROLLBACK")
            locker.close()
        repo.close()


async def test_busy_inline_read_falls_back_to_the_async_path(request, monkeypatch) -> None:
    async with open_database(request, "sqlite") as db:
        repo = SqlAccountRepository(db)
        await repo.create("alice", "example.com", CREDS)
        reader = db.fastpath.inline_reader  # (the login read's, as every hot point read's)
        assert reader is not None
        calls = []

        def busy(*_args: object) -> None:
            calls.append(_args)
            raise InlineUnavailable("database is locked")

        monkeypatch.setattr(reader, "fetch_one", busy)
        found = await repo.get_credentials("alice", "example.com", "SCRAM-SHA-1")
        assert found is not None and found[0].username == "alice" and found[1] == CREDS[0]
        assert await repo.get_credentials("bob", "example.com", "SCRAM-SHA-1") is None
        assert len(calls) == 2  # tried on the loop's thread first, each time
        repo.close()
