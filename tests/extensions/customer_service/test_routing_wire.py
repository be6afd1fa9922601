"""urn:xmppd:cs:0 routing over the wire: strategies, capacity, the line, offers, transfer, dropout, idle, restart, tickets."""
from __future__ import annotations

from pathlib import Path

import pytest

from xmppd_extensions.customer_service.protocol import NS

from .conftest import Client, FakeClock, Site, assert_valid, open_site

pytestmark = pytest.mark.interop
BODY = "{jabber:client}body"


async def agents_online(site: Site, queue: str, names: list[str], show: str | None = None) -> list[Client]:
    out = []
    for n in names:
        c = await site.client(n)
        await c.announce(site.queue(queue), show)
        out.append(c)
    return out


async def open_chat(site: Site, visitor: Client, queue: str, text: str = "hello") -> str:
    visitor.say(site.queue(queue), text)
    return (await visitor.cs_event("welcome")).get("session")


async def users(site: Site, *names: str) -> None:
    for n in ("boss", *names):
        await site.user(n)


async def test_round_robin_takes_turns(site: Site) -> None:
    await users(site, "ann", "bob", "v1", "v2", "v3", "v4")
    await site.queue_with("support", {"ann": "Ann", "bob": "Bob"}, strategy="round-robin")
    ann, bob = await agents_online(site, "support", ["ann", "bob"])
    got = []
    for v in ("v1", "v2", "v3", "v4"):
        c = await site.client(v)
        sid = await open_chat(site, c, "support")
        got.append((await c.cs_event("agent", session=sid)).get("nick"))
    assert got == ["Ann", "Bob", "Ann", "Bob"]
    assert len([m for m in ann.messages if m.find(f"{{{NS}}}assigned") is not None]) == 2
    assert len([m for m in bob.messages if m.find(f"{{{NS}}}assigned") is not None]) == 2


async def test_least_busy_fills_the_emptiest_agent(site: Site) -> None:
    await users(site, "ann", "bob", "v1", "v2", "v3", "v4", "v5")
    await site.queue_with("support", {"ann": "Ann", "bob": "Bob"}, strategy="least-busy", capacity=5)
    (ann,) = await agents_online(site, "support", ["ann"])
    nicks = []
    for v in ("v1", "v2"):
        c = await site.client(v)
        sid = await open_chat(site, c, "support")
        nicks.append((await c.cs_event("agent", session=sid)).get("nick"))
    (bob,) = await agents_online(site, "support", ["bob"])
    for v in ("v3", "v4", "v5"):
        c = await site.client(v)
        sid = await open_chat(site, c, "support")
        nicks.append((await c.cs_event("agent", session=sid)).get("nick"))
    # Ann had two when Bob came: Bob gets the next two, then the tie goes to whoever waited longer.
    assert nicks == ["Ann", "Ann", "Bob", "Bob", "Ann"]


async def test_longest_idle_goes_to_the_agent_unserved_longest(site: Site) -> None:
    await users(site, "ann", "bob", "cat", "v1", "v2", "v3", "v4")
    await site.queue_with("support", {"ann": "Ann", "bob": "Bob", "cat": "Cat"}, strategy="longest-idle", capacity=5)
    for name in ("cat", "ann", "bob"):  # online in this order, a second apart
        await agents_online(site, "support", [name])
        site.clock.advance(1)
    nicks = []
    for v in ("v1", "v2", "v3", "v4"):
        c = await site.client(v)
        sid = await open_chat(site, c, "support")
        nicks.append((await c.cs_event("agent", session=sid)).get("nick"))
        site.clock.advance(1)
    assert nicks == ["Cat", "Ann", "Bob", "Cat"]


