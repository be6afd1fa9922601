"""The one storage fast path (``db.fastpath``): the same transaction on every backend, inline
on the loop's thread when nothing waits, on the driver's thread otherwise, and one retry policy."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from sqlalchemy.ext.asyncio import AsyncConnection

from tests.storage_fixtures import open_database
from xmppd.storage.engine import Database
from xmppd.storage.fastpath import RETRY, RetryPolicy, Sql

_UPSERT = Sql(
    "INSERT INTO fp_t (k, v) VALUES (?, ?) ON CONFLICT (k) DO UPDATE SET v = excluded.v",
    mysql="INSERT INTO fp_t (k, v) VALUES (?, ?) ON DUPLICATE KEY UPDATE v = VALUES(v)",
)


@pytest_asyncio.fixture
async def lite(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database.from_url(f"sqlite+aiosqlite:///{tmp_path / 'f.db'}")
    async with database.transaction() as conn:
        await conn.exec_driver_sql("CREATE TABLE fp_t (k INTEGER PRIMARY KEY, v TEXT NOT NULL)")
    try:
        yield database
    finally:
        await database.dispose()


def _lite_put(k: int, v: str, db: sqlite3.Connection) -> int:
    db.execute(_UPSERT.sqlite, (k, v))
    return k


async def _portable_put(k: int, v: str, conn: AsyncConnection) -> int:
    await _UPSERT.execute(conn, (k, v))
    return k


def _lite_all(db: sqlite3.Connection) -> list[tuple[int, str]]:
    return [tuple(r) for r in db.execute("SELECT k, v FROM fp_t ORDER BY k").fetchall()]


async def _portable_all(conn: AsyncConnection) -> list[tuple[int, str]]:
    return [tuple(r) for r in (await conn.exec_driver_sql("SELECT k, v FROM fp_t ORDER BY k")).all()]


def test_sql_is_written_once_for_every_paramstyle() -> None:
    assert _UPSERT.text("sqlite", "qmark").endswith("DO UPDATE SET v = excluded.v")
    assert _UPSERT.text("mysql", "format") == "INSERT INTO fp_t (k, v) VALUES (%s, %s) ON DUPLICATE KEY UPDATE v = VALUES(v)"
    assert _UPSERT.text("mariadb", "pyformat") == _UPSERT.text("mysql", "format")
    plain = Sql("SELECT v FROM fp_t WHERE k = ?")
    assert plain.text("mysql", "format") == "SELECT v FROM fp_t WHERE k = %s"


async def test_inline_and_driver_thread_paths_commit_the_same_transaction(lite: Database) -> None:
    fp = lite.fastpath
    assert fp.lite and fp.inline_writer is not None and fp.inline_reader is not None
    await fp.write(lambda db: _lite_put(1, "inline", db), lambda c: _portable_put(1, "inline", c), inline=True)
    await fp.write(lambda db: _lite_put(2, "thread", db), lambda c: _portable_put(2, "thread", c))
    await fp.write(lambda db: _lite_put(3, "group", db), lambda c: _portable_put(3, "group", c), group=True)
    assert await fp.read(_lite_all, _portable_all, inline=True) == [(1, "inline"), (2, "thread"), (3, "group")]
    assert await fp.read(_lite_all, _portable_all) == [(1, "inline"), (2, "thread"), (3, "group")]


async def test_a_busy_inline_path_falls_back_to_the_driver_thread(lite: Database) -> None:
    other = sqlite3.connect(lite.url.database, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        other.execute("INSERT INTO fp_t (k, v) VALUES (9, 'other')")
        # The read is not blocked (WAL) and does not see the uncommitted row.
        assert await lite.fastpath.read(_lite_all, _portable_all, inline=True) == []
        other.execute("COMMIT")
    finally:
        other.close()
    await lite.fastpath.write(lambda db: _lite_put(1, "a", db), lambda c: _portable_put(1, "a", c), inline=True)
    assert await lite.fastpath.read(_lite_all, _portable_all, inline=True) == [(1, "a"), (9, "other")]


async def test_a_failing_transaction_is_rolled_back_whole(lite: Database) -> None:
    def half(db: sqlite3.Connection) -> None:
        _lite_put(5, "half", db)
        raise ValueError("boom")

    for kwargs in ({"inline": True}, {}, {"group": True}):
        with pytest.raises(ValueError):
            await lite.fastpath.write(half, _portable_all, **kwargs)  # type: ignore[arg-type]
    assert await lite.fastpath.read(_lite_all, _portable_all) == []


async def test_the_retry_policy_reruns_only_what_may_be_rerun() -> None:
    calls = 0
    busy = sqlite3.OperationalError("database is locked")
    busy.sqlite_errorname = "SQLITE_BUSY"  # type: ignore[attr-defined]

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise busy
        return "done"

    assert await RetryPolicy(pause_s=0).run(flaky, "flaky") == "done" and calls == 3
    calls = -10
    with pytest.raises(sqlite3.OperationalError):
        await RetryPolicy(attempts=2, pause_s=0).run(flaky, "flaky")
    other = sqlite3.OperationalError("no such table")

    async def broken() -> None:
        raise other

    with pytest.raises(sqlite3.OperationalError):
        await RETRY.run(broken, "broken")


async def test_mariadb_takes_the_portable_path(request: pytest.FixtureRequest) -> None:
    async with open_database(request, "mariadb") as db:
        async with db.transaction() as conn:
            await conn.exec_driver_sql("CREATE TABLE fp_t (k INTEGER PRIMARY KEY, v VARCHAR(20) NOT NULL)")
        try:
            fp = db.fastpath
            assert not fp.lite and fp.inline_writer is None
            await fp.write(lambda d: _lite_put(1, "x", d), lambda c: _portable_put(1, "x", c), inline=True, group=True)
            await fp.write(lambda d: _lite_put(1, "y", d), lambda c: _portable_put(1, "y", c))
            assert await fp.read(_lite_all, _portable_all, inline=True) == [(1, "y")]
        finally:
            async with db.transaction() as conn:
                await conn.exec_driver_sql("DROP TABLE fp_t")
