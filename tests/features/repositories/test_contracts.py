"""Repository contracts of offline (XEP-0160), blocking (XEP-0191), vCard (XEP-0054) and
private storage (XEP-0049): the same tests on memory, SQLite and MariaDB."""
from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from xmppd.features.blocking.repository import BlocklistFull, MemoryBlockingRepository, SqlBlockingRepository, blocklist
from xmppd.features.offline.repository import MemoryOfflineRepository, SqlOfflineRepository, StoreResult, offline_messages
from xmppd.features.private.repository import MemoryPrivateRepository, PrivateFull, SqlPrivateRepository, private_storage
from xmppd.features.vcard.repository import MemoryVCardRepository, SqlVCardRepository, vcards
from xmppd.storage.accounts import AccountNotFound

T0 = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)
D = "localhost"


# ---------------------------------------------------------------------------- offline


async def test_offline_keeps_order_and_deletes_only_what_was_delivered(backend):
    repo = backend.repo(SqlOfflineRepository, MemoryOfflineRepository)
    await backend.add_account("bob")
    for i in range(5):
        assert await repo.store("bob", D, f"<m{i}/>", T0 + timedelta(seconds=i), 10) is StoreResult.STORED
    got = await repo.fetch("bob", D)
    assert [m.stanza for m in got] == [f"<m{i}/>" for i in range(5)]
    assert [m.id for m in got] == sorted(m.id for m in got)
    assert got[0].created_at == T0  # microseconds survive
    # A message that arrives after the fetch is not deleted with the delivered ones.
    assert await repo.store("bob", D, "<late/>", T0, 10) is StoreResult.STORED
    assert await repo.delete_upto("bob", D, got[-1].id) == 5
    assert [m.stanza for m in await repo.fetch("bob", D)] == ["<late/>"]
    assert await repo.count("bob", D) == 1


