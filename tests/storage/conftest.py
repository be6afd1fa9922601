"""Fixtures for the storage tests: a fake clock and ``repo`` (accounts on every backend)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
import pytest_asyncio

# The shared backend fixtures (db, migrated_db, mariadb_server, ...) come from
# tests/storage_fixtures.py, registered for the whole suite by tests/conftest.py
# (pytest_plugins); importing them here again would register them twice.
from tests.storage_fixtures import REPOSITORY_BACKENDS, open_database
from xmppd.storage.accounts import (
    AccountRepository,
    MemoryAccountRepository,
    SqlAccountRepository,
)

__all__ = ["FakeClock", "clock", "repo"]


class FakeClock:
    """A settable clock: starts at a time with microseconds, moves only when told."""

    def __init__(self) -> None:
        self.now = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float = 1.0) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest_asyncio.fixture(params=REPOSITORY_BACKENDS)
async def repo(
    request: pytest.FixtureRequest, clock: FakeClock
) -> AsyncIterator[AccountRepository]:
    """The accounts repository on memory, SQLite and MariaDB (the contract tests)."""
    if request.param == "memory":
        yield MemoryAccountRepository(clock=clock)
    else:
        async with open_database(request, request.param) as database:
            yield SqlAccountRepository(database, clock=clock)
