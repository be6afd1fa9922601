"""XEP-0133 service administration over the wire with slixmpp's xep_0050/xep_0004 plugins:
the effects are real (logins refused, live sessions ended, messages delivered)."""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from slixmpp.exceptions import IqError

from xmppd.app import Server
from xmppd.core import hooks as H
from xmppd.core.hooks import AccountEvent, Flow
from xmppd.features.admin import ADMIN, node
from xmppd.jid import JID

from ..helpers import PASSWORD, add_user, running_server, slix, slix_close
from .test_adhoc import PLUGINS, actions, form_of, notes, run, xform

ADMIN_NODES = [
    node(n)
    for n in (
        "add-user", "delete-user", "disable-user", "reenable-user", "change-user-password",
        "get-registered-users-num", "get-online-users-num", "get-online-users-list", "get-online-users",
        "end-user-session", "announce", "set-motd", "edit-motd", "delete-motd",
    )
]
NEW_PASSWORD = "another long password"


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    async with running_server(tmp_path, 'server.admins=["admin@localhost"]') as srv:
        yield srv


async def admin_client(server: Server) -> Any:
    return await slix(server, await add_user(server, "admin"), plugins=PLUGINS)


async def two_step(c: Any, name: str, **values: Any) -> Any:
    """Execute, then complete with the values (XEP-0133's one-form commands)."""
    first = await run(c, node(name))
    assert first.get("status") == "executing"
    assert xform(first).form_type == ADMIN
    f = form_of(c)
    for var, value in values.items():
        var = var.replace("_", "-") if var in ("password_verify",) else var
        if isinstance(value, list):
            f.add_field(var=var, ftype="jid-multi", value=value)
        else:
            f.add_field(var=var, value=value)
    return await run(c, node(name), action="complete", sessionid=first.get("sessionid"), payload=f)


def watch_end(c: Any) -> asyncio.Future[str]:
    """Resolves with the stream error condition (or 'disconnected') when the server ends the stream."""
    fut: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    def on_error(err: Any) -> None:
        if not fut.done():
            fut.set_result(err["condition"])

    def on_disconnect(_e: Any) -> None:
        if not fut.done():
            fut.set_result("disconnected")

    c.add_event_handler("stream_error", on_error)
    c.add_event_handler("disconnected", on_disconnect)
    return fut


def inbox(c: Any) -> asyncio.Queue:
    q: asyncio.Queue = asyncio.Queue()
    c.add_event_handler("message", q.put_nowait)
    return q


async def test_admin_adds_disables_reenables_and_deletes_a_user(server):
    deleted: list[str] = []

    async def on_deleted(ev: AccountEvent) -> Flow:
        deleted.append(str(ev.jid))
        return Flow.CONTINUE

    undo = server.hooks.add(H.ACCOUNT_DELETED, on_deleted)
    admin = await admin_client(server)
    try:
        done = await two_step(admin, "add-user", accountjid="bob@localhost", password=PASSWORD, password_verify=PASSWORD)
        assert done.get("status") == "completed"
        assert notes(done) == [("info", "The account bob@localhost has been created.")]
        bob = await slix(server, "bob@localhost")
        ended = watch_end(bob)

        done = await two_step(admin, "disable-user", accountjids=["bob@localhost"])
        assert notes(done) == [("info", "Disabled: bob@localhost.")]
        assert await asyncio.wait_for(ended, 5) == "not-authorized"
        with pytest.raises(ConnectionError):
            await slix(server, "bob@localhost", timeout=5)

        done = await two_step(admin, "reenable-user", accountjids=["bob@localhost"])
        assert notes(done) == [("info", "Re-enabled: bob@localhost.")]
        bob = await slix(server, "bob@localhost")
        ended = watch_end(bob)

        done = await two_step(admin, "delete-user", accountjids=["bob@localhost", "nobody@localhost"])
        assert notes(done) == [("info", "Deleted: bob@localhost."), ("warn", "No such account: nobody@localhost.")]
        assert await asyncio.wait_for(ended, 5) == "not-authorized"
        assert deleted == ["bob@localhost"]
        assert await server.accounts.get("bob", "localhost") is None
        with pytest.raises(ConnectionError):
            await slix(server, "bob@localhost", timeout=5)
    finally:
        undo()
        await slix_close(admin)


