"""Customer-service queues across nodes (issue 17, docs/cluster.md §5, docs/customer-service.md §9).

Three real ``xmppd`` processes share one SQLite file and the shared Redis under a key prefix of
the test's own. A queue lives on one node (the holder of ``P:lease:csq:<queue>``); visitors and
agents log in on the other nodes, their stanzas reach the owner through the bus and what the
owner sends reaches them through the router.
"""
from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from slixmpp.exceptions import IqError

from xmppd.cluster.leases import rendezvous

from ..extensions.customer_service.conftest import Client
from ..helpers import slix
from .test_rooms import NODES, Three, three_nodes

# Three node processes start per test: on a loaded shared machine that alone can take a minute.
pytestmark = [pytest.mark.interop, pytest.mark.timeout(240)]

DOMAIN = "cs.localhost"
BODY = "{jabber:client}body"


def queue_owned_by(node: str, stem: str) -> str:
    """A queue name whose preferred owner (rendezvous hashing over the three nodes) is ``node``."""
    return next(n for n in (f"{stem}{i}" for i in range(1000)) if rendezvous(list(NODES), n) == node)


class Site(Three):
    """Three nodes; alice is the admin who creates queues."""

    def __init__(self, tmp: Path, prefix: str) -> None:
        super().__init__(tmp, prefix)
        self.args += ["--set", "server.admins=['alice@localhost']"]
        self.cs: list[Client] = []
        self.api = True
        self.startup = 90  # a process start-up on a loaded machine

    async def client(self, node: str, user: str) -> Client:
        c = Client(await slix(self.nodes[node].as_server(), f"{user}@localhost"))
        self.clients.append(c.xmpp)
        c.xmpp.send_presence()
        await self.wait_available(f"{user}@localhost", c.xmpp.boundjid.resource, node)
        return c

    def csq_owner(self, queue: str) -> str | None:
        return self.owner(queue, "csq")

    async def agents_available(self, admin: Client, queue: str, agents: set[str], timeout: float = 15) -> None:
        """Until the queue's owner counts ``agents`` available (their presence reached it)."""
        async with asyncio.timeout(timeout):
            while True:
                figures = await admin.cs.figures(f"{queue}@{DOMAIN}")
                available = {a.get("jid") for a in figures.iter() if a.tag.endswith("}agent") and a.get("status") == "available"}
                if agents <= available:
                    return
                await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def site_of(tmp_path: Path, prefix: str) -> AsyncIterator[Site]:
    t = Site(tmp_path, prefix)
    async with three_nodes(t) as site:
        yield site  # type: ignore[misc]


async def make_queue(admin: Client, queue: str, agents: dict[str, str], **attrs: Any) -> str:
    await admin.cs.put_queue(DOMAIN, queue, display_name=queue.title(), **attrs)
    jid = f"{queue}@{DOMAIN}"
    for user, nick in agents.items():
        await admin.cs.set_member(jid, f"{user}@localhost", "agent", nick)
    return jid


async def chat_on_alpha(t: Site, stem: str, **attrs: Any) -> tuple[str, str, Client, Client, str]:
    """A queue alpha owns with agent bob on gamma, and visitor dave on beta chatting with him:
    (queue name, queue JID, bob, dave, chat id)."""
    name = queue_owned_by("alpha", stem)
    admin = await t.client("beta", "alice")
    queue = await make_queue(admin, name, {"bob": "Bob"}, **attrs)
    bob = await t.client("gamma", "bob")
    await bob.announce(queue)
    await t.agents_available(admin, name, {"bob@localhost"})
    dave = await t.client("beta", "dave")
    dave.say(queue, "First question")
    sid = (await dave.cs_event("welcome", timeout=10)).get("session")
    await dave.cs_event("agent", session=sid)
    await bob.cs_event("assigned", session=sid)
    assert t.csq_owner(name) == "alpha"
    return name, queue, bob, dave, sid


async def relay_both_ways(visitor: Client, agent: Client, queue: str, sid: str, question: str, answer: str) -> None:
    """The visitor's line reaches the agent from the chat's session JID, and the agent's reply
    reaches the visitor with the agent's name."""
    session_jid = f"s-{sid}@{DOMAIN}"
    visitor.say(queue, question)
    await agent.next(lambda m: m.findtext(BODY) == question and m.get("from") == session_jid, timeout=15)
    agent.say(session_jid, answer)
    await visitor.next(lambda m: m.findtext(BODY) == f"Bob: {answer}", timeout=10)


async def first_event(clients: list[Client], name: str, timeout: float = 10, **attrs: str) -> tuple[Client, Any]:
    """The first of ``clients`` to get the cs payload ``name``, and that payload."""
    tasks = {asyncio.ensure_future(c.cs_event(name, timeout, **attrs)): c for c in clients}
    done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for t in pending:
        t.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    task = next(iter(done))
    return tasks[task], task.result()


