"""urn:xmppd:cs:0 on the wire: building the elements the service sends and reading the ones it
receives (schemas/cs-0.xsd). Pure: records in, elements out, and back."""
from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable

from lxml import etree

from xmppd.errors import Condition
from xmppd.xml import ns
from xmppd.xml.attrs import int_attr
from xmppd.xml.builder import element, stanza, sub

from . import prechat
from .hours import parse_holidays, parse_hours, zone
from .protocol import NICK_NS, NS, CsError, check_queue_name, q, stamp
from .repository import STRATEGIES, QueueRecord, SessionRecord, TranscriptLine

QUEUE_SETTINGS = ("strategy", "capacity", "idle-timeout", "offer-timeout", "max-misses", "hours", "timezone", "holidays", "skills")
_SKILL = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,31}$")
MAX_SKILLS = 16


# What a chat carries beside its text, relayed between visitor and agent (docs §4.3): chat states
# (XEP-0085), receipts (XEP-0184), corrections (XEP-0308), links and uploads (XEP-0066 OOB, the
# URL an XEP-0363 upload gives).
CHATSTATES_NS = "http://jabber.org/protocol/chatstates"
RECEIPTS_NS = "urn:xmpp:receipts"
CORRECT_NS = "urn:xmpp:message-correct:0"
OOB_NS = "jabber:x:oob"
CARRIED = (CHATSTATES_NS, RECEIPTS_NS, CORRECT_NS, OOB_NS)
MAX_CARRIED = 8  # elements copied from one message


def carried(message: etree._Element) -> list[etree._Element]:
    """Copies of the children of ``message`` the relay carries, at most ``MAX_CARRIED``."""
    out = []
    for child in message:
        if isinstance(child.tag, str) and child.tag.startswith("{") and child.tag[1:].split("}", 1)[0] in CARRIED:
            out.append(etree.fromstring(etree.tostring(child)))
            if len(out) == MAX_CARRIED:
                break
    return out


def oob_urls(payloads: Iterable[etree._Element]) -> list[str]:
    """The links (XEP-0066) among carried elements, for the transcript."""
    return [u.strip() for p in payloads if p.tag == f"{{{OOB_NS}}}x" for u in [p.findtext(f"{{{OOB_NS}}}url") or ""] if u.strip()]


def chat_message(frm: str, to: str, body: str | None, *payloads: etree._Element, nick: str | None = None, id: str | None = None) -> etree._Element:
    """A ``chat`` message from one of the service's JIDs, with a XEP-0172 nick when given; a
    relayed message keeps its sender's ``id``, so receipts and corrections point at it."""
    st = stanza("message", to=to, frm=frm, type="chat", id=id)
    if body is not None:
        sub(st, f"{{{ns.CLIENT}}}body", text=body)
    if nick:
        sub(st, f"{{{NICK_NS}}}nick", text=nick)
    for p in payloads:
        st.append(p)
    return st


def queue_name(p: etree._Element) -> str:
    return check_queue_name(p.get("name") or "")


def queue_from_element(old: QueueRecord, p: etree._Element) -> QueueRecord:
    """``old`` with what a ``<queue/>`` element sets (absent settings: kept); checked."""
    strategy = p.get("strategy", old.strategy)
    if strategy not in STRATEGIES:
        raise CsError(Condition.BAD_REQUEST, "strategy", strategies=", ".join(STRATEGIES))
    hours = p.get("hours", old.hours)
    parse_hours(hours)
    timezone = p.get("timezone", old.timezone) or "UTC"
    zone(timezone)
    holidays = ",".join(sorted(d.isoformat() for d in parse_holidays(p.get("holidays", old.holidays))))
    if len(holidays) > 1000:
        raise CsError(Condition.BAD_REQUEST, "holidays_many")
    form = p.find(q("prechat"))  # present: replaces the pre-chat form (no fields: none)
    return dataclasses.replace(
        old,
        display_name=p.get("display-name", old.display_name)[:191],
        welcome=p.findtext(q("welcome"), old.welcome),
        offline_text=p.findtext(q("offline"), old.offline_text),
        strategy=strategy,
        capacity=int_attr(p, "capacity", old.capacity, low=1, high=1000),  # type: ignore[arg-type]
        idle_timeout=int_attr(p, "idle-timeout", old.idle_timeout, high=7 * 86400),  # type: ignore[arg-type]
        offer_timeout=int_attr(p, "offer-timeout", old.offer_timeout, high=3600),  # type: ignore[arg-type]
        max_misses=int_attr(p, "max-misses", old.max_misses, high=1000),  # type: ignore[arg-type]
        hours=hours,
        timezone=timezone,
        holidays=holidays,
        skills=skills_attr(p, old.skills),
        prechat=old.prechat if form is None else prechat.dumps(prechat.from_element(form)),
    )


def skills_attr(p: etree._Element, default: str = "") -> str:
    """The ``skills`` attribute: up to 16 space-separated names (lower case letters, digits,
    ``_.-``), normalised sorted and without repeats; absent: ``default``."""
    text = p.get("skills")
    if text is None:
        return default
    names = sorted(set(text.lower().split()))
    if len(names) > MAX_SKILLS or not all(_SKILL.match(n) for n in names):
        raise CsError(Condition.BAD_REQUEST, "skills", most=MAX_SKILLS)
    return " ".join(names)


def queue_element(qr: QueueRecord, jid: str, full: bool) -> etree._Element:
    el = element(q("queue"), {"name": qr.name, "jid": jid, "display-name": qr.display_name})
    if full:
        for k in QUEUE_SETTINGS:
            v = str(getattr(qr, k.replace("-", "_")))
            if v or k not in ("holidays", "skills"):
                el.set(k, v)
        sub(el, q("welcome"), text=qr.welcome)
        sub(el, q("offline"), text=qr.offline_text)
        form = prechat.loads(qr.prechat)
        if form is not None:
            el.append(prechat.definition_element(form))
    return el


def session_element(s: SessionRecord, queue_jid: str, nick: str | None) -> etree._Element:
    attrs = {"id": s.id, "queue": queue_jid, "visitor": s.visitor, "state": s.state, "created": stamp(s.created_at)}
    if s.agent:
        attrs["agent"] = s.agent
        attrs["nick"] = nick or s.agent.split("@", 1)[0]
    if s.assigned_at:
        attrs["wait"] = f"{(s.assigned_at - s.created_at).total_seconds():.1f}"
    if s.closed_at:
        attrs["closed"] = stamp(s.closed_at)
    if s.close_reason:
        attrs["reason"] = s.close_reason
    if s.rating is not None:
        attrs["rating"] = str(s.rating)
    el = element(q("session"), attrs)
    if s.comment:
        sub(el, q("comment"), text=s.comment)
    answers = prechat.answers_element(prechat.answers_loads(s.answers))
    if answers is not None:
        el.append(answers)
    return el


def transcript_element(session: str, lines: Iterable[TranscriptLine], *, default_ns: bool = True) -> etree._Element:
    out = element(q("transcript"), {"session": session}, default_ns=NS if default_ns else None)
    for ln in lines:
        sub(out, q("line"), {"role": ln.role, "nick": ln.nick, "at": stamp(ln.at)}, text=ln.body)
    return out


def transcript_text(lines: Iterable[TranscriptLine]) -> str:
    """Lines as plain text, for a client that shows only bodies."""
    return "\n".join(f"[{ln.role}{' ' + ln.nick if ln.nick else ''}] {ln.body}" for ln in lines)
