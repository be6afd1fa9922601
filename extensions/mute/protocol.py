"""Group mute (urn:xmppd:mute:0, docs/mute.md): the wire vocabulary and the notice texts.

Elements are built here and nowhere else, so that what the server sends matches
``schemas/mute-0.xsd``. Notice bodies are readable sentences in the room's language, from the
catalogues in ``locale/`` (English and Chinese; other languages fall back to English).
"""

from __future__ import annotations

import functools
import math
from datetime import datetime
from pathlib import Path
from typing import Final

from lxml import etree

from xmppd import timestamps
from xmppd.errors import Condition, ErrorType, StanzaError
from xmppd.i18n import Catalog, chain
from xmppd.xml import ns
from xmppd.xml.builder import element, sub

from .repository import AuditEntry, Ban, Mute, MuteAll

NS: Final = "urn:xmppd:mute:0"
PREFIX: Final = "{" + NS + "}"

#: Room configuration fields (XEP-0045 §10.2 form, via MUC's CONFIG_FORM event).
LANG_FIELD: Final = "muc#roomconfig_lang"
BLOCK_PRIVATE_FIELD: Final = "xmppd#mute_block_private"
EXEMPT_MODERATORS_FIELD: Final = "xmppd#mute_all_exempt_moderators"
ALLOWLIST_FIELD: Final = "xmppd#mute_all_allowlist"


def q(name: str) -> str:
    return PREFIX + name


iso = timestamps.auto  # the server keeps end times on whole seconds


# ------------------------------------------------------------------------------ reading requests

MAX_REASON = 1024


def reason_of(payload: etree._Element) -> str | None:
    reason = (payload.findtext(q("reason")) or "").strip() or None
    if reason is not None and len(reason) > MAX_REASON:
        raise StanzaError(Condition.BAD_REQUEST, f"a reason is at most {MAX_REASON} characters")
    return reason


def lang_of(st: etree._Element | None, payload: etree._Element | None = None) -> str | None:
    for el in (payload, st):
        if el is not None and el.get(ns.XML_LANG):
            return el.get(ns.XML_LANG)[:35]  # type: ignore[index]
    return None


# ------------------------------------------------------------------------------ building

def remaining(until: datetime | None, now: datetime) -> int | None:
    if until is None:
        return None
    return max(0, math.ceil((until - now).total_seconds()))


# ------------------------------------------------------------------------------ elements


def _reason(parent: etree._Element, reason: str | None) -> None:
    if reason:
        sub(parent, q("reason"), text=reason)


def item(m: Mute, now: datetime, *, nick: str | None = None) -> etree._Element:
    """One mute, as ``list`` and ``mute`` results show it."""
    attrs = {"jid": m.jid, "by": m.actor, "since": iso(m.created_at), "source": m.source}
    if nick:
        attrs["nick"] = nick
    if m.until is not None:
        attrs["until"] = iso(m.until)
        attrs["remaining"] = str(remaining(m.until, now))
    el = element(q("item"), attrs, default_ns=NS)
    _reason(el, m.reason)
    return el


def all_element(state: MuteAll) -> etree._Element:
    el = element(q("all"), {"by": state.actor, "since": iso(state.since)}, default_ns=NS)
    _reason(el, state.reason)
    return el


def status(*, muted: Mute | None, all_muted: MuteAll | None, platform: Mute | None, now: datetime) -> etree._Element:
    el = element(q("status"), {"muted": "true" if muted or platform else "false"}, default_ns=NS)
    if muted is not None:
        r = sub(el, q("room"), {"by": muted.actor, "since": iso(muted.created_at)})
        if muted.until is not None:
            r.set("until", iso(muted.until))
            r.set("remaining", str(remaining(muted.until, now)))
        _reason(r, muted.reason)
    if all_muted is not None:
        el.append(all_element(all_muted))
        el.set("muted", "true")
    if platform is not None:
        p = sub(el, q("platform"), {"since": iso(platform.created_at)})
        if platform.until is not None:
            p.set("until", iso(platform.until))
            p.set("remaining", str(remaining(platform.until, now)))
        _reason(p, platform.reason)
    return el


def audit_entry(e: AuditEntry) -> etree._Element:
    attrs = {"id": str(e.id), "at": iso(e.at), "actor": e.actor, "action": e.action}
    if e.room:
        attrs["room"] = e.room
    else:
        attrs["scope"] = "platform"
    if e.target:
        attrs["target"] = e.target
    if e.seconds is not None:
        attrs["seconds"] = str(e.seconds)
    if e.until is not None:
        attrs["until"] = iso(e.until)
    el = element(q("entry"), attrs, default_ns=NS)
    _reason(el, e.reason)
    return el


def notice(action: str, *, nick: str | None = None, jid: str | None = None, actor_nick: str | None = None,
           actor: str | None = None, seconds: int | None = None, until: datetime | None = None,
           reason: str | None = None, scope: str = "room") -> etree._Element:
    """The machine-readable part of a mute notice (beside the readable body)."""
    attrs = {"action": action}
    if scope != "room":
        attrs["scope"] = scope
    for key, value in (("nick", nick), ("jid", jid), ("actor-nick", actor_nick), ("actor", actor)):
        if value:
            attrs[key] = value
    if seconds is not None:
        attrs["seconds"] = str(seconds)
    if until is not None:
        attrs["until"] = iso(until)
    el = element(q("notice"), attrs, default_ns=NS)
    _reason(el, reason)
    return el


# ------------------------------------------------------------------------------ errors


