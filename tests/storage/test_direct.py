"""MariaDB without ``pool_pre_ping``: the fast path's direct reads and writes (``xmppd.storage.direct``)
return and raise what SQLAlchemy does, and a connection the server dropped (``KILL`` of this test's
own connection ids) is replaced and its work rerun once -- on the direct path and on SQLAlchemy's
pool -- while a transaction lost at ``COMMIT`` is never rerun."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pymysql
import pytest
import pytest_asyncio
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection

from tests.storage_fixtures import MariaDBServer, open_database
from xmppd.storage.direct import DirectConnection
from xmppd.storage.engine import Database, is_unique_violation
from xmppd.storage.fastpath import RETRY, Sql, lost_at_commit
from xmppd.storage.metadata import UtcDateTime

_md = sa.MetaData()
_T = sa.Table(
    "direct_probe",
    _md,
    sa.Column("k", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("name", sa.String(50)),
    sa.Column("flag", sa.Boolean, nullable=False),
    sa.Column("blob", sa.LargeBinary),
    sa.Column("at", UtcDateTime()),
)
_BY_KEY = sa.select(_T.c.k, _T.c.name, _T.c.flag, _T.c.blob, _T.c.at).where(_T.c.k == sa.bindparam("k"))
_ALL = sa.select(_T.c.k, _T.c.name.label("who")).where(_T.c.flag == sa.true()).order_by(_T.c.k)
_WHEN = datetime(2026, 12, 7, 8, 0, 0, 123456, tzinfo=UTC)


@pytest_asyncio.fixture
async def maria(request: pytest.FixtureRequest) -> AsyncIterator[Database]:
    async with open_database(request, "mariadb", migrated=False) as db:
        async with db.transaction() as conn:
            await conn.run_sync(_md.create_all)
            await conn.execute(_T.insert(), [
                {"k": 1, "name": "één ☃", "flag": True, "blob": b"\x00\xff", "at": _WHEN},
                {"k": 2, "name": None, "flag": False, "blob": None, "at": None},
                {"k": 3, "name": "three", "flag": True, "blob": b"", "at": _WHEN},
            ])
        yield db


def _kill(server: MariaDBServer, connection_id: int) -> None:
    """KILL one of this test's own connections and wait until the server has closed it."""
    admin = pymysql.connect(host=server.url.host or "127.0.0.1", port=server.url.port or 3306,
                            user=server.url.username or "root", password=server.url.password or "", autocommit=True)
    try:
        with admin.cursor() as cur:
            cur.execute("KILL CONNECTION %s", (connection_id,))
            while True:
                cur.execute("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = %s", (connection_id,))
                if cur.fetchone()[0] == 0:  # type: ignore[index]
                    break
    finally:
        admin.close()


async def _connection_id(conn: AsyncConnection | DirectConnection) -> int:
    return int((await conn.exec_driver_sql("SELECT CONNECTION_ID()")).scalar())  # type: ignore[arg-type]


async def _both(db: Database, stmt: sa.Select, params: dict | None = None) -> tuple[list, list]:  # type: ignore[type-arg]
    """The rows of *stmt* through the fast path's direct read and through SQLAlchemy."""
    async def read(conn: AsyncConnection) -> list:  # type: ignore[type-arg]
        assert isinstance(conn, DirectConnection)
        return [tuple(r) for r in (await conn.execute(stmt, params)).all()]

    direct = await db.fastpath.read(_never, read)

    async def via_sa(conn: AsyncConnection) -> list:  # type: ignore[type-arg]
        return [tuple(r) for r in (await conn.execute(stmt, params)).all()]

    return direct, await db.read_txn(via_sa)


def _never(_conn: object) -> None:
    raise AssertionError("lite functions run on SQLite only")


async def test_direct_reads_return_what_sqlalchemy_returns(maria: Database) -> None:
    timed: list[float] = []
    maria.timing = timed.append  # the server's storage histogram (/metrics) sees direct reads too
    assert await maria.fetch_one(_BY_KEY, {"k": 3}) is not None and len(timed) == 1
    for k in (1, 2, 3, 4):
        direct, via_sa = await _both(maria, _BY_KEY, {"k": k})
        assert direct == via_sa
    direct, via_sa = await _both(maria, _ALL)
    assert direct == via_sa == [(1, "één ☃"), (3, "three")]
    row = await maria.fetch_one(_BY_KEY, {"k": 1})  # Database.fetch_one: the same direct read
    assert row is not None and row.name == "één ☃" and row.flag is True and row.blob == b"\x00\xff" and row.at == _WHEN
    assert row._mapping["at"].tzinfo is not None


