"""RFC 7395 with real JavaScript clients from npm, run in Node: xmpp.js and strophe.js log in
over WebSocket and exchange messages and presence with a slixmpp client on TCP."""
from __future__ import annotations

import asyncio

import pytest
import slixmpp

from xmppd.jid import JID

from ..helpers import PASSWORD, add_user, cert_path, running_server, slix, slix_close
from .jsclients import NodeClient, wait_until

pytestmark = pytest.mark.interop


def _inbox(client: slixmpp.ClientXMPP, kind: str) -> asyncio.Queue:
    q: asyncio.Queue = asyncio.Queue()
    client.add_event_handler(kind, lambda st: q.put_nowait(st))
    return q


async def _exchange(server, js: NodeClient, js_jid: str) -> None:
    """slixmpp (TCP) and the JS client (WebSocket): presence and messages both ways."""
    online = await js.expect("online")
    full = JID.parse(online["jid"])
    assert full.bare == JID.parse(js_jid)
    session = server.sessions.get(full)
    assert session is not None and session.websocket and session.peer == "127.0.0.1"

    bob = await slix(server, await add_user(server, "bob"))
    try:
        messages = _inbox(bob, "message")
        presences = _inbox(bob, "presence_available")
        # directed presence both ways (no roster needed)
        await js.command("presence", to=bob.boundjid.full, status="on the web", id="p1")
        p = await asyncio.wait_for(presences.get(), 10)
        assert str(p["from"]) == str(full) and p["status"] == "on the web"
        bob.send_presence()  # available: a message to the bare JID reaches this resource
        bob.send_presence(pto=str(full), pstatus="on tcp")
        got = await js.expect("presence", **{"from": bob.boundjid.full})
        assert got["type"] == "available" and got["status"] == "on tcp"
        # messages both ways, in order
        for i in range(3):
            bob.send_message(mto=str(full), mbody=f"hello {i} from tcp", mtype="chat")
        for i in range(3):
            m = await js.expect("message", body=f"hello {i} from tcp")
            assert m["from"] == bob.boundjid.full and m["type"] == "chat"
        await js.command("message", to=bob.boundjid.bare, body="hi from the web — ünïcode ✓", id="m1")
        m = await asyncio.wait_for(messages.get(), 10)
        assert m["body"] == "hi from the web — ünïcode ✓" and str(m["from"]) == str(full)
    finally:
        await slix_close(bob)
    assert await js.quit() == 0, js.events
    await _wait_gone(server)


async def _wait_gone(server, timeout: float = 5) -> None:
    await wait_until(lambda: not server.live, timeout, "every session gone")
    assert server.connections.total() == 0


async def test_xmppjs_logs_in_over_ws_and_talks_to_slixmpp(tmp_path):
    async with running_server(tmp_path, "listen.http=127.0.0.1:0", "c2s.require_tls=false") as server:
        jid = await add_user(server, "alice")
        js = await NodeClient.start("xmppjs_client.mjs", f"ws://127.0.0.1:{server.ports['http']}/xmpp-websocket", jid, PASSWORD)
        try:
            await _exchange(server, js, jid)
        finally:
            await js.quit()


async def test_xmppjs_logs_in_over_wss_with_tls_required(tmp_path):
    """wss:// (http.tls) counts as TLS: c2s.require_tls stays on and SCRAM works."""
    async with running_server(tmp_path, "listen.http=127.0.0.1:0", "http.tls=true") as server:
        assert server.config.c2s.require_tls
        jid = await add_user(server, "alice")
        js = await NodeClient.start(
            "xmppjs_client.mjs", f"wss://localhost:{server.ports['http']}/xmpp-websocket", jid, PASSWORD,
            env={"NODE_EXTRA_CA_CERTS": str(cert_path(server))},
        )
        try:
            await _exchange(server, js, jid)
        finally:
            await js.quit()


async def test_strophejs_logs_in_over_ws_and_talks_to_slixmpp(tmp_path):
    async with running_server(tmp_path, "listen.http=127.0.0.1:0", "c2s.require_tls=false") as server:
        jid = await add_user(server, "alice")
        js = await NodeClient.start("strophe_client.mjs", f"ws://127.0.0.1:{server.ports['http']}/xmpp-websocket", jid, PASSWORD)
        try:
            await _exchange(server, js, jid)
        finally:
            await js.quit()


async def test_xmppjs_publishes_to_pep_over_ws_and_reads_a_contacts_node(tmp_path):
    """XEP-0163 from a JavaScript client: xmpp.js publishes (with publish-options) over
    WebSocket, a slixmpp contact interested through caps is notified, and xmpp.js reads the
    contact's node; a stranger's precondition mismatch is refused."""
    from ..features.pep_support import EVENT, PepClient, befriend

    tune = "http://jabber.org/protocol/tune"
    async with running_server(tmp_path, "listen.http=127.0.0.1:0", "c2s.require_tls=false") as server:
        jid = await add_user(server, "alice")
        bob = await PepClient.login(server, "bob", (tune,))
        await befriend(server, jid, bob.bare)
        js = await NodeClient.start("xmppjs_client.mjs", f"ws://127.0.0.1:{server.ports['http']}/xmpp-websocket", jid, PASSWORD)
        try:
            await js.expect("online")
            await js.command("pep-publish", id="p1", node=tune, item="current", name="tune", ns=tune, text="Song",
                             options={"access_model": "presence"})
            assert (await js.expect("pep-published", id="p1"))["item"] == "current"
            ev = await bob.event(tune)
            assert ev.get("from") == jid and ev.find(f".//{{{EVENT}}}item").get("id") == "current"
            await js.command("pep-publish", id="p2", node=tune, item="next", name="tune", ns=tune, text="Other",
                             options={"access_model": "open"})
            assert (await js.expect("iq-error", id="p2"))["condition"] == "conflict"
            await bob.iq("set", f"<pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='{tune}'><item id='b'>"
                                f"<tune xmlns='{tune}'>Bob's</tune></item></publish></pubsub>")
            await js.command("pep-items", id="i1", to=bob.bare, node=tune)
            assert (await js.expect("pep-items", id="i1"))["items"] == [["b", "Bob's"]]
        finally:
            await js.quit()
            await slix_close(bob.c)
