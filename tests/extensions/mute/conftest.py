"""Fixtures of the group-mute tests: a server, and the repository on memory, SQLite and MariaDB."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from tests.storage_fixtures import REPOSITORY_BACKENDS, open_database
from xmppd_extensions.mute.repository import MemoryMuteRepository, SqlMuteRepository

from .support import mute_server


@pytest.fixture
async def srv(tmp_path):
    async with mute_server(tmp_path) as s:
        yield s


@pytest_asyncio.fixture(params=REPOSITORY_BACKENDS)
async def mute_repo(request: pytest.FixtureRequest) -> AsyncIterator[object]:
    """The shared migrated database holds every installed feature's schema, ours included."""
    if request.param == "memory":
        yield MemoryMuteRepository()
    else:
        async with open_database(request, request.param) as database:
            yield SqlMuteRepository(database)
