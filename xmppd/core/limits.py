"""XEP-0205 denial-of-service limits: connections per address and authentication throttling."""
from __future__ import annotations

import collections
import hashlib
import ipaddress
import math
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass


class SlidingCounter:
    """Events per key within a time window, with a bounded number of keys.

    Keys come from the network (addresses, usernames), so the table is capped: when full, the
    key seen longest ago is forgotten (no unbounded growth keyed by attacker input). At most
    ``limit + 1`` events are remembered per key, so ``count`` saturates there.
    """

    def __init__(self, limit: int, window: float, max_keys: int = 100_000, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window = window
        self.max_keys = max_keys
        self._clock = clock
        self._events: collections.OrderedDict[Hashable, collections.deque[float]] = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._events)

    def _prune(self, key: Hashable) -> collections.deque[float] | None:
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

    def add(self, key: Hashable) -> None:
        q = self._prune(key)
        if q is None:
            q = self._events[key] = collections.deque(maxlen=self.limit + 1)
            if len(self._events) > self.max_keys:
                self._events.popitem(last=False)
        else:
            self._events.move_to_end(key)
        q.append(self._clock())

    def count(self, key: Hashable) -> int:
        q = self._prune(key)
        return 0 if q is None else len(q)

    def exceeded(self, key: Hashable) -> bool:
        return self.count(key) >= self.limit

    def clear(self, key: Hashable) -> None:
        self._events.pop(key, None)


def address_key(ip: str) -> str:
    """The unit of the per-address limits: an IPv4 address, or the /64 of an IPv6 address.

    One IPv6 subscriber (a home, a phone, a server) gets a whole /64 and can pick any address
    in it, so counting single IPv6 addresses would give a guesser 2^64 fresh budgets. An
    IPv4-mapped address counts as the IPv4 address; anything else (a Unix socket) as itself.
    """
    try:
        addr = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return ip
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return str(addr.ipv4_mapped)
        return str(ipaddress.IPv6Network((addr, 64), strict=False))
    return str(addr)


def _pair(account: str, address: str) -> bytes:
    # Accounts may be up to 1023 bytes: tables keep a 16-byte digest, not the name.
    return hashlib.blake2b(f"{account}\0{address}".encode("utf-8", "surrogatepass"), digest_size=16).digest()


def _account(account: str) -> bytes:
    return hashlib.blake2b(account.encode("utf-8", "surrogatepass"), digest_size=16, person=b"xmppd-account").digest()


@dataclass(frozen=True, slots=True)
class AuthVerdict:
    """What to do with a login attempt before its password is checked."""

    blocked: bool  # answer temporary-auth-failure without checking anything
    delay: float  # seconds to wait before checking (0: none)


class AuthThrottle:
    """Password guessing limits that give no stranger the power to lock an account out.

    - per address (IPv4, or IPv6 /64): ``per_ip`` failures within ``window``, for any
      accounts, block that address (temporary-auth-failure) until the window has passed;
    - per (account, address): ``per_account`` failures for one account from one address block
      that address for that account only; a correct login from it clears the count;
    - per account, from every address: once ``per_account`` failures have been seen in the
      window, each further attempt on the account waits before its password is checked:
      ``DELAY_BASE`` seconds, doubling with every further failure, at most ``delay_max``.
      The wait comes before the answer whatever the answer will be, so its length tells
      nothing and cannot be cut short by hanging up; an address that logged in to the account
      within ``TRUST_PERIOD`` skips it. It slows guessing spread over many addresses; it
      never refuses the right password.

    Every key is the prepared (PRECIS) username and the address unit; every table is bounded.
    """

    #: First delay once an account is past ``per_account`` failures (doubling after that).
    DELAY_BASE = 0.5
    #: How long an address that logged in to an account skips that account's delay.
    TRUST_PERIOD = 7 * 86400.0

    def __init__(
        self,
        per_ip: int,
        per_account: int,
        window: float,
        *,
        delay_max: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 100_000,
    ) -> None:
        self.per_account = per_account
        self.delay_max = delay_max
        self._ip = SlidingCounter(per_ip, window, max_keys, clock)
        self._pair = SlidingCounter(per_account, window, max_keys, clock)
        # Remembers enough failures per account for the delay to reach its cap.
        steps = max(0, math.ceil(math.log2(delay_max / self.DELAY_BASE))) + 1 if delay_max > 0 else 0
        self._account = SlidingCounter(per_account + steps, window, max_keys, clock)
        self._trusted = SlidingCounter(1, self.TRUST_PERIOD, max_keys, clock)

    def check(self, ip: str, username: str | None) -> AuthVerdict:
        """Before the password is checked: refuse now, wait first, or go ahead."""
        address = address_key(ip)
        if self._ip.exceeded(address):
            return AuthVerdict(True, 0.0)
        if username is None:
            return AuthVerdict(False, 0.0)
        if self._pair.exceeded(_pair(username, address)):
            return AuthVerdict(True, 0.0)
        return AuthVerdict(False, self._delay(username, address))

    def blocked(self, ip: str, username: str | None) -> bool:
        return self.check(ip, username).blocked

    def _delay(self, username: str, address: str) -> float:
        if self.delay_max <= 0:
            return 0.0
        over = self._account.count(_account(username)) - self.per_account
        if over < 0 or self._trusted.count(_pair(username, address)):
            return 0.0
        return min(self.delay_max, self.DELAY_BASE * 2.0**over)

    def failure(self, ip: str, username: str | None) -> None:
        """A failed attempt from ``ip``; ``username`` (prepared) when it was a wrong password
        for that name, None when no account was tried (malformed, wrong mechanism ...)."""
        address = address_key(ip)
        self._ip.add(address)
        if username:
            self._pair.add(_pair(username, address))
            self._account.add(_account(username))

    def success(self, ip: str, username: str) -> None:
        """A correct login: this address's failures for the account are forgiven and it is
        trusted for the account. Neither the address's count (one's own account would launder
        guesses at others) nor the account's count (the guesser would start afresh) is reset."""
        key = _pair(username, address_key(ip))
        self._pair.clear(key)
        self._trusted.add(key)

    def sizes(self) -> dict[str, int]:
        """Keys held per table (each at most ``max_keys``)."""
        return {"ip": len(self._ip), "pair": len(self._pair), "account": len(self._account), "trusted": len(self._trusted)}


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
