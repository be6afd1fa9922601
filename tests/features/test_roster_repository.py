"""RFC 6121 §2 / XEP-0237: the roster repository contract on memory, SQLite and MariaDB, each also
behind the roster cache (``cached-*``: every owner cacheable; after each test every cached roster
must equal what the store holds)."""
from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest
import pytest_asyncio
import sqlalchemy as sa

from tests.storage_fixtures import REPOSITORY_BACKENDS, open_database
from xmppd.accounts import credentials_for
from xmppd.app import feature_migration_locations
from xmppd.core.loader import discover
from xmppd.features.roster.cache import CachedRosterRepository
from xmppd.features.roster.repository import (
    MemoryRosterRepository,
    RosterItem,
    Snapshot,
    SqlRosterRepository,
    StaleRoster,
    UnknownOwner,
    roster_groups,
    roster_items,
    roster_versions,
)
from xmppd.jid import JID
from xmppd.storage.accounts import SqlAccountRepository

from ..helpers import PASSWORD

ALICE = JID("alice", "localhost")
BOB = JID("bob", "localhost")


@pytest.fixture(scope="session")
def migration_locations() -> list[str]:
    # Every installed feature's migrations: the shared MariaDB database must agree across modules.
    return feature_migration_locations(discover().values())


class Env:
    def __init__(self, repo: Any, accounts: SqlAccountRepository | None, db: Any) -> None:
        self.repo = repo
        self.accounts = accounts
        self.db = db

    async def owner(self, jid: JID) -> JID:
        if self.accounts is not None:
            await self.accounts.create(jid.local or "", jid.domain, credentials_for(PASSWORD))
        return jid


@pytest_asyncio.fixture(params=[*REPOSITORY_BACKENDS, *(f"cached-{b}" for b in REPOSITORY_BACKENDS)])
async def env(request: pytest.FixtureRequest) -> AsyncIterator[Env]:
    cached, _, backend = request.param.rpartition("-")

    def wrap(repo: Any) -> Any:
        return CachedRosterRepository(repo, lambda owner: True) if cached else repo

    if backend == "memory":
        e = Env(wrap(MemoryRosterRepository(max_tombstones=3)), None, None)
        yield e
        await _check_cache(e)
    else:
        async with open_database(request, backend) as db:
            e = Env(wrap(SqlRosterRepository(db, max_tombstones=3)), SqlAccountRepository(db), db)
            yield e
            await _check_cache(e)


async def _check_cache(e: Env) -> None:
    if isinstance(e.repo, CachedRosterRepository):
        assert await e.repo.stale_entries() == []


async def _snapshot_reads(repo: Any, owner: JID, snap: Snapshot) -> None:
    """Every read answered from ``snap`` equals the repository's own answer."""
    assert snap.roster() == await repo.roster(owner)
    assert snap.pending_in() == await repo.pending_in(owner)
    assert snap.count() == await repo.count(owner)
    for contact in [*snap.rows, "nobody@localhost"]:
        assert snap.get(contact) == await repo.get(owner, contact)
    for v in range(-1, snap.version + 2):
        assert snap.changes_since(v) == await repo.changes_since(owner, v)


def put(item: RosterItem):
    return lambda old: item


async def test_empty_roster_has_version_zero(env):
    owner = await env.owner(ALICE)
    assert await env.repo.roster(owner) == (0, [])
    assert await env.repo.get(owner, "bob@localhost") is None
    assert await env.repo.count(owner) == 0
    changes = await env.repo.changes_since(owner, 0)
    assert changes is not None and changes.version == 0 and changes.items == []


async def test_add_update_and_read_items_with_groups(env):
    owner = await env.owner(ALICE)
    before, after = await env.repo.update(owner, "bob@localhost", put(RosterItem("x", "Bob", ("b", "a", "a"))))
    assert before is None
    assert after == RosterItem("bob@localhost", "Bob", ("a", "b"), version=1)
    await env.repo.update(owner, "carol@localhost", put(RosterItem("carol@localhost", None, ())))
    version, items = await env.repo.roster(owner)
    assert version == 2
    assert [i.contact for i in items] == ["bob@localhost", "carol@localhost"]
    before, after = await env.repo.update(owner, "bob@localhost", lambda old: replace(old, groups=("c",), name="B"))
    assert before is not None and before.groups == ("a", "b")
    assert after is not None and after.groups == ("c",) and after.name == "B" and after.version == 3
    assert (await env.repo.get(owner, "bob@localhost")) == after
    assert await env.repo.count(owner) == 2


async def test_unicode_and_case_are_kept_exactly(env):
    owner = await env.owner(ALICE)
    await env.repo.update(owner, "café@localhost", put(RosterItem("café@localhost", "Ünïcode", ("Grüppe",))))
    await env.repo.update(owner, "cafe@localhost", put(RosterItem("cafe@localhost", None, ("grüppe",))))
    _v, items = await env.repo.roster(owner)
    assert [(i.contact, i.groups) for i in items] == [("cafe@localhost", ("grüppe",)), ("café@localhost", ("Grüppe",))]


