"""XEP-0352 client state indication over the wire: presence and chat states wait while the
client is inactive (only the latest presence per sender), messages with a body do not."""
from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET

import pytest

from ..helpers import add_user, running_server, slix, slix_close
from .smacks_support import SmClient

pytestmark = pytest.mark.interop

C = "{jabber:client}"
CSI = "urn:xmpp:csi:0"


@pytest.fixture
async def csi_server(tmp_path):
    async with running_server(tmp_path, "c2s.require_tls=false", "smacks.request_every=0") as srv:
        await add_user(srv, "alice")
        await add_user(srv, "bob")
        yield srv


def _statuses(elements):
    return [e.findtext(f"{C}status") for e in elements if e.tag == f"{C}presence"]


async def test_inactive_holds_presence_and_chat_states_until_active(csi_server):
    alice = await SmClient.authenticate(csi_server, "alice")
    await alice.bind("phone")
    bob = await slix(csi_server, "bob@localhost")
    try:
        alice.write("<presence/>")
        await alice.drain(0.3)
        alice.write(f"<inactive xmlns='{CSI}'/>")
        await asyncio.sleep(0.1)
        for status in ("one", "two", "three"):
            bob.send_presence(pto="alice@localhost/phone", pstatus=status)
        m = bob.make_message(mto="alice@localhost/phone", mtype="chat")
        m.xml.append(ET.fromstring("<composing xmlns='http://jabber.org/protocol/chatstates'/>"))
        m.send()
        assert await alice.drain(0.4) == []  # all held
        alice.write(f"<active xmlns='{CSI}'/>")
        got = await alice.drain(0.4)
        assert _statuses(got) == ["three"]  # only the latest presence of bob
        assert len([e for e in got if e.tag == f"{C}message"]) == 1
        # inactive again: a message with a body comes at once, after what was held
        alice.write(f"<inactive xmlns='{CSI}'/>")
        await asyncio.sleep(0.1)
        bob.send_presence(pto="alice@localhost/phone", pstatus="four")
        await asyncio.sleep(0.1)
        bob.send_message(mto="alice@localhost/phone", mbody="urgent", mtype="chat")
        got = await alice.drain(0.4)
        assert [e.tag for e in got] == [f"{C}presence", f"{C}message"]
        assert _statuses(got) == ["four"] and got[1].findtext(f"{C}body") == "urgent"
        # iqs are never held
        iq = bob.make_iq_get(ito="alice@localhost/phone")
        iq.xml.append(ET.fromstring("<ping xmlns='urn:xmpp:ping'/>"))
        iq.send(timeout=5)
        got = await alice.expect(lambda e: e.tag == f"{C}iq")
        assert got.get("type") == "get"
    finally:
        await slix_close(bob)
        await alice.close()


async def test_csi_is_advertised_and_unknown_elements_close_the_stream(csi_server):
    c = await SmClient.authenticate(csi_server, "alice")
    assert c.features.find(f"{{{CSI}}}csi") is not None
    await c.bind("x")
    c.write(f"<sleepy xmlns='{CSI}'/>")
    err = await c.expect(lambda e: e.tag.endswith("error"))
    assert err.find("{urn:ietf:params:xml:ns:xmpp-streams}unsupported-stanza-type") is not None
    await c.close()
