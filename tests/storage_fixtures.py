"""Shared storage fixtures: every SQL test runs on SQLite and on MariaDB.

Registered once for the whole suite by ``tests/conftest.py``::

    pytest_plugins = ["tests.storage_fixtures"]

Import helpers (``open_database``, ``REPOSITORY_BACKENDS``) from here, but never
re-import the fixtures into another conftest: they would be registered twice.

Fixtures
--------
``db``               a fresh, *empty* database (no tables), per test:
                     ``sqlite`` -- a file in ``tmp_path``;
                     ``mariadb`` -- a new database ``xmppd_test_<session>_<n>``.
``migrated_db``      a database with every migration applied (core plus
                     ``migration_locations``), empty tables, per test. On MariaDB one
                     database per session is migrated once and its tables are emptied
                     before each test.
``migration_locations``  (session) extra version directories; override it in a
                     conftest to add a feature's migrations.
``mariadb_server``   (session) the MariaDB server of ``XMPPD_TEST_MYSQL_URL``
                     (default ``mysql+aiomysql://root@127.0.0.1:3306/test``). If it is
                     unreachable every MariaDB test FAILS with instructions: a missing
                     backend is an error, never a skip. Every database it creates is
                     dropped at the end of the session, so parallel runs don't clash.

A feature's repository contract fixture over memory, SQLite and MariaDB::

    @pytest_asyncio.fixture(params=REPOSITORY_BACKENDS)
    async def roster_repo(request):
        if request.param == "memory":
            yield MemoryRosterRepository()
        else:
            async with open_database(request, request.param) as db:
                yield SqlRosterRepository(db)
"""

from __future__ import annotations

import asyncio
import os
import secrets
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Final, TypeVar

import pymysql
import pytest
import pytest_asyncio
import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url

from xmppd.storage.engine import Database, redact_url
from xmppd.storage.migrations import upgrade

__all__ = [
    "DEFAULT_MYSQL_URL",
    "MYSQL_URL_ENV",
    "REPOSITORY_BACKENDS",
    "SQL_BACKENDS",
    "MariaDBServer",
    "db",
    "empty_all_tables",
    "mariadb_migrated_url",
    "mariadb_server",
    "migrated_db",
    "migration_locations",
    "open_database",
]

MYSQL_URL_ENV: Final = "XMPPD_TEST_MYSQL_URL"
DEFAULT_MYSQL_URL: Final = "mysql+aiomysql://root@127.0.0.1:3306/test"
SQL_BACKENDS: Final = ("sqlite", "mariadb")
REPOSITORY_BACKENDS: Final = ("memory", "sqlite", "mariadb")

_HOW_TO_START: Final = (
    "MariaDB is required for the storage tests and is not reachable at {url}: {error}\n"
    "Start it with:\n"
    "    start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd\n"
    "or point {env} at a server you may create databases on, e.g.\n"
    "    {env}=mysql+aiomysql://user:password@host:3306/test\n"
    "(MariaDB tests fail rather than skip when the server is missing.)"
)

T = TypeVar("T")


