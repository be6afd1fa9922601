"""The database engine: one :class:`Database` owning one SQLAlchemy ``AsyncEngine``.

Two backends are supported:

* ``sqlite+aiosqlite:///path/to/xmppd.db`` (default). Every connection gets
  ``journal_mode=WAL`` (readers never block the writer), ``busy_timeout`` (a writer
  waits for the lock instead of failing at once) and ``foreign_keys=ON`` (so that
  ``ON DELETE CASCADE`` works). sqlite3's own, non-standard transaction handling
  (no BEGIN before SELECT) is switched off and xmppd emits BEGIN itself: ``BEGIN
  IMMEDIATE`` for a write transaction, so that a read-modify-write transaction takes
  the write lock up front and can never fail half-way with ``SQLITE_BUSY``, and plain
  (deferred) ``BEGIN`` for a read-only one.
* ``mysql+aiomysql://user:password@host/db`` (MariaDB >= 10.5 or MySQL 8), also
  spelled ``mariadb+aiomysql://``: ``charset=utf8mb4`` (added if absent, refused if
  anything else), ``READ COMMITTED`` isolation and ``pool_recycle`` below the server's
  ``wait_timeout``. No ``pool_pre_ping`` (a round trip per checkout): a transaction whose
  pooled connection turns out dropped (a restart, ``KILL``) is rerun once on a new connection
  by the retry policy (:data:`xmppd.storage.fastpath.RETRY`) -- unless it was lost during
  ``COMMIT``, when whether it committed is unknown and the error is raised.

Repositories run their work as ``*_txn`` functions through :meth:`Database.run_txn`
(which retries deadlocks) or inside ``async with db.transaction() as conn:``; hot paths go
through ``db.fastpath`` (:mod:`xmppd.storage.fastpath`).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Concatenate, Final, ParamSpec, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from .fastpath import FastPath, driver_thread

__all__ = [
    "Database",
    "SqliteOnly",
    "is_deadlock",
    "is_unique_violation",
    "redact_url",
    "sync_url",
]

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

#: Milliseconds an SQLite writer waits for the database lock before failing.
SQLITE_BUSY_TIMEOUT_MS: Final = 5000
#: Seconds a write transaction waits for its turn in this process's SQLite writer queue.
SQLITE_WRITE_QUEUE_TIMEOUT_S: Final = 30.0
#: Seconds after which a pooled MySQL connection is replaced (server default
#: ``wait_timeout`` is 8 hours; proxies and load balancers often cut idle TCP sooner).
MYSQL_POOL_RECYCLE_S: Final = 1800

# Execution option read by the SQLite "begin" listener: "IMMEDIATE" or "DEFERRED".
_SQLITE_BEGIN_OPTION: Final = "xmppd_sqlite_begin"

_SYNC_DRIVERS: Final = {
    "sqlite+aiosqlite": "sqlite",
    "mysql+aiomysql": "mysql+pymysql",
    "mariadb+aiomysql": "mariadb+pymysql",
}

# MySQL/MariaDB error numbers.
_ER_DUP_ENTRY: Final = 1062
_ER_LOCK_DEADLOCK: Final = 1213
_ER_CHECKREAD: Final = 1020  # MariaDB: "Record has changed since last read"


class SqliteOnly(NotImplementedError):
    """A SQLite-only fast path (:meth:`Database.sqlite_call`, :meth:`Database.sqlite_write`) was
    called on another backend or driver: the caller takes its portable path (``run_txn``)."""


def redact_url(url: str | URL) -> str:
    """The URL with its password (and any ``password=`` query value) hidden, for logs."""
    try:
        parsed = make_url(url) if isinstance(url, str) else url
    except Exception:
        # Not parseable: hide whatever sits between "://user:" and "@".
        return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", str(url))
    query = {
        k: ("***" if k.lower() in ("password", "passwd") else v) for k, v in parsed.query.items()
    }
    return parsed.set(query=query).render_as_string(hide_password=True)


def sync_url(url: str | URL) -> str:
    """The same database with a synchronous driver (for Alembic's CLI / offline mode).

    ``sqlite+aiosqlite`` becomes ``sqlite``, ``mysql+aiomysql`` becomes
    ``mysql+pymysql``. The password is kept: the result is a working URL, so never
    log it (use :func:`redact_url`).
    """
    parsed = make_url(url) if isinstance(url, str) else url
    driver = _SYNC_DRIVERS.get(parsed.drivername)
    if driver is None:
        if parsed.drivername in _SYNC_DRIVERS.values():
            driver = parsed.drivername
        else:
            raise ValueError(f"unsupported database URL scheme {parsed.drivername!r}")
    return parsed.set(drivername=driver).render_as_string(hide_password=False)


def _mysql_errno(exc: BaseException) -> int | None:
    orig = getattr(exc, "orig", exc)
    args = getattr(orig, "args", ())
    if args and isinstance(args[0], int):
        return args[0]
    return None


def _sqlite_error_name(exc: BaseException) -> str | None:
    orig = getattr(exc, "orig", exc)
    if isinstance(orig, sqlite3.Error):
        return getattr(orig, "sqlite_errorname", None)
    return None


def is_unique_violation(exc: BaseException) -> bool:
    """True if *exc* (a SQLAlchemy ``IntegrityError``) is a duplicate key.

    Uniqueness is enforced by constraints, never by a check-then-insert; repositories
    catch the ``IntegrityError`` and use this to translate it into their own
    ``...Exists`` exception.
    """
    if not isinstance(exc, DBAPIError):
        return False
    name = _sqlite_error_name(exc)
    if name is not None:
        return name in ("SQLITE_CONSTRAINT_UNIQUE", "SQLITE_CONSTRAINT_PRIMARYKEY")
    return _mysql_errno(exc) == _ER_DUP_ENTRY


def is_deadlock(exc: BaseException) -> bool:
    """True if the transaction was chosen as a deadlock victim and may simply be rerun."""
    if not isinstance(exc, DBAPIError) or _sqlite_error_name(exc) is not None:
        return False
    return _mysql_errno(exc) in (_ER_LOCK_DEADLOCK, _ER_CHECKREAD)


class Database:
    """One async engine and the transaction helpers repositories use.

    Build it with :meth:`from_url`; call :meth:`dispose` at shutdown.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        # Called with the seconds of each transaction (the server's storage histogram, /metrics).
        self.timing: Callable[[float], None] | None = None
        # A ":memory:" SQLite database lives in one shared connection, which cannot hold
        # two transactions at once: serialise them.
        self._serial: asyncio.Lock | None = (
            asyncio.Lock()
            if engine.dialect.name == "sqlite" and _is_sqlite_memory(engine.url)
            else None
        )
        # A file SQLite database has one writer at a time. Writers queued in SQLite's busy
        # handler are served in no order and give up after busy_timeout ("database is locked"
        # under load); queue them here instead, first come first served.
        self._writer: asyncio.Lock | None = (
            asyncio.Lock() if engine.dialect.name == "sqlite" and self._serial is None else None
        )
        # sqlite_write: writes waiting for the next group commit, and the task committing them.
        self._batch: list[tuple[Callable[[sqlite3.Connection], Any], asyncio.Future[Any]]] = []
        self._batcher: asyncio.Task[None] | None = None
        self._fastpath: FastPath | None = None

    @classmethod
    def from_url(cls, url: str | URL, *, echo: bool = False, **engine_kwargs: Any) -> Database:
        """Create the engine for *url* with the per-backend settings described above.

        *engine_kwargs* go to ``create_async_engine`` and override the defaults
        (``pool_size``, ``pool_recycle``, ...).
        """
        parsed = make_url(url) if isinstance(url, str) else url
        backend = parsed.get_backend_name()
        kwargs: dict[str, Any] = {"echo": echo}
        if backend == "sqlite":
            if parsed.get_driver_name() != "aiosqlite":
                raise ValueError("SQLite needs the async driver: use sqlite+aiosqlite://")
            if not _is_sqlite_memory(parsed) and not parsed.query.get("uri"):
                Path(parsed.database or "").expanduser().resolve().parent.mkdir(
                    parents=True, exist_ok=True
                )
        elif backend in ("mysql", "mariadb"):
            if parsed.get_driver_name() != "aiomysql":
                raise ValueError("MySQL/MariaDB needs the async driver: use mysql+aiomysql://")
            charset = parsed.query.get("charset")
            if charset is None:
                parsed = parsed.update_query_dict({"charset": "utf8mb4"})
            elif charset != "utf8mb4":
                raise ValueError(f"charset={charset} cannot store all of Unicode: use utf8mb4")
            _repair_aiomysql_bytes()
            kwargs.update(
                pool_recycle=MYSQL_POOL_RECYCLE_S,
                isolation_level="READ COMMITTED",
            )
        else:
            raise ValueError(f"unsupported database backend {backend!r} in {redact_url(parsed)}")
        kwargs.update(engine_kwargs)
        engine = create_async_engine(parsed, **kwargs)
        if backend == "sqlite":
            _install_sqlite_listeners(engine)
        else:
            _install_mysql_listeners(engine)
        log.info("database %s", redact_url(parsed))
        return cls(engine)

    # -- properties -----------------------------------------------------------------

    @property
    def engine(self) -> AsyncEngine:
        return self._engine

    @property
    def url(self) -> URL:
        return self._engine.url

    @property
    def dialect_name(self) -> str:
        """``"sqlite"`` or ``"mysql"`` (``"mariadb"`` with a ``mariadb+`` URL)."""
        return self._engine.dialect.name

    @property
    def is_sqlite(self) -> bool:
        return self.dialect_name == "sqlite"

    @property
    def sqlite_file(self) -> str | None:
        """The path of a file SQLite database (as in the URL); None for a memory database, a
        ``uri=true`` URL or another backend."""
        url = self._engine.url
        if not self.is_sqlite or _is_sqlite_memory(url) or url.query.get("uri") or not url.database:
            return None
        return url.database

    @property
    def is_mysql(self) -> bool:
        """MySQL or MariaDB, whichever URL scheme was used."""
        return self.dialect_name in ("mysql", "mariadb")

    def sync_url(self) -> str:
        """This database with a synchronous driver; see :func:`sync_url`."""
        return sync_url(self._engine.url)

    def __repr__(self) -> str:
        return f"<Database {redact_url(self._engine.url)}>"

    # -- transactions ---------------------------------------------------------------

    async def ping(self) -> None:
        """One trivial query (``SELECT 1``): raises when the database does not answer (/health).
        A pooled connection found dropped is replaced once (the retry policy)."""
        from .fastpath import RETRY

        async def attempt() -> None:
            async with self.connect() as conn:
                await conn.execute(sa.text("SELECT 1"))
                await conn.rollback()

        await RETRY.run(attempt, "ping")

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[AsyncConnection]:
        """A connection *without* a transaction (for DDL helpers, PRAGMAs, locks).

        SQLAlchemy autobegins on the first statement; prefer :meth:`transaction`.
        """
        async with self._maybe_serial(), self._engine.connect() as conn:
            yield conn

    @asynccontextmanager
    async def transaction(self, *, readonly: bool = False) -> AsyncIterator[AsyncConnection]:
        """``async with db.transaction() as conn:`` -- commit on success, roll back on error.

        On SQLite a write transaction (the default) begins with ``BEGIN IMMEDIATE``;
        ``readonly=True`` uses a deferred ``BEGIN`` so that readers run alongside the
        writer (WAL) -- but a write inside it can then fail at once with "database is
        locked", so only read in it. On MySQL *readonly* changes nothing.
        """
        started = time.perf_counter()
        committing = False
        try:
            async with self._maybe_serial(), self._write_turn(readonly), self._engine.connect() as conn:
                if self.is_sqlite:
                    await conn.execution_options(
                        **{_SQLITE_BEGIN_OPTION: "DEFERRED" if readonly else "IMMEDIATE"}
                    )
                async with conn.begin():
                    yield conn
                    committing = True
        except DBAPIError as exc:
            if committing:
                from .fastpath import lost_at_commit

                lost_at_commit(exc)
            raise
        finally:
            if self.timing is not None:
                self.timing(time.perf_counter() - started)

    async def run_txn(
        self,
        func: Callable[Concatenate[AsyncConnection, P], Awaitable[T]],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """Run ``await func(conn, *args, **kwargs)`` in a write transaction.

        A MySQL deadlock victim is rolled back and rerun (the one retry policy,
        :data:`xmppd.storage.fastpath.RETRY`), so *func* must not have side effects outside
        the database.
        """
        from .fastpath import RETRY

        async def attempt() -> T:
            async with self.transaction() as conn:
                return await func(conn, *args, **kwargs)

        return await RETRY.run(attempt, _name(func))

    async def read_txn(
        self,
        func: Callable[Concatenate[AsyncConnection, P], Awaitable[T]],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """Run ``await func(conn, *args, **kwargs)`` in a read-only transaction (rerun by the
        retry policy, e.g. once when its pooled MySQL connection turned out dropped)."""
        from .fastpath import RETRY

        async def attempt() -> T:
            async with self.transaction(readonly=True) as conn:
                return await func(conn, *args, **kwargs)

        return await RETRY.run(attempt, _name(func))

    async def fetch_one(
        self, stmt: sa.Executable, params: dict[str, Any] | None = None
    ) -> sa.Row[Any] | None:
        """The first row of one read-only statement (``None`` when there is none).

        On SQLite it runs in autocommit, without ``BEGIN``/``ROLLBACK``: one statement is
        its own consistent read, and each of those is a hand-off to aiosqlite's thread. On
        MySQL it is the fast path's read (:meth:`FastPath.read`). Build *stmt* once with
        ``sa.bindparam`` placeholders and pass *params*: SQLAlchemy's compiled cache then
        serves every call (and on MySQL the fast path's direct reads: one round trip in
        autocommit, :mod:`xmppd.storage.direct`).
        """
        return await self._one_statement(stmt, params, sa.Result.first)

    async def fetch_all(self, stmt: sa.Executable, params: dict[str, Any] | None = None) -> Sequence[sa.Row[Any]]:
        """Every row of one read-only statement, as :meth:`fetch_one` reads its first."""
        return await self._one_statement(stmt, params, sa.Result.all)

    async def _one_statement(self, stmt: sa.Executable, params: dict[str, Any] | None,
                             take: Callable[[sa.Result[Any]], T]) -> T:
        if self.is_sqlite:
            async with self._maybe_serial(), self._engine.connect() as conn:
                await conn.execution_options(**{_SQLITE_BEGIN_OPTION: "NONE"})
                return take(await conn.execute(stmt, params))

        async def run(conn: AsyncConnection) -> T:
            return take(await conn.execute(stmt, params))

        return await self.fastpath.read(_no_lite, run)

    async def sqlite_call(self, fn: Callable[[sqlite3.Connection], T], *, write: bool) -> T:
        """SQLite: ``fn(connection)`` as one whole transaction on aiosqlite's connection thread.

        ``BEGIN IMMEDIATE`` (``write``, in this process's writer queue) or ``BEGIN``, then *fn*
        with the ``sqlite3`` connection, then ``COMMIT`` (``ROLLBACK`` if *fn* raises): one
        hand-off to the driver's thread instead of three or four per statement. *fn* runs on
        that thread: it may only use the connection and its own arguments. Raises
        ``SqliteOnly`` on another backend or driver (use :meth:`run_txn` there).
        """
        if not self.is_sqlite:
            raise SqliteOnly("sqlite_call needs SQLite")
        async with self._maybe_serial(), self._write_turn(not write), self._engine.connect() as conn:
            found = await driver_thread(conn)
            if found is None:
                raise SqliteOnly("the SQLite driver has no connection thread to run on")
            run, db = found
            begin = "BEGIN IMMEDIATE" if write else "BEGIN"

            def txn() -> T:
                db.execute(begin)
                try:
                    result = fn(db)
                    db.execute("COMMIT")
                except BaseException:
                    if db.in_transaction:
                        db.execute("ROLLBACK")
                    raise
                return result

            return await run(txn)  # type: ignore[no-any-return]

    async def sqlite_write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """SQLite: ``fn(connection)`` committed in a shared write transaction (group commit).

        Writes that arrive while a batch is on the driver's thread wait for the next batch; each
        batch is one :meth:`sqlite_call` in which every *fn* runs inside its own ``SAVEPOINT``:
        one that raises is rolled back alone and its caller gets the exception, the others are
        committed together. The call returns once its batch has committed. Under load this
        turns N writers' turns in the writer queue (each at least one event-loop turn and one
        hand-off to the driver's thread) into one. *fn* runs on the driver's thread (see
        :meth:`sqlite_call`) and must not commit, roll back or leave its savepoint. Never await
        it inside another write transaction of this database: the batch waits for that one.
        """
        if not self.is_sqlite:
            raise SqliteOnly("sqlite_write needs SQLite")
        fut: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._batch.append((fn, fut))
        if self._batcher is None:
            self._batcher = asyncio.get_running_loop().create_task(self._write_batches())
        return await fut

    async def _write_batches(self) -> None:
        try:
            while self._batch:
                batch, self._batch = self._batch, []
                try:
                    outcomes = await self.sqlite_call(functools.partial(_run_batch, [fn for fn, _f in batch]), write=True)
                except asyncio.CancelledError:
                    for _fn, fut in batch:  # committed or not: unknown, as for a cancelled caller
                        fut.cancel()
                    raise
                except Exception as exc:  # the batch as a whole failed (BEGIN, COMMIT, the driver)
                    for _fn, fut in batch:
                        if not fut.done():
                            fut.set_exception(exc)
                    continue
                for (_fn, fut), (ok, value) in zip(batch, outcomes, strict=True):
                    if not fut.done():
                        if ok:
                            fut.set_result(value)
                        else:
                            fut.set_exception(value)
        finally:
            self._batcher = None
            for _fn, fut in self._batch:  # only when cancelled (shutdown)
                if not fut.done():
                    fut.set_exception(ConnectionError("the database is closing"))
            self._batch = []

    def write_turn_free(self) -> bool:
        """No write transaction of this process runs or waits for its turn now (SQLite files;
        always true elsewhere): one that starts and ends without awaiting cannot meet another."""
        lock = self._writer
        if lock is None:
            return True
        waiters = lock._waiters  # asyncio.Lock.acquire's own fast-path test
        return not lock.locked() and (not waiters or all(w.cancelled() for w in waiters))

    async def sqlite_checkpoint(self) -> None:
        """SQLite: a passive WAL checkpoint on the driver's thread (copies what no reader needs
        into the database file; never waits for readers or the writer)."""
        if not self.is_sqlite:
            raise SqliteOnly("sqlite_checkpoint needs SQLite")
        async with self._maybe_serial(), self._engine.connect() as conn:
            await conn.execution_options(**{_SQLITE_BEGIN_OPTION: "NONE"})
            await conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")

    @property
    def fastpath(self) -> FastPath:
        """The one storage fast path of this database (:mod:`xmppd.storage.fastpath`)."""
        if self._fastpath is None:
            from .fastpath import FastPath

            self._fastpath = FastPath(self)
        return self._fastpath

    async def dispose(self) -> None:
        """Close every pooled connection. The object is unusable afterwards."""
        if self._fastpath is not None:
            await self._fastpath.close()
        await self._engine.dispose()

    @asynccontextmanager
    async def _write_turn(self, readonly: bool) -> AsyncIterator[None]:
        lock = self._writer
        if lock is None or readonly:
            yield
            return
        try:
            await asyncio.wait_for(lock.acquire(), SQLITE_WRITE_QUEUE_TIMEOUT_S)
        except TimeoutError:
            # A writer nested in another's transaction (or one stuck): as before, SQLite's
            # busy timeout decides.
            yield
            return
        try:
            yield
        finally:
            lock.release()

    @asynccontextmanager
    async def _maybe_serial(self) -> AsyncIterator[None]:
        if self._serial is None:
            yield
        else:
            async with self._serial:
                yield


def _no_lite(_db: sqlite3.Connection) -> Any:
    raise AssertionError("not on SQLite")  # FastPath.read runs lite functions on SQLite only


def _run_batch(fns: list[Callable[[sqlite3.Connection], Any]], db: sqlite3.Connection) -> list[tuple[bool, Any]]:
    """:meth:`Database.sqlite_write`'s batch, on the driver's thread inside one transaction."""
    out: list[tuple[bool, Any]] = []
    for fn in fns:
        db.execute("SAVEPOINT xmppd_write")
        try:
            value = fn(db)
        except Exception as exc:
            db.execute("ROLLBACK TO xmppd_write")
            db.execute("RELEASE xmppd_write")
            out.append((False, exc))
        else:
            db.execute("RELEASE xmppd_write")
            out.append((True, value))
    return out


def _name(func: Callable[..., Any]) -> str:
    return getattr(func, "__qualname__", repr(func))


def _is_sqlite_memory(url: URL) -> bool:
    database = url.database or ""
    return database in ("", ":memory:") or (
        "mode=memory" in database or url.query.get("mode") == "memory"
    )


def _escape_bytes_hex(value: bytes) -> str:
    return "_binary X'" + value.hex() + "'"


def _repair_aiomysql_bytes() -> None:
    """Let aiomysql send ``bytes`` parameters again with PyMySQL >= 1.2.3.

    aiomysql 0.3.2 calls ``pymysql.converters.escape_bytes_prefixed``, which PyMySQL
    1.2.3 turned into a placeholder string, so every BLOB parameter fails with
    "'str' object is not callable" (aio-libs/aiomysql#1080). Until a fixed aiomysql is
    released, put a hex-literal escaper in its place -- only when the name is broken,
    so a fixed aiomysql or an older PyMySQL is left alone.
    """
    try:
        import aiomysql.connection as aiomysql_connection
    except ImportError:  # pragma: no cover - the [mysql] extra is not installed
        return
    if not callable(getattr(aiomysql_connection, "escape_bytes_prefixed", None)):
        aiomysql_connection.escape_bytes_prefixed = _escape_bytes_hex


def _enable_wal(cursor: Any) -> None:
    # WAL is a property of the database file: once set it stays. Switching to it needs
    # an exclusive lock and SQLite does not wait (busy_timeout) for that one, so on a
    # brand-new file whose first connection is already writing, the switch fails with
    # "database is locked": leave it to a later connection instead of failing this one.
    cursor.execute("PRAGMA journal_mode")
    row = cursor.fetchone()
    if row is not None and str(row[0]).lower() == "wal":
        return
    try:
        cursor.execute("PRAGMA journal_mode = WAL")
    except sqlite3.OperationalError as exc:
        if "locked" not in str(exc):
            raise
        log.debug("journal_mode=WAL deferred: %s", exc)


def _install_mysql_listeners(engine: AsyncEngine) -> None:
    from .direct import dropped

    @sa.event.listens_for(engine.sync_engine, "checkout")
    def _on_checkout(_dbapi_connection: Any, _record: Any, proxy: Any) -> None:
        # Instead of pool_pre_ping's round trip: a connection whose socket the server has
        # closed is replaced by the pool (SQLAlchemy's documented DisconnectionError protocol).
        if dropped(proxy.driver_connection):
            raise sa.exc.DisconnectionError("the server closed this pooled connection")


def _install_sqlite_listeners(engine: AsyncEngine) -> None:
    memory = _is_sqlite_memory(engine.url)

    @sa.event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control away from sqlite3 (it never BEGINs before a
        # SELECT); the "begin" listener below emits BEGIN instead.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA foreign_keys = ON")
            if not memory:
                _enable_wal(cursor)
                cursor.execute("PRAGMA synchronous = NORMAL")  # durable enough with WAL
        finally:
            cursor.close()

    @sa.event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        mode = conn.get_execution_options().get(_SQLITE_BEGIN_OPTION, "IMMEDIATE")
        if mode == "NONE":  # Database.fetch_one: one statement in autocommit
            return
        conn.exec_driver_sql("BEGIN IMMEDIATE" if mode == "IMMEDIATE" else "BEGIN")
