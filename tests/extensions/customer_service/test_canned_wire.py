"""Canned replies (docs §6.1) through the wire with slixmpp: shared per queue (supervisors set
them), personal (each agent's own, winning over a shared one of the same name), sent into a chat
with ``!r <name>``."""
from __future__ import annotations

import pytest
from slixmpp.exceptions import IqError

from .conftest import Site
from .test_routing_wire import agents_online, open_chat, users

BODY = "{jabber:client}body"


async def test_shared_and_personal_canned_replies_go_into_the_chat(site: Site) -> None:
    await users(site, "ann", "bob", "sue", "vera")
    await site.queue_with("support", {"ann": "Ann", "bob": "Bob"}, supervisors=("sue",))
    support = site.queue("support")
    sue = await site.client("sue")
    await sue.cs.put_canned(support, "hello", "Hello! How can I help?")
    await sue.cs.put_canned(support, "bye", "Thanks for contacting us.")
    ann, bob = await agents_online(site, "support", ["ann", "bob"])
    await ann.cs.put_canned(support, "hello", "Hi, Ann here. What can I do?", personal=True)
    with pytest.raises(IqError) as err:
        await ann.cs.put_canned(support, "bye", "shared by an agent")  # shared: supervisors only
    assert err.value.condition == "forbidden"
    with pytest.raises(IqError) as err:
        await sue.cs.put_canned(support, "Bad Name!", "x")
    assert err.value.condition == "bad-request"

    mine = {(c.get("name"), c.get("personal")): c.text for c in await ann.cs.canned_list(support)}
    assert mine == {("bye", None): "Thanks for contacting us.", ("hello", None): "Hello! How can I help?",
                    ("hello", "true"): "Hi, Ann here. What can I do?"}
    assert {c.get("name") for c in await bob.cs.canned_list(support)} == {"bye", "hello"}  # not ann's

    vera = await site.client("vera")
    sid = await open_chat(site, vera, "support")
    assert (await vera.cs_event("agent", session=sid)).get("nick") == "Ann"  # round-robin starts at ann
    me, chat = ann, f"s-{sid}@{site.domain}"
    me.say(chat, "!r hello")
    expected = "Hi, Ann here. What can I do?"  # her personal reply wins over the shared one
    got = await vera.next(lambda m: (m.findtext(BODY) or "").endswith(expected))
    assert got.findtext(BODY) == f"Ann: {expected}"
    me.say(chat, "!r nothing")  # unknown: the agent gets the list, the visitor nothing
    listing = await me.next(lambda m: "Canned replies:" in (m.findtext(BODY) or ""))
    assert "bye" in listing.findtext(BODY) and "hello" in listing.findtext(BODY)
    await sue.cs.put_canned(support, "bye", "")  # empty: removed
    assert "bye" not in {c.get("name") for c in await bob.cs.canned_list(support)}
    lines = await me.cs.transcript(chat, sid)
    assert any(ln.text == expected for ln in lines)
