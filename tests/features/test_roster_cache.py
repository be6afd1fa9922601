"""The roster cache (``xmppd/features/roster/cache.py``) in front of SQLite and MariaDB: what it
loads and when, that racing writes reach the database and the cache in the same order, and that
failures, writes by another process, session ends and deletions never leave a stale roster.
(The repository contract also runs behind the cache: ``test_roster_repository.py``, cached-*.)"""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest
import pytest_asyncio

from tests.storage_fixtures import open_database
from xmppd.accounts import credentials_for
from xmppd.app import feature_migration_locations
from xmppd.core.loader import discover
from xmppd.features.roster.cache import CachedRosterRepository
from xmppd.features.roster.repository import RosterItem, SqlRosterRepository, UnknownOwner
from xmppd.jid import JID
from xmppd.storage.accounts import SqlAccountRepository

from ..helpers import PASSWORD

ALICE = JID("alice", "localhost")
BOB = JID("bob", "localhost")
READS = ("roster", "get", "changes_since", "pending_in", "count", "snapshot")


@pytest.fixture(scope="session")
def migration_locations() -> list[str]:
    return feature_migration_locations(discover().values())


class Spy:
    """A backend that counts the calls it gets (and can be told to fail or wait)."""

    def __init__(self, inner: SqlRosterRepository) -> None:
        self.inner = inner
        self.calls: dict[str, int] = {}
        self.fail_apply: BaseException | None = None
        self.hold_snapshot: asyncio.Event | None = None

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.inner, name)

        async def call(*args: Any) -> Any:
            self.calls[name] = self.calls.get(name, 0) + 1
            if name == "apply" and self.fail_apply is not None:
                exc, self.fail_apply = self.fail_apply, None
                raise exc
            if name == "snapshot" and self.hold_snapshot is not None:
                await self.hold_snapshot.wait()
            return await method(*args)

        return call

    def reads(self) -> int:
        return sum(self.calls.get(n, 0) for n in READS)


class Env:
    def __init__(self, db: Any) -> None:
        self.db = db
        self.accounts = SqlAccountRepository(db)
        self.spy = Spy(SqlRosterRepository(db, max_tombstones=3))
        self.online: set[JID] = set()
        self.cache = CachedRosterRepository(self.spy, self.online.__contains__)  # type: ignore[arg-type]

    async def owner(self, jid: JID, *, online: bool = True) -> JID:
        await self.accounts.create(jid.local or "", jid.domain, credentials_for(PASSWORD))
        if online:
            self.online.add(jid)
        return jid


@pytest_asyncio.fixture(params=["sqlite", "mariadb"])
async def env(request: pytest.FixtureRequest) -> AsyncIterator[Env]:
    async with open_database(request, request.param) as db:
        e = Env(db)
        yield e
        assert await e.cache.stale_entries() == []


def put(item: RosterItem):
    return lambda old: item


async def test_a_roster_is_read_once_then_served_from_memory(env):
    owner = await env.owner(ALICE)
    await env.cache.update(owner, "bob@localhost", put(RosterItem("bob@localhost", "Bob", ("g",), subscription="both")))
    assert env.spy.calls == {"snapshot": 1, "apply": 1} and env.cache.loads == 1
    for _ in range(3):
        assert [i.contact for i in (await env.cache.roster(owner))[1]] == ["bob@localhost"]
        assert (await env.cache.get(owner, "bob@localhost")).name == "Bob"  # type: ignore[union-attr]
        assert await env.cache.count(owner) == 1
        assert await env.cache.pending_in(owner) == []
        assert (await env.cache.changes_since(owner, 0)).version == 1  # type: ignore[union-attr]
    entry = env.cache.peek(owner)
    assert entry is not None and entry.subscribers() == (BOB,) and entry.subscriptions() == (BOB,)
    assert env.spy.reads() == 1  # the snapshot, nothing since
    # a write goes to the database and the cached answers follow it at once
    await env.cache.update(owner, "bob@localhost", lambda old: replace(old, subscription="to"))
    assert entry.subscribers() == () and entry.subscriptions() == (BOB,)
    assert (await env.cache.get(owner, "bob@localhost")).subscription == "to"  # type: ignore[union-attr]
    assert env.spy.reads() == 1 and env.spy.calls["apply"] == 2


async def test_owners_without_sessions_are_read_and_written_in_the_database(env):
    owner = await env.owner(ALICE, online=False)
    await env.cache.update(owner, "bob@localhost", put(RosterItem("bob@localhost")))
    assert await env.cache.count(owner) == 1
    assert await env.cache.entry(owner) is None and len(env.cache) == 0
    assert env.spy.calls == {"change": 1, "count": 1}
    with pytest.raises(UnknownOwner):  # and no account at all: refused as before
        await env.cache.update(JID("nobody", "localhost"), "bob@localhost", put(RosterItem("bob@localhost")))