async def test_capacity_fair_line_and_position_updates(site: Site) -> None:
    await users(site, "ann", "v1", "v2", "v3", "sue")
    await site.queue_with("support", {"ann": "Ann"}, supervisors=("sue",), capacity=1)
    (ann,) = await agents_online(site, "support", ["ann"])
    v1, v2, v3 = [await site.client(v) for v in ("v1", "v2", "v3")]
    s1 = await open_chat(site, v1, "support")
    await v1.cs_event("agent", session=s1)
    s2 = await open_chat(site, v2, "support")
    assert (await v2.cs_event("position", session=s2)).get("n") == "1"
    s3 = await open_chat(site, v3, "support")
    pos = await v3.cs_event("position", session=s3)
    assert pos.get("n") == "2" and pos.get("_body").startswith("You are number 2 in line")
    # One chat served so far: the place comes with an estimated wait in seconds (docs §4).
    assert pos.get("wait").isdigit() and "estimated wait" in pos.get("_body")

    sue = await site.client("sue")
    fig = await sue.cs.figures(site.queue("support"))
    assert (fig.get("waiting"), fig.get("active")) == ("2", "1")
    (agent,) = fig.findall(f"{{{NS}}}agent")
    assert (agent.get("nick"), agent.get("load"), agent.get("capacity"), agent.get("status")) == ("Ann", "1", "1", "available")

    # Capacity: Ann's chat ends, the head of the line (v2, not v3) is next; v3 moves up.
    ann.say(f"s-{s1}@{site.domain}", "/close")
    await v1.cs_event("closed", session=s1, reason="agent")
    assert (await v2.cs_event("agent", session=s2)).get("nick") == "Ann"
    assert (await v3.cs_event("position", session=s3)).get("n") == "1"
    assert not [m for m in v3.messages if m.find(f"{{{NS}}}agent") is not None]
    fig = await sue.cs.figures(site.queue("support"))
    assert (fig.get("waiting"), fig.get("active"), fig.get("served")) == ("1", "1", "2")
    for c in (v1, v2, v3, ann, sue):
        assert_valid(c.cs_payloads())


async def test_away_and_paused_agents_take_no_new_work(site: Site) -> None:
    await users(site, "ann", "bob", "v1", "v2")
    await site.queue_with("support", {"ann": "Ann", "bob": "Bob"})
    ann, bob = await agents_online(site, "support", ["ann", "bob"])
    await ann.announce(site.queue("support"), "away")
    await bob.cs.pause(site.domain)
    v1 = await site.client("v1")
    s1 = await open_chat(site, v1, "support")
    assert (await v1.cs_event("position", session=s1)).get("n") == "1"
    await bob.cs.resume(site.queue("support"))
    assert (await v1.cs_event("agent", session=s1)).get("nick") == "Bob"


