"""The core with aioxmpp, an independent client implementation: login on both TLS modes,
messages both ways with slixmpp, and the server's ping/version/disco answers."""
from __future__ import annotations

import asyncio

import aioxmpp
import aioxmpp.disco
import aioxmpp.dispatcher
import aioxmpp.ping
import aioxmpp.version
import pytest

from ..aiox import aioxmpp_client
from ..helpers import add_user, slix, slix_close

pytestmark = pytest.mark.interop


@pytest.mark.parametrize("direct", [False, True])
async def test_aioxmpp_logs_in_and_exchanges_messages_with_slixmpp(server, direct):
    alice = await add_user(server, "alice")
    bob = await slix(server, await add_user(server, "bob"))
    try:
        inbox: asyncio.Queue = asyncio.Queue()
        bob.add_event_handler("message", lambda m: inbox.put_nowait(m))
        async with aioxmpp_client(server, alice, direct=direct) as client:
            assert str(client.local_jid.bare()) == alice
            received: asyncio.Queue = asyncio.Queue()
            client.summon(aioxmpp.dispatcher.SimpleMessageDispatcher).register_callback(
                aioxmpp.MessageType.CHAT, None, lambda m: received.put_nowait(m)
            )
            msg = aioxmpp.Message(to=aioxmpp.JID.fromstr(str(bob.boundjid)), type_=aioxmpp.MessageType.CHAT)
            msg.body[None] = "hello from aioxmpp"
            await client.send(msg)
            got = await asyncio.wait_for(inbox.get(), 5)
            assert got["body"] == "hello from aioxmpp"
            assert got["from"].full == str(client.local_jid)
            bob.send_message(mto=str(client.local_jid), mbody="hello from slixmpp", mtype="chat")
            reply = await asyncio.wait_for(received.get(), 5)
            assert reply.body.any() == "hello from slixmpp"
    finally:
        await slix_close(bob)


async def test_aioxmpp_sees_server_disco_ping_and_version(server):
    alice = await add_user(server, "alice")
    async with aioxmpp_client(server, alice) as client:
        domain = aioxmpp.JID.fromstr("localhost")
        info = await client.summon(aioxmpp.DiscoClient).query_info(domain)
        assert "urn:xmpp:ping" in info.features and "jabber:iq:version" in info.features
        assert any(i.category == "server" and i.type_ == "im" for i in info.identities)
        await aioxmpp.ping.ping(client, domain)
        version = await aioxmpp.version.query_version(client.stream, domain)
        assert version.name == "xmppd"
