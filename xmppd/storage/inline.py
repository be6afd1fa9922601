"""SQLite point reads on the event loop's own thread, for the one read every login makes.

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
"""
from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from .engine import Database, _is_sqlite_memory

log = logging.getLogger(__name__)


class InlineUnavailable(Exception):
    """The read could not run inline (busy, or the connection failed): use the async path."""


class InlineQuery:
    """A SELECT compiled once for SQLite: its SQL text, parameter order and column conversions."""

    __slots__ = ("sql", "params", "processors")

    def __init__(self, stmt: sa.Select[Any], db: Database) -> None:
        dialect = db.engine.dialect
        compiled = stmt.compile(dialect=dialect)
        if not compiled.positional or compiled.positiontup is None:
            raise ValueError("SQLite statements take positional parameters")
        self.sql: str = compiled.string
        self.params: tuple[str, ...] = tuple(compiled.positiontup)
        # The same conversions SQLAlchemy applies to its result rows (DATETIME text to aware
        # datetimes, integers to booleans ...), so both paths return equal values.
        procs: list[Callable[[Any], Any] | None] = [
            col.type.dialect_impl(dialect).result_processor(dialect, None) for col in stmt.selected_columns
        ]
        self.processors: tuple[Callable[[Any], Any] | None, ...] | None = tuple(procs) if any(procs) else None


class InlineReader:
    """One ``sqlite3`` connection for reads on the event loop's thread (see the module doc)."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._conn: sqlite3.Connection | None = None

    @classmethod
    def for_database(cls, db: Database) -> "InlineReader | None":
        """A reader for a file SQLite database; None for any other backend or a memory database."""
        url = db.url
        if not db.is_sqlite or _is_sqlite_memory(url) or url.query.get("uri") or not url.database:
            return None
        return cls(url.database)

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
        try:
            conn = self._conn or self._connect()
            row = conn.execute(query.sql, [params[name] for name in query.params]).fetchone()
        except sqlite3.Error as exc:
            log.debug("inline read unavailable (%s): taking the async path", exc)
            self.close()
            raise InlineUnavailable(str(exc)) from None
        if row is None or query.processors is None:
            return row  # type: ignore[no-any-return]
        return tuple(v if p is None or v is None else p(v) for p, v in zip(query.processors, row, strict=True))

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
