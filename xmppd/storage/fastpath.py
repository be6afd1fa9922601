"""The one storage fast path: hot reads and writes in as few round trips as the backend allows.

Every repository with a hot path (the roster's snapshots and writes, the archive's group commits,
red packets' grabs) goes through :class:`FastPath` (``db.fastpath``) instead of its own copy of
a driver trick. A repository writes its transaction twice, once for each kind of driver:

* ``lite``: a plain function of a ``sqlite3.Connection`` (no awaits, no commit), run inside a
  transaction the fast path begins and commits -- on the event loop's own thread when nothing
  would have to wait (:mod:`xmppd.storage.inline`, ``inline=True``), else as one call on
  aiosqlite's connection thread (one hand-off instead of three or four per statement), alone or
  in the next group commit (``group=True``, :meth:`Database.sqlite_write`);
* ``portable``: an ``async`` function of an SQLAlchemy ``AsyncConnection`` (MariaDB/MySQL, and
  SQLite when the driver offers no thread to run on), run in :meth:`Database.run_txn`'s
  transaction; on MariaDB/MySQL it gets a :class:`xmppd.storage.direct.DirectConnection`
  instead (connections of the fast path's own, no SQLAlchemy per call): ``conn.execute(select,
  params)`` and ``Sql`` texts are all it may use; anything else runs it through
  :meth:`Database.read_txn` / :meth:`Database.run_txn`.

Raw SQL text the two share is a :class:`Sql`: written once with ``?`` placeholders (per dialect
when the statement itself differs, e.g. upserts) and turned into each driver's paramstyle here.

One retry policy (:data:`RETRY`) for every transaction: a MariaDB/MySQL deadlock victim, or a
SQLite write that found the database locked by another process after its busy timeout, is
rolled back and rerun a few times with a short growing pause; one whose pooled MariaDB
connection turned out dropped (no ``pool_pre_ping``) is rerun once at once, unless it was lost
during ``COMMIT``; anything else is raised at once.
The ``lite`` and ``portable`` functions must therefore have no side effects outside the database.

The only code that touches aiosqlite's private names (its connection thread) is
:func:`driver_thread`.
"""
from __future__ import annotations

import asyncio
import functools
import logging
import sqlite3
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, TypeVar

from sqlalchemy.exc import DBAPIError

if TYPE_CHECKING:
    import sqlalchemy as sa
    from sqlalchemy.ext.asyncio import AsyncConnection

    from .direct import DirectPath
    from .engine import Database
    from .inline import CompiledQueries, InlineReader, InlineWriter

__all__ = ["RETRY", "FastPath", "RetryPolicy", "Sql", "driver_thread", "lost_at_commit"]

log = logging.getLogger(__name__)

T = TypeVar("T")

