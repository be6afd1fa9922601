"""urn:xmppd:cs:0 storage: the repository contract on memory, SQLite and MariaDB."""
from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from xmppd_extensions.customer_service.repository import MemberRecord, QueueRecord, SessionRecord, TranscriptLine

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def session(sid: str, *, queue: str = "support", visitor: str = "v@x", state: str = "waiting", seq: int = 1, **kw: Any) -> SessionRecord:
    return SessionRecord(sid, queue, queue, visitor, state, seq, kw.pop("created_at", at(0)), at(0), **kw)


async def test_queues_upsert_list_delete(cs_repo: Any) -> None:
    await cs_repo.put_queue(QueueRecord("support", "Support"))
    await cs_repo.put_queue(QueueRecord("sales", "Sales", strategy="least-busy", capacity=2, hours="09:00-17:00"))
    await cs_repo.put_queue(QueueRecord("support", "Support desk", idle_timeout=30))
    names = [(q.name, q.display_name) for q in await cs_repo.list_queues()]
    assert names == [("sales", "Sales"), ("support", "Support desk")]
    sales = await cs_repo.get_queue("sales")
    assert sales == QueueRecord("sales", "Sales", strategy="least-busy", capacity=2, hours="09:00-17:00")
    assert (await cs_repo.get_queue("support")).idle_timeout == 30
    assert await cs_repo.delete_queue("sales") is True
    assert await cs_repo.delete_queue("sales") is False
    assert await cs_repo.get_queue("sales") is None


async def test_members_follow_their_queue(cs_repo: Any) -> None:
    await cs_repo.put_queue(QueueRecord("support", "Support"))
    await cs_repo.put_queue(QueueRecord("sales", "Sales"))
    await cs_repo.set_member(MemberRecord("support", "a@x", "agent", "Alice"))
    await cs_repo.set_member(MemberRecord("support", "s@x", "supervisor"))
    await cs_repo.set_member(MemberRecord("sales", "a@x", "agent"))
    await cs_repo.set_member(MemberRecord("support", "a@x", "agent", "Alice B."))
    assert await cs_repo.members("support") == [MemberRecord("support", "a@x", "agent", "Alice B."), MemberRecord("support", "s@x", "supervisor")]
    assert await cs_repo.remove_member("support", "s@x") is True
    assert await cs_repo.remove_member("support", "s@x") is False
    await cs_repo.delete_queue("support")
    assert await cs_repo.members() == [MemberRecord("sales", "a@x", "agent")]


async def test_open_sessions_come_back_in_line_order(cs_repo: Any) -> None:
    await cs_repo.save_session(session("b", seq=20))
    await cs_repo.save_session(session("a", seq=10, state="active", agent="ag@x", assigned_at=at(5)))
    await cs_repo.save_session(session("c", seq=5, state="closed", closed_at=at(9), close_reason="idle"))
    await cs_repo.save_session(session("d", seq=-3))
    assert [s.id for s in await cs_repo.open_sessions()] == ["d", "a", "b"]
    got = await cs_repo.get_session("a")
    assert got == session("a", seq=10, state="active", agent="ag@x", assigned_at=at(5))
    moved = got.replace(queue="sales", state="waiting", agent=None, line_seq=1)
    await cs_repo.save_session(moved)
    assert await cs_repo.get_session("a") == moved
    assert await cs_repo.get_session("zz") is None


async def test_sessions_by_visitor_newest_first_and_wait_stats(cs_repo: Any) -> None:
    await cs_repo.save_session(session("a", visitor="v@x", created_at=at(0), assigned_at=at(10), state="closed"))
    await cs_repo.save_session(session("b", visitor="w@x", created_at=at(1), assigned_at=at(31), state="active"))
    await cs_repo.save_session(session("c", visitor="v@x", created_at=at(2)))
    await cs_repo.save_session(session("d", queue="sales", visitor="v@x", created_at=at(3)))
    assert [s.id for s in await cs_repo.sessions("support", "v@x")] == ["c", "a"]
    assert [s.id for s in await cs_repo.sessions("support")] == ["c", "b", "a"]
    assert [s.id for s in await cs_repo.sessions("support", limit=1)] == ["c"]
    assert await cs_repo.wait_stats("support") == (2, 20.0)
    assert await cs_repo.wait_stats("sales") == (0, 0.0)