async def test_non_admin_neither_sees_nor_runs_admin_commands(server):
    alice = await slix(server, await add_user(server, "alice"), plugins=PLUGINS)
    admin = await admin_client(server)
    try:
        seen = {i[1] for i in (await alice.plugin["xep_0050"].get_commands(jid="localhost"))["disco_items"]["items"]}
        assert not seen & set(ADMIN_NODES)
        admin_seen = {i[1] for i in (await admin.plugin["xep_0050"].get_commands(jid="localhost"))["disco_items"]["items"]}
        assert set(ADMIN_NODES) <= admin_seen
        for n in ADMIN_NODES:
            with pytest.raises(IqError) as e:
                await run(alice, n)
            assert e.value.condition == "forbidden", n
            with pytest.raises(IqError) as e:
                await alice.plugin["xep_0030"].get_info(jid="localhost", node=n)
            assert e.value.condition == "item-not-found"
        # a session started by the admin cannot be continued by someone else
        sid = (await run(admin, node("add-user"))).get("sessionid")
        f = form_of(alice, accountjid="eve@localhost", password=PASSWORD)
        f.add_field(var="password-verify", value=PASSWORD)
        with pytest.raises(IqError) as e:
            await run(alice, node("add-user"), action="complete", sessionid=sid, payload=f)
        assert e.value.condition == "forbidden"
        assert await server.accounts.get("eve", "localhost") is None
    finally:
        await slix_close(alice)
        await slix_close(admin)


@pytest.mark.parametrize(
    ("values", "var", "problem"),
    [
        ({"accountjid": "bob@localhost", "password": PASSWORD, "password_verify": "something else"}, "password-verify", "the passwords do not match"),
        ({"accountjid": "bob@elsewhere.example", "password": PASSWORD, "password_verify": PASSWORD}, "accountjid", "is not an account of localhost"),
        ({"accountjid": "bob@@localhost", "password": PASSWORD, "password_verify": PASSWORD}, "accountjid", "not a valid JID"),
        ({"accountjid": "admin@localhost", "password": PASSWORD, "password_verify": PASSWORD}, "accountjid", "already exists"),
        ({"accountjid": "postmaster@localhost", "password": PASSWORD, "password_verify": PASSWORD}, "accountjid", "'postmaster' is reserved"),
        ({"accountjid": "adm\u0456n@localhost", "password": PASSWORD, "password_verify": PASSWORD}, "accountjid", "it looks like 'admin'"),
        ({"accountjid": "s-0000abcd@localhost", "password": PASSWORD, "password_verify": PASSWORD}, "accountjid", "reserved for the addresses of cs"),
        ({"accountjid": "conference.localhost@localhost", "password": PASSWORD, "password_verify": PASSWORD}, "accountjid", "looks like the domain"),
        ({"accountjid": "bob@localhost", "password": "short", "password_verify": "short"}, "password", "at least 8 characters"),
        ({"accountjid": "bob@localhost", "password_verify": PASSWORD}, "password", "is required"),
    ],
)
async def test_add_user_with_a_bad_value_returns_the_form_with_the_error(server, values, var, problem):
    admin = await admin_client(server)
    try:
        again = await two_step(admin, "add-user", **values)
        assert again.get("status") == "executing"
        (kind, text), = notes(again)
        assert kind == "error" and problem in text
        form = xform(again)
        assert form.type == "form" and problem in form.field(var).desc
        assert form.field("password").values == ()  # passwords are never sent back
        assert actions(again) == ("complete", ["complete"])
        assert await server.accounts.count("localhost") == 1
    finally:
        await slix_close(admin)


async def test_cancel_an_admin_command(server):
    admin = await admin_client(server)
    try:
        sid = (await run(admin, node("add-user"))).get("sessionid")
        assert server.features["adhoc"].open_sessions == 1
        canceled = await run(admin, node("add-user"), action="cancel", sessionid=sid)
        assert canceled.get("status") == "canceled"
        assert server.features["adhoc"].open_sessions == 0
        with pytest.raises(IqError) as e:
            await run(admin, node("add-user"), action="complete", sessionid=sid, payload=form_of(admin, accountjid="x@localhost"))
        assert e.value.condition == "bad-request"
    finally:
        await slix_close(admin)


