"""Routing by skill, the estimated wait and opening hours by weekday, time zone and holidays,
through the wire with slixmpp (client.plugin['cs'])."""
from __future__ import annotations

from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from slixmpp.exceptions import IqError

from xmppd_extensions.customer_service.protocol import NS

from .conftest import FakeClock, Site, open_site
from .test_routing_wire import agents_online, open_chat, users


async def test_a_chat_goes_only_to_an_agent_with_the_skills_its_queue_needs(site: Site) -> None:
    await users(site, "ann", "bob", "v1", "v2")
    admin = await site.queue_with("billing", {}, strategy="round-robin", capacity=1, skills="billing")
    billing = site.queue("billing")
    await admin.cs.set_member(billing, "ann@localhost", "agent", "Ann")  # no skills: never routed here
    await admin.cs.set_member(billing, "bob@localhost", "agent", "Bob", skills="zh billing zh")
    listed = {m.get("jid"): m.get("skills") for m in await admin.cs.members(billing)}
    assert listed == {"ann@localhost": None, "bob@localhost": "billing zh"}  # normalised
    queue = (await admin.cs.queues(site.domain)).find(f"{{{NS}}}queue")
    assert queue.get("skills") == "billing"

    ann, bob = await agents_online(site, "billing", ["ann", "bob"])
    v1, v2 = await site.client("v1"), await site.client("v2")
    s1 = await open_chat(site, v1, "billing")
    assert (await v1.cs_event("agent", session=s1)).get("nick") == "Bob"  # round-robin would start at Ann
    s2 = await open_chat(site, v2, "billing")
    # Ann is free but lacks the skill: v2 waits for Bob.
    assert (await v2.cs_event("position", session=s2)).get("n") == "1"
    await bob.cs.close(f"s-{s1}@{site.domain}")
    assert (await v2.cs_event("agent", session=s2)).get("nick") == "Bob"
    assert not [m for m in ann.messages if m.find(f"{{{NS}}}assigned") is not None]


async def test_bad_skills_are_refused(site: Site) -> None:
    await users(site, "ann")
    admin = await site.queue_with("support", {"ann": "Ann"})
    for bad in ("UPPER-ok but_$", " ".join(f"s{i}" for i in range(17))):
        with pytest.raises(IqError) as err:
            await admin.cs.set_member(site.queue("support"), "ann@localhost", "agent", "Ann", skills=bad)
        assert err.value.condition == "bad-request"
    with pytest.raises(IqError) as err:
        await admin.cs.put_queue(site.domain, "support", skills="a" * 40)
    assert err.value.condition == "bad-request"


@pytest.mark.parametrize(
    ("local", "hours", "holidays", "opened"),
    [
        ("2026-12-07 10:00", "mon-fri 09:00-18:00", "", True),  # a Monday morning in Shanghai
        ("2026-12-07 08:59", "mon-fri 09:00-18:00", "", False),
        ("2026-12-12 10:00", "mon-fri 09:00-18:00, sat 12:00-14:00", "", False),  # Saturday, before noon
        ("2026-12-12 12:30", "mon-fri 09:00-18:00, sat 12:00-14:00", "", True),
        ("2026-12-07 10:00", "mon-fri 09:00-18:00", "2026-12-25,2026-12-07", False),  # a holiday
        ("2026-12-08 01:00", "mon 22:00-02:00", "", True),  # Monday's night range, Tuesday morning
    ],
)
async def test_opening_hours_by_weekday_time_zone_and_holidays(tmp_path: Path, local: str, hours: str, holidays: str, opened: bool) -> None:
    clock = FakeClock()
    clock.t = datetime.fromisoformat(local).replace(tzinfo=ZoneInfo("Asia/Shanghai")).timestamp()
    async with open_site(tmp_path, clock=clock) as site:
        await users(site, "ann", "vera")
        admin = await site.queue_with("support", {"ann": "Ann"}, hours=hours, timezone="Asia/Shanghai", holidays=holidays)
        full = (await admin.cs.queues(site.domain)).find(f"{{{NS}}}queue")
        assert (full.get("hours"), full.get("timezone")) == (hours, "Asia/Shanghai")
        await agents_online(site, "support", ["ann"])
        vera = await site.client("vera")
        vera.say(site.queue("support"), "hello")
        got = await vera.next(lambda m: m.find(f"{{{NS}}}welcome") is not None or m.find(f"{{{NS}}}ticket") is not None)
        assert (got.find(f"{{{NS}}}welcome") is not None) is opened
        if not opened:  # outside hours the visitor is told and the message is kept as a ticket
            ticket = got.find(f"{{{NS}}}ticket").get("id")
            assert [t.get("id") for t in await admin.cs.tickets(site.queue("support"))] == [ticket]


async def test_bad_hours_zone_and_holidays_are_refused(site: Site) -> None:
    await users(site)
    admin = await site.queue_with("support", {})
    for attrs in ({"hours": "moon 09:00-10:00"}, {"hours": "mon-fri 9-5"}, {"timezone": "Mars/Olympus"}, {"holidays": "2026-13-01"}):
        with pytest.raises(IqError) as err:
            await admin.cs.put_queue(site.domain, "support", **attrs)
        assert err.value.condition == "bad-request"