async def test_rating_once_and_only_when_closed(cs_repo: Any) -> None:
    await cs_repo.save_session(session("a", state="active"))
    assert await cs_repo.rate("a", 4, "ok") is False
    await cs_repo.save_session(session("a", state="closed", closed_at=at(3)))
    assert await cs_repo.rate("a", 4, "ok") is True
    assert await cs_repo.rate("a", 5, "again") is False
    # A later save of a stale copy keeps the rating.
    await cs_repo.save_session(session("a", state="closed", closed_at=at(3)))
    s = await cs_repo.get_session("a")
    assert (s.rating, s.comment) == (4, "ok")
    with pytest.raises(ValueError):
        await cs_repo.rate("a", 6, "")
    assert await cs_repo.rate("nope", 3, "") is False


async def test_transcripts_in_order_and_the_last_lines(cs_repo: Any) -> None:
    await cs_repo.save_session(session("a"))
    await cs_repo.save_session(session("b"))
    for i in range(5):
        await cs_repo.add_line(TranscriptLine("a", at(i), "visitor" if i % 2 else "agent", "n", f"line {i} 你好"))
    await cs_repo.add_line(TranscriptLine("b", at(0), "system", "", "other"))
    assert [ln.body for ln in await cs_repo.transcript("a")] == [f"line {i} 你好" for i in range(5)]
    assert [ln.body for ln in await cs_repo.transcript("a", last=2)] == ["line 3 你好", "line 4 你好"]
    assert (await cs_repo.transcript("a"))[0] == TranscriptLine("a", at(0), "agent", "n", "line 0 你好")
    assert await cs_repo.transcript("zz") == []


async def test_tickets_per_queue(cs_repo: Any) -> None:
    t1 = await cs_repo.add_ticket("support", "v@x", "call me", at(1))
    t2 = await cs_repo.add_ticket("sales", "w@x", "price?", at(2))
    t3 = await cs_repo.add_ticket("support", "w@x", "再见", at(3))
    assert t1.id != t2.id != t3.id
    assert [(t.visitor, t.body, t.created_at) for t in await cs_repo.tickets("support")] == [("v@x", "call me", at(1)), ("w@x", "再见", at(3))]


async def test_live_tables_match_the_migration(db: Any) -> None:
    """The cs tables in repository.py and migrations/cs_0001 say the same, on SQLite and MariaDB."""
    import sqlalchemy as sa
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from xmppd.storage.metadata import metadata
    from xmppd.storage.migrations import upgrade
    from xmppd_extensions.customer_service.feature import CustomerService

    await upgrade(db, [CustomerService.migrations])

    def diff(conn: sa.Connection) -> list[object]:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        out = []
        for d in compare_metadata(context, metadata):
            text = repr(d)
            if "cs_" in text and not (isinstance(d, tuple) and d[0] == "remove_table"):
                out.append(d)
        return out

    async with db.transaction(readonly=True) as conn:
        assert await conn.run_sync(diff) == []


async def test_a_visitors_own_tickets_in_every_queue_newest_first(cs_repo: Any) -> None:
    await cs_repo.add_ticket("support", "v@x", "call me", at(1))
    await cs_repo.add_ticket("sales", "w@x", "price?", at(2))
    await cs_repo.add_ticket("sales", "v@x", "还在吗", at(3))
    assert [(t.queue, t.body) for t in await cs_repo.visitor_tickets("v@x")] == [("sales", "还在吗"), ("support", "call me")]
    assert [t.body for t in await cs_repo.visitor_tickets("v@x", limit=1)] == ["还在吗"]
    assert await cs_repo.visitor_tickets("nobody@x") == []


