"""What is only true while the server runs, rebuilt from storage at start: the queues and members
(mirrors of storage), the open sessions with their lines, agents' presence, pending offers, the
last position told to each visitor and the round-robin cursor. Plain data and lookups, no I/O."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from .repository import MemberRecord, QueueRecord, SessionRecord

AVAILABLE_SHOWS = (None, "chat")


@dataclass(slots=True)
class Agent:
    """Presence per queue, pause, missed offers, idleness."""

    jid: str
    presence: dict[str, dict[str, str | None]] = field(default_factory=dict)  # queue -> full JID -> show
    paused: bool = False
    misses: int = 0
    idle_since: float = 0.0  # last assignment, or when they came online

    def status(self, queue: str) -> str:
        shows = self.presence.get(queue)
        if not shows:
            return "offline"
        if self.paused:
            return "paused"
        return "available" if any(s in AVAILABLE_SHOWS for s in shows.values()) else "away"

    @property
    def online(self) -> bool:
        return any(self.presence.values())


class LiveState:
    def __init__(self, now: Callable[[], float]) -> None:
        self.now = now
        self.queues: dict[str, QueueRecord] = {}
        self.members: dict[str, dict[str, MemberRecord]] = {}
        self.open: dict[str, SessionRecord] = {}  # open sessions by id
        self.by_visitor: dict[tuple[str, str], str] = {}  # (entry queue, visitor) -> session id
        self.agents: dict[str, Agent] = {}
        self.offers: dict[str, float] = {}  # session id -> deadline
        self.tried: dict[str, set[str]] = {}  # session id -> agents offered it already
        self.told: dict[str, int] = {}  # session id -> last position sent
        self.rr: dict[str, str] = {}  # queue -> last agent served (round-robin)
        # Beside a chat's one agent, while the server runs: supervisors watching it (they may
        # whisper to the agent) and agents the chat's agent invited (they write to the visitor).
        self.watchers: dict[str, set[str]] = {}  # session id -> supervisors
        self.helpers: dict[str, set[str]] = {}  # session id -> invited agents
        self.seq = 0

    # ------------------------------------------------------------------ sessions

    def index(self, s: SessionRecord) -> None:
        self.open[s.id] = s
        self.by_visitor[(s.entry, s.visitor)] = s.id
        self.seq = max(self.seq, s.line_seq)

    def unindex(self, s: SessionRecord) -> None:
        self.open.pop(s.id, None)
        if self.by_visitor.get((s.entry, s.visitor)) == s.id:
            del self.by_visitor[(s.entry, s.visitor)]
        self.offers.pop(s.id, None)
        self.tried.pop(s.id, None)
        self.told.pop(s.id, None)
        self.watchers.pop(s.id, None)
        self.helpers.pop(s.id, None)

    def unindex_queue(self, queue: str) -> None:
        """Forget ``queue``'s live line and chats (another cluster node owns it now); storage keeps them."""
        for s in [s for s in self.open.values() if s.queue == queue]:
            self.unindex(s)
        self.rr.pop(queue, None)
        for a in self.agents.values():
            a.presence.pop(queue, None)

    def others(self, sid: str) -> list[str]:
        """Who else follows chat ``sid``: its watchers and invited agents."""
        return sorted(self.watchers.get(sid, set()) | self.helpers.get(sid, set()))

    def visitor_session(self, entry: str, visitor: str) -> SessionRecord | None:
        sid = self.by_visitor.get((entry, visitor))
        return self.open.get(sid) if sid else None

    def line(self, queue: str) -> list[SessionRecord]:
        """Sessions waiting (or being offered) in ``queue``, first come first served."""
        return sorted((s for s in self.open.values() if s.queue == queue and s.state in ("waiting", "offered")), key=lambda s: (s.line_seq, s.id))

    def next_seq(self) -> int:
        self.seq = max(self.seq + 1, int(self.now() * 1000))
        return self.seq

    def head_seq(self, queue: str) -> int:
        """A place before everyone in ``queue``'s line."""
        line = self.line(queue)
        return (line[0].line_seq - 1) if line else self.next_seq()

    def load(self, agent: str) -> int:
        return sum(1 for s in self.open.values() if s.agent == agent and s.state in ("offered", "active"))

    def loads(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for s in self.open.values():
            if s.agent and s.state in ("offered", "active"):
                out[s.agent] = out.get(s.agent, 0) + 1
        return out

    def offered_to(self) -> set[str]:
        return {s.agent for s in self.open.values() if s.state == "offered" and s.agent}

    # ------------------------------------------------------------------ members and agents

    def role(self, queue: str, jid: str) -> str | None:
        m = self.members.get(queue, {}).get(jid)
        return m.role if m else None

    def nick(self, queue: str, agent: str) -> str:
        m = self.members.get(queue, {}).get(agent)
        return (m.nick if m and m.nick else None) or agent.split("@", 1)[0]

    def agent(self, jid: str) -> Agent:
        a = self.agents.get(jid)
        if a is None:
            a = self.agents[jid] = Agent(jid, idle_since=self.now())
        return a

    def status(self, queue: str, jid: str) -> str:
        a = self.agents.get(jid)
        return a.status(queue) if a is not None else "offline"

    def queues_of(self, agent: str) -> list[str]:
        return sorted(n for n, ms in self.members.items() if agent in ms)

    def agent_queues(self, who: str) -> list[str]:
        """The queues ``who`` serves as an agent."""
        return sorted(n for n, ms in self.members.items() if ms.get(who) is not None and ms[who].role == "agent")

    def forget_tries(self) -> None:
        """A new chance for every waiting visitor: someone came online or freed a seat."""
        self.tried.clear()
