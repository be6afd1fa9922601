"""Routing and permission rules as pure functions (extensions/customer_service/policy.py): no
server, no storage, no clock."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from xmppd.errors import Condition, StanzaError
from xmppd_extensions.customer_service import policy
from xmppd_extensions.customer_service.repository import MemberRecord, QueueRecord, SessionRecord
from xmppd_extensions.customer_service.state import Agent, LiveState

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def queue(**kw: object) -> QueueRecord:
    return QueueRecord(name="support", display_name="Support", **kw)  # type: ignore[arg-type]


def members(*jids: str, role: str = "agent") -> dict[str, MemberRecord]:
    return {j: MemberRecord("support", j, role, j.split("@")[0].title()) for j in jids}


def online(jid: str, show: str | None = None, idle: float = 0.0, paused: bool = False) -> Agent:
    return Agent(jid, {"support": {jid + "/pc": show}}, paused=paused, idle_since=idle)


def session(sid: str, state: str = "waiting", agent: str | None = None, seq: int = 1, last: datetime = T0) -> SessionRecord:
    return SessionRecord(sid, "support", "support", "v@x", state, seq, T0, last, agent=agent)


def test_eligible_only_available_agents_under_capacity() -> None:
    ms = members("a@x", "b@x", "c@x", "d@x") | members("s@x", role="supervisor")
    agents = {"a@x": online("a@x"), "b@x": online("b@x", "away"), "c@x": online("c@x", paused=True), "d@x": online("d@x"), "s@x": online("s@x")}
    assert policy.eligible(queue(capacity=2), ms, agents, {"d@x": 2}) == ["a@x"]
    assert policy.eligible(queue(capacity=3), ms, agents, {"d@x": 2}) == ["a@x", "d@x"]
    assert policy.eligible(queue(capacity=3), ms, agents, {}, exclude={"a@x"}) == ["d@x"]


def test_eligible_skips_a_pending_offer_only_when_offers_time_out() -> None:
    ms, agents = members("a@x", "b@x"), {"a@x": online("a@x"), "b@x": online("b@x")}
    assert policy.eligible(queue(offer_timeout=30), ms, agents, {}, offered_to={"a@x"}) == ["b@x"]
    assert policy.eligible(queue(offer_timeout=0), ms, agents, {}, offered_to={"a@x"}) == ["a@x", "b@x"]


def test_pick_by_strategy() -> None:
    c = ["a@x", "b@x", "c@x"]
    loads, idle = {"a@x": 2, "b@x": 1, "c@x": 1}, {"a@x": 5.0, "b@x": 9.0, "c@x": 3.0}
    assert policy.pick("least-busy", c, loads, idle, None) == "c@x"  # fewest chats, then longest idle
    assert policy.pick("longest-idle", c, loads, idle, None) == "c@x"
    assert policy.pick("round-robin", c, loads, idle, None) == "a@x"
    assert policy.pick("round-robin", c, loads, idle, "a@x") == "b@x"
    assert policy.pick("round-robin", c, loads, idle, "c@x") == "a@x"  # wraps around
    assert policy.pick("round-robin", [], loads, idle, None) is None


def test_follows_only_agents() -> None:
    qs = {"support": queue()}
    ms = {"support": members("a@x") | members("s@x", role="supervisor")}
    assert policy.follows("support", "a@x", qs, ms) and policy.follows(None, "a@x", qs, ms)
    assert not policy.follows("support", "s@x", qs, ms) and not policy.follows(None, "s@x", qs, ms)
    assert not policy.follows("sales", "a@x", qs, ms)


def test_check_handler() -> None:
    policy.check_handler(session("1", "active", "a@x"), "a@x", "agent")
    policy.check_handler(session("1", "active", "a@x"), "s@x", "supervisor")
    for s, who, role in [(session("1", "offered", "a@x"), "a@x", "agent"), (session("1", "active", "a@x"), "b@x", "agent")]:
        with pytest.raises(StanzaError) as err:
            policy.check_handler(s, who, role)
        assert err.value.condition is Condition.FORBIDDEN


def test_transfer_target() -> None:
    ms = members("ann@x", "bob@x")
    assert policy.transfer_target("queue:sales", ms, ["support"]) == (None, "sales")
    assert policy.transfer_target("carl@y", ms, ["support"]) == ("carl@y", None)
    assert policy.transfer_target("Bob", ms, ["support"]) == ("bob@x", None)  # the nick
    assert policy.transfer_target("ann", ms, ["support"]) == ("ann@x", None)  # the local part
    assert policy.transfer_target("support", ms, ["support"]) == (None, "support")
    with pytest.raises(StanzaError) as err:
        policy.transfer_target("nobody", ms, ["support"])
    assert err.value.condition is Condition.ITEM_NOT_FOUND


def test_due_offers_and_idle_sessions() -> None:
    now = T0.timestamp() + 100
    open_ = {"1": session("1", "offered", "a@x"), "2": session("2", "offered", "b@x"), "3": session("3", "waiting")}
    assert policy.due_offers({"2": now - 1, "1": now - 5, "3": now - 9}, open_, now) == ["1", "2"]
    assert policy.due_offers({"1": now + 1}, open_, now) == []
    active = {"4": session("4", "active", "a@x", last=T0), "5": session("5", "active", "a@x", last=T0 + timedelta(seconds=90))}
    assert policy.idle_sessions(active, {"support": queue(idle_timeout=60)}, now) == ["4"]
    assert policy.idle_sessions(active, {"support": queue(idle_timeout=0)}, now) == []


def test_live_state_line_and_head() -> None:
    st = LiveState(lambda: 0.0)
    for s in (session("b", seq=5), session("a", seq=3), session("c", "active", "a@x", seq=1)):
        st.index(s)
    assert [s.id for s in st.line("support")] == ["a", "b"]
    assert st.head_seq("support") == 2 and st.next_seq() == 6
    assert st.loads() == {"a@x": 1} and st.load("a@x") == 1
    st.unindex(st.open["a"])
    assert st.visitor_session("support", "v@x") is not None and [s.id for s in st.line("support")] == ["b"]
