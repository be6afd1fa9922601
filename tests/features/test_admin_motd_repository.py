"""XEP-0133 message-of-the-day repository contract on memory, SQLite and MariaDB."""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from xmppd.features.admin import Admin, MemoryMotdRepository, MotdRepository, SqlMotdRepository
from xmppd.storage.accounts import SqlAccountRepository

from ..storage_fixtures import REPOSITORY_BACKENDS, open_database

D = "example.com"


@pytest_asyncio.fixture(params=REPOSITORY_BACKENDS)
async def repo(request: pytest.FixtureRequest) -> AsyncIterator[tuple[MotdRepository, Any]]:
    """(repository, a function creating an account) on each backend."""
    if request.param == "memory":
        async def no_accounts(username: str) -> None:
            return None

        yield MemoryMotdRepository(), no_accounts
        return
    async with open_database(request, request.param, extra_locations=[Admin.migrations]) as db:
        accounts = SqlAccountRepository(db)

        async def create(username: str) -> None:
            await accounts.create(username, D, [])

        yield SqlMotdRepository(db), create


async def test_no_motd_at_first(repo):
    r, _ = repo
    assert await r.get(D) is None


async def test_each_set_and_delete_is_a_new_version(repo):
    r, _ = repo
    first = await r.set(D, "Hello\nworld ☃")
    assert (first.body, first.version) == ("Hello\nworld ☃", 1)
    assert first.updated_at.tzinfo is not None
    got = await r.get(D)
    assert (got.body, got.version) == ("Hello\nworld ☃", 1)
    second = await r.set(D, "Again")
    assert second.version == 2
    deleted = await r.set(D, None)
    assert (deleted.body, deleted.version) == (None, 3)
    assert (await r.get(D)).body is None
    assert (await r.set(D, "Back")).version == 4
    assert await r.get("other.example") is None  # per domain


async def test_over_long_motd_is_refused(repo):
    r, _ = repo
    with pytest.raises(ValueError):
        await r.set(D, "x" * 20000)
    assert await r.get(D) is None


async def test_seen_versions_only_grow(repo):
    r, create = repo
    await create("alice")
    assert await r.seen("alice", D) == 0
    await r.mark_seen("alice", D, 2)
    assert await r.seen("alice", D) == 2
    await r.mark_seen("alice", D, 1)
    assert await r.seen("alice", D) == 2
    await r.mark_seen("alice", D, 5)
    assert await r.seen("alice", D) == 5
    assert await r.seen("bob", D) == 0


async def test_concurrent_first_sets_get_distinct_versions(repo):
    r, _ = repo
    results = await asyncio.gather(*(r.set(D, f"m{i}") for i in range(4)))
    assert sorted(m.version for m in results) == [1, 2, 3, 4]
    assert (await r.get(D)).version == 4


@pytest.mark.parametrize("backend", ["sqlite", "mariadb"])
async def test_seen_rows_go_with_the_account(request, backend):
    async with open_database(request, backend, extra_locations=[Admin.migrations]) as db:
        accounts = SqlAccountRepository(db)
        r = SqlMotdRepository(db)
        await accounts.create("alice", D, [])
        await r.mark_seen("alice", D, 3)
        await r.mark_seen("ghost", D, 3)  # no such account: nothing stored, no error
        assert await accounts.delete("alice", D)
        await accounts.create("alice", D, [])
        assert await r.seen("alice", D) == 0
        assert await r.seen("ghost", D) == 0
