"""XEP-0205 denial-of-service limits: connections per address and authentication throttling."""
from __future__ import annotations

import collections
import time
from collections.abc import Callable


class SlidingCounter:
    """Events per key within a time window, with a bounded number of keys.

    Keys come from the network (addresses, usernames), so the table is capped: when full, the
    key seen longest ago is forgotten (no unbounded growth keyed by attacker input).
    """

    def __init__(self, limit: int, window: float, max_keys: int = 100_000, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window = window
        self.max_keys = max_keys
        self._clock = clock
        self._events: collections.OrderedDict[str, collections.deque[float]] = collections.OrderedDict()

    def _prune(self, key: str) -> collections.deque[float] | None:
        q = self._events.get(key)
        if q is None:
            return None
        horizon = self._clock() - self.window
        while q and q[0] <= horizon:
            q.popleft()
        if not q:
            del self._events[key]
            return None
        return q

    def add(self, key: str) -> None:
        q = self._prune(key)
        if q is None:
            q = self._events[key] = collections.deque(maxlen=self.limit + 1)
            if len(self._events) > self.max_keys:
                self._events.popitem(last=False)
        else:
            self._events.move_to_end(key)
        q.append(self._clock())

    def exceeded(self, key: str) -> bool:
        q = self._prune(key)
        return q is not None and len(q) >= self.limit

    def clear(self, key: str) -> None:
        self._events.pop(key, None)


class AuthThrottle:
    """Failed logins per address and per account; ``blocked`` answers temporary-auth-failure."""

    def __init__(self, per_ip: int, per_account: int, window: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._ip = SlidingCounter(per_ip, window, clock=clock)
        self._account = SlidingCounter(per_account, window, clock=clock)

    def blocked(self, ip: str, username: str | None) -> bool:
        return self._ip.exceeded(ip) or (username is not None and self._account.exceeded(username))

    def failure(self, ip: str, username: str | None) -> None:
        self._ip.add(ip)
        if username:
            self._account.add(username)

    def success(self, ip: str, username: str) -> None:
        self._account.clear(username)


class ConnectionCounter:
    """Open connections per address."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: dict[str, int] = {}

    def acquire(self, ip: str) -> bool:
        n = self._open.get(ip, 0)
        if n >= self.limit:
            return False
        self._open[ip] = n + 1
        return True

    def release(self, ip: str) -> None:
        n = self._open.get(ip, 0) - 1
        if n <= 0:
            self._open.pop(ip, None)
        else:
            self._open[ip] = n

    def total(self) -> int:
        return sum(self._open.values())


class TokenBucket:
    """A token bucket (ejabberd's shapers, Prosody's mod_limits): ``rate`` tokens a second up to
    ``burst``; a take beyond the balance runs into debt, and the answer is how long to wait
    until the debt is paid. ``rate`` 0 means unlimited.
    """

    __slots__ = ("rate", "burst", "_tokens", "_stamp", "_clock")

    def __init__(self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic) -> None:
        if rate < 0 or burst < 0:
            raise ValueError("rate and burst must not be negative")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._stamp = clock()

    @property
    def unlimited(self) -> bool:
        return self.rate == 0

    def tokens(self) -> float:
        """The balance now: at most ``burst``, negative while in debt."""
        now = self._clock()
        t = self._tokens + (now - self._stamp) * self.rate
        if t > self.burst:
            t = self.burst
        self._tokens = t
        self._stamp = now
        return t

    def take(self, n: float) -> float:
        """Spend ``n`` tokens (into debt if need be); seconds until the balance is back to 0."""
        if self.rate == 0:
            return 0.0
        t = self.tokens() - n
        self._tokens = t
        return 0.0 if t >= 0 else -t / self.rate

    def allowance(self, n: int) -> int:
        """How much of ``n`` can be spent without debt (at least 0), without spending it."""
        if self.rate == 0:
            return n
        t = self.tokens()
        return n if t >= n else max(0, int(t))

    def wait(self, n: float) -> float:
        """Seconds until ``n`` tokens are available (0: now), without spending them."""
        if self.rate == 0:
            return 0.0
        t = self.tokens()
        return 0.0 if t >= n else (n - t) / self.rate
