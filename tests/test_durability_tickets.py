"""Commit tickets (xmppd.core.durability) settle their waiters in the store's own turn of the event
loop: what a commit releases (held deliveries, XEP-0198 acks) goes out when ``committed()`` runs,
not one loop turn later behind everything else that became ready meanwhile."""
from __future__ import annotations

import asyncio

import pytest

from xmppd.core.durability import Barrier, StoreFailed, Ticket

pytestmark = pytest.mark.asyncio


async def test_a_barrier_settles_inside_the_commit_of_its_last_ticket() -> None:
    first, second = Ticket(), Ticket()
    barrier = Barrier()
    barrier.hold(first)
    barrier.hold(second)
    seen: list[bool] = []
    barrier.when_settled(lambda: seen.append(barrier.settled))
    first.committed()
    assert seen == []
    second.committed()
    assert seen == [True]  # called by committed() itself, with the barrier settled


async def test_a_failed_ticket_settles_its_waiters_too_and_one_broken_waiter_spares_the_others() -> None:
    ticket = Ticket()
    a, b = Barrier(), Barrier()
    a.hold(ticket)
    b.hold(ticket)
    seen: list[str] = []

    def broken() -> None:
        raise RuntimeError("waiter bug")

    a.when_settled(broken)
    b.when_settled(lambda: seen.append("b failed" if b.failed else "b stored"))
    ticket.failed(StoreFailed("gone"))
    assert seen == ["b failed"]


async def test_waiting_on_a_done_ticket_is_called_soon() -> None:
    ticket = Ticket()
    ticket.committed()
    seen: list[int] = []
    ticket.on_done(lambda: seen.append(1))
    assert seen == []
    await asyncio.sleep(0)
    assert seen == [1]
