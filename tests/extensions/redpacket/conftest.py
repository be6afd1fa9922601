"""Fixtures of the red-packet tests: the repository on memory, SQLite and MariaDB."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio

from tests.storage_fixtures import REPOSITORY_BACKENDS, open_database
from xmppd_extensions.redpacket.memory import MemoryRedPacketRepository
from xmppd_extensions.redpacket.sql import SqlRedPacketRepository


def redpacket_database(request: pytest.FixtureRequest, backend: str) -> Any:
    """A database with every installed feature's schema (the shared storage fixtures)."""
    return open_database(request, backend)


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
