"""Customer-service agents and visitors on standard clients (issue 16): a roster subscription puts
an agent in rotation and their ordinary presence moves them in and out; #pause/#resume work for a
logged-in agent without directed presence."""
from __future__ import annotations

import asyncio
from typing import Any

import pytest
from lxml import etree

from xmppd_extensions.customer_service.protocol import NS

from .conftest import Client, Site
from .test_adhoc_wire import NODE, command, notes

pytestmark = pytest.mark.interop
PRESENCE = "{jabber:client}presence"


def like_profanity(c: Client) -> None:
    """A client that answers no subscription request by itself (a human decides)."""
    c.xmpp.auto_authorize = None
    c.xmpp.auto_subscribe = False


async def presence_from(c: Client, frm: str, typ: str | None, timeout: float = 5) -> etree._Element:
    """The first presence of type ``typ`` from ``frm`` (bare) the client received."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while True:
        for text in c.raw:
            el = etree.fromstring(text)
            if el.tag == PRESENCE and (el.get("from") or "").split("/")[0] == frm and el.get("type") == typ:
                return el
        if loop.time() > end:
            raise AssertionError(f"{c.jid}: no presence type={typ} from {frm}")
        await asyncio.sleep(0.05)


async def roster_item(c: Client, contact: str) -> dict[str, Any]:
    """The server's roster item for ``contact`` (a fresh roster get)."""
    iq = c.xmpp.make_iq_get(queryxmlns="jabber:iq:roster")
    res = await iq.send(timeout=5)
    for item in res.xml.iter("{jabber:iq:roster}item"):
        if item.get("jid") == contact:
            return dict(item.attrib)
    return {}


async def subscribe(c: Client, contact: str) -> None:
    """What profanity's `/sub request` does after `/roster add`: a roster set, then subscribe."""
    await c.xmpp.update_roster(contact, timeout=5)
    c.xmpp.send_presence(pto=contact, ptype="subscribe")


async def status(site: Site, queue: str, agent: str) -> str:
    a = site.cs.agents.get(agent)
    return a.status(queue) if a is not None else "offline"


async def test_agent_subscribing_to_the_queue_is_in_rotation_by_ordinary_presence(site: Site) -> None:
    for u in ("boss", "ann", "v1", "v2"):
        await site.user(u)
    await site.queue_with("support", {"ann": "Ann"}, capacity=5)
    support = site.queue("support")
    ann = await site.client("ann")  # plain available presence, nothing directed to the queue
    like_profanity(ann)
    assert await status(site, "support", "ann@localhost") == "offline"

    await subscribe(ann, support)
    await presence_from(ann, support, "subscribed")
    await presence_from(ann, support, None)  # the queue is online for its agent
    await ann.sync()
    item = await roster_item(ann, support)
    assert item.get("subscription") == "both" and "ask" not in item
    assert not any(etree.fromstring(t).get("type") == "subscribe" for t in ann.raw if t.startswith("<presence") or PRESENCE in t), \
        "the service's request was approved in the agent's name, never shown to the client"
    assert await status(site, "support", "ann@localhost") == "available"

    v1 = await site.client("v1")
    v1.say(support, "my order is late")
    sid = (await v1.cs_event("welcome")).get("session")
    assert (await v1.cs_event("agent", session=sid)).get("nick") == "Ann"
    assert (await ann.cs_event("assigned", session=sid)).get("visitor") == "v1@localhost"

    ann.xmpp.send_presence(pshow="away")  # ordinary broadcast presence
    await ann.sync()
    assert await status(site, "support", "ann@localhost") == "away"
    v2 = await site.client("v2")
    v2.say(support, "hello?")
    sid2 = (await v2.cs_event("welcome")).get("session")
    assert (await v2.cs_event("position", session=sid2)).get("n") == "1"  # no new chats while away

    ann.xmpp.send_presence()  # back: the waiting visitor is served
    assert (await v2.cs_event("agent", session=sid2)).get("nick") == "Ann"

    ann.xmpp.send_presence(ptype="unavailable")  # out of rotation; the chats go back to the line
    assert (await v1.cs_event("requeued", session=sid)) is not None
    assert await status(site, "support", "ann@localhost") == "offline"


