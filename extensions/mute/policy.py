"""Mute policy as pure functions: no I/O, no clock of their own, no server state.

The feature asks these; they answer from what they are given (times in seconds since the epoch).
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

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


# ------------------------------------------------------------------------------ keyword filter

#: Room configuration fields of the keyword filter (docs/mute.md §3.5).
KEYWORDS_FIELD = "xmppd#mute_keywords"  # text-multi: one word or phrase per line
KEYWORDS_ACTION_FIELD = "xmppd#mute_keywords_action"  # block | mask | mute
KEYWORDS_MINUTES_FIELD = "xmppd#mute_keywords_minutes"  # the mute's length when the action is mute
KEYWORD_ACTIONS = ("block", "mask", "mute")
MAX_KEYWORD = 64  # characters in one word or phrase


@dataclass(frozen=True, slots=True)
class KeywordRule:
    words: tuple[str, ...]  # casefolded, longest first (so that masking covers the longest match)
    action: str
    minutes: int


def keyword_rule(extra: Mapping[str, Sequence[str]], most_words: int, most_minutes: int) -> KeywordRule | None:
    """The room's keyword filter from its configuration extras, None when it has no words. Words
    are trimmed and casefolded, empty lines and duplicates dropped, at most ``most_words`` of at
    most :data:`MAX_KEYWORD` characters kept; an unknown action counts as ``block``."""
    words: dict[str, None] = {}
    for line in extra.get(KEYWORDS_FIELD) or ():
        for w in line.splitlines():
            w = w.strip().casefold()[:MAX_KEYWORD]
            if w:
                words[w] = None
    if not words:
        return None
    action = (extra.get(KEYWORDS_ACTION_FIELD) or ["block"])[0]
    raw = (extra.get(KEYWORDS_MINUTES_FIELD) or ["10"])[0].strip()
    minutes = min(int(raw), most_minutes) if raw.isascii() and raw.isdigit() and len(raw) < 9 else 10
    kept = sorted(list(words)[:most_words], key=len, reverse=True)
    return KeywordRule(tuple(kept), action if action in KEYWORD_ACTIONS else "block", max(1, minutes))


def find_keyword(text: str, words: Sequence[str]) -> str | None:
    """The first listed word found in ``text`` (case-insensitive substring: works for Chinese,
    which has no spaces between words), else None."""
    folded = text.casefold()
    return next((w for w in words if w in folded), None)


def mask(text: str, words: Sequence[str]) -> str:
    """``text`` with every occurrence of the words replaced by as many ``*``."""
    folded = text.casefold()
    if len(folded) != len(text):  # casefolding changed lengths (ß -> ss): match on the text itself
        folded = text.lower() if len(text.lower()) == len(text) else text
    hidden = [False] * len(text)
    for w in words:
        start = folded.find(w)
        while start >= 0:
            for i in range(start, min(start + len(w), len(text))):
                hidden[i] = True
            start = folded.find(w, start + 1)
    return "".join("*" if h else c for c, h in zip(text, hidden, strict=True))


# ------------------------------------------------------------------ the platform keyword list

_STRENGTH = {"mask": 0, "block": 1, "mute": 2}


def normalize_keyword(word: str) -> str:
    """How a platform keyword is stored and matched: stripped, case-folded."""
    return word.strip().casefold()


def platform_hit(texts: Sequence[str], entries: Sequence[tuple[str, str, int]]) -> tuple[str, str, int] | None:
    """The (word, action, minutes) of the platform list that a message of these ``texts`` meets,
    the strongest action first (mute, then block, then mask; the longest word among equals),
    else None. ``entries`` are (case-folded word, action, minutes)."""
    folded = [t.casefold() for t in texts if t]
    found = [e for e in entries if any(e[0] in t for t in folded)]
    if not found:
        return None
    return max(found, key=lambda e: (_STRENGTH[e[1]], len(e[0])))