async def test_transfer_to_agent_gives_the_transcript_and_to_queue_goes_to_the_head(site: Site) -> None:
    await users(site, "ann", "bob", "sam", "vera", "wes")
    admin = await site.queue_with("support", {"ann": "Ann", "bob": "Bob"})
    await admin.cs.put_queue(site.domain, "sales", display_name="Sales", capacity=1)
    await admin.cs.set_member(site.queue("sales"), "sam@localhost", "agent", "Sam")
    ann, bob = await agents_online(site, "support", ["ann", "bob"], None)
    await bob.announce(site.queue("support"), "dnd")  # not taking new chats...
    vera = await site.client("vera")
    sid = await open_chat(site, vera, "support", "I want a refund")
    await ann.cs_event("assigned", session=sid)
    assert (await vera.cs_event("agent", session=sid)).get("nick") == "Ann"
    ann.say(f"s-{sid}@{site.domain}", "Which order?")
    vera.say(site.queue("support"), "Order 42")
    await ann.next(lambda m: m.findtext(BODY) == "Order 42")

    # ... but a transfer to a dnd agent is refused: recipient-unavailable.
    from slixmpp.exceptions import IqError

    with pytest.raises(IqError) as exc:
        await ann.cs.transfer(site.domain, sid, agent="bob@localhost")
    assert exc.value.condition == "recipient-unavailable"
    await bob.announce(site.queue("support"))
    await ann.cs.transfer(site.domain, sid, agent="bob@localhost")
    assigned = await bob.cs_event("assigned", session=sid)
    assert assigned.get("from") == "ann@localhost"
    lines = [(ln.get("role"), ln.text) for ln in assigned.findall(f"{{{NS}}}transcript/{{{NS}}}line")]
    assert ("visitor", "I want a refund") in lines and ("agent", "Which order?") in lines and ("visitor", "Order 42") in lines
    assert "Order 42" in assigned.get("_body")
    await ann.cs_event("closed", session=sid, reason="transferred")
    assert (await vera.cs_event("agent", session=sid)).get("nick") == "Bob"
    # Ann is no longer the agent: her messages are refused, Bob's are relayed.
    bob.say(f"s-{sid}@{site.domain}", "Bob here")
    await vera.next(lambda m: m.findtext(BODY) == "Bob: Bob here")

    # Sales is busy with wes; the transferred chat goes to the head of the sales line.
    (sam,) = await agents_online(site, "sales", ["sam"])
    wes = await site.client("wes")
    w1 = await open_chat(site, wes, "sales")
    await wes.cs_event("agent", session=w1)
    bob.say(f"s-{sid}@{site.domain}", "/transfer queue:sales")
    await bob.cs_event("closed", session=sid, reason="transferred")
    assert (await vera.cs_event("position", session=sid)).get("n") == "1"
    # The visitor keeps talking to the queue JID they know.
    vera.say(site.queue("support"), "still here")
    await sam.cs.close(site.domain, w1)
    assigned = await sam.cs_event("assigned", session=sid)
    assert "still here" in assigned.get("_body")
    m = await vera.cs_event("agent", session=sid)
    assert m.get("_from") == site.queue("support") and m.get("nick") == "Sam"
    assert not any("ann@localhost" in x or "bob@localhost" in x or "sam@localhost" in x for x in vera.raw)


async def test_agent_dropout_hands_sessions_back_to_the_head_of_the_line(site: Site) -> None:
    await users(site, "ann", "bob", "v1", "v2")
    await site.queue_with("support", {"ann": "Ann", "bob": "Bob"}, capacity=1)
    (ann,) = await agents_online(site, "support", ["ann"])
    v1, v2 = await site.client("v1"), await site.client("v2")
    s1 = await open_chat(site, v1, "support")
    await v1.cs_event("agent", session=s1)
    s2 = await open_chat(site, v2, "support")
    assert (await v2.cs_event("position", session=s2)).get("n") == "1"

    await ann.close()  # the connection ends without a word
    site.clients.remove(ann)
    req = await v1.cs_event("requeued", session=s1)
    assert "back at the front" in req.get("_body")
    assert (await v1.cs_event("position", session=s1)).get("n") == "1"
    assert (await v2.cs_event("position", session=s2)).get("n") == "2"
    (bob,) = await agents_online(site, "support", ["bob"])
    assert (await v1.cs_event("agent", session=s1)).get("nick") == "Bob"
    assert (await bob.cs_event("assigned", session=s1)).get("visitor") == "v1@localhost"
    assert (await v2.cs_event("position", session=s2)).get("n") == "1"


async def test_silent_visitor_is_closed_after_the_idle_timeout(site: Site) -> None:
    await users(site, "ann", "v1")
    await site.queue_with("support", {"ann": "Ann"}, idle_timeout=60)
    (ann,) = await agents_online(site, "support", ["ann"])
    v1 = await site.client("v1")
    sid = await open_chat(site, v1, "support")
    await v1.cs_event("agent", session=sid)
    site.clock.advance(59)
    await site.cs.run_timers()
    ann.say(f"s-{sid}@{site.domain}", "Are you there?")  # the agent talking does not keep it open
    await v1.next(lambda m: m.findtext(BODY) == "Ann: Are you there?")
    site.clock.advance(2)
    await site.cs.run_timers()
    closed = await v1.cs_event("closed", session=sid)
    assert closed.get("reason") == "idle" and "silence" in closed.get("_body")
    await ann.cs_event("closed", session=sid, reason="idle")


