"""urn:xmppd:cs:0 permissions over the wire: admins, agents, supervisors and visitors each do only their part."""
from __future__ import annotations

import pytest
from slixmpp.exceptions import IqError

from xmppd_extensions.customer_service.protocol import NS

from .conftest import Site

pytestmark = pytest.mark.interop
BODY = "{jabber:client}body"


async def refused(coro: object, condition: str = "forbidden") -> str:
    with pytest.raises(IqError) as exc:
        await coro  # type: ignore[misc]
    assert exc.value.condition == condition, exc.value.iq
    return exc.value.text


async def test_only_admins_manage_queues_and_members(site: Site) -> None:
    for u in ("boss", "ann", "eve"):
        await site.user(u)
    eve = await site.client("eve")
    text = await refused(eve.cs.put_queue(site.domain, "support"))
    assert "admins" in text
    admin = await site.queue_with("support", {"ann": "Ann"})
    await refused(eve.cs.set_member(site.queue("support"), "eve@localhost", "agent"))
    await refused(eve.cs.delete_queue(site.domain, "support"))
    await refused(eve.cs.members(site.queue("support")))
    # Bad input gets the right error with a reason.
    await refused(admin.cs.put_queue(site.domain, "S-bad!"), "bad-request")
    await refused(admin.cs.put_queue(site.domain, "s-1"), "bad-request")
    await refused(admin.cs.put_queue(site.domain, "x", strategy="random"), "bad-request")
    await refused(admin.cs.put_queue(site.domain, "x", capacity=0), "bad-request")
    await refused(admin.cs.put_queue(site.domain, "x", capacity="many"), "bad-request")
    await refused(admin.cs.set_member(site.queue("support"), "not a jid@@", "agent"), "jid-malformed")
    await refused(admin.cs.set_member(site.queue("support"), "eve@localhost", "king"), "bad-request")
    await refused(admin.cs.set_member(site.queue("nosuch"), "eve@localhost", "agent"), "item-not-found")
    # Everyone sees which queues exist; only admins and members see their settings.
    listed = await eve.cs.queues(site.domain)
    (q,) = listed.findall(f"{{{NS}}}queue")
    assert q.get("name") == "support" and q.get("strategy") is None
    full = (await admin.cs.queues(site.domain)).find(f"{{{NS}}}queue")
    assert full.get("strategy") == "round-robin" and full.findtext(f"{{{NS}}}welcome")
    members = await admin.cs.members(site.queue("support"))
    assert [(m.get("jid"), m.get("role"), m.get("nick"), m.get("status")) for m in members] == [("ann@localhost", "agent", "Ann", "offline")]
    await admin.cs.set_member(site.queue("support"), "ann@localhost", "none")
    assert len(await admin.cs.members(site.queue("support"))) == 0
    await admin.cs.delete_queue(site.domain, "support")
    await refused(admin.cs.delete_queue(site.domain, "support"), "item-not-found")


async def test_only_agents_handle_and_only_supervisors_see_figures(site: Site) -> None:
    for u in ("boss", "ann", "bob", "sue", "vera", "eve"):
        await site.user(u)
    admin = await site.queue_with("support", {"ann": "Ann"}, supervisors=("sue",))
    await admin.cs.put_queue(site.domain, "sales")
    await admin.cs.set_member(site.queue("sales"), "bob@localhost", "agent", "Bob")
    ann = await site.client("ann")
    await ann.announce(site.queue("support"))
    bob = await site.client("bob")
    await bob.announce(site.queue("support"))  # not an agent of support: ignored
    assert "support" not in getattr(site.cs.agents.get("bob@localhost"), "presence", {})
    vera = await site.client("vera")
    vera.say(site.queue("support"), "help")
    sid = (await vera.cs_event("welcome")).get("session")
    await ann.cs_event("assigned", session=sid)
    sjid = f"s-{sid}@{site.domain}"

    # Another queue's agent can neither talk in, close nor transfer this chat.
    bob.say(sjid, "I am Bob")
    err = await bob.next(lambda m: m.get("type") == "error")
    assert err.find(".//{urn:ietf:params:xml:ns:xmpp-stanzas}forbidden") is not None
    assert not any(m.findtext(BODY) and "Bob" in m.findtext(BODY) for m in vera.messages)
    await refused(bob.cs.close(site.domain, sid))
    await refused(bob.cs.transfer(site.domain, sid, agent="bob@localhost"))
    await refused(bob.cs.figures(site.queue("support")))
    await refused(bob.cs.history(site.queue("support"), visitor="vera@localhost"))
    await refused(bob.cs.transcript(site.domain, sid))
    # The visitor: no figures, no history, no tickets, no transfer, no pause.
    await refused(vera.cs.figures(site.queue("support")))
    await refused(vera.cs.history(site.queue("support")))
    await refused(vera.cs.transfer(site.domain, sid, queue="sales"))
    await refused(vera.cs.pause(site.domain))
    # An agent reads a visitor's history but not the whole queue's; a supervisor reads both.
    assert len(await ann.cs.history(site.queue("support"), visitor="vera@localhost")) == 1
    await refused(ann.cs.history(site.queue("support")))
    await refused(ann.cs.figures(site.queue("support")))
    sue = await site.client("sue")
    assert len(await sue.cs.history(site.queue("support"))) == 1
    assert (await sue.cs.figures(site.queue("support"))).get("active") == "1"
    # Supervisors may close a chat; a queue with open chats cannot be deleted.
    await refused(admin.cs.delete_queue(site.domain, "support"), "conflict")
    await sue.cs.close(site.domain, sid)
    assert (await vera.cs_event("closed", session=sid)).get("reason") == "supervisor"
    await refused(ann.cs.close(site.domain, sid), "item-not-found")


