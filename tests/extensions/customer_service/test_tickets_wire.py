"""Tickets as a workflow (docs §5.1), through the wire with slixmpp: an agent replies (the
visitor receives it from offline storage), a supervisor assigns, the agent closes; the visitor is
told each step; closed stays closed; only the queue's agents and supervisors act."""
from __future__ import annotations

import pytest
from slixmpp.exceptions import IqError

from xmppd_extensions.customer_service.protocol import NS

from .conftest import Site
from .test_routing_wire import users


async def test_an_agent_replies_to_an_offline_visitor_a_supervisor_assigns_and_the_ticket_closes(site: Site) -> None:
    await users(site, "ann", "bob", "sue", "vera", "eve")
    admin = await site.queue_with("support", {"ann": "Ann", "bob": "Bob"}, supervisors=("sue",))
    support = site.queue("support")
    vera = await site.client("vera")
    vera.say(support, "My parcel never came")  # no agent online: a ticket
    tid = (await vera.next(lambda m: m.find(f"{{{NS}}}ticket") is not None)).find(f"{{{NS}}}ticket").get("id")
    await vera.close()  # offline from here

    ann, sue, eve = await site.client("ann"), await site.client("sue"), await site.client("eve")
    await ann.cs.ticket_reply(support, tid, "Sorry! A new one is on its way.")
    for call in (eve.cs.ticket_reply(support, tid, "hi"), eve.cs.ticket_close(support, tid)):
        with pytest.raises(IqError) as err:
            await call
        assert err.value.condition == "forbidden"
    with pytest.raises(IqError) as err:
        await sue.cs.ticket_assign(support, tid, "eve@localhost")  # not an agent of the queue
    assert err.value.condition == "item-not-found"
    listed = (await sue.cs.tickets(support)).find(f"{{{NS}}}ticket")
    assert (listed.get("state"), listed.get("assignee")) == ("assigned", "ann@localhost")  # the replier took it
    assert listed.find(f"{{{NS}}}reply").text == "Sorry! A new one is on its way."

    # back online: the reply was kept for her
    vera = await site.client("vera")
    reply = await vera.next(lambda m: m.find(f"{{{NS}}}ticket-reply") is not None)
    assert reply.get("from") == support and reply.find(f"{{{NS}}}ticket-reply").get("nick") == "Ann"
    assert "Sorry! A new one is on its way." in reply.findtext("{jabber:client}body")

    await sue.cs.ticket_assign(support, tid, "bob@localhost")
    moved = await vera.next(lambda m: m.find(f"{{{NS}}}ticket-update") is not None)
    assert dict(moved.find(f"{{{NS}}}ticket-update").attrib) == {"id": tid, "state": "assigned", "nick": "Bob"}
    bob = await site.client("bob")
    await bob.cs.ticket_close(support, tid)
    closed = await vera.next(lambda m: (u := m.find(f"{{{NS}}}ticket-update")) is not None and u.get("state") == "closed")
    assert closed.findtext("{jabber:client}body") == f"Your message #{tid} has been closed."
    for call in (ann.cs.ticket_reply(support, tid, "one more"), bob.cs.ticket_close(support, tid)):
        with pytest.raises(IqError) as err:
            await call
        assert err.value.condition == "unexpected-request"
    listed = (await admin.cs.tickets(support)).find(f"{{{NS}}}ticket")
    assert (listed.get("state"), listed.get("assignee")) == ("closed", "bob@localhost") and listed.get("closed")
    for bad in ("x", "999"):
        with pytest.raises(IqError) as err:
            await ann.cs.ticket_close(support, bad)
        assert err.value.condition in ("bad-request", "item-not-found")
