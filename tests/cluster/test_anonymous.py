"""Anonymous visitors in a cluster (docs/auth.md "Anonymous visitors"): a guest connected to one
node is reached from another, an error another node answers a guest's stanza with reaches it,
its customer-service chat on a queue another node owns ends with its session, and what is for a
guest who is gone still bounces. Two nodes in this process (the routing between them is the real
bus on the shared Redis)."""
from __future__ import annotations

import asyncio
import contextlib
import xml.etree.ElementTree as ET

from extensions.customer_service.protocol import NS
from xmppd.cluster.leases import rendezvous
from xmppd.jid import JID

from ..extensions.customer_service.conftest import Client
from ..helpers import add_user, running_server, slix, slix_close, slix_guest
from ..interop.jsclients import wait_until
from .procs import SHARED_REDIS
from .test_routing import _get, _inbox

GUEST = "guest.localhost"
CS = "cs.localhost"


def _owned_by_beta(stem: str) -> str:
    """A queue name whose preferred owner (rendezvous hashing over the two nodes) is beta."""
    return next(n for n in (f"{stem}{i}" for i in range(1000)) if rendezvous(["alpha", "beta"], n) == "beta")


async def test_an_allowed_account_on_another_node_and_a_guest_talk_both_ways_errors_and_chat_end_cross(tmp_path, prefix):
    common = (f"storage.url=sqlite+aiosqlite:///{(tmp_path / 'shared.db').as_posix()}", f"cluster.redis_url={SHARED_REDIS}",
              f"cluster.prefix={prefix}", "storage.auto_upgrade=true", "cluster.heartbeat=0.5", "cluster.node_timeout=4",
              f"anonymous.domain={GUEST}", "anonymous.allow_to=['bob@localhost']", "server.admins=['bob@localhost']")
    async with contextlib.AsyncExitStack() as stack:
        alpha = await stack.enter_async_context(running_server(tmp_path / "alpha", *common, "cluster.node=alpha"))
        beta = await stack.enter_async_context(running_server(tmp_path / "beta", *common, "cluster.node=beta"))
        guest = await slix_guest(alpha, GUEST)
        bob = await slix(beta, await add_user(beta, "bob"))
        try:
            me = guest.boundjid
            g_in, b_in = _inbox(guest), _inbox(bob)
            bob.send_presence()
            # (The guest's session was in the registry before its first stanza was handled.)
            guest.send_message(mto="bob@localhost", mbody="hello from the website", mtype="chat")
            assert (await _get(b_in))["from"] == me
            bob.send_message(mto=str(me), mbody="to your full JID", mtype="chat")
            assert (await _get(g_in))["body"] == "to your full JID"
            bob.send_message(mto=str(me.bare), mbody="to your bare JID", mtype="chat")
            assert (await _get(g_in))["body"] == "to your bare JID"
            full = JID.parse(str(me))
            assert alpha.sessions.get(full) is not None and beta.sessions.get(full) is None  # it did cross

            # An error beta answers the guest's stanza with reaches the guest on alpha: a queue
            # that does not exist, which beta (its preferred owner) is asked about.
            g_err: asyncio.Queue = asyncio.Queue()
            guest.add_event_handler("message_error", g_err.put_nowait)
            guest.send_message(mto=f"{_owned_by_beta('nosuch')}@{CS}", mbody="anyone?", mtype="chat")
            assert (await asyncio.wait_for(g_err.get(), 10))["error"]["condition"] == "item-not-found"

            # The guest's chat lives on beta (the queue's owner); its session ends on alpha:
            # the chat ends there, and the agent is told.
            agent, visitor = Client(bob), Client(guest)
            name = _owned_by_beta("help")
            queue = f"{name}@{CS}"
            await agent.cs.put_queue(CS, name, display_name="Help")
            await agent.cs.set_member(queue, "bob@localhost", "agent", "Bob")
            await agent.announce(queue)
            cs_beta = beta.features.get("cs")
            await wait_until(lambda: cs_beta.state.status(name, "bob@localhost") == "available", 10, "bob available on beta")
            visitor.say(queue, "I need help")
            sid = (await visitor.cs_event("welcome", timeout=10)).get("session")
            await agent.cs_event("assigned", timeout=10, session=sid)
            assert cs_beta.cluster.owns(name) and sid in cs_beta.open and sid not in alpha.features.get("cs").open

            errors: asyncio.Queue = asyncio.Queue()
            bob.add_event_handler("message_error", errors.put_nowait)
            guest.disconnect()
            await wait_until(lambda: not alpha.guests.sessions, 10, "the guest's session ended")
            await agent.cs_event("closed", timeout=10, session=sid, reason="visitor")
            assert sid not in cs_beta.open

            # The same for a chat a guest opened with the <join/> iq (the pre-chat request).
            second = Client(await slix_guest(alpha, GUEST))
            joined = await second.cs.ask(queue, "set", ET.Element(f"{{{NS}}}join"), timeout=10)
            sid2 = joined.xml[0].get("session")
            await agent.cs_event("assigned", timeout=10, session=sid2)
            second.xmpp.disconnect()
            await agent.cs_event("closed", timeout=10, session=sid2, reason="visitor")
            bob.send_message(mto=str(me.bare), mbody="gone?", mtype="chat")
            bounced = await asyncio.wait_for(errors.get(), 10)
            assert bounced["error"]["condition"] == "service-unavailable"
        finally:
            await slix_close(bob)