def muted_error(room: str, m: Mute) -> StanzaError:
    """A member muted in a room: forbidden + <muted/>."""
    app = element(q("muted"), {"room": room, "by": m.actor}, default_ns=NS)
    return _until_error(app, m, "you are muted in this room", "a moderator")


def all_muted_error(room: str, state: MuteAll) -> StanzaError:
    app = element(q("all-muted"), {"room": room, "since": iso(state.since)}, default_ns=NS)
    return _forbidden(app, "everyone is muted in this room; only owners and admins may speak", state.reason)


def platform_muted_error(m: Mute) -> StanzaError:
    app = element(q("platform-muted"), {}, default_ns=NS)
    return _until_error(app, m, "your account is muted on this server", "an administrator")


def _until_error(app: etree._Element, m: Mute, what: str, lifter: str) -> StanzaError:
    """Mute ``m`` told in ``app`` and the text: ``what`` until its end, or until ``lifter`` lifts it."""
    if m.until is not None:
        app.set("until", iso(m.until))
        return _forbidden(app, f"{what} until {iso(m.until)}", m.reason)
    return _forbidden(app, f"{what} until {lifter} lifts it", m.reason)


def _forbidden(app: etree._Element, text: str, reason: str | None) -> StanzaError:
    _reason(app, reason)
    if reason:
        text += f" (reason: {reason})"
    return StanzaError(Condition.FORBIDDEN, text, app=app)


BODY: Final = f"{{{ns.CLIENT}}}body"


def filtered_error(room: str | None, word: str, *, platform: bool = False) -> StanzaError:
    """A keyword filter refused a message: not-acceptable + <filtered/> (``scope='platform'``
    for the platform list; no ``room`` in a one-to-one chat)."""
    app = element(q("filtered"), {"room": room} if room else {}, default_ns=NS)
    if platform:
        app.set("scope", "platform")
        return StanzaError(Condition.NOT_ACCEPTABLE, f"this server does not allow {word!r} in messages", app=app)
    return StanzaError(Condition.NOT_ACCEPTABLE, f"this room does not allow {word!r} in messages", app=app)


def ban_element(b: Ban, now: datetime) -> etree._Element:
    """A timed ban, as the XEP-0045 ban list shows it inside its <item/>."""
    return element(q("ban"), {"until": iso(b.until), "remaining": str(remaining(b.until, now)), "by": b.actor},
                   default_ns=NS)


def appeal_body(m: Mute, text: str) -> str:
    """The ticket text of an appeal against platform mute ``m``."""
    until = iso(m.until) if m.until is not None else "until lifted"
    why = f", reason: {m.reason}" if m.reason else ""
    return f"Appeal against the platform mute of {m.jid} (by {m.actor} since {iso(m.created_at)}, {until}{why}): {text}"


def slow_mode_error(room: str, interval: int, wait: int) -> StanzaError:
    """Slow mode: the member spoke less than ``interval`` seconds ago; policy-violation + <slow-mode/>."""
    app = element(q("slow-mode"), {"room": room, "seconds": str(interval), "wait": str(wait)}, default_ns=NS)
    return StanzaError(Condition.POLICY_VIOLATION,  # type wait, as Prosody's mod_muc_limits answers
                       f"slow mode: one message every {interval} seconds; wait {wait} more seconds", type=ErrorType.WAIT, app=app)


# ------------------------------------------------------------------------------ texts

LOCALE = Path(__file__).parent / "locale"  # the texts, one TOML catalogue per language (xmppd/i18n.py)
_UNITS = ((86400, "day"), (3600, "hour"), (60, "minute"), (1, "second"))


@functools.cache
def catalog() -> Catalog:
    return Catalog.load(LOCALE)


def text(lang: str | None, key: str, /, **fields: object) -> str:
    """Text ``key`` of the mute catalogue in ``lang`` (falling back along its chain to English)."""
    return catalog().template(chain(lang), key)[1].format(**fields)


def is_zh(lang: str | None) -> bool:
    return bool(lang) and lang.lower().startswith("zh")  # type: ignore[union-attr]


def duration(seconds: int, lang: str | None) -> str:
    """The largest whole unit: 600 -> "10 minutes" / "10 分钟", 90 -> "90 seconds"."""
    for size, unit in _UNITS:
        if seconds % size == 0:
            n = seconds // size
            return text(lang, f"unit.{unit}_{'one' if n == 1 else 'many'}", n=n)
    return text(lang, "unit.second_many", n=seconds)  # pragma: no cover - the loop always ends at 1 second


def notice_body(action: str, lang: str | None, *, target: str = "", actor: str = "", seconds: int | None = None,
                reason: str | None = None, scope: str = "room") -> str:
    """"alice was muted for 10 minutes by bob" / "bob 将 alice 禁言 10 分钟"."""
    if action not in ("mute", "unmute", "expire", "mute-all", "unmute-all"):
        raise ValueError(f"no notice text for {action!r}")
    where = text(lang, "where.platform" if scope == "platform" else "where.room")
    key = "notice.mute_for" if action == "mute" and seconds else f"notice.{action}"
    body_text = text(lang, key, target=target, actor=actor, where=where,
                     duration=duration(seconds, lang) if seconds else "")
    if reason:
        body_text = text(lang, "notice.reason", text=body_text, reason=reason)
    return body_text


def body(parent: etree._Element, text: str, lang: str) -> etree._Element:
    b = sub(parent, f"{{{ns.CLIENT}}}body", text=text)
    b.set(ns.XML_LANG, lang)
    return b