async def test_visitor_and_agents_on_different_nodes_one_agent_per_chat_relay_both_ways(tmp_path: Path, prefix: str) -> None:
    async with site_of(tmp_path, prefix) as t:
        name = queue_owned_by("alpha", "help")
        admin = await t.client("beta", "alice")
        queue = await make_queue(admin, name, {"bob": "Bob", "carol": "Carol"}, offer_timeout=30)
        assert t.csq_owner(name) == "alpha"  # its preferred node took it at the first stanza
        bob = await t.client("gamma", "bob")
        carol = await t.client("alpha", "carol")
        for agent in (bob, carol):
            await agent.announce(queue)
        await t.agents_available(admin, name, {"bob@localhost", "carol@localhost"})

        dave = await t.client("beta", "dave")
        dave.say(queue, "My parcel is lost")
        welcome = await dave.cs_event("welcome", timeout=10)
        sid = welcome.get("session")
        offered, offer = await first_event([bob, carol], "offer", session=sid)
        session_jid = f"s-{sid}@{DOMAIN}"

        # Both agents accept at once, from two nodes: exactly one gets the chat.
        results = await asyncio.gather(bob.cs.accept(session_jid), carol.cs.accept(session_jid), return_exceptions=True)
        won = [c for c, res in zip((bob, carol), results, strict=True) if not isinstance(res, BaseException)]
        lost = [res for res in results if isinstance(res, BaseException)]
        assert won == [offered] and len(lost) == 1 and isinstance(lost[0], IqError)
        agent = won[0]
        nick = "Bob" if agent is bob else "Carol"
        joined = await dave.cs_event("agent", session=sid)
        assert joined.get("nick") == nick
        await agent.cs_event("assigned", session=sid)

        # Relay both ways across three nodes (agent → owner → visitor and back).
        agent.say(session_jid, "Let me look")
        m = await dave.next(lambda m: m.findtext(BODY) == f"{nick}: Let me look", timeout=10)
        assert m.get("from") == queue
        dave.say(queue, "Thank you")
        m = await agent.next(lambda m: m.findtext(BODY) == "Thank you", timeout=10)
        assert m.get("from") == session_jid
        # Nobody else was given the chat.
        await dave.sync()
        assert [m for m in dave.messages if m.find("{urn:xmppd:cs:0}agent") is not None] == []
        assert t.csq_owner(name) == "alpha"
        assert "queue " + name + " now lives on node alpha" in t.nodes["alpha"].log

        # A transfer to a queue another node holds: that node serves the chat from now on, and
        # the visitor goes on writing to the queue they came in through.
        sales = queue_owned_by("gamma", "sales")
        await make_queue(admin, sales, {"frank": "Frank"})
        frank = await t.client("beta", "frank")
        await frank.announce(f"{sales}@{DOMAIN}")
        await t.agents_available(admin, sales, {"frank@localhost"})
        assert t.csq_owner(sales) == "gamma"
        await agent.cs.transfer(session_jid, queue=sales)
        await frank.cs_event("assigned", session=sid, timeout=10)
        assert (await dave.cs_event("agent", session=sid, timeout=10)).get("nick") == "Frank"
        dave.say(queue, "Hello Frank")
        await frank.next(lambda m: m.findtext(BODY) == "Hello Frank" and m.get("from") == session_jid, timeout=10)
        frank.say(session_jid, "Hello Dave")
        await dave.next(lambda m: m.findtext(BODY) == "Frank: Hello Dave", timeout=10)

        # An agent's capacity counts their chats in every queue, whichever node holds it: frank,
        # with dave's chat in sales (gamma), is full for a queue of capacity 1 that beta holds;
        # its visitor waits in line until frank closes dave's chat, then gets him.
        desk = queue_owned_by("beta", "desk")
        desk_jid = await make_queue(admin, desk, {"frank": "Frank"}, capacity=1)
        await frank.announce(desk_jid)
        await t.agents_available(admin, desk, {"frank@localhost"})
        assert t.csq_owner(desk) == "beta"
        erin = await t.client("alpha", "erin")
        erin.say(desk_jid, "Is Frank free?")
        waiting = (await erin.cs_event("welcome", timeout=10)).get("session")
        await erin.cs_event("position", session=waiting, n="1", timeout=10)
        assert [m for m in erin.messages if m.find("{urn:xmppd:cs:0}agent") is not None] == []
        frank.say(session_jid, "!close")
        await dave.cs_event("closed", session=sid, timeout=10)
        assert (await erin.cs_event("agent", session=waiting, timeout=10)).get("nick") == "Frank"
        await frank.cs_event("assigned", session=waiting, timeout=10)

        # The REST API of a node holding none of these queues answers from storage as their
        # owners would, and a chat it closes is closed by its queue's owner (beta).
        assert {t.csq_owner(q) for q in (name, sales, desk)} == {"alpha", "gamma", "beta"}
        status, body = await t.call("alpha", "GET", "/cs/queues")
        assert status == 200, body
        listed = {i["name"]: i for i in body["items"]}
        assert {name, sales, desk} <= set(listed) and listed[desk]["capacity"] == 1 and listed[desk]["active"] == 1
        status, body = await t.call("alpha", "GET", f"/cs/chats?queue={desk}")
        assert status == 200, body
        assert [(c["id"], c["state"], c["agent"]) for c in body["items"]] == [(waiting, "active", "frank@localhost")]
        status, body = await t.call("alpha", "GET", f"/cs/queues/{desk}/members")
        assert status == 200 and [(m["jid"], m["load"]) for m in body["items"]] == [("frank@localhost", 1)], body
        # A setting changed there is stored, and the owner reads the queue again.
        status, body = await t.call("alpha", "PUT", f"/cs/queues/{desk}", json={"capacity": 2})
        assert (status, body["capacity"], body["display_name"]) == (200, 2, desk.title()), body
        async with asyncio.timeout(10):
            while True:
                figures = await admin.cs.figures(desk_jid)
                if any(a.get("capacity") == "2" for a in figures.iter() if a.tag.endswith("}agent")):
                    break
                await asyncio.sleep(0.1)
        status, _ = await t.call("alpha", "POST", f"/cs/chats/{waiting}/close")
        assert status == 204
        await erin.cs_event("closed", session=waiting, timeout=10)
        status, body = await t.call("gamma", "GET", f"/cs/chats?queue={desk}")
        assert (status, body["items"]) == (200, [])
        # The list of queues (iq to the service, answered by erin's node alpha) is storage's too.
        got = await erin.cs.queues(DOMAIN)
        assert {name, sales, desk} <= {el.get("name") for el in got.iter() if el.tag.endswith("}queue")}


