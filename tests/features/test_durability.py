"""Durable before delivered or acknowledged (xmppd.core.durability), over real sockets: while the
archive cannot commit, a message reaches nobody and is not counted in the sender's XEP-0198
``<a h=''/>``; the sender's session keeps processing meanwhile; once the commit lands both follow,
in order. The archive commits before it delivers here (``mam.journal=false``: a cluster,
MariaDB); with the journal what is held waits for one append instead, see test_mam_journal.py.
(The crash itself, both ways: test_durability_crash.py.)"""
from __future__ import annotations

import asyncio

import pytest

from xmppd.features.mam.repository import ArchiveQuery

from ..helpers import add_user, running_server
from .smacks_support import SM, SmClient

pytestmark = pytest.mark.interop

C = "{jabber:client}"


def gate_archive(srv):
    """Make the archive's commits wait for the returned event."""
    mam = srv.features["mam"]
    real = mam.repo.store_many
    release = asyncio.Event()
    calls = []

    async def gated(batch):
        calls.append(len(batch))
        await release.wait()
        await real(batch)

    mam.repo.store_many = gated
    mam.repo.store_now = lambda batch: False  # no commit on the loop's thread either
    return release, calls


async def test_message_reaches_recipient_and_ack_only_after_its_archive_commit(tmp_path):
    async with running_server(tmp_path, "c2s.require_tls=false", "smacks.request_every=0", "mam.journal=false") as srv:
        await add_user(srv, "alice")
        await add_user(srv, "bob")
        bob = await SmClient.login(srv, "bob", enable=False)
        alice = await SmClient.login(srv, "alice", resume=False)
        release, calls = gate_archive(srv)
        try:
            for i in range(3):
                alice.send_stanza(f"<message to='bob@localhost/phone' type='chat' id='m{i}'><body>m{i}</body></message>")
            alice.write(f"<r xmlns='{SM}'/>")
            # The session goes on: an iq after the messages is answered while they wait.
            alice.send_stanza("<iq type='get' id='ping' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
            pong = await alice.expect(lambda e: e.get("id") == "ping" or e.tag == f"{{{SM}}}a")
            assert pong.get("id") == "ping", "the ack came before the archive committed"
            assert calls, "the archive is committing"
            assert [e for e in await bob.drain(0.3) if e.tag == f"{C}message"] == []  # held until stored
            release.set()
            got = await bob.messages(3)
            assert [m.get("id") for m in got] == ["m0", "m1", "m2"]
            a = await alice.expect(lambda e: e.tag == f"{{{SM}}}a")
            assert int(a.get("h")) >= 3
            store = srv.features["mam"]
            await store.flush()
            for owner in ("alice@localhost", "bob@localhost"):
                page = await store.repo.query(ArchiveQuery(owner, 10))
                assert len(page.items) == 3
        finally:
            release.set()
            await alice.close()
            await bob.close()