async def test_an_expanding_statement_takes_sqlalchemys_read(maria: Database) -> None:
    expanding = sa.select(_T.c.k).where(_T.c.k.in_(sa.bindparam("ks", expanding=True))).order_by(_T.c.k)

    async def read(conn: AsyncConnection) -> list[int]:
        return [int(k) for k in (await conn.execute(expanding, {"ks": [1, 3]})).scalars()]

    assert await maria.fastpath.read(_never, read) == [1, 3]


async def test_a_dropped_direct_connection_is_replaced_and_the_read_rerun_once(maria: Database, mariadb_server: MariaDBServer) -> None:
    async def who(conn: AsyncConnection) -> tuple[int, str | None]:
        assert isinstance(conn, DirectConnection)
        row = (await conn.execute(_BY_KEY, {"k": 3})).one()
        return await _connection_id(conn), row.name

    first, name = await maria.fastpath.read(_never, who)
    assert name == "three"
    _kill(mariadb_server, first)
    second, name = await maria.fastpath.read(_never, who)  # the killed one is never reused
    assert name == "three" and second != first
    # Dropped while taken (the reader had not seen the socket close yet): rerun on a new one.
    calls = 0

    async def dropped_once(conn: AsyncConnection) -> tuple[int, str | None]:
        nonlocal calls
        calls += 1
        cid = await _connection_id(conn)
        if calls == 1:
            await asyncio.to_thread(_kill, mariadb_server, cid)
        row = (await conn.execute(_BY_KEY, {"k": 3})).one()
        return cid, row.name

    third, name = await maria.fastpath.read(_never, dropped_once)
    assert calls == 2 and name == "three" and third not in (first, second)


async def test_a_dropped_pooled_connection_is_replaced_without_pre_ping(maria: Database, mariadb_server: MariaDBServer) -> None:
    assert not maria.engine.sync_engine.pool._pre_ping

    async def write(conn: AsyncConnection, v: str) -> int:
        await conn.execute(_T.update().where(_T.c.k == 2).values(name=v))
        return await _connection_id(conn)

    first = await maria.run_txn(write, "a")
    _kill(mariadb_server, first)
    await asyncio.sleep(0.01)  # a turn of the loop reads the socket's EOF, as a server between logins does
    # Found closed at checkout (no round trip): the pool hands out a new connection.
    async with maria.transaction() as conn:
        second = await _connection_id(conn)
    assert second != first
    # Dropped in the middle of a transaction: rolled back by the server, rerun once, committed.
    calls = 0

    async def killed_midway(conn: AsyncConnection) -> int:
        nonlocal calls
        calls += 1
        await conn.execute(_T.update().where(_T.c.k == 2).values(name=f"try {calls}"))
        cid = await _connection_id(conn)
        if calls == 1:
            await asyncio.to_thread(_kill, mariadb_server, cid)
        await conn.execute(_T.update().where(_T.c.k == 3).values(name=f"try {calls}"))
        return cid

    third = await maria.run_txn(killed_midway)
    assert calls == 2 and third not in (first, second)

    async def names(conn: AsyncConnection) -> list[str | None]:
        return [r[0] for r in await conn.execute(sa.select(_T.c.name).where(_T.c.k.in_([2, 3])).order_by(_T.c.k))]

    assert await maria.read_txn(names) == ["try 2", "try 2"]
    await maria.ping()


async def test_a_transaction_lost_at_commit_is_not_rerun() -> None:
    runs = 0

    def dropped(at_commit: bool) -> OperationalError:
        exc = OperationalError("COMMIT", {}, pymysql.err.OperationalError(2013, "Lost connection"), connection_invalidated=True)
        if at_commit:
            lost_at_commit(exc)
        return exc

    async def attempt(at_commit: bool) -> str:
        nonlocal runs
        runs += 1
        if runs == 1:
            raise dropped(at_commit)
        return "done"

    assert await RETRY.run(lambda: attempt(False), "probe") == "done" and runs == 2
    runs = 0
    with pytest.raises(DBAPIError):
        await RETRY.run(lambda: attempt(True), "probe")
    assert runs == 1
    # Dropped twice: rerun once only.
    runs = 0

    async def always() -> str:
        nonlocal runs
        runs += 1
        raise dropped(False)

    with pytest.raises(DBAPIError):
        await RETRY.run(always, "probe")
    assert runs == 2


_PUT = Sql("INSERT INTO direct_probe (k, name, flag) VALUES (?, ?, ?)")


