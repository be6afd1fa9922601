"""XEP-0280 message carbons over the wire: two devices of one account with slixmpp."""
from __future__ import annotations

import asyncio

import pytest

from ..helpers import add_user, running_server, slix, slix_close

pytestmark = pytest.mark.interop


@pytest.fixture
async def carbon_server(tmp_path):
    async with running_server(tmp_path) as srv:
        await add_user(srv, "alice")
        await add_user(srv, "bob")
        yield srv


async def _device(server, jid):
    c = await slix(server, jid, plugins=("xep_0030", "xep_0280"))
    box = {"sent": asyncio.Queue(), "received": asyncio.Queue(), "message": asyncio.Queue()}
    c.add_event_handler("carbon_sent", lambda m: box["sent"].put_nowait(m))
    c.add_event_handler("carbon_received", lambda m: box["received"].put_nowait(m))
    c.add_event_handler("message", lambda m: box["message"].put_nowait(m))
    c.send_presence()
    return c, box


async def _nothing(q: asyncio.Queue, wait: float = 0.3) -> None:
    await asyncio.sleep(wait)
    assert q.empty(), q.get_nowait()


async def test_two_devices_get_sent_and_received_copies(carbon_server):
    phone, pbox = await _device(carbon_server, "alice@localhost/phone")
    laptop, lbox = await _device(carbon_server, "alice@localhost/laptop")
    bob, bbox = await _device(carbon_server, "bob@localhost/desk")
    try:
        await phone.plugin["xep_0280"].enable()
        await laptop.plugin["xep_0280"].enable()
        info = await phone.plugin["xep_0030"].get_info(jid="localhost")
        assert "urn:xmpp:carbons:2" in info["disco_info"]["features"]

        # bob -> alice/phone: the laptop gets a <received> copy, the phone the message itself
        bob.send_message(mto="alice@localhost/phone", mbody="hi phone", mtype="chat")
        got = await asyncio.wait_for(pbox["message"].get(), 5)
        assert got["body"] == "hi phone"
        carbon = await asyncio.wait_for(lbox["received"].get(), 5)
        assert carbon["from"].full == "alice@localhost"
        fwd = carbon["carbon_received"]
        assert fwd["body"] == "hi phone" and fwd["from"].full == "bob@localhost/desk"
        await _nothing(pbox["received"])

        # alice/phone -> bob: the laptop gets a <sent> copy
        phone.send_message(mto="bob@localhost/desk", mbody="from the phone", mtype="chat")
        assert (await asyncio.wait_for(bbox["message"].get(), 5))["body"] == "from the phone"
        sent = await asyncio.wait_for(lbox["sent"].get(), 5)
        assert sent["carbon_sent"]["body"] == "from the phone"
        assert sent["carbon_sent"]["to"].full == "bob@localhost/desk"
        await _nothing(pbox["sent"])

        # <private/> and <no-copy/> are honoured
        for hint in ("<private xmlns='urn:xmpp:carbons:2'/>", "<no-copy xmlns='urn:xmpp:hints'/>"):
            m = bob.make_message(mto="alice@localhost/phone", mbody="secret", mtype="chat")
            m.append(__import__("xml.etree.ElementTree", fromlist=["x"]).fromstring(hint))
            m.send()
            assert (await asyncio.wait_for(pbox["message"].get(), 5))["body"] == "secret"
        await _nothing(lbox["received"])

        # groupchat-like types are not copied
        bob.send_message(mto="alice@localhost/phone", mbody="news", mtype="headline")
        await asyncio.wait_for(pbox["message"].get(), 5)
        await _nothing(lbox["received"])

        # disabled: no more copies
        await laptop.plugin["xep_0280"].disable()
        bob.send_message(mto="alice@localhost/phone", mbody="after disable", mtype="chat")
        await asyncio.wait_for(pbox["message"].get(), 5)
        await _nothing(lbox["received"])
        await _nothing(lbox["message"], 0)
    finally:
        for c in (phone, laptop, bob):
            await slix_close(c)


async def test_message_to_bare_jid_copies_only_to_resources_that_miss_it(carbon_server):
    phone, pbox = await _device(carbon_server, "alice@localhost/phone")
    laptop, lbox = await _device(carbon_server, "alice@localhost/laptop")
    bob, _ = await _device(carbon_server, "bob@localhost/desk")
    try:
        await phone.plugin["xep_0280"].enable()
        await laptop.plugin["xep_0280"].enable()
        laptop.send_presence(ppriority=-1)  # not a target of bare-JID messages any more
        await asyncio.sleep(0.2)
        bob.send_message(mto="alice@localhost", mbody="to the account", mtype="chat")
        assert (await asyncio.wait_for(pbox["message"].get(), 5))["body"] == "to the account"
        carbon = await asyncio.wait_for(lbox["received"].get(), 5)
        assert carbon["carbon_received"]["body"] == "to the account"
        await _nothing(pbox["received"])
    finally:
        for c in (phone, laptop, bob):
            await slix_close(c)


async def test_forged_carbons_from_clients_are_stripped(carbon_server):
    alice, abox = await _device(carbon_server, "alice@localhost/phone")
    mallory, _ = await _device(carbon_server, "bob@localhost/desk")
    try:
        await alice.plugin["xep_0280"].enable()
        forged = mallory.make_message(mto="alice@localhost/phone", mbody="innocent", mtype="chat")
        import xml.etree.ElementTree as ET

        forged.append(ET.fromstring(
            "<received xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'>"
            "<message xmlns='jabber:client' from='bank@localhost' to='alice@localhost' type='chat'><body>send money</body></message>"
            "</forwarded></received>"
        ))
        forged.send()
        got = await asyncio.wait_for(abox["message"].get(), 5)
        assert got["body"] == "innocent"
        assert got.xml.find("{urn:xmpp:carbons:2}received") is None
        await _nothing(abox["received"])
    finally:
        await slix_close(alice)
        await slix_close(mallory)


async def test_enabling_for_another_account_is_forbidden(carbon_server):
    bob, _ = await _device(carbon_server, "bob@localhost/desk")
    try:
        iq = bob.make_iq_set(ito="alice@localhost")
        import xml.etree.ElementTree as ET

        iq.append(ET.fromstring("<enable xmlns='urn:xmpp:carbons:2'/>"))
        from slixmpp.exceptions import IqError

        with pytest.raises(IqError) as exc:
            await iq.send(timeout=5)
        assert exc.value.iq["error"]["condition"] == "forbidden"
    finally:
        await slix_close(bob)