async def test_invisible_change_keeps_the_version(env):
    owner = await env.owner(ALICE)
    await env.repo.update(owner, "bob@localhost", put(RosterItem("bob@localhost")))
    # a pending-in request on a listed item is not shown to clients: no new version
    _b, after = await env.repo.update(owner, "bob@localhost", lambda old: replace(old, pending_in=True, pending_stanza="<presence/>"))
    assert after is not None and after.pending_in and after.pending_stanza == "<presence/>" and after.version == 1
    assert (await env.repo.roster(owner))[0] == 1
    # ... but the subscription state is
    _b, after = await env.repo.update(owner, "bob@localhost", lambda old: replace(old, subscription="from", pending_in=False, pending_stanza=None))
    assert after is not None and after.version == 2 and after.subscription == "from"


async def test_unlisted_pending_request_is_not_a_roster_item(env):
    owner = await env.owner(ALICE)
    _b, after = await env.repo.update(owner, "eve@localhost", put(RosterItem("eve@localhost", listed=False, pending_in=True, pending_stanza="<p/>")))
    assert after is not None and not after.listed and after.version == 0
    assert await env.repo.roster(owner) == (0, [])
    assert await env.repo.count(owner) == 0
    assert [r.contact for r in await env.repo.pending_in(owner)] == ["eve@localhost"]
    assert (await env.repo.get(owner, "eve@localhost")) == after
    # denying it leaves nothing behind (it was never visible)
    _b, after = await env.repo.update(owner, "eve@localhost", lambda old: None)
    assert after is None
    assert await env.repo.pending_in(owner) == []
    assert (await env.repo.changes_since(owner, 0)).items == []  # type: ignore[union-attr]


async def test_removal_leaves_a_tombstone_for_versioning(env):
    owner = await env.owner(ALICE)
    await env.repo.update(owner, "bob@localhost", put(RosterItem("bob@localhost", groups=("g",))))
    await env.repo.update(owner, "carol@localhost", put(RosterItem("carol@localhost")))
    before, after = await env.repo.update(owner, "bob@localhost", lambda old: None)
    assert before is not None and before.contact == "bob@localhost" and after is None
    assert await env.repo.get(owner, "bob@localhost") is None
    version, items = await env.repo.roster(owner)
    assert version == 3 and [i.contact for i in items] == ["carol@localhost"]
    changes = await env.repo.changes_since(owner, 1)
    assert changes is not None and changes.version == 3
    assert [(r.contact, r.listed, r.version) for r in changes.items] == [("carol@localhost", True, 2), ("bob@localhost", False, 3)]
    assert (await env.repo.changes_since(owner, 3)).items == []  # type: ignore[union-attr]
    # re-adding after removal is a new item with a new version
    _b, after = await env.repo.update(owner, "bob@localhost", lambda old: RosterItem("bob@localhost"))
    assert after is not None and after.listed and after.version == 4 and after.groups == ()


async def test_unknown_and_pruned_versions_need_the_full_roster(env):
    owner = await env.owner(ALICE)
    assert await env.repo.changes_since(owner, 1) is None  # from the future
    for i in range(5):
        await env.repo.update(owner, f"c{i}@localhost", put(RosterItem(f"c{i}@localhost")))
    for i in range(5):
        await env.repo.update(owner, f"c{i}@localhost", lambda old: None)
    # five tombstones, three kept (max_tombstones=3): removals at versions 6 and 7 are forgotten
    assert (await env.repo.roster(owner))[0] == 10
    assert await env.repo.changes_since(owner, 6) is None
    changes = await env.repo.changes_since(owner, 7)
    assert changes is not None and [r.contact for r in changes.items] == ["c2@localhost", "c3@localhost", "c4@localhost"]


async def test_owners_are_separate_and_delete_all_forgets_everything(env):
    alice = await env.owner(ALICE)
    bob = await env.owner(BOB)
    await env.repo.update(alice, "carol@localhost", put(RosterItem("carol@localhost", groups=("x",))))
    await env.repo.update(bob, "carol@localhost", put(RosterItem("carol@localhost", name="C")))
    await env.repo.delete_all(alice)
    assert await env.repo.roster(alice) == (0, [])
    assert await env.repo.changes_since(alice, 0) is not None
    _v, items = await env.repo.roster(bob)
    assert [(i.contact, i.name) for i in items] == [("carol@localhost", "C")]


async def test_change_function_sees_the_live_row_only(env):
    owner = await env.owner(ALICE)
    seen: list[Any] = []
    await env.repo.update(owner, "bob@localhost", put(RosterItem("bob@localhost")))
    await env.repo.update(owner, "bob@localhost", lambda old: None)

    def change(old):
        seen.append(old)
        return old

    before, after = await env.repo.update(owner, "bob@localhost", change)
    assert seen[-1] is None and before is None and after is None  # a tombstone is no row


# ---------------------------------------------------------------------------------- SQL only


