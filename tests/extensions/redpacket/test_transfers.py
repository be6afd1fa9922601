"""转账 transfers (issue 21): a one-to-one transfer to a contact that its recipient accepts, or
that returns to the sender after ``redpacket.transfer_expiry``. Through the wire (slixmpp), and
at the repository on memory, SQLite and MariaDB: an accept racing the return moves the money
once, and the money invariant (audit) holds."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest
from slixmpp.exceptions import IqError

from xmppd_extensions.redpacket import slixmpp_plugin
from xmppd_extensions.redpacket.models import PacketExpired
from xmppd_extensions.redpacket.slixmpp_plugin import entries

from ...features.pep_support import befriend
from ...helpers import add_user, slix, slix_close
from .conftest import at
from .schema_check import assert_valid_xml
from .servers import rp_running_server
from .test_repository import A, B, new
from .test_wire import app_condition, inbox, rp_xml

ATTACH = "{urn:xmpp:message-attaching:1}attach-to"


async def client(server, jid: str):
    c = await slix(server, jid)
    c.register_plugin("redpacket", module=slixmpp_plugin)
    c.send_presence()
    return c


@pytest.mark.interop
async def test_transfer_to_a_contact_is_accepted_once(tmp_path):
    async with rp_running_server(tmp_path, "redpacket.transfer_expiry=600.0") as srv:
        feat = srv.features["redpacket"]
        alice, bob, carol = [await add_user(srv, n) for n in ("alice", "bob", "carol")]
        await befriend(srv, alice, bob)
        await befriend(srv, alice, carol)
        await feat.repo.topup(alice, 1000, feat.now())
        a, b, c = await client(srv, alice), await client(srv, bob), await client(srv, carol)
        try:
            offers, accepted = inbox(b, "redpacket_transfer"), inbox(a, "redpacket_accepted")
            t = await a.plugin["redpacket"].transfer(bob, 300, client_id="t1", note="房租", lang="en")
            assert_valid_xml(rp_xml(t))
            assert t["amount"] == "300" and t["balance"] == "700"
            offer = await asyncio.wait_for(offers.get(), 5)
            assert offer["type"] == "chat" and offer["id"] == f"rp-{t['id']}" and "300" in offer["body"].replace(".", "")
            assert_valid_xml(rp_xml(offer["rp_transfer"]))
            assert offer["rp_transfer"]["amount"] == "300" and offer["rp_transfer"]["note"] == "房租"
            again = await a.plugin["redpacket"].transfer(bob, 300, client_id="t1", note="房租")  # a retry
            assert again["retry"] == "true" and again["id"] == t["id"] and await a.plugin["redpacket"].balance() == 700
            with pytest.raises(IqError) as info:  # a transfer is accepted, not opened
                await b.plugin["redpacket"].open_packet(t["id"])
            assert info.value.iq["error"]["condition"] == "bad-request"
            with pytest.raises(IqError) as info:  # only its recipient accepts it
                await c.plugin["redpacket"].accept(t["id"])
            assert info.value.iq["error"]["condition"] == "forbidden"
            got = await b.plugin["redpacket"].accept(t["id"])
            assert_valid_xml(rp_xml(got))
            assert got["amount"] == "300" and got["balance"] == "300"
            n = await asyncio.wait_for(accepted.get(), 5)
            assert n["type"] == "normal" and n["rp_accepted"]["by"] == bob and n.xml.find(ATTACH).get("id") == f"rp-{t['id']}"
            with pytest.raises(IqError) as info:
                await b.plugin["redpacket"].accept(t["id"])
            assert app_condition(info.value)[0] == "already-grabbed"
            state = await a.plugin["redpacket"].details(t["id"])
            assert state["transfer"] == "true" and state["status"] == "finished" and not state["best-luck"]
            with pytest.raises(IqError) as info:  # a transfer goes to one contact, never to a stranger
                await b.plugin["redpacket"].transfer(carol, 10, client_id="x")
            assert app_condition(info.value)[0] == "not-a-contact"
            report = await feat.repo.audit()
            assert report.ok and report.total_balances == 1000
        finally:
            for x in (a, b, c):
                await slix_close(x)


@pytest.mark.interop
async def test_a_transfer_not_accepted_in_time_returns_to_the_sender(tmp_path):
    async with rp_running_server(tmp_path, "redpacket.transfer_expiry=0.5", "redpacket.sweep_interval=5.0") as srv:
        feat = srv.features["redpacket"]
        alice, bob = await add_user(srv, "alice"), await add_user(srv, "bob")
        await befriend(srv, alice, bob)
        await feat.repo.topup(alice, 500, feat.now())
        a, b = await client(srv, alice), await client(srv, bob)
        try:
            returned = inbox(a, "redpacket_refunded")
            t = await a.plugin["redpacket"].transfer(bob, 200, client_id="late")
            r = await asyncio.wait_for(returned.get(), 5)  # the sweeper wakes for the deadline
            assert r["rp_refunded"]["id"] == t["id"] and r["rp_refunded"]["amount"] == "200"
            assert await a.plugin["redpacket"].balance() == 500
            with pytest.raises(IqError) as info:
                await b.plugin["redpacket"].accept(t["id"])
            assert app_condition(info.value)[0] == "expired"
            assert await b.plugin["redpacket"].balance() == 0
            assert (await feat.repo.audit()).ok
        finally:
            await slix_close(a)
            await slix_close(b)


def transfer(pid: str, amount: int = 250):
    return dataclasses.replace(new(pid, (amount,), kind="equal", target=B), is_room=False, transfer=True)


async def test_the_transfer_mark_is_stored(rp_repo):
    await rp_repo.topup(A, 1000, at())
    sent = await rp_repo.send(transfer("t1"))
    assert sent.packet.transfer and (await rp_repo.get_packet("t1")).transfer
    await rp_repo.send(new("p1", (100,), kind="equal", target=B))
    assert not (await rp_repo.get_packet("p1")).transfer
    assert (await rp_repo.audit()).ok


@pytest.mark.parametrize("declined", [False, True], ids=["returned", "declined"])
async def test_an_accept_racing_the_return_moves_the_money_once(rp_repo, declined):
    """On memory, SQLite and MariaDB: an accept racing the return (a forced refund) or the
    recipient's decline (the same refund) moves each transfer to one side, whole, once."""
    await rp_repo.topup(A, 10000, at())
    for i in range(20):
        await rp_repo.send(transfer(f"t{i}", 100))

    async def accept(pid: str):
        try:
            return (await rp_repo.grab(pid, B, at(1))).amount
        except PacketExpired:
            return 0

    async def give_back(pid: str):
        r = await rp_repo.refund(pid, at(1), force=True, declined=declined)
        return r.amount if r is not None else 0

    results = await asyncio.gather(*(f(f"t{i}") for i in range(20) for f in (accept, give_back)))
    for i in range(20):  # each transfer went to exactly one side, whole
        assert sorted(results[2 * i: 2 * i + 2]) == [0, 100]
        status = (await rp_repo.get_packet(f"t{i}")).status
        assert status == "finished" if results[2 * i] else status == ("declined" if declined else "expired")
    assert await rp_repo.balance(A) + await rp_repo.balance(B) == 10000
    report = await rp_repo.audit()
    assert report.ok and report.unclaimed == 0, str(report)