async def test_the_timer_loop_runs_on_the_injected_clock(tmp_path: Path) -> None:
    async with open_site(tmp_path, "cs.timer_interval=0.02") as site:
        await users(site, "ann", "v1")
        await site.queue_with("support", {"ann": "Ann"}, idle_timeout=300)
        (ann,) = await agents_online(site, "support", ["ann"])
        v1 = await site.client("v1")
        sid = await open_chat(site, v1, "support")
        await v1.cs_event("agent", session=sid)
        site.clock.advance(301)
        assert (await v1.cs_event("closed", session=sid)).get("reason") == "idle"


async def test_offers_time_out_move_on_and_pause_the_agent(site: Site) -> None:
    await users(site, "ann", "bob", "v1")
    await site.queue_with("support", {"ann": "Ann", "bob": "Bob"}, offer_timeout=30, max_misses=1)
    ann, bob = await agents_online(site, "support", ["ann", "bob"])
    v1 = await site.client("v1")
    sid = await open_chat(site, v1, "support")
    offer = await ann.cs_event("offer", session=sid)
    assert (offer.get("timeout"), offer.get("visitor")) == ("30", "v1@localhost")
    # Not accepted yet: the agent may not talk to the visitor.
    site.clock.advance(31)
    await site.cs.run_timers()
    await ann.cs_event("revoked", session=sid)
    paused = await ann.cs_event("paused")
    assert paused.get("misses") == "1"
    await bob.cs_event("offer", session=sid)
    bob.say(f"s-{sid}@{site.domain}", "/accept")
    assert (await v1.cs_event("agent", session=sid)).get("nick") == "Bob"
    fig = await (await site.client("boss")).cs.figures(site.queue("support"))
    status = {a.get("nick"): a.get("status") for a in fig.findall(f"{{{NS}}}agent")}
    assert status == {"Ann": "paused", "Bob": "available"}


async def test_offer_accepted_by_iq_and_rejected_moves_on(site: Site) -> None:
    await users(site, "ann", "bob", "v1")
    await site.queue_with("support", {"ann": "Ann", "bob": "Bob"}, offer_timeout=30)
    ann, bob = await agents_online(site, "support", ["ann", "bob"])
    v1 = await site.client("v1")
    sid = await open_chat(site, v1, "support")
    await ann.cs_event("offer", session=sid)
    from slixmpp.exceptions import IqError

    with pytest.raises(IqError) as exc:  # not Bob's offer
        await bob.cs.accept(site.domain, sid)
    assert exc.value.condition == "forbidden"
    await ann.cs.reject(f"s-{sid}@{site.domain}")
    await bob.cs_event("offer", session=sid)
    await bob.cs.accept(site.domain, sid)
    await bob.cs_event("assigned", session=sid)
    assert (await v1.cs_event("agent", session=sid)).get("nick") == "Bob"


