"""Deleting an account removes everything of it: offline messages (XEP-0160), blocklist
(XEP-0191), vCard (XEP-0054) and private XML (XEP-0049) through ON DELETE CASCADE, rows keyed
by JID (MAM) through the features' ``delete_account_txn``, all in the deleting transaction."""
from __future__ import annotations

import asyncio

import slixmpp
import sqlalchemy as sa
from slixmpp import ET

from xmppd.features.blocking.repository import blocklist
from xmppd.features.offline.repository import offline_messages
from xmppd.features.private.repository import private_storage
from xmppd.features.vcard.repository import vcards
from xmppd.jid import JID

from ..helpers import PASSWORD, add_user, client_ssl_context, slix, slix_close


async def _register_in_band(server, username: str) -> None:
    """XEP-0077 before login, as a client that has no account yet does it."""
    client = slixmpp.ClientXMPP(f"{username}@{server.domain}", PASSWORD)
    client.ssl_context = client_ssl_context(server)
    client.register_plugin("xep_0077")
    client.plugin["xep_0077"].force_registration = True
    done: asyncio.Future = asyncio.get_running_loop().create_future()

    async def register(_form) -> None:
        iq = client.Iq()
        iq["type"] = "set"
        iq["register"]["username"] = username
        iq["register"]["password"] = PASSWORD
        try:
            await iq.send(timeout=5)
            done.set_result(True)
        except Exception as exc:  # handed to the test
            done.set_exception(exc)

    client.add_event_handler("register", register)
    client.connect("127.0.0.1", server.ports["c2s"])
    try:
        await asyncio.wait_for(done, 10)
    finally:
        await slix_close(client)


async def _rows(server, table, account_id: int) -> int:
    async with server.db.transaction(readonly=True) as conn:
        q = sa.select(sa.func.count()).select_from(table).where(table.c.account_id == account_id)
        return int((await conn.execute(q)).scalar_one())


async def test_in_band_account_removal_leaves_no_row_in_any_feature_table(open_server):
    server = open_server
    d = server.domain
    await _register_in_band(server, "dave")
    account = await server.accounts.get("dave", d)
    assert account is not None
    alice = await slix(server, await add_user(server, "alice"))
    # Logged in but without presence: messages to dave go to offline storage.
    dave = await slix(server, f"dave@{d}", plugins=("xep_0054", "xep_0049", "xep_0191", "xep_0077"))
    try:
        card = dave.plugin["xep_0054"].make_vcard()
        card["FN"] = "Dave"
        await dave.plugin["xep_0054"].publish_vcard(card)
        iq = dave.make_iq_set()
        iq.append(ET.fromstring("<query xmlns='jabber:iq:private'><prefs xmlns='urn:example:prefs'/></query>"))
        await iq.send(timeout=5)
        await dave.plugin["xep_0191"].block([f"eve@{d}"])
        for i in range(2):
            alice.send_message(mto=f"dave@{d}", mbody=f"m{i}", mtype="chat")
        features = server.features
        for _ in range(100):
            if await features["offline"].repo.count("dave", d) == 2:
                break
            await asyncio.sleep(0.01)
        tables = (offline_messages, blocklist, vcards, private_storage)
        assert [await _rows(server, t, account.id) for t in tables] == [2, 1, 1, 1]

        remove = dave.make_iq_set()
        remove.append(ET.fromstring("<query xmlns='jabber:iq:register'><remove/></query>"))
        await remove.send(timeout=5)
        for _ in range(200):
            if await server.accounts.get("dave", d) is None:
                break
            await asyncio.sleep(0.01)
        assert await server.accounts.get("dave", d) is None

        assert await features["offline"].repo.count("dave", d) == 0
        assert await features["offline"].repo.fetch("dave", d) == []
        assert await features["blocking"].repo.get("dave", d) == frozenset()
        assert await features["vcard"].repo.get("dave", d) is None
        assert await features["private"].repo.namespaces("dave", d) == []
        assert [await _rows(server, t, account.id) for t in tables] == [0, 0, 0, 0]
        assert not await features["blocking"].is_blocked(JID("dave", d), JID("eve", d))
    finally:
        await slix_close(dave)
        await slix_close(alice)


async def test_deletion_is_one_transaction_every_feature_contributes_to(server):
    """Rows keyed by account id go by ON DELETE CASCADE, rows keyed by JID (MAM preferences)
    by the features' ``delete_account_txn``: all in the transaction that deletes the account,
    so a namesake registered right after finds nothing, with no hook left to run."""
    d = server.domain
    await add_user(server, "erin")
    f = server.features
    from datetime import UTC, datetime

    from xmppd.features.mam.repository import Prefs

    now = datetime.now(UTC)
    await f["offline"].repo.store("erin", d, "<m/>", now, 10)
    await f["blocking"].repo.block("erin", d, ["x@y"], 10)
    await f["vcard"].repo.set("erin", d, "<vCard xmlns='vcard-temp'/>", now)
    await f["private"].repo.set("erin", d, [("urn:x", "<a xmlns='urn:x'/>")], 10)
    await f["mam"].repo.set_prefs(f"erin@{d}", Prefs("never"))
    assert await server.account_service.delete("erin")
    await add_user(server, "erin")
    assert await f["offline"].repo.count("erin", d) == 0
    assert await f["blocking"].repo.get("erin", d) == frozenset()
    assert await f["vcard"].repo.get("erin", d) is None
    assert await f["private"].repo.namespaces("erin", d) == []
    assert await f["mam"].repo.get_prefs(f"erin@{d}") is None
