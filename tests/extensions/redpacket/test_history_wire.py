"""Red packets belong to history (issue 21): room packets and their notices are in the room's
archive; one-to-one packets and the grabbed/finished/refunded notices reach people who were
offline and are in their archives (XEP-0313); every notice points at its packet's message
(XEP-0367 attach-to ``rp-<id>``); the packet iq tells the current state. Over real sockets
(slixmpp), with MUC, MAM and offline storage on."""

from __future__ import annotations

import asyncio
import itertools
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from slixmpp.exceptions import IqError

from xmppd_extensions.redpacket import slixmpp_plugin
from xmppd_extensions.redpacket.feature import NS

from ...features.muc_support import PLUGINS, create, join
from ...features.pep_support import befriend
from ...features.test_mam import Results
from ...helpers import add_user, slix, slix_close
from .schema_check import assert_valid_xml
from .servers import rp_running_server
from .test_wire import app_condition, inbox, rp_xml

pytestmark = pytest.mark.interop

ROOM = "party@conference.localhost"
MAM = "urn:xmpp:mam:2"
ATTACH = "{urn:xmpp:message-attaching:1}attach-to"
KEEP = frozenset({"muc", "mam", "offline"})
_qids = itertools.count()


@pytest.fixture(params=["sqlite", "mariadb"])
async def server(request, tmp_path: Path):
    overrides = ["redpacket.expiry=60.0", "c2s.require_tls=false"]
    if request.param == "mariadb":
        url = request.getfixturevalue("mariadb_server").create_database()
        overrides += [f"storage.url={url.render_as_string(hide_password=False)}", "storage.auto_upgrade=true"]
    async with rp_running_server(tmp_path, *overrides, muc=True, keep=KEEP) as srv:
        yield srv


async def client(server, jid: str, *, presence: bool = True):
    c = await slix(server, jid, plugins=PLUGINS)
    c.register_plugin("redpacket", module=slixmpp_plugin)
    c.mam = Results(c)
    if presence:
        c.send_presence()
    return c


async def archive(c, to: str | None = None) -> list[ET.Element]:
    """Every message of the archive (of the account, or of the room ``to``), oldest first."""
    qid = f"rp{next(_qids)}"
    iq = c.make_iq_set(ito=to)
    ET.SubElement(iq.xml, f"{{{MAM}}}query", {"queryid": qid})
    await iq.send(timeout=10)
    return [r.find("{urn:xmpp:forward:0}forwarded/{jabber:client}message") for r in c.mam.by_query.pop(qid, [])]


def ours(messages: list[ET.Element], name: str) -> list[ET.Element]:
    return [m for m in messages if m.find(f"{{{NS}}}{name}") is not None]


async def test_room_packet_and_its_notice_are_in_the_room_archive(server):
    feat = server.features["redpacket"]
    a = await client(server, await add_user(server, "alice"))
    b = await client(server, await add_user(server, "bob"))
    try:
        await create(a, ROOM, "Alice")
        await join(b, ROOM, "Bob")
        await feat.repo.topup("alice@localhost", 1000, feat.now())
        seen, done = inbox(b, "redpacket"), inbox(b, "redpacket_finished")
        sent = await a.plugin["redpacket"].send_packet(ROOM, client_id="h1", total=300, count=2, lang="en")
        live = await asyncio.wait_for(seen.get(), 5)
        assert live["id"] == f"rp-{sent['id']}" and live["type"] == "groupchat"
        assert live.xml.find("{urn:xmpp:sid:0}stanza-id").get("by") == ROOM  # the archive's id
        await a.plugin["redpacket"].open_packet(sent["id"])
        await b.plugin["redpacket"].open_packet(sent["id"])
        fin = await asyncio.wait_for(done.get(), 5)
        assert fin.xml.find(ATTACH).get("id") == f"rp-{sent['id']}"
        assert fin["rp_finished"]["best-luck"]  # a lucky packet of two shares has a best luck
        assert_valid_xml(rp_xml(fin["rp_finished"]))
        await server.features["mam"].flush()
        history = await archive(b, ROOM)  # bob's new device: the room's history has both
        [packet] = ours(history, "redpacket")
        assert packet.get("id") == f"rp-{sent['id']}" and packet.find(f"{{{NS}}}redpacket").get("id") == sent["id"]
        assert packet.findtext("{jabber:client}body")
        [finished] = ours(history, "finished")
        assert finished.find(ATTACH).get("id") == f"rp-{sent['id']}"
        assert finished.find(f"{{{NS}}}finished").get("best-luck") == fin["rp_finished"]["best-luck"]
    finally:
        await slix_close(a)
        await slix_close(b)