async def test_restart_restores_queues_open_sessions_and_the_line(tmp_path: Path) -> None:
    clock = FakeClock()
    async with open_site(tmp_path, clock=clock) as site:
        await users(site, "ann", "v1", "v2", "v3")
        await site.queue_with("support", {"ann": "Ann"}, capacity=1, idle_timeout=100)
        (ann,) = await agents_online(site, "support", ["ann"])
        v1, v2, v3 = [await site.client(v) for v in ("v1", "v2", "v3")]
        s1 = await open_chat(site, v1, "support")
        await v1.cs_event("agent", session=s1)
        s2 = await open_chat(site, v2, "support")
        s3 = await open_chat(site, v3, "support")
        await v3.cs_event("position", session=s3, n="2")
    async with open_site(tmp_path, clock=clock) as site:
        assert set(site.cs.open) == {s1, s2, s3}
        assert [s.id for s in site.cs.line("support")] == [s2, s3]
        ann, v1, v3 = await site.client("ann"), await site.client("v1"), await site.client("v3")
        # The open chat goes on through the same JIDs.
        ann.say(f"s-{s1}@{site.domain}", "Back again")
        await v1.next(lambda m: m.findtext(BODY) == "Ann: Back again")
        v1.say(site.queue("support"), "Good")
        await ann.next(lambda m: m.findtext(BODY) == "Good")
        # The idle timer is rebuilt from storage: v1 spoke at clock time, so 99 s later it is open.
        clock.advance(99)
        await site.cs.run_timers()
        assert s1 in site.cs.open
        await ann.announce(site.queue("support"))
        # The first routing after the restart tells each waiting visitor their place again.
        assert (await v3.cs_event("position", session=s3)).get("n") == "2"
        await ann.cs.close(site.domain, s1)
        await ann.cs_event("assigned", session=s2)
        assert (await v3.cs_event("position", session=s3)).get("n") == "1"


async def test_no_agent_online_keeps_a_ticket(site: Site) -> None:
    await users(site, "ann", "sue", "v1")
    await site.queue_with("support", {"ann": "Ann"}, supervisors=("sue",), offline="We are away. Leave a message.")
    v1 = await site.client("v1")
    v1.say(site.queue("support"), "Please call me back")
    t = await v1.cs_event("ticket")
    assert t.get("_body").startswith("We are away. Leave a message.")
    assert site.cs.open == {}
    ann = await site.client("ann")
    tickets = await ann.cs.tickets(site.queue("support"))
    (row,) = tickets.findall(f"{{{NS}}}ticket")
    assert (row.get("id"), row.get("visitor"), row.text) == (t.get("id"), "v1@localhost", "Please call me back")
    from slixmpp.exceptions import IqError

    with pytest.raises(IqError) as exc:
        await v1.cs.tickets(site.queue("support"))
    assert exc.value.condition == "forbidden"
    assert_valid(ann.cs_payloads() + v1.cs_payloads())


async def test_outside_opening_hours_is_offline(site: Site) -> None:
    import datetime as dt

    await users(site, "ann", "v1")
    now = dt.datetime.fromtimestamp(site.clock.now(), dt.UTC)
    later = (now + dt.timedelta(hours=2)).strftime("%H:%M")
    until = (now + dt.timedelta(hours=3)).strftime("%H:%M")
    admin = await site.queue_with("support", {"ann": "Ann"}, hours=f"{later}-{until}")
    await agents_online(site, "support", ["ann"])
    v1 = await site.client("v1")
    v1.say(site.queue("support"), "anyone?")
    await v1.cs_event("ticket")
    site.clock.advance(2 * 3600 + 60)
    sid = await open_chat(site, v1, "support", "now?")
    assert (await v1.cs_event("agent", session=sid)).get("nick") == "Ann"
    from slixmpp.exceptions import IqError

    with pytest.raises(IqError) as exc:
        await admin.cs.put_queue(site.domain, "support", hours="9-5")
    assert exc.value.condition == "bad-request"


