"""REST API rooms over HTTP, checked by what real slixmpp occupants see."""
from __future__ import annotations

from pathlib import Path
from xml.etree import ElementTree as ET

from tests.features.muc_support import codes, join, room_jid, user
from tests.helpers import add_user, slix_close

from .support import READ, api_server


async def test_room_created_configured_joined_messaged_and_destroyed(tmp_path: Path) -> None:
    async with api_server(tmp_path) as api:
        await add_user(api.server, "owner")
        status, body = await api.call("POST", "/api/v1/rooms", json={"name": "team", "owner": "owner", "config": {"name": "Team", "members_only": True}})
        assert status == 201, body
        assert body["jid"] == room_jid(api.server, "team") and body["locked"] is False
        assert body["config"]["members_only"] is True and body["config"]["name"] == "Team"
        assert body["affiliations"] == [{"jid": "owner@localhost", "affiliation": "owner"}]
        status, body = await api.call("POST", "/api/v1/rooms", json={"name": "team", "owner": "owner"})
        assert status == 409 and body["error"]["code"] == "room_exists"
        status, body = await api.call("POST", "/api/v1/rooms", json={"name": "x", "owner": "nobody"})
        assert status == 404 and body["error"]["code"] == "user_not_found"
        status, body = await api.call("POST", "/api/v1/rooms", json={"name": "x", "owner": "owner", "config": {"max_occupants": 10**9}})
        assert status == 400 and body["error"]["code"] == "invalid_request"

        bob = await user(api.server, "bob")
        try:
            # members-only: bob may not join before the API makes him a member
            pres = bob.make_presence(pto=room_jid(api.server, "team") + "/bob")
            pres.append(ET.Element("{http://jabber.org/protocol/muc}x"))
            pres.send()
            refused = await bob.inbox.presence(lambda p: p["type"] == "error")
            assert refused["error"]["condition"] == "registration-required"
            status, body = await api.call("PUT", "/api/v1/rooms/team/affiliations/bob@localhost", json={"affiliation": "member"})
            assert status == 200 and body == {"jid": "bob@localhost", "affiliation": "member"}
            bob.inbox.drain()
            joined, *_ = await join(bob, room_jid(api.server, "team"), "bob")
            assert joined["muc"]["affiliation"] == "member"

            status, body = await api.call("GET", "/api/v1/rooms/team", token=READ)
            assert status == 200 and body["occupant_list"] == [{"nick": "bob", "jid": "bob@localhost", "role": "participant"}]

            status, body = await api.call("POST", "/api/v1/rooms/team/messages", json={"body": "welcome, everyone"})
            assert status == 200
            m = await bob.inbox.message(lambda m: m["body"] == "welcome, everyone")
            assert m["from"].full == room_jid(api.server, "team") and m["type"] == "groupchat"
            status, body = await api.call("POST", "/api/v1/rooms/team/messages", json={"body": "hello from bob's backend", "from": "bob"})
            assert status == 200 and body == {"from": room_jid(api.server, "team") + "/bob"}
            m = await bob.inbox.message(lambda m: m["body"] == "hello from bob's backend")
            assert m["from"].full == room_jid(api.server, "team") + "/bob"
            status, body = await api.call("POST", "/api/v1/rooms/team/messages", json={"body": "x", "from": "owner"})
            assert status == 422 and body["error"]["code"] == "not_an_occupant"

            # moderated: bob (a member) keeps voice, a visitor would not -- configure through the API
            status, body = await api.call("PATCH", "/api/v1/rooms/team/config", json={"moderated": True, "history_length": 5})
            assert status == 200 and body["config"]["moderated"] is True and body["config"]["history_length"] == 5

            status, body = await api.call("PUT", "/api/v1/rooms/team/affiliations/owner@localhost", json={"affiliation": "none"})
            assert status == 409 and body["error"]["code"] == "conflict"
            status, body = await api.call("PUT", "/api/v1/rooms/team/affiliations/bob@localhost", json={"affiliation": "outcast", "reason": "spam"})
            assert status == 200
            banned = await bob.inbox.presence(lambda p: "301" in codes(p))
            assert banned["type"] == "unavailable"

            status, body = await api.call("GET", "/api/v1/rooms", token=READ)
            assert [r["name"] for r in body["items"]] == ["team"]
            status, _ = await api.call("DELETE", "/api/v1/rooms/team", json={"reason": "closing"})
            assert status == 204
            status, body = await api.call("GET", "/api/v1/rooms/team", token=READ)
            assert status == 404 and body["error"]["code"] == "room_not_found"
        finally:
            await slix_close(bob)


async def test_destroy_tells_the_occupants(tmp_path: Path) -> None:
    async with api_server(tmp_path) as api:
        await add_user(api.server, "owner")
        status, _ = await api.call("POST", "/api/v1/rooms", json={"name": "lobby", "owner": "owner@localhost"})
        assert status == 201
        carol = await user(api.server, "carol")
        try:
            await join(carol, room_jid(api.server, "lobby"), "carol")
            status, _ = await api.call("DELETE", "/api/v1/rooms/lobby")
            assert status == 204
            gone = await carol.inbox.presence(lambda p: p["type"] == "unavailable")
            assert gone.xml.find(".//{http://jabber.org/protocol/muc#user}destroy") is not None
        finally:
            await slix_close(carol)
