"""SQLite on the event loop's own thread: point reads (the one read every login makes) and
small write transactions (the archive's group commits, which deliveries and acks wait for).

aiosqlite runs every call on a thread of its connection: one SELECT through SQLAlchemy is four
or five hand-offs between the event loop and that thread (checkout, cursor, execute, fetch,
reset on return), each a GIL hand-over and, with the server on one core, a pair of context
switches. That is hundreds of µs for a lookup SQLite answers from its page cache in ~10 µs.
An :class:`InlineReader` keeps one plain ``sqlite3`` connection in the loop's thread and runs a
prebuilt one-row lookup there directly.

Why this cannot stall the loop on a lock or go stale:

* the connection never waits for a lock (busy timeout 0): when SQLite says busy (a writer in
  rollback-journal mode, WAL recovery, an exclusive lock held by another process) the read
  raises :class:`InlineUnavailable` and the caller uses the async path, which may wait;
* with WAL (set by :mod:`xmppd.storage.engine`) a reader never waits for the writer anyway;
* every statement runs in autocommit, a read transaction of its own: it sees everything
  committed before it, by this process or another one (``xmppctl``); nothing is cached here;
* ``PRAGMA query_only``: this connection cannot write.

Only file databases get one (``:memory:`` lives in a single shared connection).

An :class:`InlineWriter` does the same for a short write transaction: ``BEGIN IMMEDIATE``, the
statements, ``COMMIT``, all without leaving the loop's thread (aiosqlite: three hand-offs at
least, each waiting for the GIL -- up to ``sys.getswitchinterval()``, 5 ms, when the loop is
busy). It never waits either: when this process's writer queue (``Database``) is taken, or
SQLite says busy at ``BEGIN IMMEDIATE`` (another process writes), it raises
:class:`InlineUnavailable` before anything ran and the caller takes the async path. Its commit
is as durable as any other (WAL, ``synchronous=NORMAL``: in the WAL file when ``COMMIT``
returns, a crash of the process loses nothing). Checkpoints, which copy the WAL into the
database and fsync it, are not run on the loop's thread (``wal_autocheckpoint=0`` there): after
``checkpoint_every`` commits, at most every ``checkpoint_interval`` seconds (or after
``checkpoint_most`` commits), a passive checkpoint runs on a driver thread instead.
"""
from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import sqlalchemy as sa

from .engine import Database

log = logging.getLogger(__name__)

T = TypeVar("T")


class InlineUnavailable(Exception):
    """The read could not run inline (busy, or the connection failed): use the async path."""


class InlineQuery:
    """A SELECT compiled once for one dialect: its SQL text, parameter order and conversions.
    For SQLite (this module's readers) and MariaDB/MySQL (:mod:`xmppd.storage.direct`)."""

    __slots__ = ("sql", "params", "binds", "keys", "processors")

    def __init__(self, stmt: sa.Select[Any], db: Database) -> None:
        dialect = db.engine.dialect
        compiled = stmt.compile(dialect=dialect)
        if not compiled.positional or compiled.positiontup is None or "POSTCOMPILE" in compiled.string:
            raise ValueError("fast-path statements take plain positional parameters")
        self.sql: str = compiled.string
        self.params: tuple[str, ...] = tuple(compiled.positiontup)
        # Each parameter's value in the statement itself (None when it has none) and conversion.
        self.binds: tuple[tuple[Any, Callable[[Any], Any] | None], ...] = tuple(
            (compiled.params.get(name), compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect))
            for name in self.params
        )
        self.keys: tuple[str, ...] = tuple(stmt.selected_columns.keys())
        # The same conversions SQLAlchemy applies to its result rows (DATETIME text to aware
        # datetimes, integers to booleans ...), so both paths return equal values.
        procs: list[Callable[[Any], Any] | None] = [
            col.type.dialect_impl(dialect).result_processor(dialect, None) for col in stmt.selected_columns
        ]
        self.processors: tuple[Callable[[Any], Any] | None, ...] | None = tuple(procs) if any(procs) else None

    def convert(self, row: Sequence[Any]) -> tuple[Any, ...]:
        """One driver row, converted."""
        if self.processors is None:
            return tuple(row)
        return tuple(v if p is None or v is None else p(v) for p, v in zip(self.processors, row, strict=True))

    def args(self, params: Mapping[str, Any] | None) -> tuple[Any, ...]:
        """The parameters in order, converted as SQLAlchemy would bind them (the direct path)."""
        out = []
        for name, (default, proc) in zip(self.params, self.binds, strict=True):
            value = params[name] if params is not None and name in params else default
            out.append(value if proc is None or value is None else proc(value))
        return tuple(out)

    def rows(self, raw: Sequence[Sequence[Any]]) -> list[tuple[Any, ...]]:
        """Driver rows, converted."""
        return [self.convert(r) for r in raw]