def _run_in_thread(factory: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine to completion on a private event loop in another thread.

    Session fixtures are set up from inside a test's running loop; a fresh loop in a
    thread keeps them independent of pytest-asyncio's loop scopes.
    """
    result: list[T] = []
    error: list[BaseException] = []

    async def _main() -> None:
        result.append(await factory())

    def _target() -> None:
        try:
            asyncio.run(_main())
        except BaseException as exc:  # re-raised in the caller's thread
            error.append(exc)

    thread = threading.Thread(target=_target, name="storage-fixture")
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]


class MariaDBServer:
    """The test server: hands out uniquely named databases and drops them all at the end."""

    def __init__(self, url: URL) -> None:
        self.url = url
        self.prefix = f"xmppd_test_{secrets.token_hex(4)}"
        self._counter = 0
        self._created: list[str] = []

    def _admin(self) -> pymysql.connections.Connection[Any]:
        return pymysql.connect(
            host=self.url.host or "localhost",
            port=self.url.port or 3306,
            user=self.url.username or "root",
            password=self.url.password or "",
            charset="utf8mb4",
            connect_timeout=5,
            autocommit=True,
        )

    def check(self) -> None:
        """Fail (never skip) with instructions if the server can't be used."""
        error: Exception | None = None
        try:
            conn = self._admin()
            try:
                with conn.cursor() as cur:
                    cur.execute("SELECT VERSION()")
            finally:
                conn.close()
        except pymysql.err.MySQLError as exc:
            error = exc
        if error is not None:  # outside the except block: no chained tracebacks
            pytest.fail(
                _HOW_TO_START.format(url=redact_url(self.url), error=error, env=MYSQL_URL_ENV),
                pytrace=False,
            )

    def create_database(self, suffix: str | None = None) -> URL:
        """Create an empty utf8mb4 database and return the URL that points at it."""
        if suffix is None:
            self._counter += 1
            suffix = str(self._counter)
        name = f"{self.prefix}_{suffix}"
        conn = self._admin()
        try:
            with conn.cursor() as cur:
                cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
        finally:
            conn.close()
        self._created.append(name)
        return self.url.set(database=name)

    def drop_database(self, url: URL) -> None:
        name = url.database
        assert name is not None and name.startswith(self.prefix)
        conn = self._admin()
        try:
            with conn.cursor() as cur:
                cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        finally:
            conn.close()
        if name in self._created:
            self._created.remove(name)

    def drop_all(self) -> None:
        for name in list(self._created):
            self.drop_database(self.url.set(database=name))


@pytest.fixture(scope="session")
def mariadb_server() -> Iterator[MariaDBServer]:
    server = MariaDBServer(make_url(os.environ.get(MYSQL_URL_ENV, DEFAULT_MYSQL_URL)))
    server.check()
    try:
        yield server
    finally:
        server.drop_all()


@pytest.fixture(scope="session")
def migration_locations() -> list[str]:
    """Every installed feature's migration folder: ``migrated_db`` on MariaDB is one database
    shared by the whole session, so all tests must agree on the schema it holds."""
    from xmppd.app import feature_migration_locations
    from xmppd.core.loader import discover

    return feature_migration_locations(discover().values())


@pytest.fixture(scope="session")
def mariadb_migrated_url(mariadb_server: MariaDBServer, migration_locations: list[str]) -> URL:
    """One MariaDB database per session with every migration applied."""
    url = mariadb_server.create_database("migrated")

    async def _migrate() -> None:
        database = Database.from_url(url)
        try:
            await upgrade(database, migration_locations)
        finally:
            await database.dispose()

    _run_in_thread(_migrate)
    return url


async def empty_all_tables(database: Database) -> None:
    """Delete every row of every table except ``alembic_version``."""

    def _names(conn: sa.Connection) -> list[str]:
        return [n for n in sa.inspect(conn).get_table_names() if n != "alembic_version"]

    async with database.connect() as conn:
        names = await conn.run_sync(_names)
        if database.is_mysql:
            await conn.exec_driver_sql("SET FOREIGN_KEY_CHECKS = 0")
            for name in names:
                await conn.exec_driver_sql(f"DELETE FROM `{name}`")
            await conn.exec_driver_sql("SET FOREIGN_KEY_CHECKS = 1")
        else:
            await conn.exec_driver_sql("PRAGMA defer_foreign_keys = ON")
            for name in names:
                await conn.exec_driver_sql(f'DELETE FROM "{name}"')
        await conn.commit()


@asynccontextmanager
async def open_database(
    request: pytest.FixtureRequest,
    backend: str,
    *,
    migrated: bool = True,
    extra_locations: Sequence[str] | None = None,
) -> AsyncIterator[Database]:
    """A :class:`Database` on *backend* (``"sqlite"`` or ``"mariadb"``) for one test.

    *migrated* applies the core migrations plus ``migration_locations`` (or
    *extra_locations*, which on MariaDB costs a private database per test).
    """
    if backend == "sqlite":
        tmp_path: Path = request.getfixturevalue("tmp_path")
        database = Database.from_url(
            f"sqlite+aiosqlite:///{tmp_path / f'xmppd-{secrets.token_hex(4)}.db'}"
        )
        try:
            if migrated:
                locations = (
                    extra_locations
                    if extra_locations is not None
                    else request.getfixturevalue("migration_locations")
                )
                await upgrade(database, locations)
            yield database
        finally:
            await database.dispose()
    elif backend == "mariadb":
        server: MariaDBServer = request.getfixturevalue("mariadb_server")
        shared = migrated and extra_locations is None
        if shared:
            url = request.getfixturevalue("mariadb_migrated_url")
        else:
            url = server.create_database()
        database = Database.from_url(url)
        try:
            if shared:
                await empty_all_tables(database)
            elif migrated:
                await upgrade(database, extra_locations or ())
            yield database
        finally:
            await database.dispose()
            if not shared:
                server.drop_database(url)
    else:
        raise ValueError(f"unknown storage backend {backend!r}")


@pytest_asyncio.fixture(params=SQL_BACKENDS)
async def db(request: pytest.FixtureRequest) -> AsyncIterator[Database]:
    """A fresh, empty database (no tables at all) on each SQL backend."""
    async with open_database(request, request.param, migrated=False) as database:
        yield database


@pytest_asyncio.fixture(params=SQL_BACKENDS)
async def migrated_db(request: pytest.FixtureRequest) -> AsyncIterator[Database]:
    """A database at all migration heads, with empty tables, on each SQL backend."""
    async with open_database(request, request.param) as database:
        yield database
