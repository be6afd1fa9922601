"""A website chat widget's visitor (docs/customer-service.md §4.5, docs/auth.md "Anonymous
visitors"): logged in with SASL ANONYMOUS on the anonymous host, with slixmpp over TCP and with
xmpp.js over WebSocket, it chats with a queue's agent both ways; when its session ends, the chat
ends and the agent is told."""
from __future__ import annotations

import re
from pathlib import Path

from tests.helpers import FakeClock, slix_guest
from tests.interop.jsclients import NodeClient
from xmppd.jid import JID

from .conftest import Client, Site, open_site
from .test_routing_wire import agents_online, open_chat, users

GUEST = "guest.localhost"
GUEST_JID = re.compile(r"[0-9a-f]{32}@guest\.localhost/.+")


async def guest_client(site: Site) -> Client:
    assert site.server is not None
    c = Client(await slix_guest(site.server, GUEST))
    site.clients.append(c)
    return c


async def test_an_anonymous_visitor_chats_with_an_agent_and_leaving_ends_the_chat(tmp_path: Path) -> None:
    async with open_site(tmp_path, f"anonymous.domain={GUEST}") as site:
        await users(site, "ann")
        await site.queue_with("support", {"ann": "Ann"})
        (ann,) = await agents_online(site, "support", ["ann"])
        visitor = await guest_client(site)
        full = str(visitor.xmpp.boundjid)
        assert GUEST_JID.fullmatch(full), full
        assert await site.server.accounts.get(JID.parse(full).local, GUEST) is None  # no account

        sid = await open_chat(site, visitor, "support", "Where is my order?")
        assigned = await ann.cs_event("assigned", session=sid)
        assert assigned.get("visitor") == visitor.jid
        assert "Where is my order?" in assigned.get("_body")  # the transcript so far
        chat = f"s-{sid}@{site.domain}"
        assert (await visitor.cs_event("agent", session=sid)).get("nick") == "Ann"
        ann.say(chat, "It ships today")
        got = await visitor.body_from(site.queue("support"))
        while got.findtext("{jabber:client}body") != "Ann: It ships today":
            got = await visitor.body_from(site.queue("support"))
        visitor.say(site.queue("support"), "Thanks!")
        await ann.next(lambda m: m.get("from") == chat and m.findtext("{jabber:client}body") == "Thanks!")

        # The widget's tab closes: the visitor's address dies, the chat ends, the agent is told.
        visitor.xmpp.disconnect()
        closed = await ann.cs_event("closed", session=sid)
        assert closed.get("reason") == "visitor"
        assert site.cs.state.open.get(sid) is None
        assert site.server.guests.sessions == 0


async def test_an_xmppjs_widget_logs_in_anonymously_over_websocket_and_chats(tmp_path: Path) -> None:
    async with open_site(tmp_path, f"anonymous.domain={GUEST}", "listen.http=127.0.0.1:0", clock=FakeClock()) as site:
        await users(site, "ann")
        await site.queue_with("support", {"ann": "Ann"})
        (ann,) = await agents_online(site, "support", ["ann"])
        js = await NodeClient.start("xmppjs_client.mjs", f"ws://127.0.0.1:{site.server.ports['http']}/xmpp-websocket", GUEST)
        try:
            online = await js.expect("online")
            assert GUEST_JID.fullmatch(online["jid"]), online
            await js.command("message", to=site.queue("support"), body="Hello from the website", id="w1")
            welcome = await js.expect("message", **{"from": site.queue("support")})
            assert welcome["type"] == "chat"
            assigned = await ann.cs_event("assigned")
            assert assigned.get("visitor") == str(JID.parse(online["jid"]).bare)
            chat = f"s-{assigned.get('session')}@{site.domain}"
            ann.say(chat, "How can I help?")
            await js.expect("message", body="Ann: How can I help?")
            # Anyone else is out of reach for a visitor.
            await js.command("message", to="ann@localhost", body="psst", id="w2")
            refused = await js.expect("message", type="error")
            assert refused["condition"] == "forbidden" and refused["from"] == "ann@localhost"
        finally:
            assert await js.quit() == 0, js.events
        closed = await ann.cs_event("closed", session=assigned.get("session"))
        assert closed.get("reason") == "visitor"