class CompiledQueries:
    """SELECTs compiled once per statement object for one database (:class:`InlineQuery`), for
    the fast path's one-statement reads on either side (the loop thread's SQLite reader, the
    direct MariaDB connections)."""

    MOST = 256  # statements kept (the fast path's reads are a handful of module constants)

    def __init__(self, db: Database) -> None:
        self._db = db
        self._cache: dict[int, tuple[sa.Executable, InlineQuery]] = {}

    def get(self, stmt: sa.Executable) -> InlineQuery:
        """*stmt* compiled; raises ``ValueError`` when it cannot be (not a SELECT, parameters
        SQLAlchemy expands at execution)."""
        hit = self._cache.get(id(stmt))
        if hit is not None and hit[0] is stmt:
            return hit[1]
        if not isinstance(stmt, sa.Select):
            raise ValueError(f"{type(stmt).__name__} is not a SELECT")
        compiled = InlineQuery(stmt, self._db)
        if len(self._cache) >= self.MOST:
            self._cache.clear()
        self._cache[id(stmt)] = (stmt, compiled)  # the reference keeps id(stmt) from being reused
        return compiled


class InlineReader:
    """One ``sqlite3`` connection for reads on the event loop's thread (see the module doc)."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._conn: sqlite3.Connection | None = None

    @classmethod
    def for_database(cls, db: Database) -> "InlineReader | None":
        """A reader for a file SQLite database; None for any other backend or a memory database."""
        path = db.sqlite_file
        return None if path is None else cls(path)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self._path, timeout=0, isolation_level=None, check_same_thread=True)
        try:
            conn.execute("PRAGMA query_only = ON")
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        return conn

    def fetch_one(self, query: InlineQuery, params: Mapping[str, Any]) -> Sequence[Any] | None:
        """The first row of ``query`` (converted as SQLAlchemy would), or None.

        Raises :class:`InlineUnavailable` instead of waiting for a lock or on any driver error.
        """
        row = self._run(query, params, sqlite3.Cursor.fetchone)
        if row is None or query.processors is None:
            return row  # type: ignore[no-any-return]
        return query.convert(row)

    def fetch_all(self, query: InlineQuery, params: Mapping[str, Any]) -> list[Sequence[Any]]:
        """Every row of ``query`` (converted), as :meth:`fetch_one`."""
        rows = self._run(query, params, sqlite3.Cursor.fetchall)
        return rows if query.processors is None else query.rows(rows)

    def _run(self, query: InlineQuery, params: Mapping[str, Any], fetch: Callable[[sqlite3.Cursor], T]) -> T:
        """*query* executed in autocommit (one statement: its own consistent read) and *fetch*
        of its cursor; :class:`InlineUnavailable` on any driver error (busy, locked ...)."""
        try:
            conn = self._conn or self._connect()
            return fetch(conn.execute(query.sql, [params[name] for name in query.params]))
        except sqlite3.Error as exc:
            log.debug("inline read unavailable (%s): taking the async path", exc)
            self.close()
            raise InlineUnavailable(str(exc)) from None

    def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``fn(connection)`` in one read transaction (``BEGIN`` ... ``COMMIT``: its statements
        see one snapshot), now, on this thread. Raises :class:`InlineUnavailable` when SQLite
        says busy or locked (the caller takes the async path); what else *fn* raises is raised."""
        try:
            conn = self._conn or self._connect()
            conn.execute("BEGIN")
        except sqlite3.Error as exc:
            log.debug("inline read unavailable (%s): taking the async path", exc)
            self.close()
            raise InlineUnavailable(str(exc)) from None
        try:
            result = fn(conn)
        except sqlite3.OperationalError as exc:
            self.close()
            if getattr(exc, "sqlite_errorname", "").startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
                raise InlineUnavailable(str(exc)) from None
            raise
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return result

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


#: The inline writer's page cache at most (KiB; SQLite takes it as pages are read).
WRITER_CACHE_KIB = 32768
#: The WAL file's size once it starts over (bytes; SQLite's journal_size_limit).
WAL_LIMIT_BYTES = 64 * 1024 * 1024
#: The inline writer's connection settings (see InlineWriter._connect).
WRITER_PRAGMAS = ("foreign_keys = ON", "synchronous = NORMAL", "wal_autocheckpoint = 0",
                  f"cache_size = -{WRITER_CACHE_KIB}", f"journal_size_limit = {WAL_LIMIT_BYTES}")


