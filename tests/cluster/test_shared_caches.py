"""Shared caches and business features across nodes (issue 17, docs/cluster.md §2 "P:inval").

Two real ``xmppd`` processes (alpha, beta) share one SQLite file and the shared Redis under a key
prefix of the test's own; clients log in with slixmpp on either node. Each test changes
something on one node and shows, through the wire, that the other node's cache took it: a
platform mute, a block list, a roster, a red packet grabbed from both nodes at once.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from slixmpp.exceptions import IqError

from xmppd_extensions.mute import slixmpp_plugin as mute_plugin
from xmppd_extensions.redpacket import slixmpp_plugin as rp_plugin

from ..helpers import slix_close
from .procs import SHARED_REDIS, Two, two_nodes
from .test_routing import _inbox

MUTE_NS = "urn:xmppd:mute:0"
USERS = ("alice", "bob", "boss")


def _two(tmp: Path, prefix: str, redis_url: str = SHARED_REDIS) -> Two:
    t = Two(tmp, prefix, redis_url)
    t.args += ["--set", 'server.admins=["boss@localhost"]']
    # The red-packet race is between accounts that are not contacts: the contacts-only rule of
    # 1:1 packets has its own tests (tests/extensions/redpacket/test_history_wire.py).
    t.args += ["--set", "redpacket.contacts_only=false"]
    t.users = list(USERS)
    t.ctl = [["wallet", "topup", "alice@localhost", "10"]]
    return t


@pytest.fixture
async def two(tmp_path: Path, prefix: str) -> AsyncIterator[Two]:
    async with two_nodes(_two(tmp_path, prefix)) as t:
        yield t


async def _login(t: Two, node: str, jid: str) -> Any:
    client = await t.login(node, jid)
    client.register_plugin("mute", module=mute_plugin)
    client.register_plugin("redpacket", module=rp_plugin)
    return client


async def _until(check: Any, what: str, timeout: float = 10.0) -> float:
    """Poll ``check()`` (async, truthy when done); seconds it took. Fails with ``what`` on timeout."""
    start = time.monotonic()
    while not await check():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"not within {timeout} s: {what}")
        await asyncio.sleep(0.02)
    return time.monotonic() - start


async def _chat_outcome(sender: Any, to: str, inbox: asyncio.Queue[Any], body: str) -> str:
    """Send a chat message; 'delivered', or the error condition the sender got back."""
    errors: asyncio.Queue[Any] = asyncio.Queue()
    handler = "chat-outcome-" + body

    def on_error(msg: Any) -> None:
        if msg["type"] == "error" and msg["body"] == body:
            errors.put_nowait(msg["error"]["condition"])

    sender.add_event_handler("message_error", on_error)
    try:
        sender.send_message(mto=to, mbody=body, mtype="chat")
        got = asyncio.ensure_future(_next_body(inbox, body))
        err = asyncio.ensure_future(errors.get())
        done, pending = await asyncio.wait({got, err}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
        for p in pending:
            p.cancel()
        assert done, f"neither delivered nor refused: {body!r} ({handler})"
        return "delivered" if got in done else err.result()
    finally:
        sender.del_event_handler("message_error", on_error)


async def _next_body(inbox: asyncio.Queue[Any], body: str) -> Any:
    while True:
        msg = await inbox.get()
        if msg["body"] == body:
            return msg


async def test_a_platform_mute_set_on_one_node_is_enforced_on_the_other(two):
    admin = await _login(two, "alpha", "boss@localhost")
    alice = await _login(two, "alpha", "alice@localhost")
    bob = await _login(two, "beta", "bob@localhost")
    try:
        a_in = _inbox(alice)
        assert await _chat_outcome(bob, "alice@localhost", a_in, "before the mute") == "delivered"
        await admin.plugin["mute"].platform_mute("bob@localhost", seconds=600, reason="spam")

        async def beta_knows() -> bool:  # beta answers from its memory, where the mute must be now
            status = await bob.plugin["mute"].platform_status()
            return status.xml.find(f"{{{MUTE_NS}}}platform") is not None

        took = await _until(beta_knows, "beta enforces the mute set on alpha")
        print(f"mute set on alpha known to beta after {took * 1000:.0f} ms (polled)")
        assert await _chat_outcome(bob, "alice@localhost", a_in, "while muted") == "forbidden"
        # A red packet is speech too, refused on beta before any money moves.
        with pytest.raises(IqError) as exc:
            await bob.plugin["redpacket"].send_packet("alice@localhost", client_id="muted-1", total=100)
        assert exc.value.iq["error"]["condition"] == "forbidden"

        await admin.plugin["mute"].platform_unmute("bob@localhost")

        async def beta_forgot() -> bool:
            status = await bob.plugin["mute"].platform_status()
            return status.xml.find(f"{{{MUTE_NS}}}platform") is None

        await _until(beta_forgot, "beta lifts the mute lifted on alpha")
        assert await _chat_outcome(bob, "alice@localhost", a_in, "after the mute") == "delivered"
    finally:
        for c in (admin, alice, bob):
            await slix_close(c)


async def _blocklist(client: Any, verb: str, jid: str) -> None:
    iq = client.make_iq_set()
    iq.append(_el(f"<{verb} xmlns='urn:xmpp:blocking'><item jid='{jid}'/></{verb}>"))
    await iq.send(timeout=10)


def _el(xml: str) -> Any:
    from xml.etree import ElementTree

    return ElementTree.fromstring(xml)


async def test_a_block_on_one_node_takes_effect_on_the_other(two):
    """bob (beta) blocks alice (alpha): alpha, which checks alice's messages to bob before they
    leave it, learns the new block list through the invalidation and refuses them."""
    alice = await _login(two, "alpha", "alice@localhost")
    bob = await _login(two, "beta", "bob@localhost")
    try:
        b_in = _inbox(bob)
        assert await _chat_outcome(alice, "bob@localhost", b_in, "hello") == "delivered"
        await _blocklist(bob, "block", "alice@localhost")
        outcomes = []

        async def refused() -> bool:
            outcomes.append(await _chat_outcome(alice, "bob@localhost", b_in, f"try {len(outcomes)}"))
            return outcomes[-1] == "service-unavailable"

        await _until(refused, "alpha refuses alice's messages to bob, who blocked her on beta")
        await _blocklist(bob, "unblock", "alice@localhost")

        async def delivered() -> bool:
            outcomes.append(await _chat_outcome(alice, "bob@localhost", b_in, f"try {len(outcomes)}"))
            return outcomes[-1] == "delivered"

        await _until(delivered, "alpha delivers again once bob unblocked alice on beta")
    finally:
        await slix_close(alice)
        await slix_close(bob)


async def test_a_roster_change_on_one_node_reaches_the_other_nodes_cache(two):
    """alice has a session on each node, so each caches her roster; a change made on alpha is
    seen by beta's cache (without the invalidation beta would answer its stale copy)."""
    on_alpha = await _login(two, "alpha", "alice@localhost")
    on_beta = await _login(two, "beta", "alice@localhost")
    try:
        async def names(client: Any) -> set[str]:
            iq = client.make_iq_get()  # no 'ver': the whole roster, as the node's cache has it
            iq.append(_el("<query xmlns='jabber:iq:roster'/>"))
            result = await iq.send(timeout=10)
            return {item.get("jid") for item in result.xml.iter("{jabber:iq:roster}item")}

        assert await names(on_beta) == set()  # beta has loaded (and cached) the empty roster
        await on_alpha.update_roster("bob@localhost", name="Bob", subscription="none")
        assert "bob@localhost" in await names(on_alpha)

        async def beta_sees() -> bool:
            return "bob@localhost" in await names(on_beta)

        await _until(beta_sees, "beta's roster cache drops alice's roster written on alpha")
        await on_beta.update_roster("bob@localhost", subscription="remove")

        async def alpha_sees() -> bool:
            return "bob@localhost" not in await names(on_alpha)

        await _until(alpha_sees, "alpha's roster cache drops alice's roster written on beta")
    finally:
        await slix_close(on_alpha)
        await slix_close(on_beta)


