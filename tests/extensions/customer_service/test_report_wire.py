"""Satisfaction and wait figures per queue and agent, by day in the queue's time zone (docs §5.2),
through the wire with slixmpp."""
from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from slixmpp.exceptions import IqError

from xmppd_extensions.customer_service.protocol import NS

from .conftest import Site
from .test_routing_wire import agents_online, open_chat, users


async def test_a_supervisor_reads_satisfaction_and_wait_by_day_for_the_queue_and_each_agent(site: Site) -> None:
    await users(site, "ann", "sue", "v1", "v2", "eve")
    await site.queue_with("support", {"ann": "Ann"}, supervisors=("sue",), timezone="Asia/Shanghai")
    support = site.queue("support")
    (ann,) = await agents_online(site, "support", ["ann"])
    for name, score in (("v1", 5), ("v2", 2)):
        v = await site.client(name)
        sid = await open_chat(site, v, "support")
        await v.cs_event("agent", session=sid)
        await v.cs.close(support)
        await v.cs.rate(support, score, "ok")
    sue, eve = await site.client("sue"), await site.client("eve")
    today = datetime.fromtimestamp(site.cs.now(), ZoneInfo("Asia/Shanghai")).date().isoformat()
    report = await sue.cs.report(support)
    assert (report.get("to"), report.get("timezone")) == (today, "Asia/Shanghai")
    days = [dict(d.attrib) for d in report.iter(f"{{{NS}}}day")]
    for row in days:
        assert float(row.pop("average-wait")) >= 0
    assert days == [
        {"date": today, "chats": "2", "rated": "2", "satisfaction": "3.50"},
        {"date": today, "agent": "ann@localhost", "chats": "2", "rated": "2", "satisfaction": "3.50"},
    ]
    assert [d for d in (await sue.cs.report(support, "2020-01-01", "2020-01-31")).iter(f"{{{NS}}}day")] == []
    with pytest.raises(IqError) as err:
        await eve.cs.report(support)
    assert err.value.condition == "forbidden"
    for frm, to in (("2026-01-01", "2026-12-31"), ("2026-02-01", "2026-01-01"), ("yesterday", None)):
        with pytest.raises(IqError) as err:
            await sue.cs.report(support, frm, to)
        assert err.value.condition == "bad-request"