async def test_ticket_workflow_changes_are_conditional(cs_repo: Any) -> None:
    """Memory and SQL alike: the first reply takes an unassigned ticket, a closed ticket takes
    no reply, assignment or second close (the one winner of a race)."""
    from datetime import UTC, datetime

    from xmppd_extensions.customer_service.repository import TicketReply

    at = datetime(2026, 12, 7, tzinfo=UTC)
    t = await cs_repo.add_ticket("support", "v@x", "help", at)
    assert (await cs_repo.get_ticket(t.id)).state == "open"
    assert await cs_repo.reply_ticket(TicketReply(t.id, at, "ann@x", "on it"))
    assert await cs_repo.reply_ticket(TicketReply(t.id, at, "bob@x", "me too"))
    got = await cs_repo.get_ticket(t.id)
    assert (got.state, got.assignee) == ("assigned", "ann@x")  # the first replier
    assert await cs_repo.assign_ticket(t.id, "bob@x")
    assert await cs_repo.close_ticket(t.id, at)
    assert not await cs_repo.close_ticket(t.id, at)
    assert not await cs_repo.assign_ticket(t.id, "ann@x")
    assert not await cs_repo.reply_ticket(TicketReply(t.id, at, "ann@x", "late"))
    got = await cs_repo.get_ticket(t.id)
    assert (got.state, got.assignee, got.closed_at is not None) == ("closed", "bob@x", True)
    assert [r.body for r in await cs_repo.ticket_replies(t.id)] == ["on it", "me too"]
    assert await cs_repo.get_ticket(t.id + 1000) is None


async def test_claim_session_is_a_conditional_update(cs_repo: Any) -> None:
    from datetime import UTC, datetime

    at = datetime(2026, 12, 7, tzinfo=UTC)
    s = SessionRecord("abc", "support", "support", "v@x", "waiting", 1, at, at)
    await cs_repo.save_session(s)
    assert await cs_repo.claim_session(s.replace(state="active", agent="ann@x", assigned_at=at), "waiting", None)
    assert not await cs_repo.claim_session(s.replace(state="active", agent="bob@x", assigned_at=at), "waiting", None)
    assert (await cs_repo.get_session("abc")).agent == "ann@x"
    assert not await cs_repo.claim_session(s.replace(id="nope"), "waiting", None)


async def test_prechat_definition_and_answers_are_kept_and_tickets_filter_and_page(cs_repo: Any) -> None:
    """cs_0006 on memory, SQLite and MariaDB: a queue's pre-chat form and a chat's answers (JSON
    texts) come back as stored; tickets are listed by state, a page at a time."""
    form = '{"required":true,"title":"","fields":[{"var":"name","type":"text-single","label":"名字","required":true}]}'
    await cs_repo.put_queue(QueueRecord("support", "Support", prechat=form))
    assert (await cs_repo.get_queue("support")).prechat == form
    answers = '[{"var":"name","label":"名字","value":"Vera"}]'
    await cs_repo.save_session(session("p", answers=answers, skills="billing"))
    got = await cs_repo.get_session("p")
    assert (got.answers, got.skills) == (answers, "billing")
    ids = [(await cs_repo.add_ticket("support", "v@x", f"t{i}", at(i))).id for i in range(4)]
    await cs_repo.close_ticket(ids[1], at(9))
    assert [t.body for t in await cs_repo.tickets("support", state="open")] == ["t0", "t2", "t3"]
    assert [t.body for t in await cs_repo.tickets("support", state="closed")] == ["t1"]
    assert [t.body for t in await cs_repo.tickets("support", limit=2, offset=1)] == ["t1", "t2"]


