"""Every change the outbox reports writes its event in the change's own transaction (SQLite
and MariaDB): accounts, mutes, customer-service chats and tickets, red-packet refunds."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from xmppd.storage.accounts import SqlAccountRepository
from xmppd.storage.engine import Database
from xmppd.webhooks import events as E
from xmppd.webhooks.delivery import OutboxStore
from xmppd.webhooks.outbox import Outbox
from xmppd_extensions.customer_service.repository import SessionRecord, SqlCsRepository
from xmppd_extensions.mute.repository import Mute, SqlMuteRepository
from xmppd_extensions.redpacket.models import NewPacket
from xmppd_extensions.redpacket.sql import SqlRedPacketRepository

pytestmark = pytest.mark.asyncio


async def written(db: Database) -> list[tuple[str, str, dict]]:
    rows = await OutboxStore(db).list(dead=None, limit=1000)
    return [(r.event, r.subject, json.loads(r.body)["data"]) for r in rows]


async def test_accounts_mutes_chats_tickets_refunds_write_their_events(migrated_db: Database) -> None:
    box = Outbox(E.EVENTS)
    now = datetime.now(UTC)
    accounts = SqlAccountRepository(migrated_db, outbox=box)
    await accounts.create("ann", "x", ())
    await accounts.set_disabled("ann", "x", True, "spam")
    await accounts.set_disabled("ann", "x", False)
    mutes = SqlMuteRepository(migrated_db, box)
    await mutes.put(Mute("room@c.x", "ann@x", now + timedelta(minutes=5), "shouting", "mod@x", now))
    await mutes.remove("room@c.x", "ann@x")
    until = now + timedelta(seconds=1)
    await mutes.put(Mute("room@c.x", "bob@x", until, None, "mod@x", now))
    assert await mutes.expire("room@c.x", "bob@x", until)
    cs = SqlCsRepository(migrated_db, box)
    s = SessionRecord("s1", "help", "help", "ann@x", "waiting", 1, now, now)
    await cs.save_session(s)
    await cs.save_session(s.replace(line_seq=2))  # no transition: no event
    s = s.replace(state="active", agent="agent@x", assigned_at=now)
    await cs.save_session(s)
    s = s.replace(state="closed", closed_at=now, close_reason="done")
    await cs.save_session(s)
    assert await cs.rate("s1", 5, "great")
    assert not await cs.rate("s1", 1, "again")  # rated once: no second event
    ticket = await cs.add_ticket("help", "ann@x", "call me", now)
    rp = SqlRedPacketRepository(migrated_db, box)
    await rp.topup("ann@x", 100, now)
    await rp.send(NewPacket("p1", "ann@x", "lucky", "hi", "room@c.x", True, None, "c1", "en", now, now + timedelta(hours=1), (60, 40)))
    await rp.refund("p1", now, force=True)
    await accounts.delete("ann", "x")
    got = await written(migrated_db)
    assert [(e, s) for e, s, _ in got] == [
        (E.ACCOUNT_CREATED, "user:ann@x"), (E.ACCOUNT_DISABLED, "user:ann@x"), (E.ACCOUNT_ENABLED, "user:ann@x"),
        (E.MUTE_SET, "mute:room@c.x:ann@x"), (E.MUTE_LIFTED, "mute:room@c.x:ann@x"),
        (E.MUTE_SET, "mute:room@c.x:bob@x"), (E.MUTE_LIFTED, "mute:room@c.x:bob@x"),
        (E.CS_CHAT_OPENED, "cs:s1"), (E.CS_CHAT_ASSIGNED, "cs:s1"), (E.CS_CHAT_CLOSED, "cs:s1"), (E.CS_CHAT_RATED, "cs:s1"),
        (E.CS_TICKET_CREATED, f"cs-ticket:{ticket.id}"),
        (E.WALLET_TOPUP, "wallet:ann@x"), (E.REDPACKET_SENT, "redpacket:p1"), (E.REDPACKET_REFUNDED, "redpacket:p1"),
        (E.ACCOUNT_DELETED, "user:ann@x"),
    ]
    data = {e: d for e, _, d in got}
    assert data[E.ACCOUNT_DISABLED] == {"jid": "ann@x", "reason": "spam"}
    assert data[E.MUTE_LIFTED] == {"room": "room@c.x", "jid": "bob@x", "expired": True}
    assert data[E.CS_CHAT_CLOSED]["reason"] == "done" and data[E.CS_CHAT_RATED]["rating"] == 5
    assert data[E.REDPACKET_REFUNDED] == {"id": "p1", "sender": "ann@x", "amount": 100, "balance": 100, "reason": "forced"}
    assert data[E.REDPACKET_SENT]["total"] == 100 and data[E.REDPACKET_SENT]["balance"] == 0
