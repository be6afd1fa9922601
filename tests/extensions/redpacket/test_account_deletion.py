"""Deleting an account settles its red packets in the transaction that deletes it (issue 15):
packets addressed to it go back to their senders, the packets it sent and its balance to the
system wallet, and whoever registers the name next, at once, inherits nothing. Over real
sockets with slixmpp, through every door: XEP-0077 cancel, XEP-0133 delete-user, xmppctl."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import slixmpp
from slixmpp import ET
from slixmpp.exceptions import IqError

from xmppd.cli import xmppctl_main
from xmppd.core.feature import Feature
from xmppd_extensions.redpacket import slixmpp_plugin
from xmppd_extensions.redpacket.models import SYSTEM_WALLET

from ...features.muc_support import PLUGINS, create, join
from ...features.test_account_cleanup import _register_in_band
from ...features.test_adhoc import notes
from ...features.test_admin import two_step
from ...helpers import add_user, running_server, slix, slix_close
from .servers import STRANGERS, disabled_option
from .test_wire import app_condition, inbox

pytestmark = pytest.mark.interop

ROOM = "party@conference.localhost"
BOB = "bob@localhost"


@pytest.fixture(params=["sqlite", "mariadb"])
async def del_server(request, tmp_path: Path):
    overrides = [
        disabled_option({"muc", "register", "admin"}),
        "registration.open=true",
        'server.admins=["admin@localhost"]',
        "redpacket.expiry=600.0",
    ]
    if request.param == "mariadb":
        url = request.getfixturevalue("mariadb_server").create_database()
        overrides += [f"storage.url={url.render_as_string(hide_password=False)}", "storage.auto_upgrade=true"]
    async with running_server(tmp_path, STRANGERS, *overrides) as srv:
        yield srv


async def login(server, jid: str, plugins: tuple[str, ...] = PLUGINS) -> slixmpp.ClientXMPP:
    c = await slix(server, jid, plugins=plugins)
    c.register_plugin("redpacket", module=slixmpp_plugin)
    c.send_presence()
    return c


async def cannot_open(c: slixmpp.ClientXMPP, packet_id: str) -> str:
    with pytest.raises(IqError) as info:
        await c.plugin["redpacket"].open_packet(packet_id)
    return app_condition(info.value)[0]


async def fresh_namesake_inherits_nothing(server, packet_id: str) -> None:
    """The new bob: no share of the old bob's packet, an empty wallet and history."""
    nb = await login(server, BOB)
    try:
        assert await cannot_open(nb, packet_id) == "expired"
        assert await nb.plugin["redpacket"].balance() == 0
        assert list((await nb.plugin["redpacket"].history())["substanzas"]) == []
    finally:
        await slix_close(nb)


async def test_self_removed_account_is_settled_before_the_answer_and_the_name_registers_at_once(del_server):
    feat = del_server.features["redpacket"]
    a = await login(del_server, await add_user(del_server, "alice"))
    b = await login(del_server, await add_user(del_server, "bob"), plugins=(*PLUGINS, "xep_0077"))
    try:
        await feat.repo.topup("alice@localhost", 1000, feat.now())
        await feat.repo.topup(BOB, 70, feat.now())
        got, refunds = inbox(b, "redpacket"), inbox(a, "redpacket_refunded")
        sent = await a.plugin["redpacket"].send_packet(BOB, client_id="to-bob", total=300)
        await asyncio.wait_for(got.get(), 5)
        remove = b.make_iq_set()
        remove.append(ET.fromstring("<query xmlns='jabber:iq:register'><remove/></query>"))
        await remove.send(timeout=5)
        # Answered: the name is free already, no `conflict`.
        await _register_in_band(del_server, "bob")
        await fresh_namesake_inherits_nothing(del_server, sent["id"])
        notice = await asyncio.wait_for(refunds.get(), 5)
        assert (notice["rp_refunded"]["id"], notice["rp_refunded"]["amount"]) == (sent["id"], "300")
        assert await a.plugin["redpacket"].balance() == 1000
        assert await feat.repo.balance(SYSTEM_WALLET) == 70
        assert (await feat.repo.audit()).ok
    finally:
        await slix_close(a)
        await slix_close(b)