class InlineWriter:
    """One ``sqlite3`` connection for short write transactions on the event loop's thread (see
    the module doc). Not for long ones: the loop does nothing else meanwhile."""

    def __init__(self, db: Database, path: str, *, checkpoint_every: int = 100, checkpoint_interval: float = 0.25,
                 checkpoint_most: int = 1000, checkpoint_rows: int = 20_000) -> None:
        self._db = db
        self._path = path
        self._conn: sqlite3.Connection | None = None
        # A checkpoint after checkpoint_every commits, but not sooner than checkpoint_interval
        # seconds after the last one unless checkpoint_most commits wait: with one small commit
        # per message (one message in flight) every 100 commits was a checkpoint per 100
        # messages, each a hand-off to a driver thread and an fsync; the WAL stays bounded
        # (checkpoint_most commits). Large commits count by their rows: after checkpoint_rows
        # rows written (the archive's batches of thousands: ~1 KiB of WAL a row) a checkpoint
        # is due as after checkpoint_every commits, so that the WAL stays tens of MiB.
        self._checkpoint_every = checkpoint_every
        self._checkpoint_rows = checkpoint_rows
        self._rows = 0  # rows written since the last checkpoint (sqlite3's total_changes)
        self._changes_seen = 0
        self._checkpoint_interval = checkpoint_interval
        self._checkpoint_most = checkpoint_most
        self._last_checkpoint = 0.0
        self._commits = 0
        self._checkpointer: asyncio.Task[None] | None = None

    @classmethod
    def for_database(cls, db: Database) -> "InlineWriter | None":
        """A writer for a file SQLite database; None for any other backend or a memory database."""
        path = db.sqlite_file
        return None if path is None else cls(db, path)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self._path, timeout=0, isolation_level=None, check_same_thread=True)
        try:
            # As the engine's connections (xmppd.storage.engine), but never checkpointing here,
            # and with a page cache of up to WRITER_CACHE_KIB: the archive's large batches touch
            # a leaf of both owner indexes per owner; with SQLite's default 2 MiB they are read
            # back from the file at every batch (measured: 6.2 -> 3.3 µs per row, 200 owners).
            # journal_size_limit: a WAL that grew under a sustained load (each commit appends
            # while a checkpoint runs, so it cannot start over; measured: 588 MiB after 15 s of
            # one2one) is cut back to WAL_LIMIT_BYTES when it does start over.
            for pragma in WRITER_PRAGMAS:
                conn.execute(f"PRAGMA {pragma}")
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        self._changes_seen = 0  # (total_changes counts from the connection's start)
        return conn

    def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``fn(connection)`` in one committed write transaction, now, on this thread.

        Raises :class:`InlineUnavailable` (nothing ran) when the write would have to wait; what
        *fn* or ``COMMIT`` raises is rolled back and raised as it is.
        """
        if not self._db.write_turn_free():
            raise InlineUnavailable("this process's writer queue is taken")
        try:
            conn = self._conn or self._connect()
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            log.debug("inline write unavailable (%s): taking the async path", exc)
            if self._conn is not None and self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise InlineUnavailable(str(exc)) from None
        try:
            result = fn(conn)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        self._commits += 1
        changes = conn.total_changes
        self._rows += changes - self._changes_seen
        self._changes_seen = changes
        if (self._commits >= self._checkpoint_every or self._rows >= self._checkpoint_rows) and self._checkpointer is None:
            loop = asyncio.get_running_loop()
            now = loop.time()
            if (self._commits >= self._checkpoint_most or self._rows >= 10 * self._checkpoint_rows
                    or now - self._last_checkpoint >= self._checkpoint_interval):
                self._commits = self._rows = 0
                self._last_checkpoint = now
                self._checkpointer = loop.create_task(self._checkpoint())
        return result

    async def _checkpoint(self) -> None:
        try:
            await self._db.sqlite_checkpoint()
        except Exception as exc:  # the next one will do (a checkpoint only keeps the WAL short)
            log.debug("WAL checkpoint failed: %s", exc)
        finally:
            self._checkpointer = None

    async def close(self) -> None:
        task, self._checkpointer = self._checkpointer, None
        if task is not None:
            try:
                await task
            except asyncio.CancelledError:
                pass
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
