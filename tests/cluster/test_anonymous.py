"""Anonymous visitors in a cluster (docs/auth.md "Anonymous visitors"): a guest connected to one
node is reached from another, and what is for a guest who is gone still bounces."""
from __future__ import annotations

import asyncio

from ..helpers import slix_close, slix_guest
from .test_routing import Two, _get, _inbox, two_nodes

GUEST = "guest.localhost"


async def test_an_allowed_account_on_another_node_and_a_guest_talk_both_ways(tmp_path, prefix):
    t = Two(tmp_path, prefix)
    t.args += ["--set", f"anonymous.domain={GUEST}", "--set", "anonymous.allow_to=['bob@localhost']"]
    async with two_nodes(t):
        guest = await slix_guest(t.nodes["alpha"].as_server(), GUEST)
        bob = await t.login("beta", "bob@localhost")
        try:
            me = guest.boundjid
            await t.wait_entry(str(me.bare), me.resource, "alpha|")
            g_in, b_in = _inbox(guest), _inbox(bob)
            guest.send_message(mto="bob@localhost", mbody="hello from the website", mtype="chat")
            assert (await _get(b_in))["from"] == me
            bob.send_message(mto=str(me), mbody="to your full JID", mtype="chat")
            assert (await _get(g_in))["body"] == "to your full JID"
            bob.send_message(mto=str(me.bare), mbody="to your bare JID", mtype="chat")
            assert (await _get(g_in))["body"] == "to your bare JID"

            errors: asyncio.Queue = asyncio.Queue()
            bob.add_event_handler("message_error", errors.put_nowait)
            guest.disconnect()
            await t.wait_entry(str(me.bare), me.resource, None)
            bob.send_message(mto=str(me.bare), mbody="gone?", mtype="chat")
            bounced = await asyncio.wait_for(errors.get(), 10)
            assert bounced["error"]["condition"] == "service-unavailable"
        finally:
            await slix_close(bob)