Lite = Callable[[sqlite3.Connection], T]
Portable = Callable[["AsyncConnection"], Awaitable[T]]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Which failed transactions are rerun, how often, and how long to pause between runs."""

    attempts: int = 3
    pause_s: float = 0.01  # times the attempt number

    @staticmethod
    def retryable(exc: BaseException) -> bool:
        """A MySQL deadlock victim, or SQLite still locked by another process after its busy timeout."""
        from .engine import is_deadlock

        if is_deadlock(exc):
            return True
        orig = exc.orig if isinstance(exc, DBAPIError) else exc
        return isinstance(orig, sqlite3.OperationalError) and getattr(orig, "sqlite_errorname", "") in (
            "SQLITE_BUSY",
            "SQLITE_BUSY_SNAPSHOT",
            "SQLITE_LOCKED",
        )

    @staticmethod
    def reconnectable(exc: BaseException) -> bool:
        """Its pooled connection was found dropped (a MariaDB restart, ``KILL``): rerun once on a
        new one -- unless it was lost during ``COMMIT`` (:func:`lost_at_commit`), when whether the
        transaction committed is unknown."""
        return isinstance(exc, DBAPIError) and exc.connection_invalidated and not getattr(exc, _AT_COMMIT, False)

    async def run(self, attempt: Callable[[], Awaitable[T]], what: str) -> T:
        """``await attempt()``, rerun while it fails retryably (at most :attr:`attempts` runs),
        and once more if its connection was found dropped (:meth:`reconnectable`)."""
        n = 0
        reconnected = False
        while True:
            try:
                return await attempt()
            except (DBAPIError, sqlite3.OperationalError) as exc:
                if not reconnected and self.reconnectable(exc):
                    reconnected = True
                    log.info("%s: connection dropped (%s), rerunning once on a new one", what, type(exc).__name__)
                    continue
                n += 1
                if n >= self.attempts or not self.retryable(exc):
                    raise
                log.info("%s: %s, retrying (%d/%d)", what, type(exc).__name__, n, self.attempts)
                await asyncio.sleep(self.pause_s * n)


_AT_COMMIT: Final = "_xmppd_lost_at_commit"


def lost_at_commit(exc: BaseException) -> None:
    """Mark *exc* as raised by a transaction's ``COMMIT`` (``Database.transaction``): never rerun
    for a dropped connection, since the transaction may have committed."""
    setattr(exc, _AT_COMMIT, True)


#: The retry policy of every transaction (``Database.run_txn`` and :class:`FastPath`).
RETRY: Final = RetryPolicy()


class Sql:
    """One raw statement for every driver: written with ``?`` placeholders, with another text
    where MariaDB/MySQL need one (``mysql``: upserts, hints); :meth:`text` gives it in the
    driver's paramstyle (sqlite3: qmark; aiomysql: format/pyformat, ``?`` becomes ``%s``).
    The texts hold no literal ``%``."""

    __slots__ = ("sqlite", "_mysql")

    def __init__(self, sqlite: str, mysql: str | None = None) -> None:
        self.sqlite = sqlite
        self._mysql = mysql if mysql is not None else sqlite

    @functools.cache  # noqa: B019 - statements live as long as the module
    def text(self, dialect: str, paramstyle: str) -> str:
        base = self.sqlite if dialect == "sqlite" else self._mysql
        return base if paramstyle == "qmark" else base.replace("?", "%s")

    async def execute(self, conn: AsyncConnection, params: Sequence[Any] | None = None) -> Any:
        """Run it on *conn* (parameters as a tuple, straight to the DBAPI cursor)."""
        d = conn.dialect
        return await conn.exec_driver_sql(self.text(d.name, d.paramstyle), tuple(params or ()))

    async def executemany(self, conn: AsyncConnection, rows: Sequence[Sequence[Any]]) -> Any:
        """Run it once per row on *conn* (aiomysql rewrites an INSERT into multi-row VALUES)."""
        d = conn.dialect
        return await conn.exec_driver_sql(self.text(d.name, d.paramstyle), list(rows))  # type: ignore[arg-type]


async def driver_thread(conn: AsyncConnection) -> tuple[Callable[[Callable[[], T]], Awaitable[T]], sqlite3.Connection] | None:
    """On SQLite with aiosqlite: ``(run, connection)`` -- ``await run(f)`` calls ``f()`` on the
    connection's own thread, where the ``sqlite3`` *connection* may be used. None on any other
    backend or driver. The one place that knows aiosqlite's private names."""
    if conn.dialect.name != "sqlite":
        return None
    driver = (await conn.get_raw_connection()).driver_connection
    run = getattr(driver, "_execute", None)
    if run is None or not hasattr(type(driver), "_conn"):
        return None
    return run, driver._conn


