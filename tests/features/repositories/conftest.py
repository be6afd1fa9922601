"""Repository contract fixtures for offline, blocking, vcard and private storage.

``migration_locations`` names the migrations of *every* installed feature: the MariaDB
database it migrates is shared by the whole test session, so every override must agree.
"""
from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from tests.storage_fixtures import REPOSITORY_BACKENDS, SQL_BACKENDS, open_database
from xmppd.accounts import credentials_for
from xmppd.app import feature_migration_locations
from xmppd.core.loader import discover
from xmppd.storage.accounts import MemoryAccountRepository, SqlAccountRepository
from xmppd.storage.engine import Database

from ...helpers import PASSWORD


@pytest.fixture(scope="session")
def migration_locations() -> list[str]:
    return feature_migration_locations(discover().values())


class Backend:
    """One storage backend: the accounts repository, and the database (None: memory)."""

    def __init__(self, name: str, accounts: Any, db: Database | None) -> None:
        self.name = name
        self.accounts = accounts
        self.db = db

    async def add_account(self, username: str, domain: str = "localhost") -> int:
        account = await self.accounts.create(username, domain, credentials_for(PASSWORD))
        return int(account.id)

    def repo(self, sql_cls: Any, memory_cls: Any) -> Any:
        return memory_cls(self.accounts) if self.db is None else sql_cls(self.db)

    async def rows_of(self, table: Any, account_id: int) -> int:
        """Rows of ``table`` that still point at ``account_id`` (SQL backends)."""
        import sqlalchemy as sa

        assert self.db is not None
        async with self.db.transaction(readonly=True) as conn:
            q = sa.select(sa.func.count()).select_from(table).where(table.c.account_id == account_id)
            return int((await conn.execute(q)).scalar_one())


@pytest_asyncio.fixture(params=REPOSITORY_BACKENDS)
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    if request.param == "memory":
        yield Backend("memory", MemoryAccountRepository(), None)
    else:
        async with open_database(request, request.param) as db:
            yield Backend(request.param, SqlAccountRepository(db), db)


@pytest_asyncio.fixture(params=SQL_BACKENDS)
async def sql_backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    """SQLite and MariaDB only: for what is a property of the SQL schema (cascades)."""
    async with open_database(request, request.param) as db:
        yield Backend(request.param, SqlAccountRepository(db), db)
