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


def test_skills_filter_the_eligible_agents() -> None:
    ms = {"a@x": MemberRecord("support", "a@x", "agent", "", "billing zh"), "b@x": MemberRecord("support", "b@x", "agent", "", "billing")}
    agents = {"a@x": online("a@x"), "b@x": online("b@x")}
    assert policy.eligible(queue(), ms, agents, {}, needs="billing") == ["a@x", "b@x"]
    assert policy.eligible(queue(), ms, agents, {}, needs="billing zh") == ["a@x"]
    assert policy.eligible(queue(), ms, agents, {}, needs="en") == []


def test_estimated_wait() -> None:
    assert policy.estimated_wait(3, 40.0, served=5, agents_online=2) == 60
    assert policy.estimated_wait(1, 40.0, served=5, agents_online=0) == 40
    assert policy.estimated_wait(2, 40.0, served=0, agents_online=1) is None  # nothing to go by


def test_opening_hours() -> None:
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from xmppd_extensions.customer_service.hours import is_open, parse_hours

    def at(local: str, tz: str = "Asia/Shanghai") -> float:
        return datetime.fromisoformat(local).replace(tzinfo=ZoneInfo(tz)).timestamp()

    assert is_open("", at("2026-12-07 03:00"))  # no hours: always open
    assert is_open("09:00-17:00", at("2026-12-07 10:00", "UTC"))  # the old form: every day, UTC
    assert not is_open("09:00-17:00", at("2026-12-07 10:00"))  # 02:00 UTC
    assert is_open("09:00-17:00", at("2026-12-07 10:00"), "Asia/Shanghai")
    assert is_open("sat-mon 10:00-12:00", at("2026-12-06 11:00"), "Asia/Shanghai")  # a range across the week's end
    assert not is_open("sat-mon 10:00-12:00", at("2026-12-08 11:00"), "Asia/Shanghai")
    assert not is_open("", at("2026-12-25 11:00"), "Asia/Shanghai", "2026-12-25")
    assert [r.days for r in parse_hours("fri 20:00-24:00")] == [frozenset({4})]
    for bad in ("fri-xyz 09:00-10:00", "09:00-24:30", "25:00-26:00"):
        with pytest.raises(StanzaError):
            parse_hours(bad)


def test_daily_figures_by_day_in_the_time_zone() -> None:
    from zoneinfo import ZoneInfo

    late = T0 + timedelta(hours=17)  # 2026-01-02 01:00 in Shanghai
    rows = [
        session("1", "closed", "a@x").replace(assigned_at=T0 + timedelta(seconds=10), rating=5),
        session("2", "closed", "b@x").replace(assigned_at=T0 + timedelta(seconds=30), rating=3),
        session("3", "closed").replace(created_at=late),  # never served
    ]
    got = policy.daily_figures(rows, ZoneInfo("Asia/Shanghai"))
    assert got == [
        ("2026-01-01", None, 2, 2, 4.0, 20.0),
        ("2026-01-01", "a@x", 1, 1, 5.0, 10.0),
        ("2026-01-01", "b@x", 1, 1, 3.0, 30.0),
        ("2026-01-02", None, 1, 0, None, None),
    ]
