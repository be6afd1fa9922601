"""core/limits.AuthThrottle and SlidingCounter on an injected clock (the wire behaviour is in
tests/interop/test_auth_throttle.py)."""
from __future__ import annotations

from xmppd.core.limits import AuthThrottle, SlidingCounter, address_key


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def throttle(clock: FakeClock, **kw) -> AuthThrottle:
    return AuthThrottle(kw.pop("per_ip", 10), kw.pop("per_account", 3), 300.0, clock=clock, **kw)


def test_sliding_counter_forgets_events_older_than_the_window():
    clock = FakeClock()
    c = SlidingCounter(2, 10.0, clock=clock)
    c.add("k")
    c.add("k")
    assert c.exceeded("k")
    clock.t += 10.0
    assert not c.exceeded("k") and c.count("k") == 0 and len(c) == 0


def test_sliding_counter_keeps_at_most_max_keys():
    c = SlidingCounter(1, 60.0, max_keys=100, clock=FakeClock())
    for i in range(10_000):
        c.add(f"attacker-{i}")
    assert len(c) == 100
    assert c.count("attacker-9999") == 1 and c.count("attacker-0") == 0


def test_failures_from_one_address_block_only_that_address_for_that_account():
    clock = FakeClock()
    t = throttle(clock)
    for _ in range(3):
        assert not t.check("10.0.0.9", "carol").blocked
        t.failure("10.0.0.9", "carol")
    assert t.check("10.0.0.9", "carol").blocked
    assert not t.check("10.0.0.9", "dave").blocked  # other accounts from there: not yet
    assert not t.check("10.0.0.1", "carol").blocked  # the owner's address: never
    clock.t += 300.0
    assert not t.check("10.0.0.9", "carol").blocked  # the window has passed


def test_failures_for_an_account_from_everywhere_delay_but_never_block():
    clock = FakeClock()
    t = throttle(clock, per_account=3, delay_max=4.0)
    for i in range(20):  # a botnet: each address fails once
        t.failure(f"10.0.{i}.1", "carol")
    verdict = t.check("192.0.2.7", "carol")
    assert not verdict.blocked
    assert verdict.delay == 4.0  # capped
    assert t.check("192.0.2.7", "dave").delay == 0.0


def test_the_delay_doubles_from_its_base_up_to_the_cap():
    clock = FakeClock()
    t = throttle(clock, per_account=3, delay_max=3.0)
    delays = []
    for i in range(7):
        delays.append(t.check("192.0.2.7", "carol").delay)
        t.failure(f"10.0.{i}.1", "carol")
    assert delays == [0.0, 0.0, 0.0, 0.5, 1.0, 2.0, 3.0]
    assert throttle(clock, per_account=1, delay_max=0.0).check("192.0.2.7", "carol").delay == 0.0


def test_an_address_that_logged_in_skips_the_delay():
    clock = FakeClock()
    t = throttle(clock, per_account=2)
    t.success("192.0.2.7", "carol")
    for i in range(10):
        t.failure(f"10.0.{i}.1", "carol")
    assert t.check("192.0.2.7", "carol") == t.check("192.0.2.7", "nobody-failed-here")
    assert t.check("192.0.2.8", "carol").delay > 0


def test_a_login_forgives_the_address_its_failures_for_that_account_only():
    clock = FakeClock()
    t = throttle(clock, per_ip=4, per_account=2)
    t.failure("10.0.0.9", "carol")
    t.failure("10.0.0.9", "carol")
    t.success("10.0.0.9", "carol")
    assert not t.check("10.0.0.9", "carol").blocked
    # ... but not its failures as an address: a guesser's own account launders nothing.
    t.failure("10.0.0.9", "carol")
    t.failure("10.0.0.9", "dave")
    assert t.check("10.0.0.9", "erin").blocked


def test_failures_without_an_account_count_for_the_address_only():
    t = throttle(FakeClock(), per_ip=2, per_account=1)
    t.failure("10.0.0.9", None)
    assert not t.check("10.0.0.9", "carol").blocked
    t.failure("10.0.0.9", None)
    assert t.check("10.0.0.9", "carol").blocked
    assert t.sizes()["pair"] == 0 and t.sizes()["account"] == 0


def test_every_table_is_bounded():
    t = AuthThrottle(5, 5, 300.0, clock=FakeClock(), max_keys=50)
    for i in range(2_000):
        t.failure(f"10.{i // 256}.{i % 256}.1", f"user{i}")
        t.success(f"10.{i // 256}.{i % 256}.2", f"user{i}")
    assert all(n <= 50 for n in t.sizes().values())


def test_an_ipv6_subscriber_is_one_address():
    assert address_key("2001:db8:1:2:aaaa::1") == address_key("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    assert address_key("2001:db8:1:3::1") != address_key("2001:db8:1:2::1")
    assert address_key("::ffff:192.0.2.1") == "192.0.2.1"
    assert address_key("fe80::1%eth0") == "fe80::/64"
    assert address_key("local") == "local"
    t = throttle(FakeClock(), per_ip=2)
    t.failure("2001:db8::1", None)
    t.failure("2001:db8::2", None)
    assert t.check("2001:db8::ffff", "carol").blocked