async def test_visitors_rate_and_close_only_their_own_session(site: Site) -> None:
    for u in ("boss", "ann", "vera", "wes"):
        await site.user(u)
    await site.queue_with("support", {"ann": "Ann"})
    ann = await site.client("ann")
    await ann.announce(site.queue("support"))
    vera, wes = await site.client("vera"), await site.client("wes")
    vera.say(site.queue("support"), "hi")
    sid = (await vera.cs_event("welcome")).get("session")
    await refused(wes.cs.close(site.domain, sid))
    await refused(wes.cs.close(site.queue("support")), "item-not-found")  # wes has no chat there
    await refused(vera.cs.rate(site.queue("support"), 5), "item-not-found")  # nothing closed yet
    await refused(vera.cs.rate(site.domain, 5, session=sid), "unexpected-request")  # still open
    vera.say(site.queue("support"), "/close")
    await vera.cs_event("closed", session=sid)
    await refused(wes.cs.rate(site.domain, 1, "bad", session=sid))
    await refused(vera.cs.rate(site.queue("support"), 9), "bad-request")
    vera.say(site.queue("support"), "/rate 4 fine")
    thanks = await vera.next(lambda m: m.findtext(BODY) == "Thank you for your rating.")
    assert thanks.get("from") == site.queue("support")
    row = (await vera.cs.transcript(site.domain, sid)).findall(f"{{{NS}}}line")
    assert any(ln.text == "hi" for ln in row)
    await refused(wes.cs.transcript(site.domain, sid))
    s = await site.cs.repo.get_session(sid)
    assert (s.rating, s.comment) == (4, "fine")


async def test_messages_to_unknown_queues_and_closed_sessions_bounce(site: Site) -> None:
    for u in ("boss", "vera"):
        await site.user(u)
    vera = await site.client("vera")
    vera.say(site.queue("nosuch"), "hello?")
    err = await vera.next(lambda m: m.get("type") == "error")
    assert err.find(".//{urn:ietf:params:xml:ns:xmpp-stanzas}item-not-found") is not None
    vera.say(f"s-000000000000@{site.domain}", "hello?")
    err = await vera.next(lambda m: m.get("type") == "error")
    assert err.find(".//{urn:ietf:params:xml:ns:xmpp-stanzas}item-not-found") is not None
    vera.say(site.domain, "hello?")
    err = await vera.next(lambda m: m.get("type") == "error")
    assert err.find(".//{urn:ietf:params:xml:ns:xmpp-stanzas}service-unavailable") is not None


async def test_a_deleted_supervisors_namesake_is_nobodys_supervisor(site: Site) -> None:
    """Memberships are keyed by JID: deleting the account removes them in the same transaction,
    so whoever registers the name next cannot read the queue's figures, history or members."""
    for u in ("boss", "ann", "sue"):
        await site.user(u)
    admin = await site.queue_with("support", {"ann": "Ann"}, supervisors=("sue",))
    sue = await site.client("sue")
    await sue.cs.figures(site.queue("support"))
    await sue.close()
    assert site.server is not None
    assert await site.server.account_service.delete("sue")
    await site.user("sue")
    new_sue = await site.client("sue")
    await refused(new_sue.cs.figures(site.queue("support")))
    await refused(new_sue.cs.members(site.queue("support")))
    assert [m.get("jid") for m in await admin.cs.members(site.queue("support"))] == ["ann@localhost"]
