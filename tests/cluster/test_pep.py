"""PEP notifications across nodes (issue 17, docs/cluster.md §3): a publish on one node notifies
the owner's contacts and own resources on the other node, filtered by the caps (``+notify``) that
node learnt of each session (the stanza check ``pep-notify``, evaluated where the session is);
retract and node deletion too; the last item reaches a contact logging in on the other node.

Two real ``xmppd`` processes (tests/cluster/test_routing.py's ``Two``); slixmpp clients with caps
(XEP-0115) and PEP interests (XEP-0163).
"""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from ..features.pep_support import EVENT, PLUGINS, PUBSUB
from ..helpers import slix, slix_close
from .procs import Two, two_nodes
from .test_presence import befriend

TUNE = "http://jabber.org/protocol/tune"
MOOD = "http://jabber.org/protocol/mood"


@pytest.fixture
async def two(tmp_path: Path, prefix: str) -> AsyncIterator[Two]:
    t = Two(tmp_path, prefix)
    t.users.append("carol")
    async with two_nodes(t) as t:
        yield t


class Pep:
    def __init__(self, client: Any) -> None:
        self.c = client
        self.events: asyncio.Queue[etree._Element] = asyncio.Queue()
        from slixmpp.xmlstream.handler import Callback
        from slixmpp.xmlstream.matcher import MatchXPath

        client.register_handler(Callback("pep-events", MatchXPath(f"{{jabber:client}}message/{{{EVENT}}}event"), self._got))

    def _got(self, msg: Any) -> None:
        self.events.put_nowait(etree.fromstring(str(msg)))

    async def event(self, node: str) -> etree._Element:
        while True:
            msg = await asyncio.wait_for(self.events.get(), 10)
            if msg.find(f"{{{EVENT}}}event")[0].get("node") == node:
                return msg

    def queued(self) -> list[etree._Element]:
        out = []
        while not self.events.empty():
            out.append(self.events.get_nowait())
        return out

    async def publish(self, node: str, payload: str, item: str) -> None:
        from slixmpp import ET

        iq = self.c.make_iq_set()
        iq.append(ET.fromstring(f"<pubsub xmlns='{PUBSUB}'><publish node='{node}'><item id='{item}'>{payload}</item></publish></pubsub>"))
        await iq.send(timeout=10)

    async def iq(self, xml: str) -> None:
        from slixmpp import ET

        iq = self.c.make_iq_set()
        iq.append(ET.fromstring(xml))
        await iq.send(timeout=10)


async def login(two: Two, node: str, jid: str, interests: tuple[str, ...]) -> Pep:
    client = await slix(two.nodes[node].as_server(), jid, plugins=PLUGINS)
    p = Pep(client)
    for ns in interests:
        client.plugin["xep_0163"].add_interest(ns)
    await client.plugin["xep_0115"].update_caps(broadcast=False)
    client.send_presence()
    await two.wait_entry(client.boundjid.bare, client.boundjid.resource, f"{node}|", available=True)
    return p


def tune(artist: str) -> str:
    return f"<tune xmlns='{TUNE}'><artist>{artist}</artist></tune>"


def artist(msg: etree._Element) -> str | None:
    return msg.findtext(f".//{{{TUNE}}}artist")


async def test_pep_notifications_reach_contacts_on_the_other_node_filtered_by_their_caps(two):
    await befriend(two, "alice", "bob")
    await befriend(two, "alice", "carol")
    alice = await login(two, "alpha", "alice@localhost/a", (TUNE,))
    clients = [alice]
    try:
        await alice.publish(TUNE, tune("First"), "current")
        assert artist(await alice.event(TUNE)) == "First"
        # bob logs in on beta: beta learns his caps and sends him alice's last item from the database
        bob = await login(two, "beta", "bob@localhost/b", (TUNE,))
        clients.append(bob)
        last = await bob.event(TUNE)
        assert artist(last) == "First" and last.get("from") == "alice@localhost"
        assert last.find("{urn:xmpp:delay}delay") is not None
        # carol on beta has no +notify for the tune; alice's second resource on beta has it
        carol = await login(two, "beta", "carol@localhost/c", (MOOD,))
        clients.append(carol)
        alice2 = await login(two, "beta", "alice@localhost/a2", (TUNE,))
        clients.append(alice2)
        assert artist(await alice2.event(TUNE)) == "First"  # her own last item, on her new resource

        await alice.publish(TUNE, tune("Second"), "current")
        for who in (bob, alice2, alice):
            msg = await who.event(TUNE)
            assert artist(msg) == "Second" and msg.get("type") == "headline" and msg.get("from") == "alice@localhost"
            assert msg.get("to") == who.c.boundjid.full
        # a retraction with notify, and the node's deletion, cross too
        await alice.iq(f"<pubsub xmlns='{PUBSUB}'><retract node='{TUNE}' notify='true'><item id='current'/></retract></pubsub>")
        msg = await bob.event(TUNE)
        assert msg.find(f"{{{EVENT}}}event/{{{EVENT}}}items/{{{EVENT}}}retract").get("id") == "current"
        await alice.iq(f"<pubsub xmlns='{PUBSUB}#owner'><delete node='{TUNE}'/></pubsub>")
        msg = await bob.event(TUNE)
        assert msg.find(f"{{{EVENT}}}event/{{{EVENT}}}delete") is not None
        assert (await alice2.event(TUNE)).find(f"{{{EVENT}}}event/{{{EVENT}}}items") is not None  # the retraction
        # beta filtered carol out of the same envelopes that reached bob and alice2
        assert [m for m in carol.queued() if m.find(f"{{{EVENT}}}event")[0].get("node") == TUNE] == []
    finally:
        for p in clients:
            await slix_close(p.c)


async def test_an_avatar_set_on_one_node_is_the_hash_the_other_node_puts_in_presence(two):
    """XEP-0153's hash in presence comes from a per-node cache: a vCard photo set through alpha
    drops beta's entry (invalidation ``avatar``), so alice's next presence from beta carries it."""
    import base64
    import hashlib

    from slixmpp import ET

    a1 = await slix(two.nodes["alpha"].as_server(), "alice@localhost/one")
    a2 = await slix(two.nodes["beta"].as_server(), "alice@localhost/two")
    photos: asyncio.Queue[str | None] = asyncio.Queue()

    def seen(p: Any) -> None:
        if str(p["from"]) == "alice@localhost/two":
            x = etree.fromstring(str(p)).find("{vcard-temp:x:update}x/{vcard-temp:x:update}photo")
            photos.put_nowait(None if x is None else (x.text or ""))

    a1.add_event_handler("presence_available", seen)
    try:
        a1.send_presence()
        await two.wait_entry("alice@localhost", "one", "alpha|", available=True)
        a2.send_presence(pstatus="before")
        assert await asyncio.wait_for(photos.get(), 10) == ""  # beta caches "no avatar"
        image = b"\x89PNG not really, but bytes"
        iq = a1.make_iq_set()
        iq.append(ET.fromstring(f"<vCard xmlns='vcard-temp'><PHOTO><TYPE>image/png</TYPE><BINVAL>{base64.b64encode(image).decode()}</BINVAL></PHOTO></vCard>"))
        await iq.send(timeout=10)
        sha1 = hashlib.sha1(image).hexdigest()
        async with asyncio.timeout(10):  # the invalidation crosses through Redis
            n = 0
            while True:
                n += 1
                a2.send_presence(pstatus=f"after {n}")
                if await photos.get() == sha1:
                    break
                await asyncio.sleep(0.1)
    finally:
        await slix_close(a1)
        await slix_close(a2)
