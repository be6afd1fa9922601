"""urn:xmppd:cs:0 over the wire with slixmpp: one visitor's whole session, relay, rating, hidden agent JID."""
from __future__ import annotations

import pytest
from slixmpp.exceptions import IqError

from xmppd_extensions.customer_service.protocol import NICK_NS, NS

from .conftest import Site, assert_valid

pytestmark = pytest.mark.interop
BODY = "{jabber:client}body"


async def test_one_visitor_session_end_to_end_never_shows_the_agent_jid(site: Site) -> None:
    for u in ("boss", "alice", "vera", "sue"):
        await site.user(u)
    admin = await site.queue_with("support", {"alice": "Alice"}, supervisors=("sue",), welcome="Hello from Support!")
    support = site.queue("support")
    alice = await site.client("alice")
    await alice.announce(support)
    vera = await site.client("vera")

    vera.say(support, "My order is late")
    welcome = await vera.cs_event("welcome")
    assert welcome.get("_from") == support and welcome.get("_body").startswith("Hello from Support!\n")
    assert "!close" in welcome.get("_body")  # the welcome says how to end the chat from any client
    sid = welcome.get("session")
    joined = await vera.cs_event("agent", session=sid)
    assert joined.get("nick") == "Alice" and joined.get("jid") is None
    assigned = await alice.cs_event("assigned", session=sid)
    assert assigned.get("_from") == f"s-{sid}@{site.domain}"
    assert assigned.get("visitor") == "vera@localhost"
    assert "My order is late" in assigned.get("_body")
    lines = assigned.findall(f"{{{NS}}}transcript/{{{NS}}}line")
    assert [ln.text for ln in lines if ln.get("role") == "visitor"] == ["My order is late"]

    # Relay both ways: the agent writes to the session JID, the visitor to the queue JID.
    alice.say(f"s-{sid}@{site.domain}", "Let me check")
    m = await vera.next(lambda m: m.findtext(BODY) == "Alice: Let me check")
    assert m.get("from") == support and m.findtext(f"{{{NICK_NS}}}nick") == "Alice"
    vera.say(support, "Thanks")
    m = await alice.next(lambda m: m.findtext(BODY) == "Thanks")
    assert m.get("from") == f"s-{sid}@{site.domain}"

    # The visitor closes and rates; a second rating is refused.
    await vera.cs.close(support)
    closed = await vera.cs_event("closed", session=sid)
    assert closed.get("reason") == "visitor"
    await alice.cs_event("closed", session=sid, reason="visitor")
    await vera.cs.rate(support, 5, "quick and kind")
    with pytest.raises(IqError) as exc:
        await vera.cs.rate(support, 4)
    assert exc.value.condition == "conflict"

    # The supervisor sees it in the history and reads the transcript.
    sue = await site.client("sue")
    hist = await sue.cs.history(support, visitor="vera@localhost")
    (row,) = hist.findall(f"{{{NS}}}session")
    assert row.get("id") == sid and row.get("state") == "closed" and row.get("rating") == "5"
    assert row.findtext(f"{{{NS}}}comment") == "quick and kind"
    tr = await sue.cs.transcript(site.domain, sid)
    texts = [(ln.get("role"), ln.text) for ln in tr.findall(f"{{{NS}}}line")]
    assert ("visitor", "My order is late") in texts and ("agent", "Let me check") in texts and ("visitor", "Thanks") in texts

    # Never the agent's JID in anything the visitor received; everything we sent validates.
    assert vera.raw and not any("alice@localhost" in x for x in vera.raw)
    for c in (vera, alice, sue, admin):
        assert_valid(c.cs_payloads())
