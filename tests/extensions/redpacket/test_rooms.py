"""Red packets (urn:xmppd:redpacket:0) in MUC rooms over real sockets: both kinds, exclusive
packets, permissions, and 200 clients grabbing one packet at once (each share exactly once)."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import pytest
import slixmpp
from slixmpp.exceptions import IqError

from xmppd.features.muc.affiliations import Affiliation
from xmppd.jid import JID
from xmppd_extensions.redpacket import slixmpp_plugin
from xmppd_extensions.redpacket.feature import NS

from ...features.muc_support import PLUGINS, create, join
from ...helpers import add_user, slix, slix_close
from .rawclients import login
from .schema_check import assert_valid_xml
from .servers import STRANGERS, rp_running_server
from .test_wire import app_condition, inbox, rp_xml

pytestmark = pytest.mark.interop

ROOM = "party@conference.localhost"


async def member(server, name: str) -> slixmpp.ClientXMPP:
    c = await slix(server, await add_user(server, name), plugins=PLUGINS)
    c.register_plugin("redpacket", module=slixmpp_plugin)
    c.send_presence()
    return c


@pytest.fixture(params=["sqlite", "mariadb"])
async def room_server(request, tmp_path: Path):
    overrides = ["redpacket.expiry=60.0", "c2s.require_tls=false", "c2s.max_connections_per_ip=1000"]
    if request.param == "mariadb":
        server = request.getfixturevalue("mariadb_server")
        url = server.create_database()
        overrides += [f"storage.url={url.render_as_string(hide_password=False)}", "storage.auto_upgrade=true"]
    async with rp_running_server(tmp_path, STRANGERS, *overrides, muc=True) as srv:
        yield srv


async def test_room_packets_of_both_kinds_and_permissions(room_server):
    feat = room_server.features["redpacket"]
    a, b, c = await member(room_server, "alice"), await member(room_server, "bob"), await member(room_server, "carol")
    try:
        await create(a, ROOM, "Alice")
        await join(b, ROOM, "Bob")
        await feat.repo.topup("alice@localhost", 5000, feat.now())
        seen = inbox(b, "redpacket")
        sent = await a.plugin["redpacket"].send_packet(ROOM, client_id="r1", total=300, count=3, greeting="新年快乐")
        msg = await asyncio.wait_for(seen.get(), 5)
        assert msg["type"] == "groupchat" and msg["from"].bare == ROOM
        assert_valid_xml(rp_xml(msg["redpacket"]))
        assert msg["redpacket"]["id"] == sent["id"] and msg["redpacket"]["count"] == "3"
        assert "sent a red packet: 新年快乐" in msg["body"]
        # the sender may grab a room packet; a non-member may not
        got_a = await a.plugin["redpacket"].open_packet(sent["id"])
        got_b = await b.plugin["redpacket"].open_packet(sent["id"])
        with pytest.raises(IqError) as info:
            await c.plugin["redpacket"].open_packet(sent["id"])
        assert info.value.iq["error"]["condition"] == "forbidden" and app_condition(info.value)[0] == "forbidden"
        with pytest.raises(IqError) as info:
            await c.plugin["redpacket"].send_packet(ROOM, client_id="c1", total=10)
        assert info.value.iq["error"]["condition"] == "forbidden"
        details = await b.plugin["redpacket"].details(sent["id"])
        assert_valid_xml(rp_xml(details))
        assert details["remaining-count"] == "1"
        assert int(got_a["amount"]) + int(got_b["amount"]) + int(details["remaining-amount"]) == 300
        # equal packet: each share is the same
        finished = inbox(a, "redpacket_finished")
        eq = await a.plugin["redpacket"].send_packet(ROOM, client_id="r2", kind="equal", each=50, count=2)
        assert eq["total"] == "100"
        assert (await a.plugin["redpacket"].open_packet(eq["id"]))["amount"] == "50"
        assert (await b.plugin["redpacket"].open_packet(eq["id"]))["amount"] == "50"
        done = await asyncio.wait_for(finished.get(), 5)
        assert done["rp_finished"]["id"] == eq["id"] and done["rp_finished"]["best-luck"] == ""  # equal: no best luck
        # exclusive: only the named member
        ex = await a.plugin["redpacket"].send_packet(ROOM, client_id="r3", total=88, exclusive="bob@localhost")
        with pytest.raises(IqError) as info:
            await a.plugin["redpacket"].open_packet(ex["id"])
        assert info.value.iq["error"]["condition"] == "forbidden"
        assert (await b.plugin["redpacket"].open_packet(ex["id"]))["amount"] == "88"
        report = await feat.repo.audit()
        assert report.ok, str(report)
    finally:
        for x in (a, b, c):
            await slix_close(x)


async def test_two_hundred_clients_grab_one_packet_at_once(room_server):
    feat = room_server.features["redpacket"]
    a = await member(room_server, "alice")
    try:
        await create(a, ROOM, "Alice")
        room = room_server.features["muc"].get_room(ROOM)
        names = [f"g{i:03d}" for i in range(200)]
        for n in names:
            await add_user(room_server, n)
            await room.set_affiliation(JID.parse(f"{n}@localhost"), Affiliation.MEMBER)
        await feat.repo.topup("alice@localhost", 20000, feat.now())
        sent = await a.plugin["redpacket"].send_packet(ROOM, client_id="storm", total=20000, count=100)
        port = room_server.ports["c2s"]
        clients = await asyncio.gather(*(login(port, n) for n in names))
        started = time.monotonic()
        answers = await asyncio.gather(*(
            c.iq(f"g{i}", f"<iq type='set' id='g{i}' to='localhost'><open xmlns='{NS}' id='{sent['id']}'/></iq>")
            for i, c in enumerate(clients)
        ))
        elapsed = time.monotonic() - started
        for c in clients:
            c.close()
        won = [int(re.search(rb"amount=[\"'](\d+)", x).group(1)) for x in answers if b"<opened" in x]
        gone = [x for x in answers if b"all-gone" in x]
        assert len(won) == 100 and len(gone) == 100, answers[:3]
        assert sum(won) == 20000 and min(won) >= 1
        shares = await feat.repo.shares(sent["id"])
        takers = [s.grabbed_by for s in shares]
        assert None not in takers and len(set(takers)) == 100
        report = await feat.repo.audit()
        assert report.ok, str(report)
        assert report.total_balances == 20000 and report.unclaimed == 0
        print(f"\n200 grabs in {elapsed:.2f}s on {feat.ctx.db.dialect_name}\n{report}")
    finally:
        await slix_close(a)