async def test_sigkill_of_the_queue_node_mid_chat_and_with_a_waiting_visitor(tmp_path: Path, prefix: str) -> None:
    async with site_of(tmp_path, prefix) as t:
        name, queue, bob, dave, sid = await chat_on_alpha(t, "desk", capacity=1)
        erin = await t.client("gamma", "erin")
        erin.say(queue, "Second question")
        waiting = (await erin.cs_event("welcome", timeout=10)).get("session")
        await erin.cs_event("position", session=waiting, n="1")
        assert t.csq_owner(name) == "alpha"

        t.nodes["alpha"].proc.send_signal(signal.SIGKILL)
        await t.nodes["alpha"].wait()
        for node in ("beta", "gamma"):
            await t.nodes[node].wait_log("node alpha is down")

        # The active chat goes on, both ways, on the queue's new node.
        await relay_both_ways(dave, bob, queue, sid, "Are you still there?", "Yes, still here")
        assert t.csq_owner(name) in ("beta", "gamma")

        # The waiting visitor kept her place and is served when bob frees his seat.
        bob.say(f"s-{sid}@{DOMAIN}", "!close")
        await dave.cs_event("closed", session=sid, timeout=10)
        assigned = await erin.cs_event("agent", session=waiting, timeout=10)
        assert assigned.get("nick") == "Bob"
        await bob.cs_event("assigned", session=waiting, timeout=10)
        owner = t.csq_owner(name)
        assert owner in ("beta", "gamma")
        assert f"queue {name} now lives on node {owner}" in t.nodes[owner].log


async def test_a_graceful_stop_hands_the_queue_over(tmp_path: Path, prefix: str) -> None:
    async with site_of(tmp_path, prefix) as t:
        name, queue, bob, dave, sid = await chat_on_alpha(t, "care")
        t.nodes["alpha"].proc.send_signal(signal.SIGTERM)
        assert await t.nodes["alpha"].wait() == 0
        assert f"queue {name} released" in t.nodes["alpha"].log
        for node in ("beta", "gamma"):
            await t.nodes[node].wait_log("node alpha left the cluster")

        await relay_both_ways(dave, bob, queue, sid, "After the move", "Still with you")
        # A new visitor is served by the same agent through the queue's new node.
        erin = await t.client("gamma", "erin")
        erin.say(queue, "Me too")
        other = (await erin.cs_event("welcome", timeout=10)).get("session")
        await erin.cs_event("agent", session=other, timeout=10)
        assert t.csq_owner(name) in ("beta", "gamma")
