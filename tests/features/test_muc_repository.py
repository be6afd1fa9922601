"""XEP-0045 persistent rooms: the repository contract on memory, SQLite and MariaDB."""
from __future__ import annotations

import pytest_asyncio

from xmppd.features.muc.repository import (
    MemoryMucRepository,
    SqlMucRepository,
    StoredAffiliation,
    StoredRoom,
    StoredSubscription,
)
from xmppd.features.muc.service import Muc

from ..storage_fixtures import REPOSITORY_BACKENDS, open_database


@pytest_asyncio.fixture(params=REPOSITORY_BACKENDS)
async def repo(request):
    if request.param == "memory":
        yield MemoryMucRepository()
    else:
        async with open_database(request, request.param, extra_locations=[Muc.migrations]) as db:
            yield SqlMucRepository(db)


def _room(jid="club@conference.localhost", **kw):
    return StoredRoom(
        jid, {"name": "Club", "persistent": True, "members_only": True, "max_occupants": 50},
        subject="Welcome ☕", subject_nick="Alice",
        affiliations={"alice@localhost": StoredAffiliation("owner"), "bob@localhost": StoredAffiliation("member", "Bob", "friend")},
        subscriptions={"bob@localhost": StoredSubscription("Bob", ("urn:xmpp:mucsub:nodes:messages",))},
        **kw,
    )


async def test_save_and_load_round_trip(repo):
    await repo.save_room(_room())
    (got,) = await repo.load_rooms()
    assert got.jid == "club@conference.localhost"
    assert got.config["name"] == "Club" and got.config["max_occupants"] == 50
    assert got.subject == "Welcome ☕" and got.subject_nick == "Alice"
    assert got.affiliations["alice@localhost"].affiliation == "owner"
    assert got.affiliations["bob@localhost"] == StoredAffiliation("member", "Bob", "friend")
    assert got.subscriptions["bob@localhost"].nodes == ("urn:xmpp:mucsub:nodes:messages",)


async def test_save_replaces_the_whole_room(repo):
    await repo.save_room(_room())
    r = _room()
    r.affiliations = {"carol@localhost": StoredAffiliation("owner")}
    r.subscriptions = {}
    await repo.save_room(r)
    (got,) = await repo.load_rooms()
    assert set(got.affiliations) == {"carol@localhost"} and got.subscriptions == {}


async def test_update_affiliations_and_subscriptions(repo):
    await repo.save_room(_room())
    await repo.update_room("club@conference.localhost", {"name": "Renamed"}, "New topic", "Bob")
    await repo.set_affiliation("club@conference.localhost", "dave@localhost", StoredAffiliation("outcast", reason="spam"))
    await repo.set_affiliation("club@conference.localhost", "bob@localhost", StoredAffiliation("admin", "Bob"))
    await repo.set_affiliation("club@conference.localhost", "alice@localhost", None)
    await repo.set_subscription("club@conference.localhost", "dave@localhost", StoredSubscription("D", ("a", "b")))
    await repo.set_subscription("club@conference.localhost", "bob@localhost", None)
    (got,) = await repo.load_rooms()
    assert got.config == {"name": "Renamed"} and got.subject == "New topic" and got.subject_nick == "Bob"
    assert {j: a.affiliation for j, a in got.affiliations.items()} == {"dave@localhost": "outcast", "bob@localhost": "admin"}
    assert got.affiliations["dave@localhost"].reason == "spam"
    assert set(got.subscriptions) == {"dave@localhost"} and got.subscriptions["dave@localhost"].nodes == ("a", "b")


async def test_none_affiliation_is_not_stored_and_unknown_rooms_are_ignored(repo):
    await repo.save_room(_room())
    await repo.set_affiliation("club@conference.localhost", "bob@localhost", StoredAffiliation("none"))
    await repo.set_affiliation("nowhere@conference.localhost", "bob@localhost", StoredAffiliation("member"))
    await repo.set_subscription("nowhere@conference.localhost", "bob@localhost", StoredSubscription("B", ()))
    (got,) = await repo.load_rooms()
    assert "bob@localhost" not in got.affiliations


async def test_delete_room_removes_its_rows(repo):
    await repo.save_room(_room())
    await repo.save_room(_room("other@conference.localhost"))
    await repo.delete_room("club@conference.localhost")
    rooms = await repo.load_rooms()
    assert [r.jid for r in rooms] == ["other@conference.localhost"]
    assert set(rooms[0].affiliations) == {"alice@localhost", "bob@localhost"}


async def test_fencing_refuses_an_older_owner(repo):
    """docs/cluster.md §5: a node that acquired the room later (higher token) claims it; the
    older owner's writes raise FencedOut and change nothing; token 0 (no cluster) is not fenced."""
    import pytest

    from xmppd.features.muc.repository import FencedOut

    jid = "club@conference.localhost"
    assert await repo.fence_of(jid) == 0
    assert await repo.claim(jid, 3)  # no such room: nothing to refuse
    await repo.save_room(_room(fence=3))
    assert await repo.fence_of(jid) == 3
    assert await repo.claim(jid, 5)
    assert not await repo.claim(jid, 4)
    assert await repo.fence_of(jid) == 5
    with pytest.raises(FencedOut):
        await repo.update_room(jid, {"name": "Stale"}, "stale", "Old", 3)
    with pytest.raises(FencedOut):
        await repo.set_affiliation(jid, "eve@localhost", StoredAffiliation("admin"), 4)
    with pytest.raises(FencedOut):
        await repo.set_subscription(jid, "eve@localhost", StoredSubscription("E", ()), 4)
    with pytest.raises(FencedOut):
        await repo.save_room(_room(fence=4))
    with pytest.raises(FencedOut):
        await repo.delete_room(jid, 4)
    got = await repo.load_room(jid)
    assert got is not None and got.fence == 5 and got.config["name"] == "Club"
    assert "eve@localhost" not in got.affiliations and "eve@localhost" not in got.subscriptions
    await repo.update_room(jid, {"name": "New"}, "topic", "Bob", 5)
    await repo.set_affiliation(jid, "eve@localhost", StoredAffiliation("admin"), 5)
    got = await repo.load_room(jid)
    assert got.config["name"] == "New" and got.affiliations["eve@localhost"].affiliation == "admin"
    assert await repo.load_room("nowhere@conference.localhost") is None
    await repo.delete_room(jid, 6)
    assert await repo.load_room(jid) is None