@pytest_asyncio.fixture(params=["sqlite", "mariadb"])
async def sql(request: pytest.FixtureRequest) -> AsyncIterator[Env]:
    async with open_database(request, request.param) as db:
        yield Env(SqlRosterRepository(db), SqlAccountRepository(db), db)


async def _count(db: Any, table: sa.Table) -> int:
    async with db.transaction(readonly=True) as conn:
        return int((await conn.execute(sa.select(sa.func.count()).select_from(table))).scalar_one())


async def test_unknown_owner_is_refused(sql):
    with pytest.raises(UnknownOwner):
        await sql.repo.update(ALICE, "bob@localhost", put(RosterItem("bob@localhost")))
    assert await sql.repo.roster(ALICE) == (0, [])
    assert await sql.repo.changes_since(ALICE, 0) is None


async def test_rows_cascade_from_the_account(sql):
    owner = await sql.owner(ALICE)
    await sql.repo.update(owner, "bob@localhost", put(RosterItem("bob@localhost", groups=("a", "b"))))
    assert (await _count(sql.db, roster_items), await _count(sql.db, roster_groups), await _count(sql.db, roster_versions)) == (1, 2, 1)
    assert await sql.accounts.delete("alice", "localhost")
    assert (await _count(sql.db, roster_items), await _count(sql.db, roster_groups), await _count(sql.db, roster_versions)) == (0, 0, 0)


async def test_groups_cascade_from_their_item(sql):
    owner = await sql.owner(ALICE)
    await sql.repo.update(owner, "bob@localhost", put(RosterItem("bob@localhost", groups=("a", "b"))))
    await sql.repo.update(owner, "bob@localhost", lambda old: None)
    assert await _count(sql.db, roster_groups) == 0


# ---------------------------------------------------------------------------------- snapshots


async def test_apply_on_a_snapshot_keeps_it_equal_to_the_store(env):
    """Adds, group changes, pending requests, removals (tombstones, pruned beyond 3): after each
    change the snapshot, brought forward with the outcome, is what a fresh snapshot reads."""
    owner = await env.owner(ALICE)
    snap = await env.repo.snapshot(owner)
    assert snap is not None and (snap.version, snap.floor, snap.rows) == (0, 0, {})
    steps = [
        ("bob@localhost", put(RosterItem("bob@localhost", "Bob", ("b", "a")))),
        ("carol@localhost", put(RosterItem("carol@localhost"))),
        ("bob@localhost", lambda old: replace(old, groups=("c",))),
        ("eve@localhost", put(RosterItem("eve@localhost", listed=False, pending_in=True, pending_stanza="<presence/>"))),
        ("bob@localhost", lambda old: replace(old, subscription="both")),
        ("bob@localhost", lambda old: old),  # no change: nothing written
        ("bob@localhost", lambda old: None),
        ("eve@localhost", lambda old: None),  # never visible: no tombstone
        *[(f"c{i}@localhost", put(RosterItem(f"c{i}@localhost", groups=("g",)))) for i in range(4)],
        *[(f"c{i}@localhost", lambda old: None) for i in range(4)],  # five tombstones: two pruned
        ("bob@localhost", put(RosterItem("bob@localhost", listed=False, pending_in=True, pending_stanza="<p/>"))),
        ("c3@localhost", put(RosterItem("c3@localhost"))),  # back from a tombstone
    ]
    for contact, change in steps:
        applied = await env.repo.apply(snap, owner, contact, change)
        snap.commit(contact, applied)
        fresh = await env.repo.snapshot(owner)
        assert fresh is not None and snap.rows == fresh.rows and (snap.version, snap.floor) == (fresh.version, fresh.floor)
        assert applied.after == snap.get(contact) and applied.version == snap.version
        await _snapshot_reads(env.repo, owner, snap)
    # bob's and c0's tombstones were pruned (floor: c0's removal), c3 came back: c1 and c2 remain
    assert snap.floor == snap.rows["c1@localhost"].version - 1
    assert sorted(c for c, r in snap.rows.items() if not r.listed and not r.pending_in) == ["c1@localhost", "c2@localhost"]


async def test_apply_with_a_stale_snapshot_changes_nothing(env):
    owner = await env.owner(ALICE)
    await env.repo.update(owner, "bob@localhost", put(RosterItem("bob@localhost")))
    snap = await env.repo.snapshot(owner)
    assert snap is not None
    # Written behind the snapshot's back: a new row, and the counter moves on.
    await env.repo.update(owner, "carol@localhost", put(RosterItem("carol@localhost")))
    before = await env.repo.snapshot(owner)
    with pytest.raises(StaleRoster):  # the counter is not the snapshot's
        await env.repo.apply(snap, owner, "bob@localhost", lambda old: replace(old, name="B"))
    with pytest.raises(StaleRoster):  # the row exists already
        await env.repo.apply(snap, owner, "carol@localhost", put(RosterItem("carol@localhost", listed=False, pending_in=True)))
    assert await env.repo.snapshot(owner) == before
