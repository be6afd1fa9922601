"""``Database.sqlite_call`` (a whole transaction in one call on aiosqlite's thread) and
``Database.sqlite_write`` (group commit: one transaction, one savepoint per write)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

import xmppd.storage.engine as engine_mod
from tests.storage_fixtures import open_database
from xmppd.storage.engine import Database


@pytest_asyncio.fixture(params=["file", "memory"])
async def lite(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'c.db'}" if request.param == "file" else "sqlite+aiosqlite://"
    database = Database.from_url(url)
    async with database.transaction() as conn:
        await conn.exec_driver_sql("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT NOT NULL)")
    try:
        yield database
    finally:
        await database.dispose()


def _rows(db: sqlite3.Connection) -> list[tuple[int, str]]:
    return db.execute("SELECT k, v FROM t ORDER BY k").fetchall()


async def test_sqlite_call_commits_or_rolls_back_the_whole_call(lite: Database) -> None:
    def write(db: sqlite3.Connection) -> int:
        assert db.in_transaction
        db.execute("INSERT INTO t (k, v) VALUES (1, 'one')")
        return db.execute("SELECT count(*) FROM t").fetchone()[0]

    assert await lite.sqlite_call(write, write=True) == 1

    def half(db: sqlite3.Connection) -> None:
        db.execute("INSERT INTO t (k, v) VALUES (2, 'two')")
        db.execute("INSERT INTO t (k, v) VALUES (1, 'again')")  # primary key: refused

    with pytest.raises(sqlite3.IntegrityError):
        await lite.sqlite_call(half, write=True)
    assert await lite.sqlite_call(_rows, write=False) == [(1, "one")]
    # the pooled connections are clean: SQLAlchemy transactions still work
    async with lite.transaction() as conn:
        await conn.exec_driver_sql("INSERT INTO t (k, v) VALUES (3, 'three')")
    assert await lite.sqlite_call(_rows, write=False) == [(1, "one"), (3, "three")]


async def test_sqlite_write_commits_concurrent_writes_in_batches_each_in_its_savepoint(
    lite: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    batches: list[int] = []
    original = engine_mod._run_batch

    def counted(fns, db):  # type: ignore[no-untyped-def]
        batches.append(len(fns))
        return original(fns, db)

    monkeypatch.setattr(engine_mod, "_run_batch", counted)

    def insert(k: int):  # type: ignore[no-untyped-def]
        def fn(db: sqlite3.Connection) -> int:
            db.execute("INSERT INTO t (k, v) VALUES (?, ?)", (k, f"v{k}"))
            if k == 7:  # half done, then fails: only this write is undone
                db.execute("INSERT INTO t (k, v) VALUES (?, ?)", (1000 + k, "x"))
                raise ValueError("no sevens")
            return k

        return fn

    results = await asyncio.gather(*(lite.sqlite_write(insert(k)) for k in range(20)), return_exceptions=True)
    assert [r for r in results if not isinstance(r, int)][0].args == ("no sevens",)
    assert [r for r in results if isinstance(r, int)] == [k for k in range(20) if k != 7]
    assert [k for k, _v in await lite.sqlite_call(_rows, write=False)] == [k for k in range(20) if k != 7]
    assert sum(batches) == 20 and len(batches) < 20  # writes that waited went together
    # a constraint violation is that write's error alone, too
    results = await asyncio.gather(lite.sqlite_write(insert(3)), lite.sqlite_write(insert(30)), return_exceptions=True)
    assert isinstance(results[0], sqlite3.IntegrityError) and results[1] == 30


async def test_sqlite_write_waits_for_the_writer_queue(tmp_path: Path) -> None:
    """A SQLAlchemy writer holding the write lock across the event loop: the batch waits its turn
    instead of failing with "database is locked"."""
    database = Database.from_url(f"sqlite+aiosqlite:///{tmp_path / 'q.db'}")
    try:
        async with database.transaction() as conn:
            await conn.exec_driver_sql("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT NOT NULL)")
        async with database.transaction() as conn:
            await conn.exec_driver_sql("INSERT INTO t (k, v) VALUES (1, 'held')")
            pending = asyncio.ensure_future(database.sqlite_write(lambda db: db.execute("UPDATE t SET v = 'batch' WHERE k = 1").rowcount))
            await asyncio.sleep(0.1)
            assert not pending.done()
        assert await pending == 1
        assert await database.sqlite_call(_rows, write=False) == [(1, "batch")]
    finally:
        await database.dispose()


async def test_sqlite_calls_are_refused_on_mariadb(request: pytest.FixtureRequest) -> None:
    async with open_database(request, "mariadb") as db:
        with pytest.raises(NotImplementedError):
            await db.sqlite_call(lambda c: None, write=False)
        with pytest.raises(NotImplementedError):
            await db.sqlite_write(lambda c: None)