async def test_racing_writes_reach_the_database_and_the_cache_in_order(env):
    alice, bob = await env.owner(ALICE), await env.owner(BOB)

    def append(mark: str):
        def change(old: RosterItem | None) -> RosterItem:
            base = old if old is not None else RosterItem("carol@localhost", name="")
            return replace(base, name=(base.name or "") + mark)

        return change

    marks = [chr(ord("a") + i % 26) for i in range(40)]
    await asyncio.gather(*(env.cache.update(o, "carol@localhost", append(m)) for m in marks for o in (alice, bob)))
    for owner in (alice, bob):
        row = await env.cache.get(owner, "carol@localhost")
        assert row is not None and sorted(row.name or "") == sorted(marks)  # no write lost
        stored = await env.spy.inner.get(owner, "carol@localhost")
        assert stored == row
    assert env.cache.loads == 2


async def test_a_failed_write_drops_the_entry_and_the_next_use_reloads(env):
    owner = await env.owner(ALICE)
    await env.cache.update(owner, "bob@localhost", put(RosterItem("bob@localhost")))
    env.spy.fail_apply = RuntimeError("the database went away")
    with pytest.raises(RuntimeError):
        await env.cache.update(owner, "bob@localhost", lambda old: replace(old, name="B"))
    assert env.cache.peek(owner) is None and env.cache.drops == 1
    assert (await env.cache.get(owner, "bob@localhost")).name is None  # type: ignore[union-attr]
    assert env.cache.loads == 2


async def test_a_cancelled_write_drops_the_entry(env):
    owner = await env.owner(ALICE)
    await env.cache.update(owner, "bob@localhost", put(RosterItem("bob@localhost")))
    env.spy.fail_apply = asyncio.CancelledError()
    with pytest.raises(asyncio.CancelledError):
        await env.cache.update(owner, "bob@localhost", lambda old: replace(old, name="B"))
    assert env.cache.peek(owner) is None


async def test_a_write_by_someone_else_is_caught_and_redone(env):
    """Another process (another node on the same database) writes behind this cache: the
    guarded write notices, the change is redone as read-modify-write, nothing is lost."""
    owner = await env.owner(ALICE)
    await env.cache.update(owner, "bob@localhost", put(RosterItem("bob@localhost")))
    other = SqlRosterRepository(env.db, max_tombstones=3)
    await other.update(owner, "carol@localhost", put(RosterItem("carol@localhost", "C")))  # visible: version 2
    await env.cache.update(owner, "bob@localhost", lambda old: replace(old, name="B"))
    assert env.cache.stale == 1 and env.cache.peek(owner) is None
    _v, items = await env.cache.roster(owner)
    assert [(i.contact, i.name) for i in items] == [("bob@localhost", "B"), ("carol@localhost", "C")]
    assert (await env.cache.roster(owner))[0] == 3
    # a row created behind the cache: the insert is refused, redone as an update
    await other.update(owner, "dave@localhost", put(RosterItem("dave@localhost", listed=False, pending_in=True)))
    await env.cache.update(owner, "dave@localhost", put(RosterItem("dave@localhost", "D")))
    assert env.cache.stale == 2 and (await env.cache.get(owner, "dave@localhost")).name == "D"  # type: ignore[union-attr]


async def test_an_owner_whose_last_session_ends_while_loading_is_not_kept(env):
    owner = await env.owner(ALICE)
    env.spy.hold_snapshot = asyncio.Event()
    loading = asyncio.ensure_future(env.cache.roster(owner))
    await asyncio.sleep(0.05)
    env.online.discard(owner)  # the session ended: the roster feature calls forget()
    env.cache.forget(owner)
    env.spy.hold_snapshot.set()
    assert await loading == (0, [])
    assert env.cache.peek(owner) is None and len(env.cache) == 0


async def test_a_write_waits_for_a_load_in_progress(env):
    owner = await env.owner(ALICE)
    env.spy.hold_snapshot = asyncio.Event()
    loading = asyncio.ensure_future(env.cache.roster(owner))
    await asyncio.sleep(0.05)
    writing = asyncio.ensure_future(env.cache.update(owner, "bob@localhost", put(RosterItem("bob@localhost"))))
    await asyncio.sleep(0.05)
    assert not writing.done()
    env.spy.hold_snapshot.set()
    await asyncio.gather(loading, writing)
    assert [i.contact for i in (await env.cache.roster(owner))[1]] == ["bob@localhost"]
    assert env.cache.loads == 1


async def test_delete_all_and_forget_drop_the_entry(env):
    owner = await env.owner(ALICE)
    await env.cache.update(owner, "bob@localhost", put(RosterItem("bob@localhost")))
    await env.cache.delete_all(owner)
    assert env.cache.peek(owner) is None
    assert await env.cache.roster(owner) == (0, [])  # reloaded: nothing
    env.cache.forget(owner)
    assert len(env.cache) == 0


async def test_entries_of_owners_gone_offline_are_swept(env, monkeypatch):
    """Should a session-end hook not have run, later loads sweep what is no longer cacheable."""
    import xmppd.features.roster.cache as cache_mod

    monkeypatch.setattr(cache_mod, "SWEEP_EVERY", 2)
    alice, bob = await env.owner(ALICE), await env.owner(BOB)
    await env.cache.roster(alice)
    env.online.discard(alice)  # no forget()
    assert env.cache.peek(alice) is not None
    await env.cache.roster(bob)  # the second load sweeps
    assert env.cache.peek(alice) is None and env.cache.peek(bob) is not None
