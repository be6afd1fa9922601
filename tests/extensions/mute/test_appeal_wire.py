"""A platform-muted account appeals; the appeal reaches the admins as a customer-service ticket
(through the one call customer service offers other features), over real sockets with slixmpp."""

from __future__ import annotations

import pytest
from slixmpp.exceptions import IqError

from xmppd_extensions.mute import slixmpp_plugin

from ..customer_service.conftest import ADMIN, open_site

pytestmark = pytest.mark.interop


def with_mute(c):
    c.xmpp.register_plugin("mute", module=slixmpp_plugin)
    return c.xmpp.plugin["mute"]


async def test_an_appeal_becomes_a_ticket_of_the_appeal_queue(tmp_path):
    async with open_site(tmp_path, "mute.appeal_queue=appeals") as site:
        for name in ("ann", "carol", "dan"):
            await site.user(name)
        await site.user(ADMIN)
        boss = await site.queue_with("appeals", {"ann": "Ann"})
        ann = await site.client("ann")
        carol = await site.client("carol")
        dan = await site.client("dan")
        await with_mute(boss).platform_mute("carol@localhost", seconds=3600, reason="abuse")

        ticket = await with_mute(carol).appeal("I was quoting someone, please look again")
        assert ticket.isdigit()
        # the agents of the queue read it, with the mute's facts
        tickets = await ann.cs.tickets(site.queue("appeals"))
        [t] = [t for t in tickets if t.get("id") == ticket]
        assert t.get("visitor") == "carol@localhost"
        assert "quoting someone" in t.text and "abuse" in t.text and f"by {ADMIN}@localhost" in t.text
        # one appeal per mute; an account that is not muted has nothing to appeal
        with pytest.raises(IqError) as info:
            await carol.xmpp.plugin["mute"].appeal("again")
        assert info.value.iq["error"]["condition"] == "conflict"
        with pytest.raises(IqError) as info:
            await with_mute(dan).appeal("me too")
        assert info.value.iq["error"]["condition"] == "item-not-found"
        # a new mute may be appealed again
        await boss.xmpp.plugin["mute"].platform_unmute("carol@localhost")
        site.clock.advance(1)  # (the server's clock is the test's)
        await boss.xmpp.plugin["mute"].platform_mute("carol@localhost", seconds=60)
        assert await carol.xmpp.plugin["mute"].appeal("still me") != ticket


async def test_no_appeal_queue_no_appeals(tmp_path):
    async with open_site(tmp_path) as site:
        await site.user("carol")
        await site.user(ADMIN)
        boss = await site.client(ADMIN)
        carol = await site.client("carol")
        await with_mute(boss).platform_mute("carol@localhost", seconds=60)
        with pytest.raises(IqError) as info:
            await with_mute(carol).appeal("please")
        assert info.value.iq["error"]["condition"] == "feature-not-implemented"


async def test_one_appeal_per_mute_across_a_restart(tmp_path):
    """'Already appealed' is kept in storage (mute_appeals): a restarted server still refuses a
    second appeal of the same mute, and takes one for a new mute."""
    async with open_site(tmp_path, "mute.appeal_queue=appeals") as site:
        await site.user("carol")
        await site.user(ADMIN)
        boss = await site.queue_with("appeals", {})
        carol = await site.client("carol")
        await with_mute(boss).platform_mute("carol@localhost", seconds=3600, reason="abuse")
        first = await with_mute(carol).appeal("please look again")

        await site.stop()  # the operator restarts the server: same storage, same clock
        await site.start()
        boss = await site.client(ADMIN)
        carol = await site.client("carol")
        with pytest.raises(IqError) as info:
            await with_mute(carol).appeal("once more after the restart")
        assert info.value.iq["error"]["condition"] == "conflict"
        # the mute and its appeal ticket are still there; a new mute may be appealed again
        await with_mute(boss).platform_unmute("carol@localhost")
        site.clock.advance(1)
        await boss.xmpp.plugin["mute"].platform_mute("carol@localhost", seconds=60)
        assert await carol.xmpp.plugin["mute"].appeal("a new mute") not in (first, "")
