"""REST API customer service over HTTP: queues and agents set up by the API serve a real
visitor (slixmpp), the chat shows in the API and on /metrics, the API closes it, its history
and transcript follow, and a message while nobody serves becomes a ticket the API lists."""
from __future__ import annotations

from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from tests.extensions.customer_service.conftest import open_site

from .support import READ, TOKENS, Api


async def test_queue_agents_chats_close_history_transcript_tickets(tmp_path: Path) -> None:
    async with open_site(tmp_path, "listen.http=127.0.0.1:0", TOKENS) as site, aiohttp.ClientSession() as http:
        api = Api(site.server, http)
        for u in ("alice", "vera", "walt"):
            await site.user(u)
        status, body = await api.call("PUT", "/api/v1/cs/queues/help", json={"display_name": "Help", "welcome": "Hi from Help!",
                                                                           "offline": "Nobody here; leave a message.", "capacity": 2})
        assert status == 200 and body["jid"] == site.queue("help") and body["capacity"] == 2
        status, body = await api.call("PUT", "/api/v1/cs/queues/help", json={"strategy": "sideways"})
        assert status == 400 and body["error"]["code"] == "invalid_request"
        status, body = await api.call("PUT", "/api/v1/cs/queues/help/members/alice@localhost", json={"role": "agent", "nick": "Alice"})
        assert status == 200 and body == {"jid": "alice@localhost", "role": "agent", "nick": "Alice", "skills": ""}

        # nobody serves yet: a ticket
        walt = await site.client("walt")
        walt.say(site.queue("help"), "call me back")
        await walt.cs_event("ticket")
        status, body = await api.call("GET", "/api/v1/cs/queues/help/tickets", token=READ)
        assert status == 200 and [(t["visitor"], t["body"]) for t in body["items"]] == [("walt@localhost", "call me back")]

        alice = await site.client("alice")
        await alice.announce(site.queue("help"))
        status, body = await api.call("GET", "/api/v1/cs/queues/help/members", token=READ)
        assert body["items"] == [{"jid": "alice@localhost", "role": "agent", "nick": "Alice", "skills": "", "status": "available", "load": 0}]

        vera = await site.client("vera")
        vera.say(site.queue("help"), "my order is late")
        sid = (await vera.cs_event("welcome")).get("session")
        await alice.cs_event("assigned", session=sid)
        status, body = await api.call("GET", "/api/v1/cs/chats?queue=help", token=READ)
        assert [(c["id"], c["state"], c["agent"], c["visitor"]) for c in body["items"]] == [(sid, "active", "alice@localhost", "vera@localhost")]
        async with http.get(api.base + "/metrics") as r:
            fams = {f.name: f for f in text_string_to_metric_families(await r.text())}
        active = {s.labels["queue"]: s.value for s in fams["xmppd_cs_active"].samples}
        assert active == {"help": 1}

        status, _ = await api.call("POST", f"/api/v1/cs/chats/{sid}/close")
        assert status == 204
        closed = await vera.cs_event("closed", session=sid)
        assert closed.get("reason") == "supervisor"
        status, body = await api.call("POST", f"/api/v1/cs/chats/{sid}/close")
        assert status == 404 and body["error"]["code"] == "chat_not_found"
        status, body = await api.call("GET", "/api/v1/cs/queues/help/history?visitor=vera@localhost", token=READ)
        assert [(c["id"], c["state"], c["close_reason"]) for c in body["items"]] == [(sid, "closed", "supervisor")]
        status, body = await api.call("GET", f"/api/v1/cs/chats/{sid}/transcript", token=READ)
        assert "my order is late" in [line["body"] for line in body["lines"]]

        status, body = await api.call("DELETE", "/api/v1/cs/queues/nope")
        assert status == 404 and body["error"]["code"] == "queue_not_found"
        status, body = await api.call("GET", "/api/v1/cs/queues", token=READ)
        assert [q["name"] for q in body["items"]] == ["help"]
        status, _ = await api.call("DELETE", "/api/v1/cs/queues/help")
        assert status == 204
