"""Red packets (urn:xmppd:redpacket:0): how a packet is split into shares. Pure functions.

Shares are computed once, when the packet is sent, and stored; a grab only claims the next
stored share. All amounts are integer minor units (fen), every share is at least 1 unit.

**Equal (普通红包).** As in WeChat, an equal packet is defined by the amount of *one* share:
``equal(each, count)`` gives ``count`` shares of ``each``; the total is ``each * count``. There
is never a remainder to distribute.

**Lucky (拼手气红包): "double average" (二倍均值).** With ``r`` units left for ``n`` shares,
each share but the last is drawn uniformly from ``[1, floor(2 * r / n) - 1]`` -- the upper bound
keeps the expected value of a draw at about ``r / n`` and leaves at least 1 unit for each of the
``n - 1`` shares still to come (``2r/n - 1 <= r - (n - 1)`` for ``n >= 2``, since ``r >= n``).
The last share takes what is left. The sequence is then **shuffled** with the same injected
random generator: without the shuffle the last share has a much larger variance than the
first ones (a well-known bias of the raw algorithm), so the position in the grab order would
matter; after it, every position has the same distribution (the mean share per position is
``total / count``; ``tests/extensions/redpacket/test_split.py`` checks it statistically).

The generator is injected (``secrets.SystemRandom`` in production, a seeded
``random.Random`` in tests), so the split is unpredictable in production and reproducible in
tests.
"""

from __future__ import annotations

import random

__all__ = ["SplitError", "equal", "lucky"]


class SplitError(ValueError):
    """The amounts cannot be split (fewer units than shares, non-positive values)."""


def _check(total: int, count: int) -> None:
    if isinstance(total, bool) or not isinstance(total, int) or isinstance(count, bool) or not isinstance(count, int):
        raise SplitError("amounts and counts are integers")
    if count < 1:
        raise SplitError("a packet has at least one share")
    if total < count:
        raise SplitError(f"{total} minor units cannot make {count} shares of at least 1 unit")


def equal(each: int, count: int) -> list[int]:
    """``count`` shares of ``each`` minor units (WeChat's 普通红包: per-share amount x count)."""
    _check(each, 1)
    _check(each * count, count)
    return [each] * count


def lucky(total: int, count: int, rng: random.Random) -> list[int]:
    """Split ``total`` into ``count`` random shares (double average), then shuffle them."""
    _check(total, count)
    out: list[int] = []
    left = total
    for n in range(count, 1, -1):
        high = max(1, (2 * left) // n - 1)
        share = rng.randint(1, high)
        out.append(share)
        left -= share
    out.append(left)
    rng.shuffle(out)
    return out
