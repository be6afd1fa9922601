"""A visitor's own customer-service chats and tickets as an XEP-0050 command on the server
(urn:xmppd:cs:0#my-tickets, issue 16), over the wire with slixmpp."""
from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from lxml import etree

from xmppd.xml.forms import Form
from xmppd_extensions.customer_service.visitor_commands import MY_TICKETS

from .conftest import ADMIN, Site
from .test_adhoc_wire import NODE, XDATA, command, command_nodes, notes

pytestmark = pytest.mark.interop


def table(cmd: ET.Element) -> list[dict]:
    form = Form.from_element(etree.fromstring(ET.tostring(cmd.find(f"{{{XDATA}}}x"))))
    return [{f.var: f.value() for f in item} for item in form.items]


async def test_a_visitor_sees_only_their_own_chats_and_tickets(site: Site) -> None:
    for u in (ADMIN, "ann", "vera", "walt"):
        await site.user(u)
    boss = await site.queue_with("support", {"ann": "Ann"})
    await boss.cs.put_queue(site.domain, "sales", display_name="Sales")
    ann, vera, walt = await site.client("ann"), await site.client("vera"), await site.client("walt")
    support, sales = site.queue("support"), site.queue("sales")

    assert MY_TICKETS in await command_nodes(vera, "localhost")
    assert NODE + "queue" not in await command_nodes(vera, site.domain)  # admin commands stay hidden
    empty = await command(vera, "localhost", MY_TICKETS)  # no form: runs at once
    assert empty.get("status") == "completed" and table(empty) == []
    assert notes(empty) == ["You have no customer-service chats or tickets."]

    # a chat with Ann, closed by her and rated by vera
    await ann.announce(support)
    vera.say(support, "hello")
    sid = (await vera.cs_event("welcome")).get("session")
    await ann.cs_event("assigned", session=sid)
    await command(ann, f"s-{sid}@{site.domain}", NODE + "close")
    await vera.cs_event("closed", session=sid)
    vera.say(support, "/rate 5 quick and kind")
    await vera.body_from(support)
    # tickets in a queue nobody serves: vera's and walt's
    vera.say(sales, "call me back")
    await vera.cs_event("ticket")
    walt.say(sales, "walt's own question")
    await walt.cs_event("ticket")

    shown = await command(vera, "localhost", MY_TICKETS)
    rows = table(shown)
    assert [(r["kind"], str(r["queue"]), r["status"]) for r in rows] == [
        ("chat", support, "closed"), ("ticket", sales, "left while no agent was available")]
    chat, ticket = rows
    assert chat["id"] == sid and chat["agent"] == "Ann" and chat["reason"] == "agent"
    assert chat["rating"] == "5" and chat["text"] == "quick and kind" and chat["closed"].endswith("Z")
    assert ticket["text"] == "call me back" and ticket["id"].startswith("#")
    assert "ann@localhost" not in ET.tostring(shown, encoding="unicode")  # the agent's JID stays hidden
    assert notes(shown) == ["1 chat(s), 0 still open; 1 ticket(s), newest first."]
    assert [r["text"] for r in table(await command(walt, "localhost", MY_TICKETS))] == ["walt's own question"]


async def test_my_tickets_speaks_the_visitors_language(site: Site) -> None:
    for u in (ADMIN, "vera"):
        await site.user(u)
    await site.queue_with("sales", {})
    vera = await site.client("vera", lang="zh-CN")
    vera.say(site.queue("sales"), "请回电")
    await vera.cs_event("ticket")
    shown = await command(vera, "localhost", MY_TICKETS)
    assert notes(shown) == ["会话 0 个，其中 0 个未结束；工单 1 个，最新的在前。"]
    assert [(r["kind"], r["text"]) for r in table(shown)] == [("工单", "请回电")]