async def test_change_user_password(server):
    await add_user(server, "bob")
    admin = await admin_client(server)
    try:
        done = await two_step(admin, "change-user-password", accountjid="bob@localhost", password=NEW_PASSWORD)
        assert notes(done) == [("info", "The password of bob@localhost has been changed.")]
        with pytest.raises(ConnectionError):
            await slix(server, "bob@localhost", PASSWORD, timeout=5)
        await slix_close(await slix(server, "bob@localhost", NEW_PASSWORD))
        again = await two_step(admin, "change-user-password", accountjid="ghost@localhost", password=NEW_PASSWORD)
        assert notes(again) == [("error", "there is no account ghost@localhost")]
    finally:
        await slix_close(admin)


async def test_online_and_registered_users_counts_and_list(server):
    admin = await admin_client(server)
    alice_jid = await add_user(server, "alice")
    await add_user(server, "offline")
    a1, a2 = await slix(server, alice_jid), await slix(server, alice_jid)
    bob = await slix(server, await add_user(server, "bob"))
    try:
        done = await run(admin, node("get-registered-users-num"))
        assert done.get("status") == "completed" and xform(done).field("registeredusersnum").values == ("4",)
        done = await run(admin, node("get-online-users-num"))
        assert xform(done).field("onlineusersnum").values == ("3",)  # admin, alice (twice), bob
        for name in ("get-online-users-list", "get-online-users"):
            first = await run(admin, node(name))
            assert [o.value for o in xform(first).field("max_items").options][-1] == "none"
            done = await run(admin, node(name), action="complete", sessionid=first.get("sessionid"), payload=form_of(admin, max_items="none"))
            assert xform(done).field("onlineuserjids").value() == [JID.parse(j) for j in ("admin@localhost", "alice@localhost", "bob@localhost")]
            assert xform(done).field("onlineuserjids").type == "jid-multi"
        done = await two_step(admin, "get-online-users-list", max_items="25")
        assert len(xform(done).field("onlineuserjids").values) == 3
        await slix_close(bob)
        for _ in range(100):
            if len(server.sessions.accounts()) == 2:
                break
            await asyncio.sleep(0.02)
        done = await run(admin, node("get-online-users-num"))
        assert xform(done).field("onlineusersnum").values == ("2",)
    finally:
        for c in (admin, a1, a2, bob):
            await slix_close(c)


async def test_end_user_session(server):
    admin = await admin_client(server)
    bob_jid = await add_user(server, "bob")
    b1, b2 = await slix(server, bob_jid), await slix(server, bob_jid)
    try:
        e1, e2 = watch_end(b1), watch_end(b2)
        done = await two_step(admin, "end-user-session", accountjids=[b1.boundjid.full])
        assert notes(done) == [("info", "Ended 1 session(s).")]
        assert await asyncio.wait_for(e1, 5) == "policy-violation"
        assert not e2.done()
        done = await two_step(admin, "end-user-session", accountjids=["bob@localhost", "carol@localhost"])
        assert notes(done) == [("info", "Ended 1 session(s)."), ("warn", "No session of: carol@localhost")]
        assert await asyncio.wait_for(e2, 5) == "policy-violation"
        # bob may log in again: ending a session is not disabling
        await slix_close(await slix(server, bob_jid))
    finally:
        for c in (admin, b1, b2):
            await slix_close(c)


async def test_announcement_reaches_every_online_user(server):
    admin = await admin_client(server)
    alice_jid = await add_user(server, "alice")
    clients = [await slix(server, alice_jid), await slix(server, alice_jid), await slix(server, await add_user(server, "bob"))]
    boxes = [inbox(c) for c in clients]
    try:
        # one client has sent no presence: an announcement still reaches it
        clients[0].send_presence()
        done = await two_step(admin, "announce", subject="Maintenance", announcement="Down at noon.\nBack at one.")
        assert notes(done) == [("info", "The announcement was sent to 4 session(s).")]
        for box in boxes:
            msg = await asyncio.wait_for(box.get(), 5)
            assert msg["type"] == "headline" and msg["from"].full == "localhost"
            assert msg["subject"] == "Maintenance" and msg["body"] == "Down at noon.\nBack at one."
        missing = await two_step(admin, "announce", subject="x")
        assert notes(missing) == [("error", "Announcement is required")]
    finally:
        for c in (admin, *clients):
            await slix_close(c)


