"""REST API customer service, the fields of issue 21 over HTTP against a real server: skills of
queues and agents, opening hours with time zone and holidays, the pre-chat form, canned replies,
the ticket workflow (reply, assign, close: the visitor, a real slixmpp client, is told each step)
and the daily report — validated (400, never 500), paged, write operations refused to a read token."""
from __future__ import annotations

from pathlib import Path

import aiohttp

from tests.extensions.customer_service.conftest import open_site

from .support import READ, TOKENS, Api

FORM = {"required": False, "fields": [
    {"var": "name", "label": "Name", "required": True},
    {"var": "topic", "type": "list-single", "label": "Topic", "options": [{"value": "billing", "label": "Billing", "skills": "billing"}]},
]}


async def test_skills_hours_form_canned_tickets_and_report(tmp_path: Path) -> None:
    async with open_site(tmp_path, "listen.http=127.0.0.1:0", TOKENS) as site, aiohttp.ClientSession() as http:
        api = Api(site.server, http)
        for u in ("ann", "vera"):
            await site.user(u)
        status, body = await api.call("PUT", "/api/v1/cs/queues/help", json={
            "display_name": "Help", "skills": "zh", "hours": "mon-fri 09:00-18:00", "timezone": "Asia/Shanghai",
            "holidays": "2026-12-25", "prechat": FORM})
        assert status == 200, body
        assert (body["skills"], body["hours"], body["timezone"], body["holidays"]) == ("zh", "mon-fri 09:00-18:00", "Asia/Shanghai", "2026-12-25")
        assert [f["var"] for f in body["prechat"]["fields"]] == ["name", "topic"]
        assert body["prechat"]["fields"][1]["options"][0]["skills"] == "billing"
        for bad in ({"hours": "someday"}, {"timezone": "Mars/Olympus"}, {"holidays": "2026-13-45"}, {"skills": "a b c d e f g h i j k l m n o p q"},
                    {"prechat": {"fields": [{"var": "Topic!"}]}}, {"prechat": {"fields": [{"var": "t", "type": "list-single"}]}},
                    {"capacity": "many"}):
            status, err = await api.call("PUT", "/api/v1/cs/queues/help", json=bad)
            assert status == 400, (bad, status, err)
        status, body = await api.call("PUT", "/api/v1/cs/queues/help", json={"hours": "", "holidays": "", "skills": ""})
        assert status == 200 and body["prechat"] is not None  # absent settings kept
        status, body = await api.call("PUT", "/api/v1/cs/queues/help/members/ann@localhost",
                                      json={"role": "agent", "nick": "Ann", "skills": "billing zh"})
        assert status == 200 and body["skills"] == "billing zh"
        status, body = await api.call("PUT", "/api/v1/cs/queues/help/members/ann@localhost", json={"role": "agent", "skills": "NO!"})
        assert status == 400

        # canned replies: shared and personal, paged; a read token may only list
        for name, owner in (("hi", None), ("bye", None), ("mine", "ann@localhost")):
            status, body = await api.call("PUT", f"/api/v1/cs/queues/help/canned/{name}", json={"text": f"text {name}", **({"owner": owner} if owner else {})})
            assert status == 200 and body["owner"] == owner
        status, _ = await api.call("PUT", "/api/v1/cs/queues/help/canned/x", json={"text": "t"}, token=READ)
        assert status == 403
        status, _ = await api.call("PUT", "/api/v1/cs/queues/help/canned/x", json={"text": "t", "owner": "vera@localhost"})
        assert status == 404  # not an agent
        status, body = await api.call("GET", "/api/v1/cs/queues/help/canned?limit=2", token=READ)
        assert status == 200 and [(c["name"], c["owner"]) for c in body["items"]] == [("bye", None), ("hi", None)]
        status, body = await api.call("GET", "/api/v1/cs/queues/help/canned?limit=2&offset=2", token=READ)
        assert [(c["name"], c["owner"]) for c in body["items"]] == [("mine", "ann@localhost")]
        status, _ = await api.call("DELETE", "/api/v1/cs/queues/help/canned/mine?owner=ann@localhost")
        assert status == 204
        status, _ = await api.call("DELETE", "/api/v1/cs/queues/help/canned/mine?owner=ann@localhost")
        assert status == 404
        ann = await site.client("ann")
        listed = await ann.cs.canned_list(site.queue("help"))
        assert sorted(c.get("name") for c in listed) == ["bye", "hi"]

        # tickets: left while closed (nobody online), answered, assigned and closed through the API
        vera = await site.client("vera")
        vera.say(site.queue("help"), "my parcel never came")
        tid = (await vera.cs_event("ticket")).get("id")
        status, body = await api.call("POST", f"/api/v1/cs/queues/help/tickets/{tid}/reply", json={"by": "vera@localhost", "text": "hi"})
        assert status == 422 and body["error"]["code"].startswith("forbidden")  # a visitor is no agent
        status, body = await api.call("POST", f"/api/v1/cs/queues/help/tickets/{tid}/reply", json={"by": "ann@localhost", "text": "We are on it."})
        assert status == 200 and body["state"] == "assigned" and body["replies"][0]["body"] == "We are on it."
        assert "We are on it." in (await vera.cs_event("ticket-reply", id=tid)).get("_body")
        status, body = await api.call("POST", f"/api/v1/cs/queues/help/tickets/{tid}/assign", json={"agent": "ann@localhost"})
        assert status == 200 and body["assignee"] == "ann@localhost"
        assert (await vera.cs_event("ticket-update", id=tid)).get("state") == "assigned"
        status, body = await api.call("POST", f"/api/v1/cs/queues/help/tickets/{tid}/close", json={"by": "ann@localhost"})
        assert status == 200 and body["state"] == "closed" and body["closed_at"]
        assert (await vera.cs_event("ticket-update", id=tid, state="closed")) is not None
        status, body = await api.call("POST", f"/api/v1/cs/queues/help/tickets/{tid}/close", json={"by": "ann@localhost"})
        assert status == 409
        for path, js in ((f"/tickets/{tid}/reply", {"by": "ann@localhost"}), ("/tickets/0/close", {"by": "ann@localhost"}),
                         ("/tickets/99/close", {"by": "ann@localhost"}), (f"/tickets/{tid}/close", {"by": ""})):
            status, _ = await api.call("POST", "/api/v1/cs/queues/help" + path, json=js)
            assert status in (400, 404), (path, status)
        status, body = await api.call("GET", "/api/v1/cs/queues/help/tickets?state=closed", token=READ)
        assert status == 200 and [t["id"] for t in body["items"]] == [int(tid)]
        status, body = await api.call("GET", "/api/v1/cs/queues/help/tickets?state=open", token=READ)
        assert body["items"] == []

        # a chat with the form's answers, then the day's figures
        await site.cs.admin.put_queue(_queue_el("help"))
        await ann.announce(site.queue("help"))
        vera.xmpp.register_plugin("xep_0004")
        form = vera.xmpp.plugin["xep_0004"].make_form(ftype="submit")
        form.add_field(var="name", value="Vera")
        form.add_field(var="topic", value="billing")
        sid = (await vera.cs.join(site.queue("help"), form)).get("session")
        await ann.cs_event("assigned", session=sid)
        status, body = await api.call("GET", "/api/v1/cs/chats?queue=help", token=READ)
        chat = body["items"][0]
        assert chat["skills"] == "billing" and chat["answers"] == [{"var": "name", "label": "Name", "value": "Vera"},
                                                                   {"var": "topic", "label": "Topic", "value": "Billing"}]
        await vera.cs.close(site.queue("help"))
        await vera.cs.rate(site.queue("help"), 4, "fine")
        status, body = await api.call("GET", "/api/v1/cs/queues/help/report", token=READ)
        assert status == 200 and body["timezone"] == "UTC"
        queue_row = next(d for d in body["days"] if d["agent"] is None)
        agent_row = next(d for d in body["days"] if d["agent"] == "ann@localhost")
        assert (queue_row["chats"], queue_row["rated"], queue_row["satisfaction"]) == (1, 1, 4.0)
        assert agent_row["chats"] == 1 and agent_row["average_wait"] is not None
        for bad in ("?from=2026-01-10&to=2026-01-01", "?from=2026-02-30", "?from=2025-01-01&to=2026-01-01", "?from=x"):
            status, _ = await api.call("GET", "/api/v1/cs/queues/help/report" + bad, token=READ)
            assert status == 400, bad


def _queue_el(name: str):  # noqa: ANN202 — open all day, every day (the fake clock is a Thursday 1970)
    from lxml import etree

    from xmppd_extensions.customer_service.protocol import q

    return etree.Element(q("queue"), {"name": name, "hours": "", "timezone": "UTC", "holidays": "", "skills": ""})
