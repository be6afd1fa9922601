"""Red packets (urn:xmppd:redpacket:0) over real sockets with slixmpp: 1-to-1 packets, errors,
retries, expiry and refund, forged elements stripped; every server stanza validates."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import slixmpp
from lxml import etree
from slixmpp.exceptions import IqError

from xmppd_extensions.redpacket import slixmpp_plugin
from xmppd_extensions.redpacket.feature import NS

from ...helpers import add_user, slix, slix_close
from .schema_check import assert_valid_xml
from .servers import STRANGERS
from .servers import rp_running_server as running_server

pytestmark = pytest.mark.interop


async def client(server, name: str) -> slixmpp.ClientXMPP:
    jid = await add_user(server, name)
    c = await slix(server, jid)
    c.register_plugin("redpacket", module=slixmpp_plugin)
    c.send_presence()
    return c


def inbox(c: slixmpp.ClientXMPP, event: str) -> asyncio.Queue:
    q: asyncio.Queue = asyncio.Queue()
    c.add_event_handler(event, lambda m: q.put_nowait(m))
    return q


def rp_xml(stanza) -> bytes:
    """Our namespace's elements as the server sent them (validated against the XSD)."""
    return etree.tostring(etree.fromstring(str(stanza).encode()))


def app_condition(exc: IqError) -> tuple[str, dict]:
    err = exc.iq.xml.find("{jabber:client}error")
    app = [c for c in err if c.tag.startswith("{" + NS)]
    return (app[0].tag.split("}")[1], dict(app[0].attrib)) if app else ("", {})


@pytest.fixture
async def rp_server(tmp_path: Path):
    async with running_server(tmp_path, STRANGERS, "redpacket.expiry=60.0", "redpacket.sweep_interval=0.2") as srv:
        yield srv


async def test_one_to_one_packet_send_open_and_notices(rp_server):
    feat = rp_server.features["redpacket"]
    a, b = await client(rp_server, "alice"), await client(rp_server, "bob")
    try:
        await feat.repo.topup("alice@localhost", 1000, feat.now())
        packets, notices, finished = inbox(b, "redpacket"), inbox(a, "redpacket_grabbed"), inbox(a, "redpacket_finished")
        sent = await a.plugin["redpacket"].send_packet("bob@localhost", client_id="c1", total=888, greeting="恭喜发财", lang="zh")
        assert_valid_xml(rp_xml(sent))
        assert sent["balance"] == "112" and sent["total"] == "888"
        msg = await asyncio.wait_for(packets.get(), 5)
        assert_valid_xml(rp_xml(msg["redpacket"]))
        assert msg["type"] == "chat" and msg["from"].bare == "alice@localhost"
        assert msg["redpacket"]["id"] == sent["id"] and msg["redpacket"]["greeting"] == "恭喜发财"
        assert msg["body"].startswith("[红包] alice给你发了一个红包：恭喜发财")
        opened = await b.plugin["redpacket"].open_packet(sent["id"])
        assert_valid_xml(rp_xml(opened))
        assert (opened["amount"], opened["balance"], opened["remaining"]) == ("888", "888", "0")
        grabbed = await asyncio.wait_for(notices.get(), 5)
        assert_valid_xml(rp_xml(grabbed["rp_grabbed"]))
        assert grabbed["rp_grabbed"]["by"] == "bob@localhost" and grabbed["rp_grabbed"]["amount"] == "888"
        done = await asyncio.wait_for(finished.get(), 5)
        assert done["rp_finished"]["id"] == sent["id"] and done["rp_finished"]["best-luck"] == ""  # one share: no luck
        assert await b.plugin["redpacket"].balance() == 888 and await a.plugin["redpacket"].balance() == 112
        # again: already grabbed, with the amount
        with pytest.raises(IqError) as info:
            await b.plugin["redpacket"].open_packet(sent["id"])
        assert info.value.iq["error"]["condition"] == "conflict"
        assert app_condition(info.value) == ("already-grabbed", {"amount": "888", "at": app_condition(info.value)[1]["at"]})
        assert_valid_xml(ET.tostring(info.value.iq.xml.find("{jabber:client}error")[-1]))
        details = await a.plugin["redpacket"].details(sent["id"])
        assert_valid_xml(rp_xml(details))
        grabs = slixmpp_plugin.entries(details, slixmpp_plugin.Grab)
        assert [(g["by"], g["amount"], g["best"]) for g in grabs] == [("bob@localhost", "888", "")]
        assert details["status"] == "finished" and details["best-luck"] == ""
        hist = await a.plugin["redpacket"].history()
        assert_valid_xml(rp_xml(hist))
        assert [(e["kind"], e["amount"]) for e in slixmpp_plugin.entries(hist, slixmpp_plugin.Entry)] == [
            ("send-debit", "-888"), ("topup", "1000")]
        rec = await b.plugin["redpacket"].records("received")
        assert_valid_xml(rp_xml(rec))
        assert (rec["total"], rec["count"]) == ("888", "1")
        sent_rec = await a.plugin["redpacket"].records("sent")
        assert (sent_rec["total"], sent_rec["count"]) == ("888", "1")
        assert (await feat.repo.audit()).ok
    finally:
        await slix_close(a)
        await slix_close(b)