async def _login_and_collect_motd(server: Server, jid: str) -> list[str]:
    """Log in, send initial presence, wait until the MOTD check ran; the headlines received."""
    c = await slix(server, jid, plugins=("xep_0030",))
    box = inbox(c)
    try:
        c.send_presence()
        session = None
        for _ in range(250):
            session = server.sessions.get(JID.parse(c.boundjid.full))
            if session is not None and "admin" in session.data:
                break
            await asyncio.sleep(0.02)
        assert session is not None and "admin" in session.data
        task = session.data["admin"].get("motd")
        sent = bool(task is not None and await asyncio.wait_for(task, 5))
        got = [await asyncio.wait_for(box.get(), 5)] if sent else []
        await c.plugin["xep_0030"].get_info(jid="localhost")  # a round trip: nothing else is on its way
        assert box.empty()
        for msg in got:
            assert msg["type"] == "headline" and msg["from"].full == "localhost" and msg["subject"] == "Message of the day"
        return [m["body"] for m in got]
    finally:
        await slix_close(c)


async def test_motd_is_shown_at_login_once_per_version(server):
    alice_jid = await add_user(server, "alice")
    admin = await admin_client(server)
    try:
        assert await _login_and_collect_motd(server, alice_jid) == []
        done = await two_step(admin, "set-motd", motd="Welcome!\nBe nice.")
        assert done.get("status") == "completed"
        assert await _login_and_collect_motd(server, alice_jid) == ["Welcome!\nBe nice."]
        assert await _login_and_collect_motd(server, alice_jid) == []  # not twice
        first = await run(admin, node("edit-motd"))
        assert xform(first).field("motd").value() == "Welcome!\nBe nice."  # the current one, to edit
        f = form_of(admin, motd="Updated.")
        await run(admin, node("edit-motd"), action="complete", sessionid=first.get("sessionid"), payload=f)
        assert await _login_and_collect_motd(server, alice_jid) == ["Updated."]
        assert await _login_and_collect_motd(server, alice_jid) == []
        done = await run(admin, node("delete-motd"))
        assert notes(done) == [("info", "The message of the day has been deleted.")]
        bob_jid = await add_user(server, "bob")
        assert await _login_and_collect_motd(server, bob_jid) == []
        done = await run(admin, node("delete-motd"))
        assert notes(done) == [("warn", "There is no message of the day.")]
    finally:
        await slix_close(admin)


async def test_motd_survives_a_restart_and_remembers_who_saw_it(tmp_path):
    async with running_server(tmp_path, 'server.admins=["admin@localhost"]') as srv:
        alice_jid = await add_user(srv, "alice")
        bob_jid = await add_user(srv, "bob")
        admin = await admin_client(srv)
        await two_step(admin, "set-motd", motd="Persistent.")
        await slix_close(admin)
        assert await _login_and_collect_motd(srv, alice_jid) == ["Persistent."]
    async with running_server(tmp_path, 'server.admins=["admin@localhost"]') as srv:
        assert await _login_and_collect_motd(srv, alice_jid) == []
        assert await _login_and_collect_motd(srv, bob_jid) == ["Persistent."]


async def test_admin_command_results_are_in_the_admins_stream_language(server):
    zh = await slix(server, await add_user(server, "admin"), plugins=PLUGINS, lang="zh-Hans")
    try:
        done = await two_step(zh, "add-user", accountjid="bob@localhost", password=PASSWORD, password_verify=PASSWORD)
        assert notes(done) == [("info", "账号 bob@localhost 已创建。")]
        done = await two_step(zh, "delete-user", accountjids=["bob@localhost", "nobody@localhost"])
        assert notes(done) == [("info", "已删除：bob@localhost。"), ("warn", "没有这些账号：nobody@localhost。")]
    finally:
        await slix_close(zh)
