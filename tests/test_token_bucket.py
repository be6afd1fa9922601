"""xmppd.core.limits.TokenBucket on a hand-driven clock."""
from __future__ import annotations

import pytest

from xmppd.core.limits import TokenBucket


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_burst_is_available_at_once_then_the_rate():
    clock = Clock()
    b = TokenBucket(10, 50, clock=clock)
    assert b.take(50) == 0
    assert b.take(10) == pytest.approx(1.0)  # 10 in debt: one second at 10 a second
    clock.now += 1
    assert b.tokens() == pytest.approx(0)
    clock.now += 100
    assert b.tokens() == 50  # never more than the burst


def test_allowance_and_wait_do_not_spend():
    clock = Clock()
    b = TokenBucket(100, 1000, clock=clock)
    assert b.allowance(400) == 400
    assert b.allowance(4000) == 1000
    b.take(900)
    assert b.allowance(400) == 100
    assert b.wait(400) == pytest.approx(3.0)
    assert b.wait(50) == 0
    assert b.tokens() == pytest.approx(100)
    b.take(300)
    assert b.allowance(10) == 0  # in debt: nothing
    assert b.wait(0) == pytest.approx(2.0)


def test_rate_zero_is_unlimited():
    b = TokenBucket(0, 0, clock=Clock())
    assert b.unlimited
    assert b.take(10**9) == 0 and b.allowance(10**9) == 10**9 and b.wait(10**9) == 0


def test_negative_values_are_refused():
    with pytest.raises(ValueError):
        TokenBucket(-1, 10)
    with pytest.raises(ValueError):
        TokenBucket(1, -10)
