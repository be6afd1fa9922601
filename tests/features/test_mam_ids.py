"""Archive ids (xmppd.features.mam.ids): the time-ordered seq, the opaque public id, node leases."""
from __future__ import annotations

import logging
import os

import pytest

from xmppd.features.mam.ids import EPOCH_US, MAX_NODE, IdCodec, NodeLease, SeqClock, seq_ceiling, seq_floor, time_of
from xmppd.features.mam.repository import MemoryMamRepository

T = 1_750_000_000_000_000


def test_seq_is_time_then_node() -> None:
    clock = SeqClock(5)
    seq = clock.next(T)
    assert seq == ((T - EPOCH_US) << 11) | 5 and time_of(seq) == T and seq & MAX_NODE == 5
    assert seq < 2**63
    assert seq_floor(T) <= seq <= seq_ceiling(T) and seq_ceiling(T - 1) < seq < seq_floor(T + 1)


def test_seq_never_goes_back_nor_repeats() -> None:
    clock = SeqClock(7)
    a = clock.next(T)
    b = clock.next(T)  # the same µs: the next one
    c = clock.next(T - 3_600_000_000)  # the clock stepped back an hour
    d = clock.next(T - 3_600_000_000 + 10)
    e = clock.next(T + 1_000_000)  # caught up
    assert a < b < c < d < e
    assert [time_of(x) for x in (a, b, c, d, e)] == [T, T + 1, T + 2, T + 3, T + 1_000_000]
    assert {x & MAX_NODE for x in (a, b, c, d, e)} == {7}


def test_seq_continues_after_a_floor_and_before_2020() -> None:
    floor = SeqClock(0).next(T)
    clock = SeqClock(3, floor)  # a restart: ids already stored up to floor, the clock now behind it
    assert clock.next(T - 5) > floor
    assert SeqClock(0).next(0) == 0 and SeqClock(0).next(-5) == 0  # a clock before 2020 counts as 2020
    with pytest.raises(ValueError):
        SeqClock(MAX_NODE + 1)


def test_ids_round_trip_and_reveal_nothing() -> None:
    codec = IdCodec(os.urandom(16))
    clock = SeqClock(0)
    seqs = [clock.next(T + i) for i in range(200)]
    ids = [codec.encode(s) for s in seqs]
    assert [codec.decode(i) for i in ids] == seqs
    assert len(set(ids)) == 200 and {len(i) for i in ids} == {32}
    assert ids != sorted(ids)  # consecutive ids are not in order ...
    assert len({i[:4] for i in ids}) > 150  # ... nor share a prefix
    other = IdCodec(os.urandom(16))
    assert other.decode(ids[0]) is None  # another server's id
    for bad in (ids[0][:-1], ids[0] + "0", "x" * 32, "", " " + ids[0][1:], ids[0][:-1] + ("1" if ids[0][-1] == "0" else "0")):
        assert codec.decode(bad) is None
    with pytest.raises(ValueError):
        IdCodec(b"short")


class FakeClock:
    def __init__(self) -> None:
        self.wall = T / 1_000_000
        self.mono = 1000.0

    def now(self) -> float:
        return self.wall

    def monotonic(self) -> float:
        return self.mono


async def test_lease_is_renewed_before_use_when_stale_and_replaced_when_lost() -> None:
    repo = MemoryMamRepository()
    clock = FakeClock()
    lease = NodeLease(repo, clock, logging.getLogger("test"))  # type: ignore[arg-type]
    seqs = await lease.claim()
    assert lease.node == 0 and seqs.node == 0 and not lease.stale()
    other = NodeLease(repo, clock, logging.getLogger("test"))  # type: ignore[arg-type]
    await other.claim()
    assert other.node == 1
    # still valid a while, then stale (TTL/2 without a renewal): a renewal makes it valid again
    clock.mono += NodeLease.TTL_US / 2_000_000 - 1
    assert not lease.stale()
    clock.mono += 2
    assert lease.stale()
    await lease.refresh()
    assert not lease.stale() and lease.node == 0
    # paused beyond its expiry: another node took id 0 meanwhile; the next renewal notices
    clock.wall += 2 * NodeLease.TTL_US / 1_000_000
    clock.mono += 2 * NodeLease.TTL_US / 1_000_000
    await other.renew()
    for n in range(2, MAX_NODE + 1):
        repo._nodes[n] = (f"x{n}", int(clock.wall * 1_000_000) + NodeLease.TTL_US)
    taker = NodeLease(repo, clock, logging.getLogger("test"))  # type: ignore[arg-type]
    await taker.claim()
    assert taker.node == 0  # the expired one
    del repo._nodes[5]
    assert lease.stale()
    await lease.refresh()
    assert lease.node == 5 and seqs.node == 5 and not lease.stale()
    await lease.release()
    assert 5 not in repo._nodes and lease.node is None
