"""Fixtures of the red-packet tests: the repository on memory, SQLite and MariaDB."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import pytest
import pytest_asyncio
from sqlalchemy.engine import URL

from tests.storage_fixtures import REPOSITORY_BACKENDS, MariaDBServer, _run_in_thread, empty_all_tables, open_database
from xmppd.storage.engine import Database
from xmppd.storage.migrations import upgrade
from xmppd_extensions.redpacket.feature import RedPacket
from xmppd_extensions.redpacket.repository import MemoryRedPacketRepository, SqlRedPacketRepository

LOCATIONS = [RedPacket.migrations]


@pytest.fixture(scope="session")
def redpacket_mariadb_url(mariadb_server: MariaDBServer) -> URL:
    """One MariaDB database per session with the core and red-packet migrations."""
    url = mariadb_server.create_database("redpacket")

    async def migrate() -> None:
        database = Database.from_url(url)
        try:
            await upgrade(database, LOCATIONS)
        finally:
            await database.dispose()

    _run_in_thread(migrate)
    return url


@asynccontextmanager
async def redpacket_database(request: pytest.FixtureRequest, backend: str) -> AsyncIterator[Database]:
    if backend == "sqlite":
        async with open_database(request, "sqlite", extra_locations=LOCATIONS) as database:
            yield database
        return
    database = Database.from_url(request.getfixturevalue("redpacket_mariadb_url"))
    try:
        await empty_all_tables(database)
        yield database
    finally:
        await database.dispose()


@pytest_asyncio.fixture(params=REPOSITORY_BACKENDS)
async def rp_repo(request: pytest.FixtureRequest) -> AsyncIterator[object]:
    if request.param == "memory":
        yield MemoryRedPacketRepository()
    else:
        async with redpacket_database(request, request.param) as database:
            yield SqlRedPacketRepository(database)


@pytest_asyncio.fixture(params=("sqlite", "mariadb"))
async def sql_rp_repo(request: pytest.FixtureRequest) -> AsyncIterator[SqlRedPacketRepository]:
    async with redpacket_database(request, request.param) as database:
        yield SqlRedPacketRepository(database)


T0 = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)


def at(seconds: float = 0) -> datetime:
    return T0 + timedelta(seconds=seconds)