async def test_a_red_packet_grabbed_from_both_nodes_at_once_is_opened_exactly_once(two):
    """alice (beta) sends bob a packet; bob opens it from a session on each node at the same
    moment: exactly one open succeeds, the other is told it was opened already, and alice gets
    one grabbed notice, routed across nodes when the open was alpha's (the last packet is)."""
    alice = await _login(two, "beta", "alice@localhost")
    bob_a = await _login(two, "alpha", "bob@localhost")
    bob_b = await _login(two, "beta", "bob@localhost")
    try:
        notices: asyncio.Queue[Any] = asyncio.Queue()
        alice.add_event_handler("redpacket_grabbed", notices.put_nowait)
        for round_ in range(3):
            sent = await alice.plugin["redpacket"].send_packet("bob@localhost", client_id=f"race-{round_}", total=100)
            packet_id = sent["id"]
            results = await asyncio.gather(
                bob_a.plugin["redpacket"].open_packet(packet_id), bob_b.plugin["redpacket"].open_packet(packet_id),
                return_exceptions=True,
            )
            opened = [r for r in results if not isinstance(r, BaseException)]
            refused = [r for r in results if isinstance(r, IqError)]
            assert len(opened) == 1 and len(refused) == 1, results
            assert opened[0]["amount"] == "100"
            assert refused[0].iq["error"]["condition"] == "conflict"
            notice = await asyncio.wait_for(notices.get(), 10)
            assert (notice["rp_grabbed"]["id"], notice["rp_grabbed"]["by"], notice["rp_grabbed"]["amount"]) == (packet_id, "bob@localhost", "100")
        assert notices.empty()
        # Opened on alpha alone: the notice is routed from alpha to alice's session on beta.
        sent = await alice.plugin["redpacket"].send_packet("bob@localhost", client_id="from-alpha", total=50)
        opened = await bob_a.plugin["redpacket"].open_packet(sent["id"])
        assert opened["amount"] == "50"
        notice = await asyncio.wait_for(notices.get(), 10)
        assert (notice["rp_grabbed"]["id"], notice["rp_grabbed"]["by"]) == (sent["id"], "bob@localhost")
        assert await bob_a.plugin["redpacket"].balance() == 350
        assert await alice.plugin["redpacket"].balance() == 650
    finally:
        for c in (alice, bob_a, bob_b):
            await slix_close(c)


