"""Cache invalidation (xmppd/core/invalidation.py), the account-exists cache
(xmppd/core/known_accounts.py) and the bus's envelope packing (xmppd/cluster/bus.py), in memory.
The wire behaviour across nodes is in tests/cluster/test_shared_caches.py."""
from __future__ import annotations

import subprocess
import sys

import pytest

from xmppd.core import hooks as H
from xmppd.core.hooks import AccountEvent, HookChains
from xmppd.core.invalidation import ALL, Invalidations
from xmppd.core.known_accounts import KnownAccounts
from xmppd.core.sessions import SessionRegistry
from xmppd.jid import JID
from xmppd.storage.accounts import MemoryAccountRepository


class Recorder:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    def publish(self, name: str, key: str) -> None:
        self.sent.append((name, key))


async def test_publish_reaches_the_transport_and_received_runs_the_named_drop() -> None:
    inv = Invalidations()
    dropped: list[str] = []
    flushed: list[str] = []

    async def drop_async(key: str) -> None:
        dropped.append("async:" + key)

    a = inv.register("a", dropped.append, lambda: flushed.append("a"))
    inv.register("b", drop_async, lambda: flushed.append("b"))
    a.publish("nobody listens")  # one node: nothing attached, nothing happens
    t = Recorder()
    inv.transport = t
    a.publish("k1")
    assert t.sent == [("a", "k1")]
    await inv.received("a", "x")
    await inv.received("b", "y")
    await inv.received("not loaded here", "z")
    assert dropped == ["x", "async:y"]
    await inv.received(ALL, "")
    assert sorted(flushed) == ["a", "b"]
    with pytest.raises(ValueError):
        inv.register("a", dropped.append)
    with pytest.raises(ValueError):
        inv.register(ALL, dropped.append)
    a.close()
    assert inv.names() == ["b"]


async def test_a_failing_drop_is_logged_and_the_others_still_run(caplog) -> None:
    inv = Invalidations()
    flushed: list[str] = []

    def broken() -> None:
        raise RuntimeError("boom")

    inv.register("a", lambda k: None, broken)
    inv.register("b", lambda k: None, lambda: flushed.append("b"))
    await inv.flush_all()
    assert flushed == ["b"]
    assert "flushing the a cache failed" in caplog.text


async def test_known_accounts_reads_once_and_forgets_a_deleted_account_everywhere() -> None:
    repo = MemoryAccountRepository()
    await repo.create("alice", "example.com", ())
    hooks = HookChains()
    inv = Invalidations()
    t = Recorder()
    inv.transport = t
    known = KnownAccounts(repo, SessionRegistry(10), inv, hooks)
    alice = JID("alice", "example.com")
    assert await known.exists(alice) and await known.exists(alice)
    assert known.reads == 1  # the second answer came from memory
    assert not await known.exists(JID("nobody", "example.com"))
    assert not await known.exists(JID("nobody", "example.com"))
    assert known.reads == 3  # negatives are never kept: an account created elsewhere is found
    await repo.delete("alice", "example.com")
    await hooks.run(H.ACCOUNT_DELETED, AccountEvent("alice", "example.com"))
    assert t.sent == [("account", "alice@example.com")]
    assert not await known.exists(alice)
    # Another node's deletion arrives as an invalidation.
    await repo.create("alice", "example.com", ())
    assert await known.exists(alice)
    reads = known.reads
    await inv.received("account", "alice@example.com")
    assert await known.exists(alice) and known.reads == reads + 1
    known.close()
    assert inv.names() == []


def test_bus_envelopes_pack_into_one_field_and_back() -> None:
    from xmppd.cluster.bus import ENV, pack, unpack

    fields = {"k": "message", "f": "a@x/r", "t": "b@x/r", "r": "b@x/r", "h": "0", "o": "n1", "x": "<message/>"}
    packed = pack(fields)
    assert list(packed) == [ENV]
    assert unpack(packed) == fields
    assert unpack({**packed, "b": "c@x"}) == {**fields, "b": "c@x"}  # fields a script added
    assert unpack(fields) == fields  # an entry written field by field
    odd = {**fields, "x": "a\x00b"}
    assert pack(odd) == odd  # a NUL inside: sent field by field


def test_one_node_imports_nothing_of_the_cluster() -> None:
    code = (
        "import sys, xmppd.app, xmppd.core.feature, xmppd.core.invalidation, xmppd.core.known_accounts;"
        "print(sorted(m for m in sys.modules if m.startswith('xmppd.cluster')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"
