"""Red packets for every user through XEP-0050 (issue 16), over the wire with slixmpp: my wallet
(balance and history as a reported table) and send a red packet, the <send/> iq's second door —
the same message, the same debit, the same refusals with nothing debited."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from slixmpp.exceptions import IqError

from xmppd_extensions.redpacket import slixmpp_plugin
from xmppd_extensions.redpacket.user_commands import MY_WALLET, SEND, SEND_FORM_TYPE

from ...features.muc_support import PLUGINS as MUC_PLUGINS
from ...features.muc_support import create, join
from ...features.test_adhoc import PLUGINS, form_of, notes, run, xform
from ...helpers import add_user, slix, slix_close
from .schema_check import assert_valid_xml
from .servers import STRANGERS, rp_running_server
from .test_wire import inbox, rp_xml

pytestmark = pytest.mark.interop

ROOM = "party@conference.localhost"


@pytest.fixture
async def server(tmp_path: Path):
    async with rp_running_server(tmp_path, STRANGERS, "redpacket.expiry=600.0", muc=True) as srv:
        yield srv


async def user(server: Any, name: str) -> Any:
    c = await slix(server, await add_user(server, name), plugins=tuple(dict.fromkeys((*PLUGINS, *MUC_PLUGINS))))
    c.register_plugin("redpacket", module=slixmpp_plugin)
    c.send_presence()
    return c


async def topup(server: Any, who: str, amount: int) -> None:
    feat = server.features["redpacket"]
    await feat.repo.topup(f"{who}@localhost", amount, feat.now(), "gift")


async def send_command(c: Any, **values: str) -> Any:
    first = await run(c, SEND)
    assert first.get("status") == "executing" and xform(first).form_type == SEND_FORM_TYPE
    return await run(c, SEND, action="complete", sessionid=first.get("sessionid"), payload=form_of(c, **values))


async def ledger(c: Any) -> list[tuple[str, str]]:
    return [(e["kind"], e["amount"]) for e in await c.plugin["redpacket"].history()]


async def close(*clients: Any) -> None:
    for c in clients:
        await slix_close(c)


async def test_my_wallet_shows_the_balance_and_the_ledger_newest_first(server):
    alice, bob = await user(server, "alice"), await user(server, "bob")
    try:
        empty = await run(alice, MY_WALLET)  # no form: runs at once
        assert empty.get("status") == "completed"
        assert notes(empty) == [("info", "Balance 0.00 CNY. No entries yet.")]
        await topup(server, "alice", 1234)
        await alice.plugin["redpacket"].send_packet("bob@localhost", client_id="w1", total=34, greeting="hi")
        shown = await run(alice, MY_WALLET)
        form = xform(shown)
        assert form.values()["balance"] == "12.00 CNY"
        assert [f.var for f in form.reported] == ["at", "kind", "amount", "balance", "packet", "reason"]
        rows = [{f.var: f.value() for f in item} for item in form.items]
        assert [(r["kind"], r["amount"], r["balance"], r["reason"]) for r in rows] == [
            ("sent a packet", "-0.34 CNY", "12.00 CNY", None), ("top-up", "+12.34 CNY", "12.34 CNY", "gift")]
        assert rows[0]["packet"] and rows[1]["packet"] is None
        assert notes(shown) == [("info", "Balance 12.00 CNY. 2 entries, newest first.")]
        # only one's own wallet: bob's shows his, not alice's
        assert xform(await run(bob, MY_WALLET)).values()["balance"] == "0.00 CNY"
    finally:
        await close(alice, bob)


async def test_a_packet_sent_by_command_reaches_the_contact_and_debits_as_the_iq_does(server):
    alice, bob = await user(server, "alice"), await user(server, "bob")
    try:
        await topup(server, "alice", 1000)
        seen = inbox(bob, "redpacket")
        done = await send_command(alice, to="bob@localhost", kind="lucky", amount="1.23", count="1", greeting="恭喜")
        assert done.get("status") == "completed"
        (kind, text), = notes(done)
        msg = await asyncio.wait_for(seen.get(), 5)
        assert msg["type"] == "chat" and msg["from"].bare == "alice@localhost"
        assert_valid_xml(rp_xml(msg["redpacket"]))
        packet_id = msg["redpacket"]["id"]
        assert msg["redpacket"]["greeting"] == "恭喜" and msg["redpacket"]["count"] == "1"
        assert kind == "info" and packet_id in text and "balance is 8.77 CNY" in text
        # the same packet through the protocol: the same message, the same debit
        sent = await alice.plugin["redpacket"].send_packet("bob@localhost", client_id="iq1", total=123, greeting="恭喜")
        msg2 = await asyncio.wait_for(seen.get(), 5)
        assert msg2["body"] == msg["body"]
        assert {k: msg2["redpacket"][k] for k in ("sender", "kind", "count", "greeting")} == \
               {k: msg["redpacket"][k] for k in ("sender", "kind", "count", "greeting")}
        assert sent["balance"] == "754"
        assert await ledger(alice) == [("send-debit", "-123"), ("send-debit", "-123"), ("topup", "1000")]
        got = await bob.plugin["redpacket"].open_packet(packet_id)
        assert got["amount"] == "123"
        assert (await server.features["redpacket"].repo.audit()).ok
    finally:
        await close(alice, bob)


async def test_room_packets_by_command_lucky_equal_and_exclusive(server):
    alice, bob, carol = await user(server, "alice"), await user(server, "bob"), await user(server, "carol")
    try:
        await create(alice, ROOM, "Alice")
        await join(bob, ROOM, "Bob")
        await join(carol, ROOM, "Carol")
        await topup(server, "alice", 5000)
        seen = inbox(bob, "redpacket")
        done = await send_command(alice, to=ROOM, kind="lucky", amount="3", count="3")
        msg = await asyncio.wait_for(seen.get(), 5)
        assert done.get("status") == "completed" and msg["type"] == "groupchat" and msg["from"].bare == ROOM
        assert msg["redpacket"]["count"] == "3" and msg["redpacket"]["kind"] == "lucky"
        assert msg["redpacket"]["greeting"] == server.features["redpacket"].options.default_greeting
        await send_command(alice, to=ROOM, kind="equal", amount="1.50", count="3", greeting="same for all")
        msg = await asyncio.wait_for(seen.get(), 5)
        assert msg["redpacket"]["kind"] == "equal" and msg["redpacket"]["each"] == "50"
        await send_command(alice, to=ROOM, kind="exclusive", amount="0.88", count="1", exclusive="carol@localhost")
        msg = await asyncio.wait_for(seen.get(), 5)
        assert msg["redpacket"]["exclusive"] == "carol@localhost" and msg["redpacket"]["count"] == "1"
        with pytest.raises(IqError) as info:
            await bob.plugin["redpacket"].open_packet(msg["redpacket"]["id"])
        assert info.value.condition == "forbidden"
        assert (await carol.plugin["redpacket"].open_packet(msg["redpacket"]["id"]))["amount"] == "88"
        assert await alice.plugin["redpacket"].balance() == 5000 - 300 - 150 - 88
    finally:
        await close(alice, bob, carol)


@pytest.mark.parametrize(("values", "var", "problem"), [
    ({"to": "bob@localhost", "amount": "50", "count": "1"}, "amount", "your balance is 10.00 CNY, the packet needs 50.00 CNY"),
    ({"to": "bob@localhost", "amount": "1", "count": "2"}, "count", "a red packet to one person has exactly one share"),
    ({"to": "alice@localhost", "amount": "1", "count": "1"}, "to", "you cannot send a red packet to yourself"),
    ({"to": "nobody@localhost", "amount": "1", "count": "1"}, "to", "nobody@localhost does not exist"),
    ({"to": ROOM, "kind": "exclusive", "amount": "1", "count": "1", "exclusive": "alice@localhost"}, "exclusive",
     "for another member, not for yourself"),
    ({"to": ROOM, "kind": "exclusive", "amount": "1", "count": "2", "exclusive": "bob@localhost"}, "count",
     "an exclusive packet has exactly one share"),
    ({"to": ROOM, "kind": "exclusive", "amount": "1", "count": "1"}, "exclusive", "names the member it is for"),
    ({"to": ROOM, "kind": "lucky", "amount": "1", "count": "1", "exclusive": "bob@localhost"}, "exclusive",
     "choose the kind 'exclusive'"),
    ({"to": ROOM, "amount": "1.234", "count": "1"}, "amount", "at most 2 digits"),
    ({"to": ROOM, "amount": "300", "count": "1"}, "amount", "at most 20000 minor units"),
    ({"to": ROOM, "amount": "0.02", "count": "3"}, "amount", "at least one minor unit"),
    ({"to": ROOM, "kind": "equal", "amount": "1", "count": "3"}, "amount", "divides evenly into its 3 shares"),
    ({"to": ROOM, "amount": "1", "count": "101"}, "count", "1 to 100 shares"),
    ({"to": ROOM, "amount": "1", "count": "many"}, "count", "a whole number"),
    ({"to": ROOM, "amount": "1", "count": "1", "greeting": "x" * 65}, "greeting", "longer than 64 characters"),
    ({"to": "elsewhere@conference.localhost", "amount": "1", "count": "1"}, "to", "neither an account nor a room"),
])
async def test_refusals_return_the_form_with_the_problem_and_debit_nothing(server, values, var, problem):
    alice, bob = await user(server, "alice"), await user(server, "bob")
    try:
        await create(alice, ROOM, "Alice")
        await join(bob, ROOM, "Bob")
        await topup(server, "alice", 1000)
        first = await run(alice, SEND)
        again = await run(alice, SEND, action="complete", sessionid=first.get("sessionid"), payload=form_of(alice, **values))
        assert again.get("status") == "executing"
        (kind, text), = notes(again)
        assert kind == "error" and problem in text
        assert problem in (xform(again).field(var).desc or "")
        assert await ledger(alice) == [("topup", "1000")]  # nothing debited
        # the session lives on: a corrected form sends once
        fixed = form_of(alice, to="bob@localhost", kind="lucky", amount="0.10", count="1")
        done = await run(alice, SEND, action="complete", sessionid=first.get("sessionid"), payload=fixed)
        assert done.get("status") == "completed"
        with pytest.raises(IqError) as info:  # a repeated complete finds the session over: no second packet
            await run(alice, SEND, action="complete", sessionid=first.get("sessionid"), payload=fixed)
        assert info.value.condition == "bad-request"
        assert await ledger(alice) == [("send-debit", "-10"), ("topup", "1000")]
    finally:
        await close(alice, bob)


async def test_the_commands_speak_the_requesters_language(server):
    alice = await slix(server, await add_user(server, "alice"), plugins=tuple(dict.fromkeys((*PLUGINS, *MUC_PLUGINS))),
                       lang="zh-CN")
    alice.register_plugin("redpacket", module=slixmpp_plugin)
    alice.send_presence()
    bob = await user(server, "bob")
    try:
        await topup(server, "alice", 100)
        first = await run(alice, SEND)
        assert xform(first).title == "发红包" and xform(first).field("kind").options[0].label == "拼手气：随机金额"
        again = await run(alice, SEND, action="complete", sessionid=first.get("sessionid"),
                          payload=form_of(alice, to="bob@localhost", amount="5", count="1"))
        assert notes(again) == [("error", "您的余额为 1.00 CNY，此红包需要 5.00 CNY")]
        seen = inbox(bob, "redpacket")
        done = await run(alice, SEND, action="complete", sessionid=first.get("sessionid"),
                         payload=form_of(alice, to="bob@localhost", amount="0.50", count="1", greeting="新年好"))
        (kind, text), = notes(done)
        assert text.startswith("红包 ") and text.endswith("您的余额为 0.50 CNY。")
        msg = await asyncio.wait_for(seen.get(), 5)
        assert msg["body"] == "[红包] alice给你发了一个红包：新年好——请在应用中打开"  # the packet's language: the sender's
        wallet = await run(alice, MY_WALLET)
        assert notes(wallet) == [("info", "余额 0.50 CNY。共 2 条明细，最新的在前。")]
        assert [{f.var: f.value() for f in item}["kind"] for item in xform(wallet).items] == ["发红包", "充值"]
    finally:
        await close(alice, bob)
