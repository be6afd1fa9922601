"""Routing and permission rules as pure functions: plain data in, a decision out (no I/O, no
clock, no lock), so each rule is unit-tested on its own (tests/extensions/customer_service/test_policy.py)."""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import tzinfo
from typing import Any

from xmppd.errors import Condition

from .protocol import CsError
from .repository import MemberRecord, QueueRecord, SessionRecord
from .state import Agent


def eligible(
    qr: QueueRecord,
    members: Mapping[str, MemberRecord],
    agents: Mapping[str, Agent],
    loads: Mapping[str, int],
    offered_to: Iterable[str] = (),
    exclude: Iterable[str] = (),
    needs: str = "",
) -> list[str]:
    """The agents of ``qr`` who can take one more chat now: with every skill the chat ``needs``,
    available, under capacity, and (when offers time out) not holding an unanswered offer; in
    JID order."""
    skip = set(exclude)
    required = skill_set(needs)
    busy = set(offered_to) if qr.offer_timeout else set()
    out = []
    for jid, m in members.items():
        if m.role != "agent" or jid in skip or jid in busy:
            continue
        if not required <= skill_set(m.skills):
            continue
        a = agents.get(jid)
        if a is None or a.status(qr.name) != "available":
            continue
        if loads.get(jid, 0) >= qr.capacity:
            continue
        out.append(jid)
    return sorted(out)


def skill_set(text: str) -> frozenset[str]:
    return frozenset(text.split())


def pick(strategy: str, candidates: list[str], loads: Mapping[str, int], idle_since: Mapping[str, float], last: str | None) -> str | None:
    """The agent ``strategy`` chooses among ``candidates`` (sorted JIDs)."""
    if not candidates:
        return None
    if strategy == "least-busy":
        return min(candidates, key=lambda j: (loads.get(j, 0), idle_since.get(j, 0.0), j))
    if strategy == "longest-idle":
        return min(candidates, key=lambda j: (idle_since.get(j, 0.0), j))
    after = [j for j in candidates if last is None or j > last]  # round-robin
    return (after or candidates)[0]


def follows(queue: str | None, who: str, queues: Mapping[str, QueueRecord], members: Mapping[str, Mapping[str, MemberRecord]]) -> bool:
    """Whether ``who`` may subscribe to a queue's presence (``queue``: its name) or to the
    component's (``queue`` None): an agent of that queue, or of any queue for the component."""
    def agent_of(ms: Mapping[str, MemberRecord]) -> bool:
        return ms.get(who) is not None and ms[who].role == "agent"

    if queue is None:
        return any(agent_of(ms) for ms in members.values())
    return queue in queues and agent_of(members.get(queue, {}))


def check_handler(s: SessionRecord, who: str, role: str | None) -> None:
    """The session's agent (once active) or a supervisor of its queue may act on it."""
    if s.agent == who and s.state == "active":
        return
    if role == "supervisor":
        return
    raise CsError(Condition.FORBIDDEN, "not_handler")


def transfer_target(text: str, members: Mapping[str, MemberRecord], queues: Iterable[str]) -> tuple[str | None, str | None]:
    """What a typed transfer names: ``queue:<name>``, an agent's JID, nick or local part, or a
    queue name; (agent, None) or (None, queue)."""
    if text.startswith("queue:"):
        return None, text[6:]
    if "@" in text:
        return text, None
    for jid, m in members.items():
        if m.role == "agent" and (m.nick == text or jid.split("@", 1)[0] == text):
            return jid, None
    if text in set(queues):
        return None, text
    raise CsError(Condition.ITEM_NOT_FOUND, "no_such_target", name=repr(text))


def due_offers(offers: Mapping[str, float], open_sessions: Mapping[str, SessionRecord], now: float) -> list[str]:
    """Sessions whose offer has run out, the oldest deadline first."""
    return [sid for sid, deadline in sorted(offers.items(), key=lambda kv: kv[1])
            if deadline <= now and sid in open_sessions and open_sessions[sid].state == "offered"]


def idle_sessions(open_sessions: Mapping[str, SessionRecord], queues: Mapping[str, QueueRecord], now: float) -> list[str]:
    """Active sessions whose visitor has been silent longer than their queue's idle timeout."""
    out = []
    for sid, s in open_sessions.items():
        qr = queues.get(s.queue)
        if qr and s.state == "active" and qr.idle_timeout and now - s.last_visitor_at.timestamp() >= qr.idle_timeout:
            out.append(sid)
    return out


def estimated_wait(n: int, average_wait: float, served: int, agents_online: int) -> int | None:
    """Seconds a visitor at place ``n`` may expect to wait: the queue's average wait so far,
    once per place ahead of them and their own, shared among the agents online; None before the
    queue has served anyone (no figure to go by)."""
    if served <= 0 or n <= 0:
        return None
    return max(0, round(average_wait * n / max(1, agents_online)))


def daily_figures(sessions: Iterable[SessionRecord], tz: tzinfo) -> list[tuple[str, str | None, int, int, float | None, float | None]]:
    """Per day (in ``tz``) for the queue (agent None) and for each agent: chats, rated chats,
    average rating, average wait in seconds (of the chats an agent took), sorted by day and agent."""
    acc: dict[tuple[str, str | None], list[Any]] = {}
    for s in sessions:
        day = s.created_at.astimezone(tz).date().isoformat()
        for key in ((day, None), (day, s.agent)) if s.agent else ((day, None),):
            a = acc.setdefault(key, [0, [], []])
            a[0] += 1
            if s.rating is not None:
                a[1].append(s.rating)
            if s.assigned_at is not None:
                a[2].append((s.assigned_at - s.created_at).total_seconds())
    out = []
    for (day, agent), (n, ratings, waits) in sorted(acc.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")):
        out.append((day, agent, n, len(ratings), sum(ratings) / len(ratings) if ratings else None, sum(waits) / len(waits) if waits else None))
    return out