async def test_offline_fetch_at_login_reads_through_the_storage_fast_path(sql_backend, monkeypatch):
    """A login's offline fetch is one statement through the storage fast path -- an SQLite
    file: on the loop's thread, no hand-off to aiosqlite's; MariaDB: the fast path's own
    connections --, never a transaction through SQLAlchemy's pool; busy SQLite falls back to
    one autocommit statement with the same rows."""
    db = sql_backend.db
    repo = SqlOfflineRepository(db)
    await sql_backend.add_account("bob")
    for i in range(3):
        assert await repo.store("bob", D, f"<m{i}>\u4f60\u597d</m{i}>", T0 + timedelta(seconds=i), 10) is StoreResult.STORED

    async def no_transaction(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("read through a transaction of SQLAlchemy's pool")

    monkeypatch.setattr(db, "read_txn", no_transaction)
    reader = db.fastpath.inline_reader
    undo = pytest.MonkeyPatch()
    if reader is not None:
        undo.setattr(db, "fetch_all", no_transaction)  # (an SQLite file: the loop thread's reader answers)
    got = await repo.fetch("bob", D)
    assert [m.stanza for m in got] == [f"<m{i}>\u4f60\u597d</m{i}>" for i in range(3)]
    assert got[0].created_at == T0 and [m.id for m in got] == sorted(m.id for m in got)
    assert await repo.fetch("nobody", D) == []
    undo.undo()
    if reader is not None:
        from xmppd.storage.inline import InlineUnavailable

        def busy(*_args: object) -> None:
            raise InlineUnavailable("database is locked")

        monkeypatch.setattr(reader, "fetch_all", busy)
        again = await repo.fetch("bob", D)
        assert [(m.id, m.stanza, m.created_at) for m in again] == [(m.id, m.stanza, m.created_at) for m in got]


async def test_offline_quota_and_unknown_account(backend):
    repo = backend.repo(SqlOfflineRepository, MemoryOfflineRepository)
    await backend.add_account("bob")
    assert [await repo.store("bob", D, "<m/>", T0, 2) for _ in range(3)] == [StoreResult.STORED, StoreResult.STORED, StoreResult.FULL]
    assert await repo.count("bob", D) == 2
    assert await repo.store("nobody", D, "<m/>", T0, 2) is StoreResult.NO_ACCOUNT
    assert await repo.fetch("nobody", D) == []
    assert await repo.count("nobody", D) == 0


async def test_offline_byte_quota_counts_utf8_bytes_and_stores_whole_messages_or_nothing(backend):
    repo = backend.repo(SqlOfflineRepository, MemoryOfflineRepository)
    await backend.add_account("bob")
    await backend.add_account("carol")
    m = "<m>" + "é" * 100 + "</m>"  # 107 characters, 207 bytes
    size = len(m.encode())
    assert [await repo.store("bob", D, m, T0, 100, 2 * size + 10) for _ in range(3)] == [StoreResult.STORED, StoreResult.STORED, StoreResult.FULL]
    assert await repo.usage("bob", D) == (2, 2 * size)
    assert await repo.store("bob", D, "<small/>", T0, 100, 2 * size + 10) is StoreResult.STORED  # 8 bytes still fit
    assert await repo.store("bob", D, "<s/>", T0, 100, 2 * size + 10) is StoreResult.FULL
    assert [x.stanza for x in await repo.fetch("bob", D)] == [m, m, "<small/>"]
    # One message bigger than the whole quota is refused even on an empty queue.
    assert await repo.store("carol", D, m, T0, 100, size - 1) is StoreResult.FULL
    assert await repo.usage("carol", D) == (0, 0)
    # Delivered messages free their bytes.
    got = await repo.fetch("bob", D)
    await repo.delete_upto("bob", D, got[0].id)
    assert await repo.usage("bob", D) == (2, size + 8)


async def test_offline_queues_are_per_account_and_clear(backend):
    repo = backend.repo(SqlOfflineRepository, MemoryOfflineRepository)
    await backend.add_account("bob")
    await backend.add_account("carol")
    await repo.store("bob", D, "<b/>", T0, 10)
    await repo.store("carol", D, "<c/>", T0, 10)
    assert await repo.clear("bob", D) == 1
    assert await repo.fetch("bob", D) == []
    assert [m.stanza for m in await repo.fetch("carol", D)] == ["<c/>"]


async def test_offline_concurrent_senders_never_exceed_the_quota(backend):
    repo = backend.repo(SqlOfflineRepository, MemoryOfflineRepository)
    await backend.add_account("bob")
    results = await asyncio.gather(*(repo.store("bob", D, f"<m{i}/>", T0, 5) for i in range(12)))
    assert results.count(StoreResult.STORED) == 5
    assert await repo.count("bob", D) == 5


async def test_offline_unicode_and_large_stanzas_round_trip(backend):
    repo = backend.repo(SqlOfflineRepository, MemoryOfflineRepository)
    await backend.add_account("bob")
    big = "<message><body>" + "红包🧧" * 30000 + "</body></message>"  # > 64 KiB in utf8mb4
    await repo.store("bob", D, big, T0, 10)
    assert (await repo.fetch("bob", D))[0].stanza == big


# ---------------------------------------------------------------------------- blocking


async def test_blocking_block_unblock_and_unblock_all(backend):
    repo = backend.repo(SqlBlockingRepository, MemoryBlockingRepository)
    await backend.add_account("alice")
    assert await repo.get("alice", D) == frozenset()
    assert await repo.block("alice", D, ["eve@localhost", "spam.example"], 10) == {"eve@localhost", "spam.example"}
    # Blocking again what is blocked changes nothing.
    assert await repo.block("alice", D, ["eve@localhost", "mallory@localhost/x"], 10) == {"eve@localhost", "spam.example", "mallory@localhost/x"}
    assert await repo.unblock("alice", D, ["spam.example", "never@blocked"]) == {"eve@localhost", "mallory@localhost/x"}
    assert await repo.get("alice", D) == {"eve@localhost", "mallory@localhost/x"}
    assert await repo.unblock("alice", D, None) == frozenset()
    assert await repo.get("alice", D) == frozenset()


async def test_blocking_owners_are_the_accounts_with_a_non_empty_list(backend):
    repo = backend.repo(SqlBlockingRepository, MemoryBlockingRepository)
    for name in ("alice", "bob", "carol"):
        await backend.add_account(name)
    await backend.add_account("alice", "other.example")
    assert await repo.owners(D) == frozenset()
    await repo.block("alice", D, ["eve@x", "spam.example"], 10)
    await repo.block("bob", D, ["eve@x"], 10)
    await repo.block("alice", "other.example", ["eve@x"], 10)
    assert await repo.owners(D) == {"alice", "bob"}
    await repo.unblock("bob", D, ["eve@x"])  # emptied item by item
    await repo.unblock("alice", D, ["eve@x"])  # one left
    assert await repo.owners(D) == {"alice"}
    await repo.unblock("alice", D, None)
    assert await repo.owners(D) == frozenset()
    assert await repo.owners("other.example") == {"alice"}


async def test_blocking_limit_is_all_or_nothing(backend):
    repo = backend.repo(SqlBlockingRepository, MemoryBlockingRepository)
    await backend.add_account("alice")
    await repo.block("alice", D, ["a@x", "b@x"], 3)
    with pytest.raises(BlocklistFull):
        await repo.block("alice", D, ["c@x", "d@x"], 3)
    assert await repo.get("alice", D) == {"a@x", "b@x"}
    assert await repo.block("alice", D, ["a@x", "c@x"], 3) == {"a@x", "b@x", "c@x"}


async def test_blocking_unknown_account(backend):
    repo = backend.repo(SqlBlockingRepository, MemoryBlockingRepository)
    with pytest.raises(AccountNotFound):
        await repo.block("nobody", D, ["a@x"], 3)
    assert await repo.get("nobody", D) == frozenset()
    assert await repo.unblock("nobody", D, None) == frozenset()


async def test_blocking_jids_are_case_and_length_checked(backend):
    repo = backend.repo(SqlBlockingRepository, MemoryBlockingRepository)
    await backend.add_account("alice")
    # Byte-for-byte identifiers: two resources differing in case are two items.
    assert await repo.block("alice", D, ["eve@x/Phone", "eve@x/phone"], 10) == {"eve@x/Phone", "eve@x/phone"}
    with pytest.raises(ValueError):
        await repo.block("alice", D, ["a" * 192], 10)


# ---------------------------------------------------------------------------- vcard


async def test_vcard_set_replace_get_delete(backend):
    repo = backend.repo(SqlVCardRepository, MemoryVCardRepository)
    await backend.add_account("alice")
    assert await repo.get("alice", D) is None
    await repo.set("alice", D, "<vCard xmlns='vcard-temp'><FN>Alice</FN></vCard>", T0)
    await repo.set("alice", D, "<vCard xmlns='vcard-temp'><FN>Alice 🌸</FN></vCard>", T0)
    assert await repo.get("alice", D) == "<vCard xmlns='vcard-temp'><FN>Alice 🌸</FN></vCard>"
    assert await repo.delete("alice", D) is True
    assert await repo.delete("alice", D) is False
    assert await repo.get("alice", D) is None
    with pytest.raises(AccountNotFound):
        await repo.set("nobody", D, "<vCard xmlns='vcard-temp'/>", T0)


# ---------------------------------------------------------------------------- private


async def test_private_one_fragment_per_namespace(backend):
    repo = backend.repo(SqlPrivateRepository, MemoryPrivateRepository)
    await backend.add_account("alice")
    assert await repo.get("alice", D, "storage:bookmarks") is None
    await repo.set("alice", D, [("storage:bookmarks", "<storage xmlns='storage:bookmarks'/>"), ("urn:x:a", "<a xmlns='urn:x:a'>1</a>")], 10)
    await repo.set("alice", D, [("urn:x:a", "<a xmlns='urn:x:a'>2</a>")], 10)
    assert await repo.get("alice", D, "urn:x:a") == "<a xmlns='urn:x:a'>2</a>"
    assert await repo.namespaces("alice", D) == ["storage:bookmarks", "urn:x:a"]
    assert await repo.clear("alice", D) == 2
    assert await repo.namespaces("alice", D) == []


async def test_private_limit_and_unknown_account(backend):
    repo = backend.repo(SqlPrivateRepository, MemoryPrivateRepository)
    await backend.add_account("alice")
    await repo.set("alice", D, [("urn:x:a", "<a xmlns='urn:x:a'/>")], 2)
    with pytest.raises(PrivateFull):
        await repo.set("alice", D, [("urn:x:b", "<b xmlns='urn:x:b'/>"), ("urn:x:c", "<c xmlns='urn:x:c'/>")], 2)
    assert await repo.namespaces("alice", D) == ["urn:x:a"]
    await repo.set("alice", D, [("urn:x:a", "<a xmlns='urn:x:a'>new</a>"), ("urn:x:b", "<b xmlns='urn:x:b'/>")], 2)
    with pytest.raises(AccountNotFound):
        await repo.set("nobody", D, [("urn:x:a", "<a xmlns='urn:x:a'/>")], 2)


# ---------------------------------------------------------------------------- accounts


@pytest.mark.parametrize("table", [offline_messages, blocklist, vcards, private_storage], ids=lambda t: t.name)
async def test_deleting_an_account_cascades_without_any_hook(sql_backend, table):
    """``xmppctl user del`` without a running server: ON DELETE CASCADE leaves nothing behind."""
    backend = sql_backend
    account_id = await backend.add_account("alice")
    await SqlOfflineRepository(backend.db).store("alice", D, "<m/>", T0, 10)
    await SqlBlockingRepository(backend.db).block("alice", D, ["eve@x"], 10)
    await SqlVCardRepository(backend.db).set("alice", D, "<vCard xmlns='vcard-temp'/>", T0)
    await SqlPrivateRepository(backend.db).set("alice", D, [("urn:x:a", "<a xmlns='urn:x:a'/>")], 10)
    assert await backend.rows_of(table, account_id) == 1
    assert await backend.accounts.delete("alice", D) is True
    assert await backend.rows_of(table, account_id) == 0
