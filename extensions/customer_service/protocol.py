"""urn:xmppd:cs:0: the customer-service namespace, its element names and small parsers.

See docs/customer-service.md and schemas/cs-0.xsd.
"""
from __future__ import annotations

import functools
import re
from collections.abc import Collection, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from xmppd import timestamps
from xmppd.errors import Condition
from xmppd.i18n import Catalog, LocalisedError

NS = "urn:xmppd:cs:0"
NICK_NS = "http://jabber.org/protocol/nick"  # XEP-0172


LOCALE = Path(__file__).parent / "locale"


def q(name: str) -> str:
    return f"{{{NS}}}{name}"


@functools.cache
def catalog() -> Catalog:
    """The customer-service texts (``locale/<lang>.toml``), loaded once."""
    return Catalog.load(LOCALE)


class CsError(LocalisedError):
    """A stanza error whose text is the catalogue's ``error.<key>``, told in the requester's
    language where it leaves the server (xmppd/i18n.py)."""

    def __init__(self, condition: Condition, key: str, /, **fields: Any) -> None:
        super().__init__(condition, catalog(), "error." + key, **fields)


QUEUE_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_HOURS = re.compile(r"^(\d\d):(\d\d)-(\d\d):(\d\d)$")


def check_queue_name(name: str) -> str:
    if not QUEUE_NAME.match(name) or name.startswith("s-"):
        raise CsError(Condition.BAD_REQUEST, "queue_name")
    return name


_WIDE = str.maketrans({"！": "!", "／": "/"})  # what a Chinese input method types for ! and /
VISITOR_WORDS = ("close", "end", "rate")
AGENT_WORDS = ("accept", "reject", "close", "transfer", "pause", "resume", "help")


def parse_command(body: str, prefixes: Sequence[str], words: Collection[str]) -> tuple[str, str] | None:
    """``"!rate 4 不错"`` -> ``("rate", "4 不错")`` when the word after one of ``prefixes`` is one of
    ``words``; None when the body is no command. Prefixes match case-insensitively, and a
    full-width ``！``/``／`` counts as ``!``/``/``, so that every client and input method gets through."""
    text = body.strip()
    if not text:
        return None
    text = text[0].translate(_WIDE) + text[1:]
    low = text.lower()
    for p in prefixes:
        if low.startswith(p.lower()):
            parts = text[len(p):].split(None, 1)
            if parts and parts[0].lower() in words:
                return parts[0].lower(), (parts[1].strip() if len(parts) > 1 else "")
    return None


def parse_hours(text: str) -> list[tuple[int, int]]:
    """``"09:00-17:00,18:00-20:00"`` (UTC) -> minute ranges; an end before the start wraps past midnight."""
    ranges = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        m = _HOURS.match(part)
        if not m:
            raise CsError(Condition.BAD_REQUEST, "hours", part=repr(part))
        h1, m1, h2, m2 = (int(x) for x in m.groups())
        if h1 > 23 or h2 > 24 or m1 > 59 or m2 > 59:
            raise CsError(Condition.BAD_REQUEST, "hours_time", part=repr(part))
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


stamp = timestamps.micros  # XEP-0082 date-time
