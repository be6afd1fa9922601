"""xmppd/timestamps.py: the one home of XEP-0082 date-times, each precision by name."""
from datetime import UTC, datetime, timedelta, timezone

import pytest

from xmppd import timestamps as T

WHEN = datetime(2024, 5, 1, 14, 0, 0, 987654, tzinfo=timezone(timedelta(hours=2)))


def test_each_precision_is_utc_with_z():
    assert T.seconds(WHEN) == "2024-05-01T12:00:00Z"
    assert T.millis(WHEN) == "2024-05-01T12:00:00.987Z"
    assert T.micros(WHEN) == "2024-05-01T12:00:00.987654Z"
    assert T.auto(WHEN) == "2024-05-01T12:00:00.987654Z"
    assert T.auto(WHEN.replace(microsecond=0)) == "2024-05-01T12:00:00Z"


def test_epoch_seconds_and_integer_microseconds():
    epoch = datetime(2024, 5, 1, 12, tzinfo=UTC).timestamp()
    assert T.seconds(epoch) == "2024-05-01T12:00:00Z"
    assert T.millis(epoch + 0.5) == "2024-05-01T12:00:00.500Z"
    # exact: no float rounding of large microsecond counts
    assert T.micros_of_us(int(epoch) * 1_000_000 + 999_999) == "2024-05-01T12:00:00.999999Z"


def test_optional_is_auto_or_none():
    assert T.optional(None) is None
    assert T.optional(WHEN) == T.auto(WHEN)


@pytest.mark.parametrize("text", ["2024-05-01T12:00:00Z", "2024-05-01T14:00:00+02:00", "2024-05-01T12:00:00", " 2024-05-01T12:00:00.000Z "])
def test_parse_reads_any_offset_and_naive_as_utc(text):
    assert T.parse(text) == datetime(2024, 5, 1, 12, tzinfo=UTC)
    assert T.parse(text).tzinfo is UTC


@pytest.mark.parametrize("text", ["", "yesterday", "2024-13-01T00:00:00Z"])
def test_parse_refuses_the_rest(text):
    with pytest.raises(ValueError):
        T.parse(text)


def test_round_trip():
    assert T.parse(T.micros(WHEN)) == WHEN