@pytest.fixture(params=["sqlite", "mariadb"])
async def offline_server(request, tmp_path):
    overrides = ["redpacket.transfer_expiry=600.0"]
    if request.param == "mariadb":
        url = request.getfixturevalue("mariadb_server").create_database()
        overrides += [f"storage.url={url.render_as_string(hide_password=False)}", "storage.auto_upgrade=true"]
    async with rp_running_server(tmp_path, *overrides, keep=frozenset({"offline"})) as srv:
        yield srv


@pytest.mark.interop
async def test_a_declined_transfer_returns_at_once_and_cannot_be_accepted(offline_server):
    srv = offline_server
    feat = srv.features["redpacket"]
    alice, bob, carol = [await add_user(srv, n) for n in ("alice", "bob", "carol")]
    await befriend(srv, alice, bob)
    await feat.repo.topup(alice, 1000, feat.now())
    a, b, c = await client(srv, alice), await client(srv, bob), await client(srv, carol)
    try:
        t = await a.plugin["redpacket"].transfer(bob, 300, client_id="d1", lang="en")
        kept = await a.plugin["redpacket"].transfer(bob, 100, client_id="d2")
        assert await a.plugin["redpacket"].balance() == 600
        await slix_close(a)  # the sender is offline when the transfer is declined
        with pytest.raises(IqError) as info:  # only its recipient declines it
            await c.plugin["redpacket"].decline(t["id"])
        assert info.value.iq["error"]["condition"] == "forbidden"
        got = await b.plugin["redpacket"].decline(t["id"])
        assert_valid_xml(rp_xml(got))
        assert got["id"] == t["id"] and got["amount"] == "300" and await b.plugin["redpacket"].balance() == 0
        for verb in ("accept", "decline"):  # declined is final
            with pytest.raises(IqError) as info:
                await getattr(b.plugin["redpacket"], verb)(t["id"])
            assert info.value.iq["error"]["condition"] == "not-allowed"
            assert app_condition(info.value)[0] == "transfer-declined"
        await b.plugin["redpacket"].accept(kept["id"])
        with pytest.raises(IqError) as info:  # an accepted transfer cannot be declined
            await b.plugin["redpacket"].decline(kept["id"])
        assert app_condition(info.value)[0] == "already-grabbed"
        assert await b.plugin["redpacket"].balance() == 100
        # the sender's notice was stored: it reaches them at their next login, on the card
        a = await slix(srv, alice)
        a.register_plugin("redpacket", module=slixmpp_plugin)
        declined = inbox(a, "redpacket_declined")
        a.send_presence()
        n = await asyncio.wait_for(declined.get(), 5)
        assert_valid_xml(rp_xml(n["rp_declined"]))
        assert n["type"] == "normal" and n["rp_declined"]["by"] == bob and n["rp_declined"]["amount"] == "300"
        assert n.xml.find(ATTACH).get("id") == f"rp-{t['id']}" and "declined" in n["body"]
        assert await a.plugin["redpacket"].balance() == 900
        state = await a.plugin["redpacket"].details(t["id"])
        assert state["status"] == "declined" and state["refunded"] == "300"
        entry = entries((await a.plugin["redpacket"].history(max=1)), slixmpp_plugin.Entry)[0]
        assert entry["kind"] == "refund" and entry["reason"] == "declined" and entry["amount"] == "300"
        # accept and decline racing, twenty times: each transfer goes to one side, whole, once
        ids = [(await a.plugin["redpacket"].transfer(bob, 10, client_id=f"r{i}"))["id"] for i in range(20)]
        rp = b.plugin["redpacket"]

        async def attempt(verb: str, pid: str) -> str:
            try:
                await getattr(rp, verb)(pid)
                return verb
            except IqError as exc:
                return app_condition(exc)[0]

        outcomes = await asyncio.gather(*(attempt(v, pid) for pid in ids for v in ("accept", "decline")))
        won = 0
        for i in range(20):
            pair = outcomes[2 * i: 2 * i + 2]
            assert pair in (["accept", "already-grabbed"], ["transfer-declined", "decline"]), pair
            won += pair[0] == "accept"
        assert await rp.balance() == 100 + 10 * won
        assert await a.plugin["redpacket"].balance() == 900 - 10 * won
        report = await feat.repo.audit()
        assert report.ok and report.unclaimed == 0 and report.total_balances == 1000, str(report)
    finally:
        for x in (a, b, c):
            await slix_close(x)
