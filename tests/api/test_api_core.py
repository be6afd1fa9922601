"""The REST API over HTTP (aiohttp client, server on free ports), checked by what real slixmpp
clients see: a created user logs in, a message sent by the API arrives, a kicked session ends,
a disabled account cannot log in, roster changes reach the owner's client."""
from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.features.test_admin import inbox, watch_end
from tests.helpers import PASSWORD, add_user, slix, slix_close

from .support import ADMIN, READ, api_server

NEW_PASSWORD = "a brand new password"


# ------------------------------------------------------------------ tokens, errors, validation


async def test_every_call_needs_a_valid_token_and_read_tokens_only_get(tmp_path: Path) -> None:
    async with api_server(tmp_path) as api:
        status, body = await api.call("GET", "/api/v1/users", token=None)
        assert status == 401 and body["error"]["code"] == "unauthorized"
        status, body = await api.call("GET", "/api/v1/users", token="x" * 40)
        assert status == 401 and body["error"]["code"] == "unauthorized"
        status, body = await api.call("GET", "/api/v1/users", headers={"Authorization": f"Basic {ADMIN}"}, token=None)
        assert status == 401
        status, body = await api.call("GET", "/api/v1/users", token=READ)
        assert status == 200 and body["items"] == []
        status, body = await api.call("POST", "/api/v1/users", token=READ, json={"username": "x", "password": PASSWORD})
        assert status == 403 and body["error"]["code"] == "forbidden"
        assert await api.server.accounts.get("x", "localhost") is None
        status, body = await api.call("DELETE", "/api/v1/users/x", token=READ)
        assert status == 403


async def test_no_tokens_configured_refuses_everything(tmp_path: Path) -> None:
    async with api_server(tmp_path, "api.tokens=[]") as api:
        status, body = await api.call("GET", "/api/v1/users")
        assert status == 401 and body["error"]["code"] == "unauthorized"


