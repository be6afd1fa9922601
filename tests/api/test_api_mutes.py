"""REST API mutes over HTTP, checked by what real slixmpp occupants see: a muted member's
groupchat is refused, mute-all silences the room, a platform-muted account cannot write."""
from __future__ import annotations

import asyncio
from pathlib import Path

from tests.features.muc_support import join, room_jid, user
from tests.helpers import add_user, slix_close

from .support import READ, api_server


async def test_room_mute_mute_all_and_platform_mute(tmp_path: Path) -> None:
    async with api_server(tmp_path) as api:
        await add_user(api.server, "owner")
        status, _ = await api.call("POST", "/api/v1/rooms", json={"name": "hall", "owner": "owner"})
        assert status == 201
        bob = await user(api.server, "bob")
        carol = await user(api.server, "carol")
        room = room_jid(api.server, "hall")
        try:
            await join(bob, room, "bob")
            await join(carol, room, "carol")

            status, body = await api.call("PUT", "/api/v1/rooms/hall/mutes/bob@localhost", json={"seconds": 600, "reason": "flood"})
            assert status == 200 and body["jid"] == "bob@localhost" and body["until"] is not None and body["actor"] == "localhost"
            bob.send_message(mto=room, mbody="can I speak?", mtype="groupchat")
            refused = await bob.inbox.message(lambda m: m["type"] == "error")
            assert refused["error"]["condition"] == "forbidden"
            status, body = await api.call("GET", "/api/v1/rooms/hall/mutes", token=READ)
            assert [m["jid"] for m in body["items"]] == ["bob@localhost"] and body["all_muted"] is None
            status, _ = await api.call("DELETE", "/api/v1/rooms/hall/mutes/bob@localhost")
            assert status == 204
            status, body = await api.call("DELETE", "/api/v1/rooms/hall/mutes/bob@localhost")
            assert status == 404 and body["error"]["code"] == "item_not_found"
            bob.send_message(mto=room, mbody="thanks", mtype="groupchat")
            await carol.inbox.message(lambda m: m["body"] == "thanks")

            status, body = await api.call("PUT", "/api/v1/rooms/hall/mute-all", json={"reason": "announcement"})
            assert status == 200 and body["reason"] == "announcement"
            carol.send_message(mto=room, mbody="hello?", mtype="groupchat")
            refused = await carol.inbox.message(lambda m: m["type"] == "error")
            assert refused["error"]["condition"] == "forbidden"
            status, _ = await api.call("DELETE", "/api/v1/rooms/hall/mute-all")
            assert status == 204

            status, body = await api.call("PUT", "/api/v1/mutes/platform/carol@localhost", json={"seconds": 60})
            assert status == 200 and body["room"] == ""
            carol.send_message(mto="bob@localhost", mbody="psst", mtype="chat")
            refused = await carol.inbox.message(lambda m: m["type"] == "error")
            assert refused["error"]["condition"] == "forbidden"
            status, body = await api.call("GET", "/api/v1/mutes/platform", token=READ)
            assert [m["jid"] for m in body["items"]] == ["carol@localhost"]
            status, _ = await api.call("DELETE", "/api/v1/mutes/platform/carol@localhost")
            assert status == 204
            got = asyncio.Queue()
            bob.add_event_handler("message", got.put_nowait)
            carol.send_message(mto="bob@localhost", mbody="free again", mtype="chat")
            msg = await asyncio.wait_for(got.get(), 10)
            assert msg["body"] == "free again"

            status, body = await api.call("GET", "/api/v1/mutes/audit?room=hall", token=READ)
            assert [e["action"] for e in body["items"]] == ["unmute-all", "mute-all", "unmute", "mute"]
            status, body = await api.call("GET", "/api/v1/mutes/audit?room=platform&limit=1", token=READ)
            assert [e["action"] for e in body["items"]] == ["unmute"] and body["next_before"] is not None
            status, body = await api.call("PUT", "/api/v1/rooms/nowhere/mutes/bob@localhost", json={"seconds": 5})
            assert status == 404 and body["error"]["code"] == "room_not_found"
        finally:
            await slix_close(bob)
            await slix_close(carol)
