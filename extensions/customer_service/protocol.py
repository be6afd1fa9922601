"""urn:xmppd:cs:0: the customer-service namespace, its element names and small parsers.

See docs/customer-service.md and schemas/cs-0.xsd.
"""
from __future__ import annotations

import re
from datetime import UTC, datetime

from lxml import etree

from xmppd.errors import Condition, StanzaError
from xmppd.jid import JID, JIDError

NS = "urn:xmppd:cs:0"
NICK_NS = "http://jabber.org/protocol/nick"  # XEP-0172


def q(name: str) -> str:
    return f"{{{NS}}}{name}"


QUEUE_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_HOURS = re.compile(r"^(\d\d):(\d\d)-(\d\d):(\d\d)$")


def check_queue_name(name: str) -> str:
    if not QUEUE_NAME.match(name) or name.startswith("s-"):
        raise StanzaError(Condition.BAD_REQUEST, "a queue name is 1-64 of a-z 0-9 . _ - and does not start with 's-'")
    return name


def parse_hours(text: str) -> list[tuple[int, int]]:
    """``"09:00-17:00,18:00-20:00"`` (UTC) -> minute ranges; an end before the start wraps past midnight."""
    ranges = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        m = _HOURS.match(part)
        if not m:
            raise ValueError(f"opening hours {part!r}: expected HH:MM-HH:MM")
        h1, m1, h2, m2 = (int(x) for x in m.groups())
        if h1 > 23 or h2 > 24 or m1 > 59 or m2 > 59:
            raise ValueError(f"opening hours {part!r}: not a time of day")
        ranges.append((h1 * 60 + m1, h2 * 60 + m2))
    return ranges


def is_open(hours: str, now: float) -> bool:
    ranges = parse_hours(hours)
    if not ranges:
        return True
    t = datetime.fromtimestamp(now, UTC)
    minute = t.hour * 60 + t.minute
    for start, end in ranges:
        if (start <= minute < end) if start <= end else (minute >= start or minute < end):
            return True
    return False


def int_attr(el: etree._Element, name: str, default: int | None = None, *, low: int = 0, high: int = 10**9) -> int | None:
    raw = el.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise StanzaError(Condition.BAD_REQUEST, f"{name} must be an integer, not {raw!r}") from None
    if not low <= value <= high:
        raise StanzaError(Condition.BAD_REQUEST, f"{name} must be between {low} and {high}")
    return value


def jid_attr(el: etree._Element, name: str) -> JID | None:
    raw = el.get(name)
    if raw is None:
        return None
    try:
        jid = JID.parse(raw)
    except JIDError:
        raise StanzaError(Condition.JID_MALFORMED, f"{name} is not a valid JID") from None
    if jid.local is None:
        raise StanzaError(Condition.BAD_REQUEST, f"{name} must be an account JID")
    return jid.bare


def stamp(t: datetime) -> str:
    """XEP-0082 date-time."""
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