async def test_open_is_forbidden_for_the_sender_and_strangers(rp_server):
    feat = rp_server.features["redpacket"]
    a, b, c = await client(rp_server, "alice"), await client(rp_server, "bob"), await client(rp_server, "carol")
    try:
        await feat.repo.topup("alice@localhost", 500, feat.now())
        sent = await a.plugin["redpacket"].send_packet("bob@localhost", client_id="x", kind="equal", each=100)
        for who in (a, c):
            with pytest.raises(IqError) as info:
                await who.plugin["redpacket"].open_packet(sent["id"])
            assert info.value.iq["error"]["condition"] == "forbidden"
            assert app_condition(info.value)[0] == "forbidden"
        with pytest.raises(IqError) as info:
            await c.plugin["redpacket"].details(sent["id"])
        assert info.value.iq["error"]["condition"] == "forbidden"
        with pytest.raises(IqError) as info:
            await b.plugin["redpacket"].open_packet("0000")
        assert info.value.iq["error"]["condition"] == "item-not-found"
        assert await b.plugin["redpacket"].balance() == 0
    finally:
        for x in (a, b, c):
            await slix_close(x)


@pytest.mark.parametrize("kwargs,condition,app", [
    (dict(total=100, count=2), "bad-request", ""),  # one-to-one packets have one share
    (dict(total=100000), "not-acceptable", "limit-exceeded"),
    (dict(total=0), "not-acceptable", "limit-exceeded"),
    (dict(kind="equal", total=100), "bad-request", ""),
    (dict(kind="weird", total=100), "bad-request", ""),
    (dict(total=600), "not-allowed", "insufficient-funds"),
    (dict(total=100, greeting="x" * 65), "not-acceptable", "limit-exceeded"),
])
async def test_bad_sends_get_the_right_error_and_cost_nothing(rp_server, kwargs, condition, app):
    feat = rp_server.features["redpacket"]
    a, b = await client(rp_server, "alice"), await client(rp_server, "bob")
    try:
        await feat.repo.topup("alice@localhost", 500, feat.now())
        with pytest.raises(IqError) as info:
            await a.plugin["redpacket"].send_packet("bob@localhost", client_id="bad", **kwargs)
        assert info.value.iq["error"]["condition"] == condition
        assert app_condition(info.value)[0] == app
        assert info.value.iq["error"]["text"]
        assert await a.plugin["redpacket"].balance() == 500
    finally:
        await slix_close(a)
        await slix_close(b)


async def test_send_to_unknown_account_or_self(rp_server):
    feat = rp_server.features["redpacket"]
    a = await client(rp_server, "alice")
    try:
        await feat.repo.topup("alice@localhost", 500, feat.now())
        with pytest.raises(IqError) as info:
            await a.plugin["redpacket"].send_packet("nobody@localhost", client_id="1", total=10)
        assert info.value.iq["error"]["condition"] == "item-not-found"
        with pytest.raises(IqError) as info:
            await a.plugin["redpacket"].send_packet("alice@localhost", client_id="2", total=10)
        assert info.value.iq["error"]["condition"] == "bad-request"
    finally:
        await slix_close(a)


