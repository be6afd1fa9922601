"""Supervisors watch a live chat and whisper to its agent; an agent invites a second agent
(docs §4.4), through the wire with slixmpp."""
from __future__ import annotations

import pytest
from slixmpp.exceptions import IqError

from .conftest import Site
from .test_routing_wire import agents_online, open_chat, users

BODY = "{jabber:client}body"


async def test_a_supervisor_watches_and_whispers_and_a_second_agent_helps(site: Site) -> None:
    await users(site, "ann", "bob", "sue", "vera", "eve")
    await site.queue_with("support", {"ann": "Ann", "bob": "Bob"}, supervisors=("sue",), capacity=1)
    ann, bob = await agents_online(site, "support", ["ann", "bob"])
    vera = await site.client("vera")
    sid = await open_chat(site, vera, "support")
    assert (await vera.cs_event("agent", session=sid)).get("nick") == "Ann"
    chat = f"s-{sid}@{site.domain}"
    sue, eve = await site.client("sue"), await site.client("eve")

    with pytest.raises(IqError) as err:
        await eve.cs.watch(chat)
    assert err.value.condition == "forbidden"
    await sue.cs.watch(chat)
    await sue.cs_event("watching", session=sid)
    vera.say(site.queue("support"), "Where is my parcel?")
    assert (await sue.next(lambda m: "Where is my parcel?" in (m.findtext(BODY) or ""))).findtext(BODY) == "vera: Where is my parcel?"
    ann.say(chat, "Let me look")
    assert (await sue.next(lambda m: "Let me look" in (m.findtext(BODY) or ""))).findtext(BODY) == "Ann: Let me look"

    sue.say(chat, "Offer a refund")  # a whisper: the agent only
    whisper = await ann.cs_event("whisper", session=sid)
    assert whisper.get("from") == "sue@localhost" and whisper.get("_body") == "(whisper from sue) Offer a refund"

    with pytest.raises(IqError) as err:
        await bob.cs.invite(chat, "eve@localhost")  # not bob's chat
    assert err.value.condition == "forbidden"
    await ann.cs.invite(chat, "bob@localhost")
    brief = await bob.cs_event("assigned", session=sid)
    assert brief.get("from") == "ann@localhost"
    assert "Bob has joined the chat." in (await vera.next(lambda m: "joined" in (m.findtext(BODY) or ""))).findtext(BODY)
    bob.say(chat, "I handle refunds")
    assert (await vera.next(lambda m: "I handle refunds" in (m.findtext(BODY) or ""))).findtext(BODY) == "Bob: I handle refunds"
    assert (await ann.next(lambda m: "I handle refunds" in (m.findtext(BODY) or ""))).findtext(BODY) == "Bob: I handle refunds"
    vera.say(site.queue("support"), "Great")
    await bob.next(lambda m: m.findtext(BODY) == "vera: Great")

    await vera.cs.close(site.queue("support"))
    for c in (ann, bob, sue):
        assert (await c.cs_event("closed", session=sid)).get("reason") == "visitor"
    assert not [m for m in vera.messages if "Offer a refund" in (m.findtext(BODY) or "")]
    assert site.cs.state.others(sid) == []
