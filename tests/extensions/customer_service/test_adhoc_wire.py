"""urn:xmppd:cs:0 as XEP-0050 ad-hoc commands over the wire: admins, agents and supervisors on standard clients."""
from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

import pytest
from slixmpp.exceptions import IqError

from .conftest import Client, Site

pytestmark = pytest.mark.interop
CMD = "http://jabber.org/protocol/commands"
XDATA = "jabber:x:data"
ITEMS = "http://jabber.org/protocol/disco#items"
NODE = "urn:xmppd:cs:0#"


async def command(c: Client, to: str, node: str, values: dict[str, Any] | None = None) -> ET.Element:
    """Execute ``node`` on ``to``; submit ``values`` when it answers with a form. The final <command/>."""
    iq = c.xmpp.make_iq_set(ito=to)
    iq.xml.append(ET.Element(f"{{{CMD}}}command", {"node": node, "action": "execute"}))
    res = (await iq.send(timeout=5)).xml.find(f"{{{CMD}}}command")
    if res.get("status") == "executing":
        iq = c.xmpp.make_iq_set(ito=to)
        cmd = ET.SubElement(iq.xml, f"{{{CMD}}}command", {"node": node, "sessionid": res.get("sessionid"), "action": "complete"})
        x = ET.SubElement(cmd, f"{{{XDATA}}}x", {"type": "submit"})
        for k, v in (values or {}).items():
            ET.SubElement(ET.SubElement(x, f"{{{XDATA}}}field", {"var": k}), f"{{{XDATA}}}value").text = str(v)
        res = (await iq.send(timeout=5)).xml.find(f"{{{CMD}}}command")
    return res


def notes(cmd: ET.Element) -> list[str]:
    return [n.text or "" for n in cmd.findall(f"{{{CMD}}}note")]


async def command_nodes(c: Client, to: str) -> list[str]:
    iq = c.xmpp.make_iq_get(ito=to, queryxmlns=ITEMS)
    iq.xml.find(f"{{{ITEMS}}}query").set("node", CMD)
    res = await iq.send(timeout=5)
    return [i.get("node") for i in res.xml.iter(f"{{{ITEMS}}}item")]


async def test_admin_builds_a_queue_and_agents_work_it_with_commands(site: Site) -> None:
    for u in ("boss", "ann", "bob", "sue", "vera"):
        await site.user(u)
    boss = await site.client("boss")
    assert NODE + "queue" in await command_nodes(boss, site.domain)
    done = await command(boss, site.domain, NODE + "queue", {"name": "support", "display-name": "Support", "strategy": "round-robin", "capacity": "2", "welcome": "Hi there"})
    assert done.get("status") == "completed" and "saved" in notes(done)[0]
    assert site.cs.queues["support"].capacity == 2 and site.cs.queues["support"].welcome == "Hi there"
    bad = await command(boss, site.domain, NODE + "queue", {"name": "x", "capacity": "lots"})
    assert bad.get("status") == "executing" and any("capacity" in n for n in notes(bad))
    support = site.queue("support")
    for who, role, nick in (("ann", "agent", "Ann"), ("bob", "agent", "Bob"), ("sue", "supervisor", "")):
        done = await command(boss, support, NODE + "member", {"jid": f"{who}@localhost", "role": role, "nick": nick})
        assert done.get("status") == "completed"
    # skills, time zone and holidays from a standard client's form too
    done = await command(boss, site.domain, NODE + "queue", {"name": "vip", "timezone": "Asia/Shanghai", "holidays": "2026-12-25", "skills": "vip zh"})
    assert done.get("status") == "completed"
    vip = site.cs.queues["vip"]
    assert (vip.timezone, vip.holidays, vip.skills) == ("Asia/Shanghai", "2026-12-25", "vip zh")
    done = await command(boss, site.queue("vip"), NODE + "member", {"jid": "ann@localhost", "role": "agent", "nick": "Ann", "skills": "zh vip"})
    assert done.get("status") == "completed" and site.cs.members["vip"]["ann@localhost"].skills == "vip zh"

    ann, bob = await site.client("ann"), await site.client("bob")
    await ann.announce(support)
    await bob.announce(support)
    vera = await site.client("vera")
    vera.say(support, "hello")
    sid = (await vera.cs_event("welcome")).get("session")
    await ann.cs_event("assigned", session=sid)
    sjid = f"s-{sid}@{site.domain}"
    # The chat window's commands: the agent sees close and transfer; a stranger sees nothing there.
    assert set(await command_nodes(ann, sjid)) == {NODE + "close", NODE + "transfer"}
    assert await command_nodes(vera, sjid) == []
    with pytest.raises(IqError) as exc:
        await command(vera, sjid, NODE + "close")
    assert exc.value.condition == "forbidden"
    done = await command(ann, sjid, NODE + "transfer", {"agent": "bob@localhost"})
    assert done.get("status") == "completed" and notes(done) == ["Transferred to Bob."]
    await bob.cs_event("assigned", session=sid)
    assert (await vera.cs_event("agent", session=sid, nick="Bob")) is not None

    # Supervisors get figures and history; agents do not get figures.
    sue = await site.client("sue")
    fig = notes(await command(sue, support, NODE + "figures"))
    assert fig[0].startswith("Waiting 0, active 1") and any("Bob (bob@localhost): available, 1/2" in n for n in fig)
    assert NODE + "figures" not in await command_nodes(ann, support)
    hist = notes(await command(ann, support, NODE + "history", {"visitor": "vera@localhost"}))
    assert len(hist) == 1 and sid in hist[0] and "active" in hist[0]
    again = await command(ann, support, NODE + "history", {})
    assert again.get("status") == "executing" and any("agents look up one visitor" in n for n in notes(again))

    done = await command(bob, sjid, NODE + "close")
    assert notes(done) == ["The chat is closed."]
    assert (await vera.cs_event("closed", session=sid)).get("reason") == "agent"
    done = await command(bob, site.domain, NODE + "pause")
    assert site.cs.agents["bob@localhost"].paused is True
    # Non-admins neither see nor run the queue commands.
    assert NODE + "queue" not in await command_nodes(ann, site.domain)
    with pytest.raises(IqError) as exc:
        await command(ann, site.domain, NODE + "queue", {"name": "mine"})
    assert exc.value.condition == "forbidden"
    done = await command(boss, site.domain, NODE + "delete-queue", {"name": "support"})
    assert done.get("status") == "completed" and "support" not in site.cs.queues
