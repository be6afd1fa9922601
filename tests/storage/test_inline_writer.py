"""Short write transactions on the event loop's thread (SQLite file; the archive's group commits):
committed and seen by every other connection at once, never waiting for a lock (this process's
writer queue taken, or another process writing: InlineUnavailable, nothing written), and the
archive's writes still land through the driver's thread when the inline path is unavailable."""

from __future__ import annotations

import asyncio
import sqlite3
import threading

import pytest
import sqlalchemy as sa

from tests.storage_fixtures import open_database
from xmppd.app import feature_migration_locations
from xmppd.core.loader import discover
from xmppd.features.mam.repository import ArchivedMessage, SqlMamRepository, mam_messages
from xmppd.storage.engine import Database
from xmppd.storage.inline import InlineUnavailable, InlineWriter

pytestmark = pytest.mark.asyncio


def _mam_locations() -> list[str]:
    return [str(p) for p in feature_migration_locations(discover().values())]


def _record(seq: int, owner: str = "alice@localhost") -> ArchivedMessage:
    return ArchivedMessage(owner, f"id{seq}", seq, "bob@localhost", "desk", f"<message><body>m{seq}</body></message>", seq)


async def _stored(db: Database) -> list[int]:
    async with db.transaction(readonly=True) as conn:
        return [r.seq for r in await conn.execute(sa.select(mam_messages.c.seq).order_by(mam_messages.c.seq))]


async def test_only_sqlite_files_get_an_inline_writer(tmp_path) -> None:
    memory = Database.from_url("sqlite+aiosqlite://")
    file = Database.from_url(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    try:
        assert InlineWriter.for_database(memory) is None
        assert InlineWriter.for_database(file) is not None
    finally:
        await memory.dispose()
        await file.dispose()


async def test_archive_commit_runs_on_the_loops_thread_and_is_seen_by_other_connections(request, monkeypatch) -> None:
    async with open_database(request, "sqlite", extra_locations=_mam_locations()) as db:
        repo = SqlMamRepository(db)
        await repo.open()
        threads: list[int] = []
        write = InlineWriter.write

        def spy(self, fn):
            def run(conn):
                threads.append(threading.get_ident())
                return fn(conn)
            return write(self, run)

        monkeypatch.setattr(InlineWriter, "write", spy)
        await repo.store_many([_record(1), _record(2)])
        assert threads == [threading.get_ident()]
        assert await _stored(db) == [1, 2]  # through aiosqlite's connections
        other = sqlite3.connect(db.url.database)  # another process's view
        try:
            assert other.execute("SELECT bytes FROM mam_usage WHERE owner = 'alice@localhost'").fetchone()[0] > 0
        finally:
            other.close()
        await repo.close()


async def test_inline_write_never_waits_for_this_process_writer_queue(request) -> None:
    async with open_database(request, "sqlite", extra_locations=_mam_locations()) as db:
        writer = InlineWriter.for_database(db)
        assert writer is not None
        ran: list[bool] = []
        async with db.transaction():  # this process's write turn is taken
            with pytest.raises(InlineUnavailable):
                writer.write(lambda conn: ran.append(True))
        assert ran == []
        writer.write(lambda conn: ran.append(True))  # free again
        assert ran == [True]
        await writer.close()


async def test_archive_write_goes_through_the_driver_thread_while_another_process_writes(request) -> None:
    async with open_database(request, "sqlite", extra_locations=_mam_locations()) as db:
        repo = SqlMamRepository(db)
        await repo.open()
        other = sqlite3.connect(db.url.database, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another process (xmppctl) holds the write lock
        writer = repo._inline
        assert writer is not None
        with pytest.raises(InlineUnavailable):
            writer.write(lambda conn: None)
        store = asyncio.ensure_future(repo.store_many([_record(5)]))
        await asyncio.sleep(0.05)
        assert not store.done()  # waits in SQLite's busy handler, off the loop's thread
        other.execute("COMMIT")
        other.close()
        await store
        assert await _stored(db) == [5]
        await repo.close()


async def test_inline_write_rolls_back_what_failed(request) -> None:
    async with open_database(request, "sqlite", extra_locations=_mam_locations()) as db:
        repo = SqlMamRepository(db)
        await repo.open()
        await repo.store_many([_record(1)])
        await repo.store_many([_record(2), _record(1), _record(3)])  # seq 1 again: row by row, skipping it
        assert await _stored(db) == [1, 2, 3]
        writer = repo._inline
        assert writer is not None

        def fail(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT INTO mam_usage (owner, bytes) VALUES ('x@localhost', 1)")
            raise RuntimeError("boom")

        with pytest.raises(RuntimeError):
            writer.write(fail)
        async with db.transaction(readonly=True) as conn:
            assert (await conn.exec_driver_sql("SELECT count(*) FROM mam_usage WHERE owner = 'x@localhost'")).scalar() == 0
        writer.write(lambda conn: None)  # the connection is usable again
        await repo.close()
