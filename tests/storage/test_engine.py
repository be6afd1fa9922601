"""The Database engine wrapper: URLs, per-backend settings, transactions, error helpers."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from xmppd.storage.engine import Database, is_unique_violation, redact_url, sync_url

# -- URLs (no database needed) -------------------------------------------------------


def test_redact_url_hides_password() -> None:
    redacted = redact_url("mysql+aiomysql://xmppd:s3cr%40t@db.example:3306/xmppd")
    assert "s3cr" not in redacted
    assert redacted == "mysql+aiomysql://xmppd:***@db.example:3306/xmppd"


def test_redact_url_hides_password_in_query() -> None:
    redacted = redact_url("mysql+aiomysql://db.example/xmppd?user=x&password=hunter2")
    assert "hunter2" not in redacted


def test_redact_url_survives_unparseable_url() -> None:
    assert "hunter2" not in redact_url("not a url://user:hunter2@host")


def test_sync_url_swaps_drivers_and_keeps_password() -> None:
    assert sync_url("sqlite+aiosqlite:////var/lib/xmppd/x.db") == "sqlite:////var/lib/xmppd/x.db"
    assert (
        sync_url("mysql+aiomysql://u:pw@h:3306/d?charset=utf8mb4")
        == "mysql+pymysql://u:pw@h:3306/d?charset=utf8mb4"
    )
    assert sync_url("mariadb+aiomysql://u@h/d") == "mariadb+pymysql://u@h/d"
    with pytest.raises(ValueError):
        sync_url("postgresql+asyncpg://h/d")


def test_from_url_mysql_adds_utf8mb4_and_refuses_other_charsets() -> None:
    database = Database.from_url("mysql+aiomysql://u@127.0.0.1/d")  # no connection yet
    assert database.url.query["charset"] == "utf8mb4"
    assert database.is_mysql and not database.is_sqlite
    assert database.sync_url() == "mysql+pymysql://u@127.0.0.1/d?charset=utf8mb4"
    with pytest.raises(ValueError, match="utf8mb4"):
        Database.from_url("mysql+aiomysql://u@127.0.0.1/d?charset=utf8")


def test_from_url_refuses_sync_drivers_and_unknown_backends() -> None:
    with pytest.raises(ValueError, match="aiosqlite"):
        Database.from_url("sqlite:///x.db")
    with pytest.raises(ValueError, match="aiomysql"):
        Database.from_url("mysql+pymysql://u@h/d")
    with pytest.raises(ValueError, match="unsupported"):
        Database.from_url("postgresql+asyncpg://u@h/d")


def test_repr_does_not_leak_password() -> None:
    database = Database.from_url("mysql+aiomysql://u:hunter2@127.0.0.1/d")
    assert "hunter2" not in repr(database)


# -- per-backend connection settings -------------------------------------------------


@pytest.mark.asyncio
async def test_sqlite_creates_parent_directory_and_sets_pragmas(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "xmppd.db"
    database = Database.from_url(f"sqlite+aiosqlite:///{path}")
    try:
        assert path.parent.is_dir()
        assert database.dialect_name == "sqlite" and database.is_sqlite
        async with database.transaction(readonly=True) as conn:
            assert (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar() == "wal"
            assert (await conn.exec_driver_sql("PRAGMA foreign_keys")).scalar() == 1
            assert (await conn.exec_driver_sql("PRAGMA busy_timeout")).scalar() == 5000
    finally:
        await database.dispose()


@pytest.mark.asyncio
async def test_memory_sqlite_serialises_transactions() -> None:
    database = Database.from_url("sqlite+aiosqlite://")
    try:
        async with database.transaction() as conn:
            await conn.exec_driver_sql("CREATE TABLE t (n INTEGER NOT NULL)")

        async def add(n: int) -> None:
            async with database.transaction() as conn:
                await conn.execute(sa.text("INSERT INTO t (n) VALUES (:n)"), {"n": n})
                await asyncio.sleep(0)

        await asyncio.gather(*(add(n) for n in range(10)))
        async with database.transaction(readonly=True) as conn:
            assert (await conn.exec_driver_sql("SELECT count(*) FROM t")).scalar() == 10
    finally:
        await database.dispose()


@pytest.mark.asyncio
async def test_connections_get_the_backend_settings(db: Database) -> None:
    async with db.transaction(readonly=True) as conn:
        if db.is_sqlite:
            assert (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar() == "wal"
            assert (await conn.exec_driver_sql("PRAGMA foreign_keys")).scalar() == 1
            assert (await conn.exec_driver_sql("PRAGMA busy_timeout")).scalar() == 5000
        else:
            assert await conn.get_isolation_level() == "READ COMMITTED"
            charset = (await conn.exec_driver_sql("SELECT @@character_set_client")).scalar()
            assert charset == "utf8mb4"


# -- transactions -----------------------------------------------------------------------


async def _make_counter(database: Database) -> sa.Table:
    table = sa.Table(
        "counter",
        sa.MetaData(),
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("value", sa.Integer, nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=True),
        mysql_engine="InnoDB",
    )
    async with database.transaction() as conn:
        await conn.run_sync(table.metadata.create_all)
        await conn.execute(table.insert().values(id=1, value=0))
    return table


@pytest.mark.asyncio
async def test_transaction_commits_or_rolls_back(db: Database) -> None:
    counter = await _make_counter(db)
    with pytest.raises(RuntimeError):
        async with db.transaction() as conn:
            await conn.execute(counter.update().values(value=99))
            raise RuntimeError("boom")
    async with db.transaction() as conn:
        await conn.execute(counter.update().values(value=1))
    async with db.transaction(readonly=True) as conn:
        assert (await conn.execute(sa.select(counter.c.value))).scalar() == 1


@pytest.mark.asyncio
async def test_concurrent_read_modify_write_transactions_lose_no_update(db: Database) -> None:
    # SQLite: BEGIN IMMEDIATE takes the write lock before the read; MySQL: FOR UPDATE.
    counter = await _make_counter(db)

    async def increment_txn(conn: AsyncConnection) -> None:
        value = (
            await conn.execute(
                sa.select(counter.c.value).where(counter.c.id == 1).with_for_update()
            )
        ).scalar_one()
        await asyncio.sleep(0.001)
        await conn.execute(counter.update().where(counter.c.id == 1).values(value=value + 1))

    await asyncio.gather(*(db.run_txn(increment_txn) for _ in range(20)))
    async with db.transaction(readonly=True) as conn:
        assert (await conn.execute(sa.select(counter.c.value))).scalar() == 20


@pytest.mark.asyncio
async def test_bytes_round_trip_every_byte_value(db: Database) -> None:
    # Pins the aiomysql/PyMySQL >= 1.2.3 bytes-parameter repair on MariaDB.
    counter = await _make_counter(db)
    payload = bytes(range(256)) + b"'\\\x00%s"
    async with db.transaction() as conn:
        await conn.execute(counter.update().values(data=payload))
    async with db.transaction(readonly=True) as conn:
        assert (await conn.execute(sa.select(counter.c.data))).scalar() == payload
        found = (
            await conn.execute(sa.select(counter.c.id).where(counter.c.data == payload))
        ).scalar()
        assert found == 1


@pytest.mark.asyncio
async def test_is_unique_violation_recognises_duplicates_only(db: Database) -> None:
    counter = await _make_counter(db)
    with pytest.raises(IntegrityError) as duplicate:
        async with db.transaction() as conn:
            await conn.execute(counter.insert().values(id=1, value=5))
    assert is_unique_violation(duplicate.value)
    with pytest.raises(IntegrityError) as not_null:
        async with db.transaction() as conn:
            await conn.execute(counter.insert().values(id=2, value=None))
    assert not is_unique_violation(not_null.value)
    assert not is_unique_violation(RuntimeError("x"))


async def test_sqlite_file_writers_queue_instead_of_failing_with_database_locked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Many writers that each hold the lock a while: more than SQLite's busy timeout in all."""
    import xmppd.storage.engine as engine_mod

    monkeypatch.setattr(engine_mod, "SQLITE_BUSY_TIMEOUT_MS", 100)
    database = Database.from_url(f"sqlite+aiosqlite:///{tmp_path / 'w.db'}")
    try:
        async with database.transaction() as conn:
            await conn.exec_driver_sql("CREATE TABLE t (n INTEGER NOT NULL)")

        async def add(n: int) -> None:
            async with database.transaction() as conn:
                await conn.execute(sa.text("INSERT INTO t (n) VALUES (:n)"), {"n": n})
                await asyncio.sleep(0.02)  # the write lock is held across the event loop

        await asyncio.gather(*(add(n) for n in range(30)))
        async with database.transaction(readonly=True) as conn:
            assert (await conn.exec_driver_sql("SELECT count(*) FROM t")).scalar() == 30
    finally:
        await database.dispose()