class FastPath:
    """The fast path of one :class:`Database` (``db.fastpath``); see the module doc."""

    def __init__(self, db: Database) -> None:
        from .direct import DirectPath
        from .inline import CompiledQueries, InlineReader, InlineWriter

        self._db = db
        self.retry = RETRY
        # SQLite file databases: connections on the loop's thread (None elsewhere).
        self._reader: InlineReader | None = InlineReader.for_database(db)
        self._queries: CompiledQueries | None = CompiledQueries(db) if self._reader is not None else None
        self._writer: InlineWriter | None = InlineWriter.for_database(db)
        # MariaDB/MySQL: portable reads and writes on connections of its own (None elsewhere).
        self._direct: DirectPath | None = DirectPath.for_database(db)
        # False once the driver offered no thread to run on: the portable path from then on.
        self._lite = db.is_sqlite

    @property
    def lite(self) -> bool:
        """True when ``lite`` functions run (SQLite with aiosqlite)."""
        return self._lite

    @property
    def inline_writer(self) -> InlineWriter | None:
        return self._writer

    @property
    def inline_reader(self) -> InlineReader | None:
        return self._reader

    async def read(self, lite: Lite[T], portable: Portable[T], *, inline: bool = False) -> T:
        """A consistent read-only transaction. SQLite: ``lite`` on the loop's thread (*inline*,
        when SQLite does not say busy) or in one call on the driver's thread. MariaDB/MySQL:
        ``portable`` on a direct connection (:mod:`xmppd.storage.direct`: its statements in
        autocommit, which at ``READ COMMITTED`` read what a transaction's would)."""
        if self._lite:
            if inline and self._reader is not None:
                from .inline import InlineUnavailable

                try:
                    return self._reader.read(lite)
                except InlineUnavailable:
                    pass
            from .engine import SqliteOnly

            try:
                return await self.retry.run(functools.partial(self._db.sqlite_call, lite, write=False), _name(lite))
            except SqliteOnly:
                self._lite = False
        if self._direct is not None:
            return await self._direct.read(portable)
        return await self._db.read_txn(portable)

    async def fetch_one(self, stmt: sa.Select[Any], params: Mapping[str, Any]) -> Sequence[Any] | None:
        """The first row of one read-only statement (None when there is none), converted as
        SQLAlchemy would and read by position: on an SQLite file on the loop's thread when SQLite
        need not wait, else :meth:`Database.fetch_one` (aiosqlite in autocommit; MariaDB/MySQL
        the direct side). For the point reads of the hot paths (a message's first archiving, an
        account not seen lately, a login's avatar): build *stmt* once, every value a
        ``sa.bindparam`` given in *params*."""
        return await self._one_statement(stmt, params, "fetch_one")  # type: ignore[no-any-return]

    async def fetch_all(self, stmt: sa.Select[Any], params: Mapping[str, Any]) -> Sequence[Sequence[Any]]:
        """Every row of one read-only statement, read as :meth:`fetch_one` reads the first (for
        the short lists of the hot paths: a login's offline messages)."""
        return await self._one_statement(stmt, params, "fetch_all")  # type: ignore[no-any-return]

    async def _one_statement(self, stmt: sa.Select[Any], params: Mapping[str, Any], fetch: str) -> Any:
        """``fetch`` (``"fetch_one"`` or ``"fetch_all"``) of *stmt*: the loop thread's reader's
        when SQLite need not wait, else the :class:`Database`'s."""
        if self._reader is not None:
            from .inline import InlineUnavailable

            assert self._queries is not None
            try:
                return getattr(self._reader, fetch)(self._queries.get(stmt), params)
            except InlineUnavailable:
                pass
        return await getattr(self._db, fetch)(stmt, dict(params))

    async def write(self, lite: Lite[T], portable: Portable[T], *, inline: bool = False, group: bool = False) -> T:
        """A committed write transaction, retried by :data:`RETRY`. SQLite: ``lite`` on the loop's
        thread (*inline*, when no writer is in the way), else in the next group commit (*group*:
        each ``lite`` in its own savepoint) or alone, in one call on the driver's thread.
        MariaDB/MySQL: ``portable`` on a direct connection (:mod:`xmppd.storage.direct`)."""
        if self._lite:
            if inline and self._writer is not None:
                from .inline import InlineUnavailable

                try:
                    return self._writer.write(lite)
                except InlineUnavailable:
                    pass
            from .engine import SqliteOnly

            call = (
                functools.partial(self._db.sqlite_write, lite)
                if group
                else functools.partial(self._db.sqlite_call, lite, write=True)
            )
            try:
                return await self.retry.run(call, _name(lite))
            except SqliteOnly:
                self._lite = False
        if self._direct is not None:
            return await self._direct.write(portable)
        return await self._db.run_txn(portable)

    def write_now(self, lite: Lite[T]) -> T:
        """``lite`` committed now, on the loop's thread, without awaiting (SQLite files, when no
        writer is in the way). Raises :class:`~xmppd.storage.inline.InlineUnavailable` when it
        cannot (another backend, a writer of this process or of another one in the way):
        nothing ran, the caller takes :meth:`write`. Not retried: a failure is raised as it is."""
        from .inline import InlineUnavailable

        if not self._lite or self._writer is None:
            raise InlineUnavailable("no inline writer for this database")
        return self._writer.write(lite)

    async def in_transaction(self, conn: AsyncConnection, lite: Lite[T]) -> T | None:
        """Inside a transaction already begun on *conn* (SQLite): ``lite`` in one call on the
        driver's thread, without committing. None when the driver has no thread (run the
        statements through *conn* instead)."""
        found = await driver_thread(conn)
        if found is None:
            return None
        run, raw = found
        return await run(functools.partial(lite, raw))

    async def close(self) -> None:
        """Close the loop-thread connections (they reopen on the next use)."""
        if self._reader is not None:
            self._reader.close()
        if self._writer is not None:
            await self._writer.close()
        if self._direct is not None:
            await self._direct.close()


def _name(fn: Callable[..., Any]) -> str:
    inner = getattr(fn, "func", fn)
    return getattr(inner, "__qualname__", repr(inner))