async def test_queue_fence_refuses_a_stale_owner(cs_repo: Any) -> None:
    """A queue's chats are written with its cluster owner's token (docs/cluster.md §5): once a
    newer owner claimed the queue, an older token writes nothing; 0 (no cluster) is never fenced."""
    from xmppd_extensions.customer_service.repository import FencedOut

    await cs_repo.put_queue(QueueRecord("support", "Support"))
    assert await cs_repo.queue_fence("support") == 0
    assert await cs_repo.claim_queue("support", 3) is True
    assert await cs_repo.queue_fence("support") == 3
    assert await cs_repo.claim_queue("support", 2) is False  # an older owner cannot take it back
    assert await cs_repo.claim_queue("nowhere", 1) is True  # no such queue: nothing to guard
    await cs_repo.save_session(session("a"), 3)
    with pytest.raises(FencedOut):
        await cs_repo.save_session(session("a", state="closed", closed_at=at(1), close_reason="idle"), 2)
    with pytest.raises(FencedOut):
        await cs_repo.claim_session(session("a", state="active", agent="ag@x"), "waiting", None, 2)
    assert (await cs_repo.get_session("a")).state == "waiting"
    assert await cs_repo.claim_session(session("a", state="active", agent="ag@x"), "waiting", None, 3) is True
    await cs_repo.save_session(session("a", state="active", agent="ag@x", seq=2))  # token 0: unfenced
    assert [s.id for s in await cs_repo.open_sessions("support")] == ["a"]
    assert await cs_repo.open_sessions("sales") == []


async def test_open_chat_follows_a_transfer(cs_repo: Any) -> None:
    await cs_repo.save_session(session("a", visitor="v@x"))
    await cs_repo.save_session(session("b", visitor="w@x", state="closed", closed_at=at(1), close_reason="idle"))
    assert (await cs_repo.open_chat("support", "v@x")).id == "a"
    assert await cs_repo.open_chat("support", "w@x") is None
    moved = (await cs_repo.get_session("a")).replace(queue="sales")
    await cs_repo.save_session(moved)
    assert await cs_repo.open_chat("support", "v@x") == moved
    assert await cs_repo.open_chat("sales", "v@x") is None


async def test_claim_session_with_capacity_counts_the_agents_chats_in_every_queue(cs_repo: Any) -> None:
    """docs/cluster.md §5: a claim with ``capacity`` gives the chat only while its agent holds
    fewer offered or active chats than that in every queue together, counted in the claim's
    transaction: two claims at once (two nodes) for one free seat, exactly one wins."""
    for q in ("support", "sales"):
        await cs_repo.put_queue(QueueRecord(q, q.title()))
        await cs_repo.set_member(MemberRecord(q, "ann@x", "agent", "Ann"))
    await cs_repo.save_session(session("a", state="active", agent="ann@x"))
    for sid, q in (("b", "sales"), ("c", "support"), ("d", "sales")):
        await cs_repo.save_session(session(sid, queue=q))
    # One chat in support: a second seat is free in sales, none after it.
    assert await cs_repo.claim_session(session("b", queue="sales", state="offered", agent="ann@x"), "waiting", None, capacity=2)
    assert not await cs_repo.claim_session(session("c", state="offered", agent="ann@x"), "waiting", None, capacity=2)
    assert (await cs_repo.get_session("c")).state == "waiting"
    # Its own row is not counted (an offer accepted), and without capacity nothing is counted.
    assert await cs_repo.claim_session(session("b", queue="sales", state="active", agent="ann@x"), "offered", "ann@x", capacity=2)
    await cs_repo.save_session(session("a", state="closed", agent="ann@x", closed_at=at(1), close_reason="agent"))
    results = await asyncio.gather(
        cs_repo.claim_session(session("c", state="active", agent="ann@x"), "waiting", None, capacity=2),
        cs_repo.claim_session(session("d", queue="sales", state="active", agent="ann@x"), "waiting", None, capacity=2),
    )
    assert sorted(results) == [False, True]
    assert sum(s.agent == "ann@x" for s in await cs_repo.open_sessions()) == 2
