"""XEP-0313 archive quota (``[mam] max_bytes_per_user``) and retention (``retention_days``), over
real sockets: a message that would take the sender's or the recipient's archive over the quota
is refused whole with resource-constraint -- delivered to nobody, archived nowhere -- and the
periodic retention purge removes old messages from queries and gives their bytes back."""
from __future__ import annotations

import asyncio

import pytest

from xmppd.features.mam.repository import ArchiveQuery

from ..helpers import add_user, running_server
from .smacks_support import SmClient

pytestmark = pytest.mark.interop

C = "{jabber:client}"
STANZAS = "{urn:ietf:params:xml:ns:xmpp-stanzas}"
PAD = "x" * 400


async def exchange(sender: SmClient, recipient: SmClient, to: str, mid: str) -> str | None:
    """Send one message; None if the recipient got it, else the error condition the sender got."""
    sender.send_stanza(f"<message to='{to}' type='chat' id='{mid}'><body>{mid} {PAD}</body></message>")
    error = asyncio.ensure_future(sender.expect(lambda e: e.get("id") == mid and e.get("type") == "error"))
    got = asyncio.ensure_future(recipient.expect(lambda e: e.get("id") == mid))
    done, pending = await asyncio.wait({error, got}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
    for f in pending:
        f.cancel()
    assert done, f"{mid}: neither delivered nor refused"
    if got in done:
        return None
    err = error.result().find(f"{C}error")
    assert err.get("type") == "wait"
    return next(etree_localname(c) for c in err if c.tag.startswith(STANZAS) and not c.tag.endswith("}text"))


def etree_localname(el) -> str:
    return el.tag.rsplit("}", 1)[1]


async def bodies(srv, owner: str) -> list[str]:
    mam = srv.features["mam"]
    await mam.flush()
    page = await mam.repo.query(ArchiveQuery(owner, 1000))
    return [m.stanza.split("<body>")[1].split(" ")[0] for m in page.items]


async def test_over_the_archive_quota_a_message_is_refused_whole_with_resource_constraint(tmp_path):
    async with running_server(tmp_path, "c2s.require_tls=false", "mam.max_bytes_per_user=5000") as srv:
        for u in ("alice", "bob", "carol"):
            await add_user(srv, u)
        alice = await SmClient.login(srv, "alice", enable=False)
        bob = await SmClient.login(srv, "bob", enable=False)
        carol = await SmClient.login(srv, "carol", enable=False)
        try:
            # carol writes to alice until one of their archives is full (~500 bytes a message).
            sent = []
            for i in range(30):
                cond = await exchange(carol, alice, "alice@localhost/phone", f"c{i}")
                if cond is not None:
                    assert cond == "resource-constraint"
                    refused = f"c{i}"
                    break
                sent.append(f"c{i}")
            else:
                pytest.fail("the quota never refused a message")
            assert 5 <= len(sent) <= 10
            # Nothing of the refused message anywhere; everything before it in both archives.
            assert await bodies(srv, "alice@localhost") == sent
            assert await bodies(srv, "carol@localhost") == sent
            assert refused not in [e.get("id") for e in await alice.drain(0.2)]
            mam = srv.features["mam"]
            for owner in ("alice@localhost", "carol@localhost"):
                assert await mam.repo.usage(owner) <= 5000
            # bob's archive is empty, alice's is full: bob's message to alice is refused too, and
            # bob's own copy is not kept (nothing half-stored).
            assert await exchange(bob, alice, "alice@localhost", "b0") == "resource-constraint"
            assert await bodies(srv, "bob@localhost") == []
            assert await bodies(srv, "alice@localhost") == sent
            assert await mam.repo.usage("bob@localhost") == 0
        finally:
            for c in (alice, bob, carol):
                await c.close()


async def test_retention_purge_drops_old_messages_from_queries_and_frees_their_quota(tmp_path):
    async with running_server(tmp_path, "c2s.require_tls=false", "mam.max_bytes_per_user=3000", "mam.retention_days=1",
                              "mam.purge_interval=0.2", "mam.purge_batch=2") as srv:
        await add_user(srv, "alice")
        await add_user(srv, "bob")
        alice = await SmClient.login(srv, "alice", enable=False)
        bob = await SmClient.login(srv, "bob", enable=False)
        try:
            kept = []
            for i in range(20):
                if await exchange(bob, alice, "alice@localhost/phone", f"old{i}") is not None:
                    break
                kept.append(f"old{i}")
            assert 3 <= len(kept) < 20 and await bodies(srv, "alice@localhost") == kept
            # Two days later the periodic purge (on the server's clock) has dropped them all, in
            # batches of two, and their bytes no longer count.
            real_now = srv.clock.now
            srv.clock.now = lambda: real_now() + 2 * 86_400  # type: ignore[method-assign]
            mam = srv.features["mam"]
            for _ in range(200):
                if not await bodies(srv, "alice@localhost") and not await bodies(srv, "bob@localhost"):
                    break
                await asyncio.sleep(0.05)
            assert await bodies(srv, "alice@localhost") == [] and await bodies(srv, "bob@localhost") == []
            assert await mam.repo.usage("alice@localhost") == 0
            assert await exchange(bob, alice, "alice@localhost/phone", "new0") is None
            assert await bodies(srv, "alice@localhost") == ["new0"]
        finally:
            await alice.close()
            await bob.close()