async def test_one_to_one_packet_and_notices_reach_offline_people_and_their_archives(server):
    feat = server.features["redpacket"]
    alice, bob = await add_user(server, "alice"), await add_user(server, "bob")
    await befriend(server, alice, bob)
    await feat.repo.topup(alice, 1000, feat.now())
    a = await client(server, alice)
    sent = await a.plugin["redpacket"].send_packet(bob, client_id="o1", total=88, lang="en")
    await slix_close(a)  # the sender goes offline before anyone opens it
    # bob was offline: the packet waits for him
    b = await client(server, bob, presence=False)
    seen = inbox(b, "redpacket")
    b.send_presence()
    try:
        msg = await asyncio.wait_for(seen.get(), 5)
        assert msg["type"] == "chat" and msg["from"].bare == alice and msg["id"] == f"rp-{sent['id']}"
        assert msg.xml.find("{urn:xmpp:delay}delay") is not None  # from offline storage
        assert_valid_xml(rp_xml(msg["redpacket"]))
        opened = await b.plugin["redpacket"].open_packet(sent["id"])
        assert opened["amount"] == "88"
        state = await b.plugin["redpacket"].details(sent["id"])  # the card's current state, by id
        assert state["status"] == "finished" and state["remaining-count"] == "0"
    finally:
        await slix_close(b)
    # alice comes back: the grabbed and finished notices were kept for her
    a = await client(server, alice, presence=False)
    grabbed, finished = inbox(a, "redpacket_grabbed"), inbox(a, "redpacket_finished")
    a.send_presence()
    try:
        g = await asyncio.wait_for(grabbed.get(), 5)
        f = await asyncio.wait_for(finished.get(), 5)
        for notice in (g, f):
            assert notice["type"] == "normal" and notice["body"]
            assert notice.xml.find(ATTACH).get("id") == f"rp-{sent['id']}"
        assert g["rp_grabbed"]["by"] == bob and g["rp_grabbed"]["amount"] == "88"
        assert not f["rp_finished"]["best-luck"]  # one share: no best luck
        await server.features["mam"].flush()
        mine = await archive(a)  # a new device of alice sees the packet she sent and both notices
        [packet] = ours(mine, "redpacket")
        assert packet.get("to") == bob and packet.get("id") == f"rp-{sent['id']}"
        assert len(ours(mine, "grabbed")) == 1 and len(ours(mine, "finished")) == 1
    finally:
        await slix_close(a)
    b = await client(server, bob)
    try:
        assert [m.get("id") for m in ours(await archive(b), "redpacket")] == [f"rp-{sent['id']}"]
    finally:
        await slix_close(b)


async def test_refund_notice_reaches_an_offline_sender(server):
    feat = server.features["redpacket"]
    alice, bob = await add_user(server, "alice"), await add_user(server, "bob")
    await befriend(server, alice, bob)
    await feat.repo.topup(alice, 500, feat.now())
    a = await client(server, alice)
    sent = await a.plugin["redpacket"].send_packet(bob, client_id="r1", total=120, lang="en")
    await slix_close(a)
    assert await feat.refund(sent["id"], force=True) == 120
    a = await client(server, alice, presence=False)
    refunded = inbox(a, "redpacket_refunded")
    a.send_presence()
    try:
        r = await asyncio.wait_for(refunded.get(), 5)
        assert r["rp_refunded"]["amount"] == "120" and r.xml.find(ATTACH).get("id") == f"rp-{sent['id']}"
        assert await a.plugin["redpacket"].balance() == 500
    finally:
        await slix_close(a)


async def test_one_to_one_packets_only_to_mutual_contacts(server):
    feat = server.features["redpacket"]
    alice, bob, carol = [await add_user(server, n) for n in ("alice", "bob", "carol")]
    await befriend(server, alice, bob)
    from xmppd.features.roster.repository import RosterItem

    # alice follows carol one way only: not a mutual contact
    await server.features["roster"].update(alice, carol, lambda _old: RosterItem(carol, subscription="to"))
    await feat.repo.topup(alice, 500, feat.now())
    a = await client(server, alice)
    try:
        with pytest.raises(IqError) as info:
            await a.plugin["redpacket"].send_packet(carol, client_id="x1", total=10)
        assert info.value.iq["error"]["condition"] == "forbidden" and app_condition(info.value)[0] == "not-a-contact"
        b = await client(server, bob)  # and bob, a contact of alice, is no contact of carol
        try:
            with pytest.raises(IqError) as info:
                await b.plugin["redpacket"].send_packet(carol, client_id="x2", total=1)
            assert app_condition(info.value)[0] == "not-a-contact"
        finally:
            await slix_close(b)
        assert await a.plugin["redpacket"].balance() == 500  # nothing moved
        assert (await a.plugin["redpacket"].send_packet(bob, client_id="ok", total=10))["total"] == "10"
    finally:
        await slix_close(a)