async def test_admin_deleted_member_loses_the_exclusive_room_packet_and_a_namesake_cannot_claim_it(del_server):
    feat = del_server.features["redpacket"]
    a = await login(del_server, await add_user(del_server, "alice"))
    b = await login(del_server, await add_user(del_server, "bob"))
    admin = await slix(del_server, await add_user(del_server, "admin"), plugins=("xep_0030", "xep_0004", "xep_0050"))
    try:
        await create(a, ROOM, "Alice")
        await join(b, ROOM, "Bob")
        await feat.repo.topup("alice@localhost", 500, feat.now())
        sent = await a.plugin["redpacket"].send_packet(ROOM, client_id="ex", total=88, exclusive=BOB)
        done = await two_step(admin, "delete-user", accountjids=[BOB])
        assert notes(done) == [("info", "Deleted: bob@localhost.")]
        await _register_in_band(del_server, "bob")
        nb = await login(del_server, BOB)
        try:
            await join(nb, ROOM, "Bob2")
            assert await cannot_open(nb, sent["id"]) == "expired"
        finally:
            await slix_close(nb)
        assert await a.plugin["redpacket"].balance() == 500
        assert (await feat.repo.audit()).ok
    finally:
        for c in (a, b, admin):
            await slix_close(c)


async def test_xmppctl_user_del_settles_packets_both_ways_in_one_transaction(tmp_path: Path):
    overrides = [disabled_option(), "redpacket.expiry=600.0"]
    ctl = ["--set", f"server.data_dir={tmp_path.as_posix()}", "--set", "server.domain=localhost"]
    async with running_server(tmp_path, STRANGERS, *overrides) as srv:
        feat = srv.features["redpacket"]
        a = await login(srv, await add_user(srv, "alice"), plugins=())
        b = await login(srv, await add_user(srv, "bob"), plugins=())
        try:
            await feat.repo.topup("alice@localhost", 1000, feat.now())
            await feat.repo.topup(BOB, 500, feat.now())
            to_bob = await a.plugin["redpacket"].send_packet(BOB, client_id="a1", total=300)
            from_bob = await b.plugin["redpacket"].send_packet("alice@localhost", client_id="b1", total=200)
        finally:
            await slix_close(b)
        try:
            assert await asyncio.to_thread(xmppctl_main, [*ctl, "user", "del", BOB]) == 0
            assert await asyncio.to_thread(xmppctl_main, [*ctl, "user", "add", BOB, "--password", "another secret"]) == 0
            # bob's own packet went back with his account: nobody opens it any more.
            assert await cannot_open(a, from_bob["id"]) == "expired"
            nb = await slix(srv, BOB, "another secret")
            nb.register_plugin("redpacket", module=slixmpp_plugin)
            try:
                assert await cannot_open(nb, to_bob["id"]) == "expired"
                assert await nb.plugin["redpacket"].balance() == 0
            finally:
                await slix_close(nb)
            assert await a.plugin["redpacket"].balance() == 1000
            assert await feat.repo.balance(SYSTEM_WALLET) == 500
            assert (await feat.repo.audit()).ok
        finally:
            await slix_close(a)


class _Crash(Feature):
    """A feature whose deletion step fails, after every other feature's step has run."""

    name = "crash"

    @classmethod
    async def delete_account_txn(cls, conn, deletion):  # type: ignore[no-untyped-def]
        raise RuntimeError("the disk is full")


async def test_a_failing_deletion_step_rolls_the_whole_deletion_back(del_server):
    """One transaction: a crash at any step leaves the account, its packets and every wallet as
    they were (the audit proves the money invariant), and a retry then completes."""
    feat = del_server.features["redpacket"]
    await add_user(del_server, "bob")
    a = await login(del_server, await add_user(del_server, "alice"), plugins=())
    try:
        await feat.repo.topup("alice@localhost", 1000, feat.now())
        await feat.repo.topup(BOB, 40, feat.now())
        sent = await a.plugin["redpacket"].send_packet(BOB, client_id="c", total=300)
        del_server.installed_features["crash"] = _Crash
        try:
            with pytest.raises(RuntimeError, match="disk is full"):
                await del_server.account_service.delete("bob")
        finally:
            del del_server.installed_features["crash"]
        assert await del_server.accounts.get("bob", "localhost") is not None
        packet = await feat.repo.get_packet(sent["id"])
        assert packet is not None and not packet.refunded and packet.remaining_amount == 300
        assert (await feat.repo.balance("alice@localhost"), await feat.repo.balance(BOB)) == (700, 40)
        assert await feat.repo.balance(SYSTEM_WALLET) == 0
        assert (await feat.repo.audit()).ok
        assert await del_server.account_service.delete("bob")
        assert (await feat.repo.balance("alice@localhost"), await feat.repo.balance(SYSTEM_WALLET)) == (1000, 40)
        assert (await feat.repo.audit()).ok
    finally:
        await slix_close(a)
