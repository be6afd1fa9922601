"""MariaDB/MySQL on the fast path: prebuilt statements on aiomysql connections of its own.

The MariaDB side of :mod:`xmppd.storage.inline`, behind ``FastPath.read``/``write``'s portable
side and ``Database.fetch_one``. Through SQLAlchemy one read of a login (credentials, roster,
offline messages, the vCard behind the avatar hash) was a pooled ``AsyncConnection`` (checkout
and return through the greenlet bridge), a ``COM_PING`` round trip (``pool_pre_ping``), the
statement, and a ``COMMIT`` round trip: ≈500 µs of the server's CPU on this machine. A
:class:`DirectPath` runs the same statements, compiled once per statement for the MariaDB dialect
(:class:`xmppd.storage.inline.InlineQuery`, as for SQLite), on a few aiomysql connections of
its own (``DIRECT_POOL_SIZE``): a read in autocommit, one round trip and ≈100 µs per statement;
a write (the archive's group commit: :class:`xmppd.storage.fastpath.Sql` texts) in one
transaction, its statements and ``COMMIT``, without SQLAlchemy's per-call work.

Why a read sees the same data: the engine's transactions run at ``READ COMMITTED``, where every
statement of a transaction reads its own fresh snapshot anyway, so a read-only transaction gives
a caller nothing that statements in autocommit (each its own transaction, at the same isolation
level) do not. The connections are made with the engine's own connect arguments (the dialect's
``create_connect_args``: host, database, ``charset=utf8mb4``, client flags); rows are converted
by the column types as SQLAlchemy converts them (``UtcDateTime`` to aware datetimes ...) and
returned as SQLAlchemy ``Result`` objects; a write's driver errors are raised as SQLAlchemy's
(``IntegrityError``, ``OperationalError`` ...), so the retry policy and the repositories' own
handling see what they saw.

Failures are clean: work whose connection the server dropped (a restart, ``KILL``,
``wait_timeout``) is run once more on a new connection and the idle ones are closed (after a
restart they are gone too) -- a write only when it was lost before ``COMMIT``; connections idle
longer than ``pool_recycle`` are not reused. A read that meets any other driver error, or a second
drop, runs through SQLAlchemy's read transaction, which raises what it always raised. Work using
what this path does not run (SQLAlchemy DML, expanding parameters) runs through SQLAlchemy
(``Database.read_txn``/``run_txn``), a write's direct part rolled back first.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine.result import IteratorResult, SimpleResultMetaData

from .inline import CompiledQueries, InlineQuery

if TYPE_CHECKING:
    import aiomysql

    from .engine import Database

__all__ = ["DIRECT_POOL_SIZE", "DirectConnection", "DirectPath", "Unsupported"]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Connections a :class:`DirectPath` keeps at most (reads wait for one beyond that).
DIRECT_POOL_SIZE: Final = 10
# MySQL/MariaDB client and server error numbers of a connection that is gone (as SQLAlchemy's
# MySQLDialect.is_disconnect): killed, server gone away, lost during query, out of sync, ...
_GONE: Final = frozenset((1927, 2006, 2013, 2014, 2045, 2055, 4031))


class Unsupported(Exception):
    """A statement the direct path does not run (not a SELECT, or expanding parameters)."""


class DirectConnection:
    """What a fast-path ``portable`` function is given on the direct path: ``await
    conn.execute(select, params)`` returns a ``Result`` as SQLAlchemy's ``AsyncConnection`` does;
    ``await conn.exec_driver_sql(text, params)`` runs an :class:`xmppd.storage.fastpath.Sql` text
    (a SELECT; in a write, any statement, a list of rows for ``executemany``). Any other use
    raises :class:`Unsupported` (the function then runs through SQLAlchemy)."""

    __slots__ = ("_conn", "_path", "_write", "dialect", "used")

    def __init__(self, path: DirectPath, conn: aiomysql.Connection, *, write: bool = False) -> None:
        self._path = path
        self._conn = conn
        self._write = write
        self.dialect = path.dialect
        self.used = False  # a statement was sent (a write then has something to roll back)

    async def execute(self, stmt: sa.Executable, params: Mapping[str, Any] | None = None) -> sa.Result[Any]:
        query = self._path.compiled(stmt)
        self.used = True
        async with self._conn.cursor() as cur:
            await cur.execute(query.sql, query.args(params))
            raw = await cur.fetchall()
        return IteratorResult(SimpleResultMetaData(query.keys), iter(query.rows(raw)))

    async def exec_driver_sql(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """A raw statement in the driver's paramstyle (``Sql.execute``, ``Sql.executemany``)."""
        select = sql.lstrip()[:6].upper() == "SELECT"
        if not select and not self._write:
            raise Unsupported("not a SELECT")
        many = isinstance(params, list)
        self.used = True
        async with self._conn.cursor() as cur:
            if many:
                await cur.executemany(sql, params)
            else:
                await cur.execute(sql, tuple(params))
            if not select:
                return _Written(cur.rowcount, cur.lastrowid)
            keys = [d[0] for d in cur.description or ()]
            raw = await cur.fetchall()
        return IteratorResult(SimpleResultMetaData(keys), iter([tuple(r) for r in raw]))