async def test_caches_are_flushed_when_redis_comes_back(tmp_path, prefix, private_redis):
    """Invalidations published while a node could not hear them are covered by a flush: beta
    loses its Redis connection (the server restarts, empty), alpha mutes bob meanwhile (its
    invalidation is kept and sent once Redis answers, and beta flushes on resubscribing), and
    beta enforces the mute afterwards."""
    async with two_nodes(_two(tmp_path, prefix, private_redis.url)) as two:
        admin = await _login(two, "alpha", "boss@localhost")
        bob = await _login(two, "beta", "bob@localhost")
        alice = await _login(two, "alpha", "alice@localhost")
        try:
            private_redis.stop()
            await two.nodes["beta"].wait_log("cache invalidations cannot be received")
            await admin.plugin["mute"].platform_mute("bob@localhost", seconds=600)
            private_redis.start()
            await two.nodes["beta"].wait_log("cache invalidations are received again: every cache was flushed")

            async def beta_knows() -> bool:
                status = await bob.plugin["mute"].platform_status()
                return status.xml.find(f"{{{MUTE_NS}}}platform") is not None

            await _until(beta_knows, "beta enforces, after the outage, the mute set on alpha during it", timeout=20)
            # Local delivery on beta never stopped; the refusal is beta's, not a lost route.
            a_in = _inbox(alice)
            assert await _chat_outcome(bob, "alice@localhost", a_in, "muted after the outage") == "forbidden"
        finally:
            for c in (admin, bob, alice):
                await slix_close(c)


async def test_a_platform_keyword_added_on_one_node_is_enforced_on_the_other(two):
    """An admin adds a word to the platform keyword list on alpha (ad-hoc command); beta, which
    checks bob's messages before they leave it, reads the list again on the invalidation."""
    from slixmpp.plugins.xep_0004 import Form

    admin = await _login(two, "alpha", "boss@localhost")
    alice = await _login(two, "alpha", "alice@localhost")
    bob = await _login(two, "beta", "bob@localhost")
    try:
        admin.register_plugin("xep_0050")
        a_in = _inbox(alice)
        assert await _chat_outcome(bob, "alice@localhost", a_in, "a clusterword before") == "delivered"
        node = f"{MUTE_NS}#platform-keyword-add"
        first = await admin.plugin["xep_0050"].send_command("localhost", node, timeout=10)
        form = Form()
        form["type"] = "submit"
        form.add_field(var="words", ftype="text-multi", value="clusterword")
        form.add_field(var="action", value="block")
        done = await admin.plugin["xep_0050"].send_command("localhost", node, sessionid=first["command"]["sessionid"],
                                                           action="complete", payload=form, timeout=10)
        assert done["command"]["status"] == "completed"
        outcomes: list[str] = []

        async def refused() -> bool:
            outcomes.append(await _chat_outcome(bob, "alice@localhost", a_in, f"clusterword {len(outcomes)}"))
            return outcomes[-1] == "not-acceptable"

        took = await _until(refused, "beta refuses the word added on alpha")
        print(f"platform keyword added on alpha enforced on beta after {took * 1000:.0f} ms (polled, {len(outcomes)} tries)")
    finally:
        for c in (admin, alice, bob):
            await slix_close(c)
