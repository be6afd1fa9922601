"""XEP-0198 counters without I/O: handled/sent counts, acks, wrap-around at 2^32, bad h."""
from __future__ import annotations

import pytest

from xmppd.features.smacks.state import MASK, HandledCountTooHigh, SmCounters, parse_h


def test_ack_drops_exactly_the_acknowledged_stanzas():
    c = SmCounters()
    for i in range(5):
        assert c.stanza_out(f"s{i}".encode(), float(i)) == i + 1
    assert c.ack(2) == 2
    assert [d for d, _ in c.unacked] == [b"s2", b"s3", b"s4"]
    assert c.acked == 2
    assert c.ack(2) == 0  # the same h again changes nothing
    assert c.ack(5) == 3 and not c.unacked


def test_inbound_count_wraps_at_2_32():
    c = SmCounters()
    c.handled = MASK
    c.stanza_in()
    assert c.handled == 0
    c.stanza_in()
    assert c.handled == 1


def test_outbound_count_and_acks_wrap_at_2_32():
    c = SmCounters()
    c.sent = MASK - 1  # as if 2^32 - 1 stanzas had been acknowledged already
    for i in range(4):
        c.stanza_out(f"s{i}".encode(), 0.0)
    assert c.sent == 2  # wrapped
    assert c.ack(MASK) == 1  # h = 2^32 - 1 acknowledges s0
    assert c.ack(1) == 2  # h wrapped to 1: s1 and s2
    assert [d for d, _ in c.unacked] == [b"s3"]


def test_h_higher_than_sent_is_refused():
    c = SmCounters()
    c.stanza_out(b"x", 0.0)
    with pytest.raises(HandledCountTooHigh) as exc:
        c.ack(2)
    assert exc.value.h == 2 and exc.value.sent == 1
    assert len(c.unacked) == 1


@pytest.mark.parametrize("value", [None, "", "-1", "abc", "4294967296", "1.5"])
def test_bad_h_values(value):
    with pytest.raises(ValueError):
        parse_h(value)


def test_h_bounds():
    assert parse_h("0") == 0 and parse_h("4294967295") == MASK
