"""Group mute storage: the repository contract on memory, SQLite and MariaDB."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from xmppd_extensions.mute.repository import PLATFORM, Mute, MuteAll, NewAuditEntry

T0 = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
ROOM = "r@conference.localhost"


def at(seconds: float = 0) -> datetime:
    return T0 + timedelta(seconds=seconds)


def mute(jid: str = "alice@localhost", room: str = ROOM, until: datetime | None = at(600), **kw) -> Mute:
    return Mute(room, jid, until, kw.pop("reason", "spam"), kw.pop("actor", "bob@localhost"), at(0), **kw)


async def test_put_get_replace_and_remove(mute_repo):
    assert await mute_repo.get(ROOM, "alice@localhost") is None
    await mute_repo.put(mute())
    assert await mute_repo.get(ROOM, "alice@localhost") == mute()
    renewed = mute(until=None, reason=None, source="voice")
    await mute_repo.put(renewed)
    assert await mute_repo.get(ROOM, "alice@localhost") == renewed
    assert await mute_repo.mutes() == [renewed]
    assert await mute_repo.remove(ROOM, "alice@localhost") == renewed
    assert await mute_repo.remove(ROOM, "alice@localhost") is None
    assert await mute_repo.mutes() == []


async def test_rooms_and_the_platform_are_separate(mute_repo):
    await mute_repo.put(mute())
    await mute_repo.put(mute(room="other@conference.localhost"))
    await mute_repo.put(mute(room=PLATFORM, reason="abuse"))
    assert [m.room for m in await mute_repo.mutes()] == [PLATFORM, "other@conference.localhost", ROOM]
    assert [m.reason for m in await mute_repo.mutes(PLATFORM)] == ["abuse"]
    assert len(await mute_repo.mutes(ROOM)) == 1
    await mute_repo.forget_room(ROOM)
    assert [m.room for m in await mute_repo.mutes()] == [PLATFORM, "other@conference.localhost"]
    await mute_repo.forget_jid("alice@localhost")
    assert await mute_repo.mutes() == []


async def test_expire_only_removes_the_mute_it_was_armed_for(mute_repo):
    await mute_repo.put(mute(until=at(600)))
    await mute_repo.put(mute(until=at(1200)))  # renewed before the first timer fired
    assert await mute_repo.expire(ROOM, "alice@localhost", at(600)) is False
    assert (await mute_repo.get(ROOM, "alice@localhost")).until == at(1200)
    assert await mute_repo.expire(ROOM, "alice@localhost", at(1200)) is True
    assert await mute_repo.get(ROOM, "alice@localhost") is None
    assert await mute_repo.expire(ROOM, "alice@localhost", at(1200)) is False


async def test_microseconds_and_time_zones_survive(mute_repo):
    until = datetime(2025, 3, 4, 5, 6, 7, 123456, tzinfo=UTC)
    await mute_repo.put(mute(until=until))
    got = await mute_repo.get(ROOM, "alice@localhost")
    assert got.until == until and got.until.tzinfo is not None
    assert await mute_repo.expire(ROOM, "alice@localhost", until) is True


async def test_mute_all_state(mute_repo):
    assert await mute_repo.mute_alls() == []
    await mute_repo.set_mute_all(MuteAll(ROOM, "olga@localhost", "quiet", at(0)))
    await mute_repo.set_mute_all(MuteAll(ROOM, "adam@localhost", None, at(5)))
    assert await mute_repo.mute_alls() == [MuteAll(ROOM, "adam@localhost", None, at(5))]
    assert await mute_repo.clear_mute_all(ROOM) is True
    assert await mute_repo.clear_mute_all(ROOM) is False
    await mute_repo.set_mute_all(MuteAll(ROOM, "olga@localhost", None, at(0)))
    await mute_repo.forget_room(ROOM)
    assert await mute_repo.mute_alls() == []


async def test_audit_log_is_append_only_newest_first_and_filtered(mute_repo):
    ids = []
    for i, (action, room, target) in enumerate((
        ("mute", ROOM, "alice@localhost"), ("unmute", ROOM, "alice@localhost"), ("mute-all", ROOM, None),
        ("mute", PLATFORM, "carol@localhost"), ("expire", PLATFORM, "carol@localhost"),
    )):
        ids.append(await mute_repo.record(NewAuditEntry(at(i), "bob@localhost", action, room, target,
                                                         60 if action == "mute" else None, at(60) if action == "mute" else None,
                                                         "why" if action == "mute" else None)))
    assert ids == sorted(ids) and len(set(ids)) == 5
    everything = await mute_repo.audit()
    assert [e.action for e in everything] == ["expire", "mute", "mute-all", "unmute", "mute"]
    first = everything[-1]
    assert (first.at, first.actor, first.room, first.target, first.seconds, first.until, first.reason) == (
        at(0), "bob@localhost", ROOM, "alice@localhost", 60, at(60), "why")
    assert [e.action for e in await mute_repo.audit(room=PLATFORM)] == ["expire", "mute"]
    assert [e.action for e in await mute_repo.audit(target="alice@localhost")] == ["unmute", "mute"]
    page = await mute_repo.audit(limit=2)
    assert [e.id for e in page] == ids[:2:-1][:2]
    assert [e.id for e in await mute_repo.audit(before=page[-1].id)] == ids[2::-1]
    await mute_repo.forget_room(ROOM)
    assert len(await mute_repo.audit()) == 5  # the log outlives the room


async def test_bad_values_are_refused(mute_repo):
    with pytest.raises(ValueError):
        await mute_repo.put(mute(source="kick"))
    with pytest.raises(ValueError):
        await mute_repo.record(NewAuditEntry(at(0), "bob@localhost", "ban", ROOM))


# -- timed bans, the platform keyword list, slow-mode clocks, appeals (mute_0002) -------------


async def test_timed_bans_put_replace_expire_and_go_with_the_room(mute_repo):
    from xmppd_extensions.mute.repository import Ban

    b = Ban(ROOM, "alice@localhost", at(60), "flood", "olga@localhost", at(0))
    await mute_repo.put_ban(b)
    await mute_repo.put_ban(Ban("other@conference.localhost", "alice@localhost", at(30), None, "olga@localhost", at(0)))
    assert await mute_repo.bans(ROOM) == [b]
    longer = Ban(ROOM, "alice@localhost", at(120), "flood", "olga@localhost", at(1))
    await mute_repo.put_ban(longer)
    assert not await mute_repo.expire_ban(ROOM, "alice@localhost", at(60))  # an old timer: the renewed ban stays
    assert await mute_repo.bans(ROOM) == [longer]
    assert await mute_repo.expire_ban(ROOM, "alice@localhost", at(120))
    assert await mute_repo.bans(ROOM) == []
    assert not await mute_repo.remove_ban(ROOM, "alice@localhost")
    await mute_repo.forget_room("other@conference.localhost")
    assert await mute_repo.bans() == []


async def test_platform_keywords_add_replace_remove(mute_repo):
    from xmppd_extensions.mute.repository import Keyword

    await mute_repo.put_keyword(Keyword("spam", "block", 10, "admin@localhost", at(0)))
    await mute_repo.put_keyword(Keyword("广告", "mask", 10, "admin@localhost", at(0)))
    await mute_repo.put_keyword(Keyword("spam", "mute", 5, "admin@localhost", at(1)))
    assert [(k.word, k.action, k.minutes) for k in await mute_repo.keywords()] == [("spam", "mute", 5), ("广告", "mask", 10)]
    assert await mute_repo.remove_keyword("spam")
    assert not await mute_repo.remove_keyword("spam")
    assert [k.word for k in await mute_repo.keywords()] == ["广告"]
    await mute_repo.remove_keyword("广告")


async def test_slow_mode_clocks_per_room(mute_repo):
    await mute_repo.set_slow_time(ROOM, "alice@localhost", 1000)
    await mute_repo.set_slow_time(ROOM, "alice@localhost", 2000)
    await mute_repo.set_slow_time(ROOM, "bob@localhost", 1500)
    await mute_repo.set_slow_time("other@conference.localhost", "alice@localhost", 5)
    assert await mute_repo.slow_times(ROOM) == {"alice@localhost": 2000, "bob@localhost": 1500}
    await mute_repo.forget_slow(ROOM)
    assert await mute_repo.slow_times(ROOM) == {}
    await mute_repo.forget_room("other@conference.localhost")
    assert await mute_repo.slow_times("other@conference.localhost") == {}


async def test_one_appeal_per_mute(mute_repo):
    from xmppd_extensions.mute.repository import since_ms

    key = since_ms(at(0.123456))
    assert key == since_ms(at(0.123))  # the key survives a backend that keeps only milliseconds
    assert await mute_repo.add_appeal("carol@localhost", key, at(1))
    assert not await mute_repo.add_appeal("carol@localhost", key, at(2))
    await mute_repo.set_appeal_ticket("carol@localhost", key, 42)
    assert not await mute_repo.add_appeal("carol@localhost", key, at(3))
    assert await mute_repo.add_appeal("carol@localhost", since_ms(at(10)), at(11))  # a new mute
    await mute_repo.set_appeal_ticket("carol@localhost", since_ms(at(10)), None)  # the ticket failed: forgotten
    assert await mute_repo.add_appeal("carol@localhost", since_ms(at(10)), at(12))
