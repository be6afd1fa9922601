"""Inbound shaping: xmppd.core.limits.TokenBucket on a hand-driven clock, and the [c2s] keys."""
from __future__ import annotations

import pytest

from xmppd.config import ConfigError, build
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


def test_shaping_is_on_by_default_and_stricter_before_login():
    c = build({}, {}).c2s
    assert 0 < c.preauth_rate_bytes < c.rate_bytes and 0 < c.preauth_burst_bytes < c.burst_bytes
    assert 0 < c.preauth_rate_stanzas < c.rate_stanzas and 0 < c.preauth_burst_stanzas < c.burst_stanzas
    assert c.preauth_burst_bytes >= c.preauth_max_stanza_size  # one pre-login element never waits
    assert c.stanza_timeout > 0 and c.flood_grace > 0


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("c2s.rate_bytes=-1", "c2s.rate_bytes must be at least 0, not -1"),
        ("c2s.preauth_rate_stanzas=-5", "c2s.preauth_rate_stanzas must be at least 0, not -5"),
        ("c2s.burst_stanzas=0", "c2s.burst_stanzas must be at least 1 when c2s.rate_stanzas is not 0"),
        ("c2s.stanza_timeout=0", "c2s.stanza_timeout must be more than 0, not 0"),
        ("c2s.flood_grace=-1", "c2s.flood_grace must be more than 0, not -1"),
        ("c2s.rate_bytes=fast", "c2s.rate_bytes must be a number"),
    ],
)
def test_bad_shaping_values_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        build({}, {}, [override])


def test_a_rate_of_zero_turns_a_bucket_off_whatever_its_burst():
    c = build({}, {}, ["c2s.rate_stanzas=0", "c2s.burst_stanzas=0"]).c2s
    assert TokenBucket(c.rate_stanzas, c.burst_stanzas).unlimited