async def test_bad_input_is_a_400_with_a_stable_code_never_a_500(tmp_path: Path) -> None:
    async with api_server(tmp_path) as api:
        cases = [
            ("POST", "/api/v1/users", {"data": b"{not json", "headers": {"Content-Type": "application/json"}}, "invalid_json"),
            ("POST", "/api/v1/users", {"json": {"username": "bob"}}, "invalid_request"),
            ("POST", "/api/v1/users", {"json": {"username": "bob", "password": PASSWORD, "extra": 1}}, "invalid_request"),
            ("POST", "/api/v1/users", {"json": ["bob"]}, "invalid_request"),
            ("POST", "/api/v1/users", {"json": {"username": "bob", "password": "short"}}, "invalid_password"),
            ("POST", "/api/v1/users", {"json": {"username": "a b", "password": PASSWORD}}, "invalid_request"),
            ("POST", "/api/v1/users", {"data": b'{"username": NaN}', "headers": {"Content-Type": "application/json"}}, "invalid_json"),
            ("POST", "/api/v1/users", {"data": b"[" * 30000, "headers": {"Content-Type": "application/json"}}, "invalid_json"),
            ("POST", "/api/v1/users", {"data": b'{"username": 1' + b"0" * 5000 + b"}", "headers": {"Content-Type": "application/json"}}, "invalid_json"),
            ("POST", "/api/v1/users", {"data": b"\xff\xfe", "headers": {"Content-Type": "application/json"}}, "invalid_json"),
            ("GET", "/api/v1/users?limit=0", {}, "invalid_request"),
            ("GET", "/api/v1/users?limit=100000", {}, "invalid_request"),
            ("GET", "/api/v1/users?limit=abc", {}, "invalid_request"),
            ("GET", "/api/v1/users?colour=red", {}, "invalid_request"),
            ("POST", "/api/v1/messages", {"json": {"to": "bob@localhost"}}, "invalid_request"),  # no body, no subject
            ("POST", "/api/v1/messages", {"json": {"to": "\u000e8a\u00b1", "body": "x"}}, "invalid_request"),
            ("POST", "/api/v1/messages", {"json": {"to": "@@", "body": "x"}}, "invalid_jid"),
            ("POST", "/api/v1/messages", {"json": {"to": "bob@localhost", "body": "bell \u0007"}}, "invalid_request"),
            ("POST", "/api/v1/messages", {"json": {"to": "bob@localhost", "body": "x", "type": "groupchat"}}, "invalid_request"),
            ("POST", "/api/v1/messages", {"json": {"to": "bob@localhost", "body": "x", "from": "other@elsewhere"}}, "invalid_sender"),
        ]
        for method, path, kw, code in cases:
            status, body = await api.call(method, path, **kw)
            assert (status, body["error"]["code"]) == (400, code), (method, path, kw, body)
        status, body = await api.call("POST", "/api/v1/users", data=b"username=bob", headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert status == 415 and body["error"]["code"] == "unsupported_media_type"
        status, body = await api.call("POST", "/api/v1/messages", json={"to": "bob@localhost", "body": "x" * 70000})
        assert status == 413 and body["error"]["code"] == "body_too_large"
        status, body = await api.call("GET", "/api/v1/nowhere")
        assert status == 404 and body["error"]["code"] == "not_found"
        status, body = await api.call("PATCH", "/api/v1/users")
        assert status == 405 and body["error"]["code"] == "method_not_allowed"


# ------------------------------------------------------------------ users


async def test_created_user_logs_in_then_password_change_disable_enable_delete(tmp_path: Path) -> None:
    async with api_server(tmp_path) as api:
        status, body = await api.call("POST", "/api/v1/users", json={"username": "carol", "password": PASSWORD})
        assert status == 201 and body["jid"] == "carol@localhost" and body["disabled"] is False
        status, body = await api.call("POST", "/api/v1/users", json={"username": "carol", "password": PASSWORD})
        assert status == 409 and body["error"]["code"] == "user_exists"
        status, body = await api.call("POST", "/api/v1/users", json={"username": "admin", "password": PASSWORD})
        assert status == 400 and body["error"]["code"] == "reserved_username"
        c = await slix(api.server, "carol@localhost")
        await slix_close(c)

        status, _ = await api.call("PUT", "/api/v1/users/carol/password", json={"password": NEW_PASSWORD})
        assert status == 204
        with pytest.raises(ConnectionError):
            await slix(api.server, "carol@localhost", PASSWORD)
        c = await slix(api.server, "carol@localhost", NEW_PASSWORD)
        ended = watch_end(c)
        status, body = await api.call("POST", "/api/v1/users/carol/disable", json={"reason": "spam"})
        assert status == 200 and body["disabled"] is True and body["disabled_reason"] == "spam"
        assert await asyncio.wait_for(ended, 10) in ("not-authorized", "disconnected")
        with pytest.raises(ConnectionError):
            await slix(api.server, "carol@localhost", NEW_PASSWORD)
        status, body = await api.call("POST", "/api/v1/users/carol/enable")
        assert status == 200 and body["disabled"] is False
        c = await slix(api.server, "carol@localhost", NEW_PASSWORD)
        await slix_close(c)

        status, _ = await api.call("DELETE", "/api/v1/users/carol")
        assert status == 204
        status, body = await api.call("GET", "/api/v1/users/carol", token=READ)
        assert status == 404 and body["error"]["code"] == "user_not_found"
        status, body = await api.call("DELETE", "/api/v1/users/carol")
        assert status == 404 and body["error"]["code"] == "user_not_found"
        with pytest.raises(ConnectionError):
            await slix(api.server, "carol@localhost", NEW_PASSWORD)


async def test_user_list_is_paged_and_bounded(tmp_path: Path) -> None:
    async with api_server(tmp_path, "api.max_page=2") as api:
        for name in ("u1", "u2", "u3"):
            await add_user(api.server, name)
        status, body = await api.call("GET", "/api/v1/users?limit=2", token=READ)
        assert status == 200 and [u["username"] for u in body["items"]] == ["u1", "u2"] and body["total"] == 3
        status, body = await api.call("GET", "/api/v1/users?limit=2&offset=2", token=READ)
        assert [u["username"] for u in body["items"]] == ["u3"]
        status, body = await api.call("GET", "/api/v1/users?limit=3", token=READ)
        assert status == 400 and body["error"]["code"] == "invalid_request"


async def test_sessions_listed_and_kicked(tmp_path: Path) -> None:
    async with api_server(tmp_path) as api:
        jid = await add_user(api.server, "dave")
        a = await slix(api.server, jid + "/phone")
        b = await slix(api.server, jid + "/desk")
        try:
            status, body = await api.call("GET", "/api/v1/users/dave/sessions", token=READ)
            assert status == 200
            assert sorted(s["resource"] for s in body["items"]) == ["desk", "phone"]
            assert all(s["transport"] == "tcp" for s in body["items"])
            end_a, end_b = watch_end(a), watch_end(b)
            status, body = await api.call("DELETE", "/api/v1/users/dave/sessions/phone")
            assert status == 200 and body == {"ended": 1}
            assert await asyncio.wait_for(end_a, 10) in ("policy-violation", "disconnected")
            assert not end_b.done()
            status, body = await api.call("DELETE", "/api/v1/users/dave/sessions/phone")
            assert status == 404 and body["error"]["code"] == "session_not_found"
            status, body = await api.call("DELETE", "/api/v1/users/dave/sessions")
            assert status == 200 and body == {"ended": 1}
            assert await asyncio.wait_for(end_b, 10) in ("policy-violation", "disconnected")
        finally:
            await slix_close(a)
            await slix_close(b)


# ------------------------------------------------------------------ messages


async def test_message_from_the_server_and_on_behalf_of_a_user_arrives(tmp_path: Path) -> None:
    async with api_server(tmp_path) as api:
        bob = await add_user(api.server, "bob")
        await add_user(api.server, "alice")
        c = await slix(api.server, bob)
        c.send_presence()
        q = inbox(c)
        try:
            status, body = await api.call("POST", "/api/v1/messages", json={"to": bob, "type": "headline", "subject": "News", "body": "hello from the app"})
            assert status == 200 and body["from"] == "localhost"
            msg = await asyncio.wait_for(q.get(), 10)
            assert (msg["from"].full, msg["type"], msg["subject"], msg["body"]) == ("localhost", "headline", "News", "hello from the app")
            assert msg["id"] == body["id"]

            status, body = await api.call("POST", "/api/v1/messages", json={"to": bob, "from": "alice", "body": "hi bob", "id": "m-1"})
            assert status == 200 and body == {"id": "m-1", "from": "alice@localhost", "to": bob}
            msg = await asyncio.wait_for(q.get(), 10)
            assert (msg["from"].full, msg["type"], msg["body"], msg["id"]) == ("alice@localhost", "chat", "hi bob", "m-1")

            status, body = await api.call("POST", "/api/v1/messages", json={"to": bob, "from": "nobody", "body": "x"})
            assert status == 404 and body["error"]["code"] == "user_not_found"
        finally:
            await slix_close(c)


async def test_message_on_behalf_of_a_user_passes_the_blocking_gate(tmp_path: Path) -> None:
    """Bob blocks alice (XEP-0191): a message the API sends as alice is routed as hers, and
    blocking drops it like her own."""
    async with api_server(tmp_path) as api:
        bob = await add_user(api.server, "bob")
        alice = await add_user(api.server, "alice")
        c = await slix(api.server, bob, plugins=("xep_0191",))
        c.send_presence()
        q = inbox(c)
        try:
            await c.plugin["xep_0191"].block(alice)
            status, body = await api.call("POST", "/api/v1/messages", json={"to": bob, "from": "alice", "body": "blocked?"})
            assert status == 200  # routed as alice's own: blocking drops it on the way
            status, _ = await api.call("POST", "/api/v1/messages", json={"to": bob, "body": "from the server"})
            msg = await asyncio.wait_for(q.get(), 10)
            assert msg["body"] == "from the server"  # alice's never came first
        finally:
            await slix_close(c)


# ------------------------------------------------------------------ roster


async def test_roster_read_add_mutual_and_remove_reach_the_client(tmp_path: Path) -> None:
    async with api_server(tmp_path) as api:
        bob = await add_user(api.server, "bob")
        alice = await add_user(api.server, "alice")
        c = await slix(api.server, bob)
        pushes: asyncio.Queue = asyncio.Queue()
        c.add_event_handler("roster_update", pushes.put_nowait)
        try:
            await c.get_roster()
            c.send_presence()
            a = await slix(api.server, alice)
            a.send_presence()
            got_presence: asyncio.Queue = asyncio.Queue()
            c.add_event_handler("got_online", got_presence.put_nowait)
            status, body = await api.call("POST", "/api/v1/users/bob/roster", json={"jid": alice, "name": "Alice", "groups": ["Friends"], "mutual": True})
            assert status == 200, body
            assert body == {"jid": alice, "name": "Alice", "groups": ["Friends"], "subscription": "both", "ask": False}
            await asyncio.wait_for(pushes.get(), 10)
            assert c.client_roster[alice]["subscription"] == "both"
            online = await asyncio.wait_for(got_presence.get(), 10)
            assert online["from"].bare == alice
            status, body = await api.call("GET", "/api/v1/users/alice/roster", token=READ)
            assert status == 200 and [(i["jid"], i["subscription"]) for i in body["items"]] == [(bob, "both")]

            status, body = await api.call("POST", "/api/v1/users/bob/roster", json={"jid": "bob@localhost"})
            assert status == 422 and body["error"]["code"] == "not_allowed"
            status, body = await api.call("POST", "/api/v1/users/bob/roster", json={"jid": "x@y/z"})
            assert status == 400 and body["error"]["code"] == "jid_malformed"
            status, body = await api.call("POST", "/api/v1/users/bob/roster", json={"jid": alice, "groups": ["a", "a"]})
            assert status == 400 and body["error"]["code"] == "bad_request"

            # the path is percent-decoded once: %2540 is "%40", not "@"
            from yarl import URL

            status, body = await api.call("DELETE", URL(api.base + "/api/v1/users/bob/roster/alice%2540localhost", encoded=True))
            assert status == 400 and body["error"]["code"] == "jid_malformed"  # the domain "alice%40localhost"
            status, _ = await api.call("DELETE", URL(api.base + "/api/v1/users/bob/roster/alice%40localhost", encoded=True))
            assert status == 204
            status, body = await api.call("GET", "/api/v1/users/bob/roster", token=READ)
            assert body["items"] == []
            status, body = await api.call("DELETE", f"/api/v1/users/bob/roster/{alice}")
            assert status == 404 and body["error"]["code"] == "item_not_found"
            status, body = await api.call("GET", "/api/v1/users/nobody/roster", token=READ)
            assert status == 404 and body["error"]["code"] == "user_not_found"
            await slix_close(a)
        finally:
            await slix_close(c)
