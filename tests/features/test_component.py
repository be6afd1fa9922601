"""XEP-0114 external components over the wire: slixmpp's ComponentXMPP attaches, users and the
component talk both ways (messages, iq, presence), the server answers the component's own iq,
a push app server that is a component gets XEP-0357 publishes; and every refusal the protocol
names (wrong secret, unknown domain, second connection, foreign 'from', no handshake)."""
from __future__ import annotations

import asyncio

import pytest
import slixmpp
from slixmpp import ET

from xmppd.protocol.component import handshake_digest

from ..helpers import RawClient, add_user, running_server, slix, slix_close, slix_component

DOMAIN = "bots.localhost"
SECRET = "a-long-enough-shared-secret"
PUSH = "urn:xmpp:push:0"
PUBSUB = "http://jabber.org/protocol/pubsub"
X = "{jabber:x:data}"


def settings(*more: str) -> tuple[str, ...]:
    return ("component.listen=127.0.0.1:0",
            f'component.components=[{{domain="{DOMAIN}", secret="{SECRET}"}}, {{domain="push.localhost", secret="{SECRET}"}}]',
            *more)


@pytest.fixture
async def server(tmp_path):
    async with running_server(tmp_path, *settings()) as srv:
        yield srv


def port_of(server) -> int:
    return server.features["component"].port


async def test_users_and_a_component_talk_both_ways(server):
    alice = await slix(server, await add_user(server, "alice"), plugins=("xep_0030",))
    got: asyncio.Queue = asyncio.Queue()
    try:
        async with slix_component(port_of(server), DOMAIN, SECRET) as comp:
            assert server.features["component"].attached.keys() == {DOMAIN}
            comp.add_event_handler("message", lambda m: got.put_nowait(m))
            comp.plugin["xep_0030"].add_feature("urn:example:echo")
            alice_got: asyncio.Queue = asyncio.Queue()
            alice.add_event_handler("message", lambda m: alice_got.put_nowait(m))

            # user -> component, to the domain and to a JID at it
            alice.send_message(mto=f"echo@{DOMAIN}", mbody="hello bot")
            m = await asyncio.wait_for(got.get(), 5)
            assert m["body"] == "hello bot" and m["from"] == alice.boundjid and m["to"] == f"echo@{DOMAIN}"

            # component -> user, from a JID at its domain
            comp.send_message(mto=alice.boundjid, mfrom=f"echo@{DOMAIN}/x", mbody="hello human")
            r = await asyncio.wait_for(alice_got.get(), 5)
            assert r["body"] == "hello human" and r["from"] == f"echo@{DOMAIN}/x"

            # iq: the user asks the component, the component answers through the server
            info = await alice.plugin["xep_0030"].get_info(jid=DOMAIN, cached=False, timeout=5)
            assert "urn:example:echo" in info["disco_info"]["features"]
            # the component asks the server
            sinfo = await comp.plugin["xep_0030"].get_info(jid="localhost", ifrom=DOMAIN, cached=False, timeout=5)
            assert "urn:xmpp:ping" in sinfo["disco_info"]["features"]

            # presence directed to the component reaches it
            pres: asyncio.Queue = asyncio.Queue()
            comp.add_event_handler("presence_available", lambda p: pres.put_nowait(p))
            alice.send_presence(pto=f"echo@{DOMAIN}")
            p = await asyncio.wait_for(pres.get(), 5)
            assert p["from"] == alice.boundjid

        # detached: the domain is unreachable again, the sender told so
        await asyncio.sleep(0.3)
        assert server.features["component"].attached == {}
        iq = alice.make_iq_get(ito=DOMAIN)
        iq.append(ET.fromstring("<query xmlns='http://jabber.org/protocol/disco#info'/>"))
        with pytest.raises(slixmpp.exceptions.IqError) as err:
            await iq.send(timeout=5)
        assert err.value.iq["error"]["condition"] == "remote-server-not-found"
    finally:
        await slix_close(alice)


