"""Mute policy as pure functions: no I/O, no clock of their own, no server state.

The feature asks these; they answer from what they are given (times in seconds since the epoch).
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from lxml import etree

from xmppd.jid import JID
from xmppd.xml import ns

#: The room configuration field of slow mode: seconds a member waits between two messages.
SLOW_FIELD = "xmppd#mute_slow_seconds"


def slow_interval(extra: Mapping[str, Sequence[str]], most: int) -> int:
    """The room's slow-mode interval from its configuration extras, 0 (off) to ``most``; a value
    that is not a whole number counts as off."""
    raw = (extra.get(SLOW_FIELD) or ["0"])[0].strip()
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 9:
        return 0
    return min(int(raw), most)


def slow_wait(last: float | None, now: float, interval: int) -> int:
    """Whole seconds a member still waits before its next message (0: it may speak now)."""
    if interval <= 0 or last is None:
        return 0
    left = last + interval - now
    return max(0, math.ceil(left)) if left > 0 else 0


def prune_said(said: dict[JID, float], now: float, interval: int) -> None:
    """Forget the members whose last message no longer holds anybody back."""
    for who in [w for w, at in said.items() if at + interval <= now]:
        del said[who]


def batch_targets(targets: Sequence[JID], most: int) -> list[JID]:
    """The distinct members of a batch, in request order; ValueError when there are none or more
    than ``most``."""
    out = list(dict.fromkeys(targets))
    if not out:
        raise ValueError("name at least one member")
    if len(out) > most:
        raise ValueError(f"at most {most} members in one request")
    return out


# Namespaces of message payloads that carry nothing to read: chat states, receipts, chat markers,
# processing hints, carbons' <private/>, origin ids. Anything else (a body, a subject, reactions,
# an OOB link, a correction, an unknown payload) is content.
_SIGNALS = frozenset((
    "http://jabber.org/protocol/chatstates", "urn:xmpp:receipts", "urn:xmpp:chat-markers:0", ns.HINTS,
    "urn:xmpp:carbons:2", "urn:xmpp:sid:0",
))
_THREAD = f"{{{ns.CLIENT}}}thread"


def is_content(st: etree._Element) -> bool:
    """Whether a message carries anything for a person to read or see."""
    for child in st:
        tag = child.tag
        if not isinstance(tag, str) or tag == _THREAD:
            continue
        if etree.QName(tag).namespace not in _SIGNALS:
            return True
    return False