class _Written:
    """What a write statement on the direct path returns."""

    __slots__ = ("lastrowid", "rowcount")

    def __init__(self, rowcount: int, lastrowid: int | None) -> None:
        self.rowcount = rowcount
        self.lastrowid = lastrowid


class DirectPath:
    """Reads (autocommit) and writes (one transaction each) on a few aiomysql connections of its own
    (see the module doc)."""

    def __init__(self, db: Database, connect_kwargs: dict[str, Any], *, size: int = DIRECT_POOL_SIZE) -> None:
        self._db = db
        self.dialect = db.engine.dialect
        self._kwargs = connect_kwargs
        self._recycle = float(connect_kwargs.pop("pool_recycle"))
        self._slots = asyncio.Semaphore(size)
        # (connection, idle since), reads' (autocommit) and writes' (transactions) apart.
        self._idle: dict[bool, list[tuple[aiomysql.Connection, float]]] = {True: [], False: []}
        self._closed = False
        self._queries = CompiledQueries(db)

    @classmethod
    def for_database(cls, db: Database) -> DirectPath | None:
        """The direct path of a MariaDB/MySQL database on aiomysql; None for any other backend."""
        if not db.is_mysql or db.engine.dialect.driver != "aiomysql":
            return None
        from .engine import MYSQL_POOL_RECYCLE_S

        _args, kwargs = db.engine.dialect.create_connect_args(db.url)
        # Each statement its own transaction, at the engine's isolation level.
        kwargs = {**kwargs, "init_command": "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED"}
        kwargs.setdefault("pool_recycle", MYSQL_POOL_RECYCLE_S)
        return cls(db, kwargs)

    def compiled(self, stmt: sa.Executable) -> InlineQuery:
        """*stmt* compiled for this dialect, once per statement object."""
        try:
            return self._queries.get(stmt)
        except ValueError as exc:
            raise Unsupported(str(exc)) from None

    async def _take(self, fresh: bool, *, autocommit: bool = True) -> aiomysql.Connection:
        """An idle connection (none too old), or a new one (*fresh*: always). Holds a slot."""
        import aiomysql

        await self._slots.acquire()
        try:
            loop = asyncio.get_running_loop()
            idle = self._idle[autocommit]
            while idle and not fresh:
                conn, since = idle.pop()
                if not conn.closed and not dropped(conn) and loop.time() - since < self._recycle:
                    return conn
                conn.close()
            return await aiomysql.connect(**self._kwargs, autocommit=autocommit)
        except BaseException:
            self._slots.release()
            raise

    def _give_back(self, conn: aiomysql.Connection, *, reuse: bool) -> None:
        if reuse and not conn.closed and not self._closed:
            self._idle[conn.get_autocommit()].append((conn, asyncio.get_running_loop().time()))
        else:
            conn.close()
        self._slots.release()

    def _drop_idle(self) -> None:
        """After a dropped connection: the idle ones most likely went with it (a restart)."""
        idle, self._idle = self._idle, {True: [], False: []}
        for conn, _since in (*idle[True], *idle[False]):
            conn.close()

    async def read(self, portable: Callable[[Any], Awaitable[T]]) -> T:
        """``await portable(conn)`` on a direct connection; a dropped connection is retried once on
        a new one; anything else the driver raises (or a second drop) runs it through
        SQLAlchemy's read transaction instead (:meth:`Database.read_txn`)."""
        import pymysql

        for attempt in (1, 2):
            if self._closed:
                break
            try:
                conn = await self._take(fresh=attempt > 1)
            except (pymysql.err.Error, OSError, TimeoutError) as exc:
                log.info("direct read: no connection (%s), taking SQLAlchemy's path", exc)
                break
            started = time.perf_counter()
            try:
                result = await portable(DirectConnection(self, conn))
            except Unsupported:
                self._give_back(conn, reuse=True)
                break
            except (pymysql.err.Error, OSError, asyncio.IncompleteReadError) as exc:
                self._give_back(conn, reuse=False)  # its state is unknown
                if attempt == 1 and _gone(exc):
                    log.info("direct read: connection dropped (%s), retrying once", exc)
                    self._drop_idle()
                    continue
                log.info("direct read failed (%s), taking SQLAlchemy's path", exc)
                break
            except BaseException:  # the caller's own exception, or cancelled mid-statement
                self._give_back(conn, reuse=False)
                raise
            self._give_back(conn, reuse=True)
            self._timed(started)
            return result
        return await self._db.read_txn(portable)

    async def write(self, portable: Callable[[Any], Awaitable[T]]) -> T:
        """``await portable(conn)`` in one transaction on a direct connection, committed; rerun by
        the retry policy (a deadlock victim; once, a connection found dropped before ``COMMIT``).
        Driver errors are raised as SQLAlchemy raises them (``IntegrityError`` ...). A function
        using what the direct path does not run (SQLAlchemy DML statements) runs through
        :meth:`Database.run_txn` instead, its direct part rolled back."""
        from .fastpath import RETRY, lost_at_commit

        if self._closed:
            return await self._db.run_txn(portable)
        fresh = False

        async def attempt() -> T:
            nonlocal fresh
            try:
                conn = await self._take(fresh, autocommit=False)
            except BaseException as exc:
                if self._driver_error(exc):
                    raise self._wrapped(exc) from exc
                raise
            fresh = True  # a rerun (after a drop or a deadlock) on a new connection
            direct = DirectConnection(self, conn, write=True)
            started = time.perf_counter()
            try:
                result = await portable(direct)
            except asyncio.CancelledError:
                self._give_back(conn, reuse=False)  # the server rolls back what it had
                raise
            except BaseException as exc:
                driver = self._driver_error(exc)
                reuse = False  # unless rolled back (a cancellation meanwhile: closed)
                try:
                    if not (driver and _gone(exc)):
                        if direct.used:
                            await conn.rollback()
                        reuse = True
                except Exception:  # noqa: BLE001 - the connection is closed instead
                    pass
                finally:
                    self._give_back(conn, reuse=reuse)
                if driver:
                    if _gone(exc):
                        self._drop_idle()
                    raise self._wrapped(exc) from exc
                raise
            try:
                await conn.commit()
            except BaseException as exc:
                self._give_back(conn, reuse=False)
                if self._driver_error(exc):
                    wrapped = self._wrapped(exc)
                    lost_at_commit(wrapped)  # committed or not: unknown, never rerun
                    raise wrapped from exc
                raise
            self._give_back(conn, reuse=True)
            self._timed(started)
            return result

        try:
            return await RETRY.run(attempt, getattr(portable, "__qualname__", "direct write"))
        except Unsupported:
            return await self._db.run_txn(portable)

    def _timed(self, started: float) -> None:
        """The call's seconds to the server's storage histogram, as ``Database.transaction`` does."""
        if self._db.timing is not None:
            self._db.timing(time.perf_counter() - started)

    @staticmethod
    def _driver_error(exc: BaseException) -> bool:
        import pymysql

        return isinstance(exc, (pymysql.err.Error, OSError, asyncio.IncompleteReadError))

    def _wrapped(self, exc: BaseException) -> sa.exc.DBAPIError:
        """*exc* as SQLAlchemy would raise it (``IntegrityError``, ``OperationalError`` ...; a
        dropped connection marked ``connection_invalidated``)."""
        import pymysql

        if isinstance(exc, sa.exc.DBAPIError):
            return exc
        orig = exc if isinstance(exc, pymysql.err.Error) else pymysql.err.OperationalError(2013, str(exc))
        return sa.exc.DBAPIError.instance(  # type: ignore[return-value]
            None, None, orig, pymysql.err.Error, connection_invalidated=_gone(orig), dialect=self.dialect
        )

    async def close(self) -> None:
        """Close the idle connections (saying goodbye: no "aborted connection" in the server's
        log); those in use are closed when given back."""
        self._closed = True
        idle, self._idle = self._idle, {True: [], False: []}
        for conn, _since in (*idle[True], *idle[False]):
            try:
                await asyncio.wait_for(conn.ensure_closed(), 1.0)
            except Exception:  # noqa: BLE001 - gone already: just drop it
                conn.close()


def dropped(conn: Any) -> bool:
    """An aiomysql connection whose server has closed it (its socket saw EOF: a restart, ``KILL``,
    ``wait_timeout``), found without a round trip. The one place that knows aiomysql's private
    names (its stream reader; aiomysql's own pool tests the same)."""
    reader = getattr(conn, "_reader", None)
    if reader is None:
        return bool(getattr(conn, "closed", False))
    return bool(reader.at_eof() or reader.exception() is not None or getattr(reader, "eof_received", False))


def _gone(exc: BaseException) -> bool:
    """The connection is gone (the server closed or killed it), not the statement wrong."""
    import pymysql

    if isinstance(exc, (OSError, asyncio.IncompleteReadError, pymysql.err.InterfaceError)):
        return True
    if isinstance(exc, pymysql.err.Error) and exc.args and isinstance(exc.args[0], int):
        return exc.args[0] in _GONE
    return False
