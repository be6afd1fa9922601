"""Anonymous visitors in a cluster (docs/auth.md "Anonymous visitors"): a guest connected to one
node is reached from another, and what is for a guest who is gone still bounces. Two nodes in
this process (the routing between them is the real bus on the shared Redis)."""
from __future__ import annotations

import asyncio
import contextlib

from xmppd.jid import JID

from ..helpers import add_user, running_server, slix, slix_close, slix_guest
from ..interop.jsclients import wait_until
from .procs import SHARED_REDIS
from .test_routing import _get, _inbox

GUEST = "guest.localhost"


async def test_an_allowed_account_on_another_node_and_a_guest_talk_both_ways(tmp_path, prefix):
    common = (f"storage.url=sqlite+aiosqlite:///{(tmp_path / 'shared.db').as_posix()}", f"cluster.redis_url={SHARED_REDIS}",
              f"cluster.prefix={prefix}", "storage.auto_upgrade=true", "cluster.heartbeat=0.5", "cluster.node_timeout=4",
              f"anonymous.domain={GUEST}", "anonymous.allow_to=['bob@localhost']")
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

            errors: asyncio.Queue = asyncio.Queue()
            bob.add_event_handler("message_error", errors.put_nowait)
            guest.disconnect()
            await wait_until(lambda: not alpha.guests.sessions, 10, "the guest's session ended")
            bob.send_message(mto=str(me.bare), mbody="gone?", mtype="chat")
            bounced = await asyncio.wait_for(errors.get(), 10)
            assert bounced["error"]["condition"] == "service-unavailable"
        finally:
            await slix_close(bob)
