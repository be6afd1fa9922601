"""Red packets (urn:xmppd:redpacket:0): the split -- sums, minimum share, fairness per position."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xmppd_extensions.redpacket import split


@settings(max_examples=300, deadline=None)
@given(count=st.integers(1, 100), extra=st.integers(0, 20000), seed=st.integers(0, 2**32))
def test_lucky_shares_sum_to_the_total_and_are_at_least_one_unit(count, extra, seed):
    total = count + extra
    shares = split.lucky(total, count, random.Random(seed))
    assert len(shares) == count
    assert sum(shares) == total
    assert min(shares) >= 1


@settings(max_examples=200, deadline=None)
@given(each=st.integers(1, 20000), count=st.integers(1, 100))
def test_equal_shares_are_each_times_count(each, count):
    shares = split.equal(each, count)
    assert shares == [each] * count and sum(shares) == each * count


def test_exactly_one_unit_per_share_is_possible():
    assert split.lucky(5, 5, random.Random(1)) == [1, 1, 1, 1, 1]


@pytest.mark.parametrize("total,count", [(4, 5), (0, 1), (10, 0), (-3, 1)])
def test_impossible_splits_are_refused(total, count):
    with pytest.raises(split.SplitError):
        split.lucky(total, count, random.Random(1))


def test_equal_refuses_zero():
    with pytest.raises(split.SplitError):
        split.equal(0, 3)


def test_same_seed_same_split():
    assert split.lucky(10000, 10, random.Random(42)) == split.lucky(10000, 10, random.Random(42))


def test_no_grab_position_is_favoured():
    """20,000 packets of 10 shares: each position's mean is total/count within 4 standard errors,
    and a chi-square test over the positions' sums does not reject equality."""
    rng = random.Random(20240501)
    packets, count, total = 20000, 10, 1000
    sums = [0] * count
    squares = [0] * count
    for _ in range(packets):
        for i, s in enumerate(split.lucky(total, count, rng)):
            sums[i] += s
            squares[i] += s * s
    expected = total / count
    means = [s / packets for s in sums]
    variances = [squares[i] / packets - means[i] ** 2 for i in range(count)]
    for i in range(count):
        stderr = math.sqrt(variances[i] / packets)
        assert abs(means[i] - expected) < 4 * stderr, (i, means[i], stderr)
    # z-scores of the position means, summed in squares: chi-square with ~count-1 dof.
    pooled = sum(variances) / count
    chi2 = sum((m - expected) ** 2 / (pooled / packets) for m in means)
    assert chi2 < 27.88  # the 0.999 quantile of chi-square with 9 degrees of freedom


def test_without_the_shuffle_the_last_position_would_differ():
    """The raw double-average sequence is biased in spread: the last share varies most. The
    shuffle removes it -- this pins why the shuffle is there."""
    rng = random.Random(7)
    raw_last, shuffled_last = [], []
    for _ in range(5000):
        state = rng.getstate()
        shuffled_last.append(split.lucky(1000, 10, rng)[-1])
        rng.setstate(state)
        # the same draws without the shuffle
        left, seq = 1000, []
        for n in range(10, 1, -1):
            s = rng.randint(1, max(1, (2 * left) // n - 1))
            seq.append(s)
            left -= s
        seq.append(left)
        rng.shuffle(seq)  # keep the generator in step
        raw_last.append(left)

    def var(xs):
        m = sum(xs) / len(xs)
        return sum((x - m) ** 2 for x in xs) / len(xs)

    assert var(raw_last) > 1.25 * var(shuffled_last)
