"""Red packets (urn:xmppd:redpacket:0): the operators' XEP-0050 ad-hoc commands over the wire with
slixmpp's xep_0050/xep_0004 plugins; effects seen through the redpacket slixmpp plugin."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from slixmpp.exceptions import IqError

from xmppd_extensions.redpacket import slixmpp_plugin
from xmppd_extensions.redpacket.commands import ADJUST, AUDIT, FORM_TYPE, PACKET, REFUND, TOPUP
from xmppd_extensions.redpacket.money import parse_amount

from ...features.muc_support import PLUGINS as MUC_PLUGINS
from ...features.muc_support import create, join
from ...features.test_adhoc import PLUGINS, form_of, notes, run, xform
from ...helpers import add_user, slix, slix_close
from .servers import STRANGERS, rp_running_server

pytestmark = pytest.mark.interop

NODES = [TOPUP, ADJUST, PACKET, REFUND, AUDIT]
ROOM = "party@conference.localhost"


@pytest.fixture
async def server(tmp_path: Path):
    async with rp_running_server(tmp_path, STRANGERS, 'server.admins=["admin@localhost"]', "redpacket.expiry=600.0", muc=True) as srv:
        yield srv


async def user(server: Any, name: str) -> Any:
    c = await slix(server, await add_user(server, name), plugins=tuple(dict.fromkeys((*PLUGINS, *MUC_PLUGINS))))
    c.register_plugin("redpacket", module=slixmpp_plugin)
    c.send_presence()
    return c


async def command(c: Any, node: str, **values: str) -> Any:
    """Execute (the form comes back), then complete it with ``values``."""
    first = await run(c, node)
    assert first.get("status") == "executing"
    assert xform(first).form_type == FORM_TYPE
    return await run(c, node, action="complete", sessionid=first.get("sessionid"), payload=form_of(c, **values))


def field_desc(cmd: Any, var: str) -> str | None:
    f = xform(cmd).field(var)
    return f.desc if f is not None else None


def test_amounts_are_parsed_in_display_units_without_floats():
    assert parse_amount("12.34", 2) == 1234
    assert parse_amount("12.3", 2) == 1230
    assert parse_amount("1,000", 2) == 100000
    assert parse_amount("0.01", 2) == 1
    assert parse_amount("-1.50", 2, signed=True) == -150
    assert parse_amount("+7", 0, signed=True) == 7
    assert parse_amount("0.29", 2) == 29  # 0.29 * 100 is 28.999… in floating point
    for bad, signed, why in [("12.345", False, "at most 2 digits"), ("-1", False, "without a sign"), ("0.00", False, "zero"),
                             ("abc", False, "not an amount"), ("1e3", False, "not an amount"), ("", True, "not an amount"),
                             ("1" * 13, False, "too large"), ("1.5", False, "whole number")]:
        with pytest.raises(ValueError, match=why):
            parse_amount(bad, 0 if why == "whole number" else 2, signed=signed)


async def test_admin_tops_up_and_adjusts_a_wallet(server):
    admin, bob = await user(server, "admin"), await user(server, "bob")
    try:
        assert await bob.plugin["redpacket"].balance() == 0
        done = await command(admin, TOPUP, accountjid="bob@localhost", amount="12.34", reason="welcome")
        assert done.get("status") == "completed"
        assert notes(done)[0][0] == "info" and "balance 12.34 CNY" in notes(done)[0][1]
        assert await bob.plugin["redpacket"].balance() == 1234
        done = await command(admin, ADJUST, accountjid="bob@localhost", amount="-0.34", reason="duplicate top-up")
        assert "bob@localhost: -0.34 CNY, balance 12.00 CNY" in notes(done)[0][1]
        assert await bob.plugin["redpacket"].balance() == 1200
        entries = [(e["kind"], e["amount"], e["reason"]) for e in await bob.plugin["redpacket"].history()]
        assert entries[:2] == [("adjust", "-34", "duplicate top-up"), ("topup", "1234", "welcome")]
    finally:
        await slix_close(admin)
        await slix_close(bob)


@pytest.mark.parametrize(
    ("node", "values", "var", "problem"),
    [
        (ADJUST, {"accountjid": "bob@localhost", "amount": "5"}, "reason", "Reason is required"),
        (ADJUST, {"accountjid": "bob@localhost", "amount": "-5", "reason": "oops"}, "amount", "cannot go below zero"),
        (ADJUST, {"accountjid": "bob@localhost", "amount": "0", "reason": "x"}, "amount", "must not be zero"),
        (TOPUP, {"accountjid": "bob@localhost", "amount": "1.234"}, "amount", "at most 2 digits"),
        (TOPUP, {"accountjid": "bob@localhost", "amount": "-3"}, "amount", "without a sign"),
        (TOPUP, {"accountjid": "nobody@localhost", "amount": "3"}, "accountjid", "there is no account nobody@localhost"),
        (TOPUP, {"accountjid": "bob@elsewhere.example", "amount": "3"}, "accountjid", "is not an account of localhost"),
        (PACKET, {"packet": "0123456789abcdef0123"}, "packet", "there is no red packet"),
        (REFUND, {"packet": "nope"}, "packet", "there is no red packet"),
    ],
)
async def test_bad_values_return_the_form_with_the_problem(server, node, values, var, problem):
    admin, bob = await user(server, "admin"), await user(server, "bob")
    try:
        first = await run(admin, node)
        again = await run(admin, node, action="complete", sessionid=first.get("sessionid"), payload=form_of(admin, **values))
        assert again.get("status") == "executing" and again.get("sessionid") == first.get("sessionid")
        (kind, text), = notes(again)
        assert kind == "error" and problem in text
        assert problem in (field_desc(again, var) or "")
        assert await bob.plugin["redpacket"].balance() == 0  # nothing moved
        # the session lives on: corrected values complete it
        if node == ADJUST and var == "reason":
            fixed = form_of(admin, **values, reason="goodwill")
            done = await run(admin, node, action="complete", sessionid=first.get("sessionid"), payload=fixed)
            assert done.get("status") == "completed"
            assert await bob.plugin["redpacket"].balance() == 500
    finally:
        await slix_close(admin)
        await slix_close(bob)


async def test_non_admin_neither_sees_nor_runs_the_commands(server):
    admin, mallory = await user(server, "admin"), await user(server, "mallory")
    try:
        seen = {i[1] for i in (await mallory.plugin["xep_0050"].get_commands(jid="localhost"))["disco_items"]["items"]}
        assert not seen & set(NODES)
        admin_seen = {i[1] for i in (await admin.plugin["xep_0050"].get_commands(jid="localhost"))["disco_items"]["items"]}
        assert set(NODES) <= admin_seen
        for n in NODES:
            with pytest.raises(IqError) as e:
                await run(mallory, n)
            assert e.value.condition == "forbidden", n
            with pytest.raises(IqError) as e:
                await mallory.plugin["xep_0030"].get_info(jid="localhost", node=n)
            assert e.value.condition == "item-not-found"
        # nor can a non-admin complete a session an admin started
        sid = (await run(admin, TOPUP)).get("sessionid")
        with pytest.raises(IqError) as e:
            await run(mallory, TOPUP, action="complete", sessionid=sid,
                      payload=form_of(mallory, accountjid="mallory@localhost", amount="100"))
        assert e.value.condition == "forbidden"
        assert await mallory.plugin["redpacket"].balance() == 0
    finally:
        await slix_close(admin)
        await slix_close(mallory)


async def test_inspect_force_refund_once_and_audit(server):
    admin, alice, bob = await user(server, "admin"), await user(server, "alice"), await user(server, "bob")
    try:
        await create(alice, ROOM, "Alice")
        await join(bob, ROOM, "Bob")
        await command(admin, TOPUP, accountjid="alice@localhost", amount="10")
        refunded = asyncio.Queue()
        alice.add_event_handler("redpacket_refunded", refunded.put_nowait)
        sent = await alice.plugin["redpacket"].send_packet(ROOM, client_id="adm1", kind="equal", each=150, count=3, greeting="新年快乐")
        assert sent["balance"] == "550"
        got_a = await alice.plugin["redpacket"].open_packet(sent["id"])
        got_b = await bob.plugin["redpacket"].open_packet(sent["id"])
        assert got_a["amount"] == got_b["amount"] == "150"

        shown = await command(admin, PACKET, packet=sent["id"])
        assert shown.get("status") == "completed"
        assert notes(shown) == [("info", "equal packet from alice@localhost: 2 of 3 shares taken, 1.50 CNY left, status open.")]
        form = xform(shown)
        values = form.values()
        assert str(values["sender"]) == "alice@localhost" and values["kind"] == "equal"
        assert values["total"] == "4.50 CNY" and values["count"] == "3"
        assert values["remaining"] == "1 shares, 1.50 CNY" and values["refunded"] == "no" and values["best-luck"] == "-"
        assert values["greeting"] == "新年快乐" and values["expires"].endswith("Z")
        assert [f.var for f in form.reported] == ["by", "amount", "at", "best"]
        rows = [{f.var: f.value() for f in item} for item in form.items]
        assert [(str(r["by"]), r["amount"]) for r in rows] == [("alice@localhost", "1.50 CNY"), ("bob@localhost", "1.50 CNY")]
        assert all(r["at"].endswith("Z") for r in rows)

        done = await command(admin, REFUND, packet=sent["id"])
        assert notes(done) == [("info", f"Refunded 1.50 CNY of {sent['id']} to alice@localhost.")]
        notice = await asyncio.wait_for(refunded.get(), 5)
        assert notice["rp_refunded"]["id"] == sent["id"] and notice["rp_refunded"]["amount"] == "150"
        assert await alice.plugin["redpacket"].balance() == 550 + 150 + 150
        again = await command(admin, REFUND, packet=sent["id"])
        assert again.get("status") == "completed"
        assert notes(again) == [("warn", f"{sent['id']} is already refunded (1.50 CNY went back to alice@localhost).")]
        assert await alice.plugin["redpacket"].balance() == 850
        shown = xform(await command(admin, PACKET, packet=sent["id"])).values()
        assert shown["refunded"] == "1.50 CNY" and shown["status"] == "expired"

        audit = await run(admin, AUDIT)  # no form: runs at once
        assert audit.get("status") == "completed"
        (kind, text), = notes(audit)
        report = await server.features["redpacket"].repo.audit()
        assert kind == "info" and text == str(report)  # the same text as `xmppctl wallet audit`
        assert text.splitlines()[-1] == "audit OK" and "topups 1000 + adjustments 0 = 1000" in text
    finally:
        for c in (admin, alice, bob):
            await slix_close(c)