async def test_retried_send_same_client_id_is_one_packet_debited_once(rp_server):
    feat = rp_server.features["redpacket"]
    a, b = await client(rp_server, "alice"), await client(rp_server, "bob")
    try:
        await feat.repo.topup("alice@localhost", 1000, feat.now())
        results = await asyncio.gather(*(a.plugin["redpacket"].send_packet("bob@localhost", client_id="retry-1", total=300)
                                         for _ in range(5)))
        assert len({r["id"] for r in results}) == 1
        assert sum(1 for r in results if r["retry"] == "true") == 4
        assert await a.plugin["redpacket"].balance() == 700
        with pytest.raises(IqError) as info:
            await a.plugin["redpacket"].send_packet("bob@localhost", client_id="retry-1", total=301)
        assert app_condition(info.value)[0] == "client-id-reused"
        assert (await feat.repo.audit()).ok
    finally:
        await slix_close(a)
        await slix_close(b)


async def test_forged_packet_elements_from_clients_are_stripped(rp_server):
    a, b = await client(rp_server, "alice"), await client(rp_server, "bob")
    try:
        got: asyncio.Queue = asyncio.Queue()
        b.add_event_handler("message", lambda m: got.put_nowait(m))
        msg = a.make_message(mto="bob@localhost", mbody="free money", mtype="chat")
        msg["redpacket"]["id"] = "forged"
        msg["redpacket"]["sender"] = "admin@localhost"
        msg["rp_finished"]["id"] = "forged"
        msg.send()
        m = await asyncio.wait_for(got.get(), 5)
        assert m["body"] == "free money"
        assert m.xml.find(f"{{{NS}}}redpacket") is None and m.xml.find(f"{{{NS}}}finished") is None
    finally:
        await slix_close(a)
        await slix_close(b)


async def test_expiry_refunds_the_remainder_once_and_tells_the_sender(tmp_path):
    async with running_server(tmp_path, STRANGERS, "redpacket.expiry=0.6", "redpacket.sweep_interval=5.0") as srv:
        feat = srv.features["redpacket"]
        a, b = await client(srv, "alice"), await client(srv, "bob")
        try:
            await feat.repo.topup("alice@localhost", 1000, feat.now())
            refunds = inbox(a, "redpacket_refunded")
            sent = await a.plugin["redpacket"].send_packet("bob@localhost", client_id="e", total=400)
            r = await asyncio.wait_for(refunds.get(), 5)  # the sweeper wakes for the new deadline
            assert_valid_xml(rp_xml(r["rp_refunded"]))
            assert r["rp_refunded"]["id"] == sent["id"] and r["rp_refunded"]["amount"] == "400"
            assert await a.plugin["redpacket"].balance() == 1000
            with pytest.raises(IqError) as info:
                await b.plugin["redpacket"].open_packet(sent["id"])
            assert app_condition(info.value)[0] == "expired"
            assert await feat.sweep() == 0  # nothing twice
            assert feat.sent_notices == 1
            report = await feat.repo.audit()
            assert report.ok and report.total_balances == 1000
        finally:
            await slix_close(a)
            await slix_close(b)


async def test_sweeper_is_rebuilt_from_storage_after_restart(tmp_path):
    async with running_server(tmp_path, STRANGERS, "redpacket.expiry=0.5") as srv:
        feat = srv.features["redpacket"]
        await add_user(srv, "bob")
        a = await client(srv, "alice")
        try:
            await feat.repo.topup("alice@localhost", 100, feat.now())
            await a.plugin["redpacket"].send_packet("bob@localhost", client_id="r", total=60)
        finally:
            await slix_close(a)
    await asyncio.sleep(0.6)
    async with running_server(tmp_path, STRANGERS, "redpacket.expiry=0.5") as srv:
        feat = srv.features["redpacket"]
        for _ in range(50):
            if await feat.repo.balance("alice@localhost") == 100:
                break
            await asyncio.sleep(0.05)
        assert await feat.repo.balance("alice@localhost") == 100
        assert (await feat.repo.audit()).ok


async def test_deleted_account_balance_goes_to_the_system_wallet(rp_server):
    feat = rp_server.features["redpacket"]
    await add_user(rp_server, "dora")
    await feat.repo.topup("dora@localhost", 250, feat.now())
    assert await rp_server.account_service.delete("dora")
    await add_user(rp_server, "dora")
    assert await feat.repo.balance("dora@localhost") == 0
    assert await feat.repo.balance("system:escheat") == 250
    assert (await feat.repo.audit()).ok


async def test_disco_advertises_the_namespace(rp_server):
    a = await slix(rp_server, await add_user(rp_server, "alice"), plugins=("xep_0030",))
    try:
        info = await a.plugin["xep_0030"].get_info(jid="localhost")
        assert NS in info["disco_info"]["features"]
    finally:
        await slix_close(a)
