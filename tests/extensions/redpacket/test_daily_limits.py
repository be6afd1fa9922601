"""Per-sender daily limits (redpacket.daily_count, daily_amount) in the send's transaction: on
memory, SQLite and MariaDB, sequentially and with concurrent sends of one sender; the money
invariant holds after every refusal (a refused send debits nothing)."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from xmppd_extensions.redpacket.models import DailyLimitExceeded

from .conftest import at
from .test_repository import A, new

DAY = at(0).replace(hour=0, minute=0, second=0, microsecond=0)


def limited(pid: str, amount: int, *, count: int = 0, total: int = 0, day=DAY):
    return dataclasses.replace(new(pid, (amount,)), day_start=day, daily_count=count, daily_amount=total)


async def test_count_and_amount_limits_refuse_and_debit_nothing(rp_repo):
    await rp_repo.topup(A, 10000, at())
    await rp_repo.send(limited("p1", 100, count=2, total=250))
    await rp_repo.send(limited("p2", 100, count=2, total=250))
    with pytest.raises(DailyLimitExceeded) as info:
        await rp_repo.send(limited("p3", 10, count=2, total=250))
    assert (info.value.count, info.value.amount) == (2, 200)
    with pytest.raises(DailyLimitExceeded):  # the amount: 200 + 60 > 250
        await rp_repo.send(limited("p4", 60, count=5, total=250))
    assert (await rp_repo.send(limited("p5", 50, count=5, total=250))).created  # exactly 250
    assert await rp_repo.balance(A) == 10000 - 250
    # packets sent before the day's start do not count
    tomorrow = DAY.replace(day=DAY.day + 1)
    assert (await rp_repo.send(dataclasses.replace(limited("p6", 100, count=1, total=100, day=tomorrow)))).created
    assert (await rp_repo.audit()).ok


async def test_concurrent_sends_cannot_slip_under_the_limit(sql_rp_repo):
    await sql_rp_repo.topup(A, 10000, at())

    async def one(i: int):
        try:
            return await sql_rp_repo.send(limited(f"c{i}", 10, count=3, total=1000))
        except DailyLimitExceeded:
            return None

    results = await asyncio.gather(*(one(i) for i in range(10)))
    assert sum(r is not None for r in results) == 3
    assert await sql_rp_repo.balance(A) == 10000 - 30
    report = await sql_rp_repo.audit()
    assert report.ok, str(report)