async def test_agents_on_plain_clients_use_text_commands(site: Site) -> None:
    await users(site, "ann", "bob", "v1")
    await site.queue_with("support", {"ann": "Ann", "bob": "Bobby"})
    ann, bob = await agents_online(site, "support", ["ann", "bob"])
    v1 = await site.client("v1")
    sid = await open_chat(site, v1, "support")
    await ann.cs_event("assigned", session=sid)
    sjid = f"s-{sid}@{site.domain}"
    ann.say(sjid, "/help")
    help_ = await ann.next(lambda m: m.get("from") == sjid and "!transfer" in (m.findtext(BODY) or ""))
    assert "!close" in help_.findtext(BODY) and "/help" in help_.findtext(BODY)  # texts show the form clients pass through
    ann.say(sjid, "/transfer nobody")
    failed = await ann.next(lambda m: (m.findtext(BODY) or "").startswith("/transfer failed"))
    assert "nobody" in failed.findtext(BODY)
    ann.say(sjid, "/transfer Bobby")  # by display name
    assert (await bob.cs_event("assigned", session=sid)).get("from") == "ann@localhost"
    bob.say(sjid, "/pause")
    await bob.next(lambda m: (m.findtext(BODY) or "").startswith("Paused"))
    assert site.cs.agents["bob@localhost"].paused
    bob.say(sjid, "/close")
    assert (await v1.cs_event("closed", session=sid)).get("reason") == "agent"
    # The window of a closed chat answers with an error, and nothing reaches the visitor.
    bob.say(sjid, "hello?")
    err = await bob.next(lambda m: m.get("type") == "error")
    assert err.find(".//{urn:ietf:params:xml:ns:xmpp-stanzas}item-not-found") is not None


async def test_time_in_line_is_not_idle_time(site: Site) -> None:
    await users(site, "ann", "v1", "v2")
    await site.queue_with("support", {"ann": "Ann"}, capacity=1, idle_timeout=60)
    (ann,) = await agents_online(site, "support", ["ann"])
    v1, v2 = await site.client("v1"), await site.client("v2")
    s1 = await open_chat(site, v1, "support")
    await v1.cs_event("agent", session=s1)
    s2 = await open_chat(site, v2, "support")
    await v2.cs_event("position", session=s2)
    site.clock.advance(50)
    v1.say(site.queue("support"), "still here")
    await ann.next(lambda m: m.findtext(BODY) == "still here")
    site.clock.advance(50)  # v2 has waited 100 s in line, silently
    await ann.cs.close(site.domain, s1)
    await v2.cs_event("agent", session=s2)
    await site.cs.run_timers()
    assert s2 in site.cs.open
    site.clock.advance(61)
    await site.cs.run_timers()
    assert (await v2.cs_event("closed", session=s2)).get("reason") == "idle"


async def test_operators_may_reveal_the_agent_jid_and_drop_the_prefix(tmp_path: Path) -> None:
    async with open_site(tmp_path, "cs.reveal_agent_jid=true", "cs.name_prefix=false") as site:
        await users(site, "ann", "v1")
        await site.queue_with("support", {"ann": "Ann"})
        (ann,) = await agents_online(site, "support", ["ann"])
        v1 = await site.client("v1")
        sid = await open_chat(site, v1, "support")
        assert (await v1.cs_event("agent", session=sid)).get("jid") == "ann@localhost"
        ann.say(f"s-{sid}@{site.domain}", "plain words")
        m = await v1.next(lambda m: m.findtext(BODY) == "plain words")
        assert m.findtext("{http://jabber.org/protocol/nick}nick") == "Ann"


async def test_a_chat_another_node_gave_away_is_not_given_twice(site: Site) -> None:
    """Exactly one agent per chat: assignment is a conditional update in storage, so a chat
    another node has just assigned (written straight to the shared tables here) is not
    assigned again by this node."""
    await users(site, "ann", "vera")
    await site.queue_with("support", {"ann": "Ann"})
    ann = await site.client("ann")
    await ann.announce(site.queue("support"), "away")  # online but taking no chats: the chat waits
    await ann.sync()
    vera = await site.client("vera")
    sid = await open_chat(site, vera, "support")
    s = site.cs.open[sid]
    assert s.state == "waiting"
    assert await site.cs.repo.claim_session(s.replace(state="active", agent="bob@localhost"), "waiting", None)  # the other node
    await ann.announce(site.queue("support"))  # available: this node tries to give ann the chat
    await ann.sync()
    assert site.cs.open[sid].agent == "bob@localhost" and site.cs.open[sid].state == "active"
    assert not [m for m in ann.messages if m.find(f"{{{NS}}}assigned") is not None]
