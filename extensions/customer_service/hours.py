"""Opening hours (pure): ``"mon-fri 09:00-18:00, sat 10:00-14:00"`` in a queue's IANA time zone,
with holidays (``"2026-12-25,2027-01-01"``) on which the queue is closed all day. A range without
days holds every day; an end before its start runs past midnight (into the next day)."""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from xmppd.errors import Condition

from .protocol import CsError

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_PART = re.compile(r"^(?:([a-z]{3})(?:-([a-z]{3}))?\s+)?(\d\d):(\d\d)-(\d\d):(\d\d)$")


@dataclass(frozen=True, slots=True)
class Range:
    days: frozenset[int]  # 0 = Monday
    start: int  # minutes after midnight
    end: int


def parse_hours(text: str) -> list[Range]:
    ranges = []
    for part in filter(None, (p.strip().lower() for p in text.split(","))):
        m = _PART.match(part)
        if not m:
            raise CsError(Condition.BAD_REQUEST, "hours", part=repr(part))
        d1, d2 = m.group(1), m.group(2)
        h1, m1, h2, m2 = (int(x) for x in m.groups()[2:])
        if h1 > 23 or h2 > 24 or m1 > 59 or m2 > 59 or (h2 == 24 and m2):
            raise CsError(Condition.BAD_REQUEST, "hours_time", part=repr(part))
        if d1 is None:
            days = frozenset(range(7))
        else:
            if d1 not in DAYS or (d2 is not None and d2 not in DAYS):
                raise CsError(Condition.BAD_REQUEST, "hours", part=repr(part))
            a, b = DAYS.index(d1), DAYS.index(d2 or d1)
            days = frozenset((a + i) % 7 for i in range((b - a) % 7 + 1))
        ranges.append(Range(days, h1 * 60 + m1, h2 * 60 + m2))
    return ranges


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        raise CsError(Condition.BAD_REQUEST, "timezone", zone=repr(name)) from None


def parse_holidays(text: str) -> frozenset[date]:
    out = set()
    for part in filter(None, (p.strip() for p in text.split(","))):
        try:
            out.add(date.fromisoformat(part))
        except ValueError:
            raise CsError(Condition.BAD_REQUEST, "holiday", day=repr(part)) from None
    return frozenset(out)


def is_open(hours: str, now: float, timezone: str = "UTC", holidays: str = "") -> bool:
    """Whether a queue with these hours is open at ``now`` (seconds since the epoch)."""
    t = datetime.fromtimestamp(now, zone(timezone))
    if t.date() in parse_holidays(holidays):
        return False
    ranges = parse_hours(hours)
    if not ranges:
        return True
    minute, today = t.hour * 60 + t.minute, t.weekday()
    yesterday = (today - 1) % 7
    for r in ranges:
        if r.start <= r.end:
            if today in r.days and r.start <= minute < r.end:
                return True
        elif (today in r.days and minute >= r.start) or (yesterday in r.days and minute < r.end):
            return True  # a night range: its day's evening and the next morning
    return False


__all__ = ["DAYS", "Range", "is_open", "parse_holidays", "parse_hours", "zone"]
