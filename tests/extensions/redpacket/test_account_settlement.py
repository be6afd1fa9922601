"""Red packets (urn:xmppd:redpacket:0): what deleting an account does to the money, on SQLite and
MariaDB, in the transaction that deletes the account (``delete_account_txn``), and the send
that races a deletion (``NewPacket.recipient``)."""

from __future__ import annotations

import pytest

from xmppd.storage.accounts import SqlAccountRepository
from xmppd_extensions.redpacket.feature import RedPacket
from xmppd_extensions.redpacket.models import SYSTEM_WALLET, NewPacket, RecipientGone
from xmppd_extensions.redpacket.sql import tombstone

from .conftest import at

D = "example.com"
A, B = f"alice@{D}", f"bob@{D}"
ROOM = f"room@conference.{D}"


def packet(pid: str, sender: str, target: str, shares: tuple[int, ...], *, room: bool = False,
           exclusive: str | None = None, recipient: str | None = None) -> NewPacket:
    return NewPacket(
        id=pid, sender=sender, kind="lucky", greeting="g", target=target, is_room=room, exclusive_to=exclusive,
        client_id=f"c-{pid}", lang="en", created_at=at(0), expires_at=at(3600), shares=shares, recipient=recipient,
    )


STEPS = [("redpacket", RedPacket.delete_account_txn)]


async def test_deleting_an_account_refunds_what_was_addressed_to_it_and_settles_what_it_sent(sql_rp_repo):
    repo = sql_rp_repo
    accounts = SqlAccountRepository(repo._db)
    await accounts.create("alice", D, [])
    bob = await accounts.create("bob", D, [])
    await repo.topup(A, 1000, at())
    await repo.topup(B, 500, at())
    await repo.send(packet("p1", A, B, (300,), recipient=B))  # one-to-one to bob
    await repo.send(packet("p2", A, ROOM, (100,), room=True, exclusive=B, recipient=B))  # exclusive to bob
    await repo.send(packet("p3", A, ROOM, (100, 100), room=True))  # for the room: not bob's
    await repo.send(packet("p4", B, A, (200,), recipient=A))  # bob's own
    await repo.grab("p3", B, at(1))
    before = await repo.audit()

    settled = await accounts.delete_with("bob", D, STEPS)

    assert settled is not None
    assert sorted((r.packet_id, r.sender, r.amount) for r in settled["redpacket"]) == [("p1", A, 300), ("p2", A, 100)]
    assert await accounts.get("bob", D) is None
    for pid in ("p1", "p2", "p4"):
        p = await repo.get_packet(pid)
        assert p is not None and p.refunded and p.status == "expired"
    p3 = await repo.get_packet("p3")
    assert p3 is not None and not p3.refunded and p3.remaining_amount == 100
    # alice: 1000 - 300 - 100 - 200 (p3) + 300 + 100 refunded; bob's 300 + 200 refunded + 100 grabbed: escheated
    assert await repo.balance(A) == 800
    assert await repo.balance(B) == 0 and await repo.balance(SYSTEM_WALLET) == 600
    assert (await repo.history(B)) == ([], False)
    gone, _ = await repo.history(tombstone(bob.id), limit=100)
    assert {e.kind for e in gone} == {"topup", "send_debit", "grab_credit", "refund", "adjust"}
    after = await repo.audit()
    assert after.ok, str(after)
    # Nothing entered or left: the invariant's two sides are what they were.
    assert (after.total_balances + after.unclaimed, after.total_topups + after.total_adjustments) == (
        before.total_balances + before.unclaimed, before.total_topups + before.total_adjustments)

    # A namesake starts at zero, can be sent to, and reuses client ids freely.
    await accounts.create("bob", D, [])
    await repo.topup(B, 50, at(2))
    reused = NewPacket(id="p5", sender=B, kind="lucky", greeting="g", target=A, is_room=False, exclusive_to=None,
                       client_id="c-p4", lang="en", created_at=at(2), expires_at=at(3600), shares=(50,), recipient=A)
    sent = await repo.send(reused)
    assert sent.created and sent.balance == 0
    assert (await repo.audit()).ok


async def test_a_packet_for_an_account_deleted_meanwhile_is_refused_and_nothing_is_debited(sql_rp_repo):
    repo = sql_rp_repo
    accounts = SqlAccountRepository(repo._db)
    await accounts.create("alice", D, [])
    await accounts.create("bob", D, [])
    await repo.topup(A, 1000, at())
    assert await accounts.delete_with("bob", D, STEPS) is not None
    for new in (packet("q1", A, B, (300,), recipient=B), packet("q2", A, ROOM, (10,), room=True, exclusive=B, recipient=B)):
        with pytest.raises(RecipientGone):
            await repo.send(new)
        assert await repo.get_packet(new.id) is None
    assert await repo.balance(A) == 1000
    assert (await repo.audit()).ok