async def _names(db: Database) -> dict[int, str | None]:
    async def read(conn: AsyncConnection) -> dict[int, str | None]:
        return {int(k): n for k, n in await conn.execute(sa.select(_T.c.k, _T.c.name))}

    return await db.read_txn(read)


async def test_direct_writes_commit_whole_and_fail_as_sqlalchemy_does(maria: Database) -> None:
    async def put(conn: AsyncConnection, rows: list[tuple[int, str, bool]]) -> int:
        assert isinstance(conn, DirectConnection)
        await _PUT.executemany(conn, rows[:-1])
        await _PUT.execute(conn, rows[-1])
        return len(rows)

    assert await maria.fastpath.write(_never, lambda c: put(c, [(10, "ten", True), (11, "eleven", False), (12, "twelve", True)])) == 3
    # A duplicate key in the last statement: SQLAlchemy's IntegrityError, nothing of it committed.
    with pytest.raises(sa.exc.IntegrityError) as caught:
        await maria.fastpath.write(_never, lambda c: put(c, [(20, "twenty", True), (10, "again", True)]))
    assert is_unique_violation(caught.value)
    # The function's own exception: rolled back, raised as it is.

    async def fails(conn: AsyncConnection) -> None:
        await _PUT.execute(conn, (21, "x", True))
        raise ValueError("no")

    with pytest.raises(ValueError, match="no"):
        await maria.fastpath.write(_never, fails)
    names = await _names(maria)
    assert names[10] == "ten" and names[12] == "twelve" and 20 not in names and 21 not in names


async def test_a_write_using_sqlalchemy_statements_runs_through_run_txn_once(maria: Database) -> None:
    runs: list[str] = []

    async def mixed(conn: AsyncConnection) -> None:
        runs.append(type(conn).__name__)
        await _PUT.execute(conn, (30, "thirty", True))
        await conn.execute(_T.update().where(_T.c.k == 30).values(name="XXX"))

    await maria.fastpath.write(_never, mixed)
    assert runs == ["DirectConnection", "AsyncConnection"]  # the direct part rolled back first
    assert (await _names(maria))[30] == "XXX"


async def test_a_direct_write_whose_connection_drops_before_commit_is_rerun_once(maria: Database, mariadb_server: MariaDBServer) -> None:
    calls = 0

    async def killed_midway(conn: AsyncConnection) -> int:
        nonlocal calls
        calls += 1
        assert isinstance(conn, DirectConnection)
        await _PUT.execute(conn, (40 + calls, f"try {calls}", True))
        cid = await _connection_id(conn)
        if calls == 1:
            await asyncio.to_thread(_kill, mariadb_server, cid)
        await _PUT.execute(conn, (50 + calls, f"try {calls}", True))
        return cid

    await maria.fastpath.write(_never, killed_midway)
    names = await _names(maria)
    assert calls == 2 and 41 not in names and 51 not in names and names[42] == names[52] == "try 2"


async def test_cancelled_direct_work_gives_its_connection_slot_back(maria: Database) -> None:
    from xmppd.storage.direct import DIRECT_POOL_SIZE

    async def slow_read(conn: AsyncConnection) -> None:
        await conn.exec_driver_sql("SELECT SLEEP(1)")

    async def slow_write(conn: AsyncConnection) -> None:
        await _PUT.execute(conn, (60, "sixty", True))
        await conn.exec_driver_sql("SELECT SLEEP(1)")

    for i in range(DIRECT_POOL_SIZE + 1):  # more than there are slots: a leaked one would hang here
        work = maria.fastpath.read(_never, slow_read) if i % 2 else maria.fastpath.write(_never, slow_write)
        task = asyncio.ensure_future(work)
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    # Every slot free again: DIRECT_POOL_SIZE reads hold one each at the same time (with one
    # leaked, the last would wait for ever: bounded, not timed).
    inside = 0
    everyone = asyncio.Event()

    async def together(conn: AsyncConnection) -> int:
        nonlocal inside
        inside += 1
        if inside == DIRECT_POOL_SIZE:
            everyone.set()
        await everyone.wait()
        return int((await conn.exec_driver_sql("SELECT 1")).scalar())  # type: ignore[arg-type]

    reads = [maria.fastpath.read(_never, together) for _ in range(DIRECT_POOL_SIZE)]
    assert await asyncio.wait_for(asyncio.gather(*reads), 30) == [1] * DIRECT_POOL_SIZE
    assert 60 not in await _names(maria)  # the cancelled writes never committed