async def test_a_push_app_server_that_is_a_component(tmp_path):
    async with running_server(tmp_path, *settings("push.include=body")) as srv:
        await add_user(srv, "alice")
        await add_user(srv, "bob")
        publishes: asyncio.Queue = asyncio.Queue()
        async with slix_component(port_of(srv), "push.localhost", SECRET) as comp:
            def on_iq(iq):
                publishes.put_nowait(iq.xml)
                iq.reply().send()
            comp.register_handler(slixmpp.xmlstream.handler.Callback(
                "publish", slixmpp.xmlstream.matcher.MatchXPath(f"{{jabber:component:accept}}iq/{{{PUBSUB}}}pubsub"), on_iq))
            alice = await slix(srv, f"alice@{srv.domain}")
            iq = alice.make_iq_set()
            ET.SubElement(iq.xml, f"{{{PUSH}}}enable", {"jid": "push.localhost", "node": "device-1"})
            await iq.send(timeout=5)
            await slix_close(alice)
            await asyncio.sleep(0.3)
            bob = await slix(srv, f"bob@{srv.domain}")
            try:
                bob.send_message(mto=f"alice@{srv.domain}", mbody="are you there?", mtype="chat")
                pub = await asyncio.wait_for(publishes.get(), 5)
                assert pub.get("from") == f"alice@{srv.domain}" and pub.get("to") == "push.localhost"
                publish = pub.find(f"{{{PUBSUB}}}pubsub/{{{PUBSUB}}}publish")
                assert publish.get("node") == "device-1"
                form = publish.find(f"{{{PUBSUB}}}item/{{{PUSH}}}notification/{X}x")
                fields = {f.get("var"): f.findtext(f"{X}value") for f in form.findall(f"{X}field")}
                assert fields["message-count"] == "1"
                assert fields["last-message-sender"].startswith(f"bob@{srv.domain}")
                assert fields["last-message-body"] == "are you there?"

                # an encrypted message: its fallback body is no preview
                omemo = ET.fromstring(
                    f"<message xmlns='jabber:client' to='alice@{srv.domain}' type='chat'>"
                    "<body>I sent you an OMEMO encrypted message</body>"
                    "<encrypted xmlns='eu.siacs.conversations.axolotl'><header sid='1'/></encrypted>"
                    "<encryption xmlns='urn:xmpp:eme:0' namespace='eu.siacs.conversations.axolotl'/></message>")
                bob.send_raw(ET.tostring(omemo).decode())
                pub = await asyncio.wait_for(publishes.get(), 5)
                form = pub.find(f"{{{PUBSUB}}}pubsub/{{{PUBSUB}}}publish/{{{PUBSUB}}}item/{{{PUSH}}}notification/{X}x")
                fields = {f.get("var"): f.findtext(f"{X}value") for f in form.findall(f"{X}field")}
                assert fields["message-count"] == "2" and "last-message-body" not in fields
                assert fields["last-message-sender"].startswith(f"bob@{srv.domain}")
            finally:
                await slix_close(bob)


async def _raw_component(server, domain: str) -> tuple[RawClient, str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(server))
    raw = RawClient(reader, writer)
    await raw.send(f"<stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' to='{domain}'>")
    head = await raw.read_until(b">")
    sid = head.split(b"id='")[1].split(b"'")[0].decode() if b"id='" in head else ""
    return raw, sid


async def test_refusals(server):
    # wrong secret
    raw, sid = await _raw_component(server, DOMAIN)
    await raw.send(f"<handshake>{handshake_digest(sid, 'not the secret')}</handshake>")
    out = await raw.read_all()
    assert b"<not-authorized" in out and b"</stream:stream>" in out and b"<handshake/>" not in out
    # unknown domain
    raw, _ = await _raw_component(server, "nobody.localhost")
    assert b"<host-unknown" in await raw.read_all()
    # a client namespace is not a component stream
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(server))
    raw = RawClient(reader, writer)
    await raw.send(f"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='{DOMAIN}'>")
    assert b"<invalid-namespace" in await raw.read_all()
    # stanzas before the handshake
    raw, _ = await _raw_component(server, DOMAIN)
    await raw.send(f"<message from='{DOMAIN}' to='alice@localhost'><body>x</body></message>")
    assert b"<not-authorized" in await raw.read_all()

    async with slix_component(port_of(server), DOMAIN, SECRET):
        # a second connection for an attached domain: conflict, the first keeps serving
        raw, sid = await _raw_component(server, DOMAIN)
        await raw.send(f"<handshake>{handshake_digest(sid, SECRET)}</handshake>")
        out = await raw.read_all()
        assert b"<conflict" in out and b"<handshake" not in out.split(b"<conflict")[0].split(b">", 1)[1]
        assert DOMAIN in server.features["component"].attached

        # the other configured component speaks only for its own domain
        raw, sid = await _raw_component(server, "push.localhost")
        await raw.send(f"<handshake>{handshake_digest(sid, SECRET)}</handshake>")
        await raw.read_until(b"<handshake")
        await raw.send(f"<message from='spoof@{DOMAIN}' to='alice@localhost'><body>x</body></message>")
        out = await raw.read_all()
        assert b"<invalid-from" in out
        assert "push.localhost" not in server.features["component"].attached


async def test_handshake_timeout(tmp_path):
    async with running_server(tmp_path, *settings("component.handshake_timeout=0.3")) as srv:
        raw, _ = await _raw_component(srv, DOMAIN)
        assert b"<connection-timeout" in await raw.read_all()


async def test_listener_off_without_components(tmp_path):
    async with running_server(tmp_path, "component.listen=127.0.0.1:0") as srv:
        assert srv.features["component"].port is None