async def test_agent_subscribing_to_the_component_serves_all_their_queues(site: Site) -> None:
    for u in ("boss", "ann"):
        await site.user(u)
    admin = await site.queue_with("support", {"ann": "Ann"})
    await admin.cs.put_queue(site.domain, "sales", display_name="Sales")
    await admin.cs.set_member(site.queue("sales"), "ann@localhost", "agent", "Ann")
    ann = await site.client("ann")
    like_profanity(ann)
    await subscribe(ann, site.domain)
    await presence_from(ann, site.domain, "subscribed")
    await ann.sync()
    assert await status(site, "support", "ann@localhost") == "available"
    assert await status(site, "sales", "ann@localhost") == "available"


async def test_subscription_from_a_non_agent_is_refused(site: Site) -> None:
    for u in ("boss", "ann", "vera"):
        await site.user(u)
    await site.queue_with("support", {"ann": "Ann"})
    vera = await site.client("vera")
    like_profanity(vera)
    await subscribe(vera, site.queue("support"))
    await presence_from(vera, site.queue("support"), "unsubscribed")
    await vera.sync()
    assert (await roster_item(vera, site.queue("support"))).get("subscription") == "none"
    assert "vera@localhost" not in site.cs.agents


async def test_removed_agent_loses_the_subscription_and_leaves_rotation(site: Site) -> None:
    for u in ("boss", "ann"):
        await site.user(u)
    admin = await site.queue_with("support", {"ann": "Ann"})
    support = site.queue("support")
    ann = await site.client("ann")
    like_profanity(ann)
    await subscribe(ann, support)
    await presence_from(ann, support, "subscribed")
    await ann.sync()
    await admin.cs.set_member(support, "ann@localhost", "none")
    await presence_from(ann, support, "unsubscribed")
    await ann.sync()
    assert (await roster_item(ann, support)).get("subscription") == "none"
    assert await status(site, "support", "ann@localhost") == "offline"


async def test_resume_and_pause_commands_work_for_a_logged_in_agent_without_directed_presence(site: Site) -> None:
    for u in ("boss", "ann", "v1"):
        await site.user(u)
    await site.queue_with("support", {"ann": "Ann"})
    ann = await site.client("ann")  # logged in, available; never addressed the queue
    like_profanity(ann)
    done = await command(ann, site.domain, NODE + "resume")
    assert done.get("status") == "completed" and notes(done)
    assert await status(site, "support", "ann@localhost") == "available"
    v1 = await site.client("v1")
    v1.say(site.queue("support"), "hi")
    sid = (await v1.cs_event("welcome")).get("session")
    assert (await v1.cs_event("agent", session=sid)).get("nick") == "Ann"

    ann.xmpp.send_presence(pshow="dnd")  # from now on their ordinary presence counts
    await ann.sync()
    assert await status(site, "support", "ann@localhost") == "away"
    ann.xmpp.send_presence()
    await ann.sync()
    await command(ann, site.domain, NODE + "pause")
    assert await status(site, "support", "ann@localhost") == "paused"
    await command(ann, site.domain, NODE + "resume")
    assert await status(site, "support", "ann@localhost") == "available"


async def test_pause_iq_for_an_agent_who_never_announced_shows_paused(site: Site) -> None:
    for u in ("boss", "ann"):
        await site.user(u)
    admin = await site.queue_with("support", {"ann": "Ann"})
    ann = await site.client("ann")
    await ann.cs.pause(site.domain)
    figures = await admin.cs.figures(site.queue("support"))
    assert [a.get("status") for a in figures.iter(f"{{{NS}}}agent")] == ["paused"]
