"""Ad-hoc commands for every user (issue 16): what a plain account lists on the server and the
change-password command (XEP-0077's rule through XEP-0050), over the wire with slixmpp."""

from __future__ import annotations

from pathlib import Path

import pytest

from xmppd.features.register import PASSWD_NODE
from xmppd_extensions.customer_service.visitor_commands import MY_TICKETS
from xmppd_extensions.mute.commands import CMD_MY_MUTES, CMD_PLATFORM_MUTE
from xmppd_extensions.redpacket.commands import TOPUP
from xmppd_extensions.redpacket.user_commands import MY_WALLET, SEND

from ..helpers import PASSWORD, add_user, running_server, slix, slix_close
from .test_adhoc import PLUGINS, form_of, notes, run, xform

pytestmark = pytest.mark.interop

USER_NODES = {PASSWD_NODE, MY_WALLET, SEND, CMD_MY_MUTES, MY_TICKETS}
ADMIN_NODES = {"http://jabber.org/protocol/admin#add-user", "http://jabber.org/protocol/admin#change-user-password",
               TOPUP, CMD_PLATFORM_MUTE}


@pytest.fixture
async def server(tmp_path: Path):
    async with running_server(tmp_path, 'server.admins=["admin@localhost"]', "registration.min_password_length=8") as srv:
        yield srv


async def nodes(c) -> set[str]:
    return {i[1] for i in (await c.plugin["xep_0050"].get_commands(jid="localhost"))["disco_items"]["items"]}


async def test_a_plain_user_lists_the_user_commands_and_no_admin_command(server):
    bob = await slix(server, await add_user(server, "bob"), plugins=PLUGINS)
    admin = await slix(server, await add_user(server, "admin"), plugins=PLUGINS)
    try:
        seen = await nodes(bob)
        assert seen >= USER_NODES
        assert not seen & ADMIN_NODES
        assert await nodes(admin) >= USER_NODES | ADMIN_NODES
        info = await bob.plugin["xep_0030"].get_info(jid="localhost", node=PASSWD_NODE)
        assert ("automation", "command-node", None, "Change password") in info["disco_info"]["identities"]
    finally:
        await slix_close(bob)
        await slix_close(admin)


async def test_change_password_by_command_old_password_no_longer_logs_in(server):
    bob = await slix(server, await add_user(server, "bob"), plugins=PLUGINS)
    try:
        first = await run(bob, PASSWD_NODE)
        assert first.get("status") == "executing"
        form = xform(first)
        assert form.field("password").type == "text-private" and form.field("password-verify").type == "text-private"
        done = await run(bob, PASSWD_NODE, action="complete", sessionid=first.get("sessionid"),
                         payload=form_of(bob, password="n3w-secret-pw", password_verify="n3w-secret-pw"))
        assert done.get("status") == "completed"
        assert notes(done)[0][0] == "info" and "changed" in notes(done)[0][1]
    finally:
        await slix_close(bob)
    with pytest.raises(ConnectionError, match="login failed"):
        await slix(server, "bob@localhost", PASSWORD, plugins=PLUGINS, timeout=5)
    again = await slix(server, "bob@localhost", "n3w-secret-pw", plugins=PLUGINS)
    await slix_close(again)


@pytest.mark.parametrize(("new", "verify", "var", "problem"), [
    ("n3w-secret-pw", "n3w-secret-px", "password-verify", "do not match"),
    ("short", "short", "password", "at least 8 characters"),
])
async def test_change_password_refuses_what_xep_0077_refuses_and_keeps_the_old_one(server, new, verify, var, problem):
    bob = await slix(server, await add_user(server, "bob"), plugins=PLUGINS)
    try:
        sid = (await run(bob, PASSWD_NODE)).get("sessionid")
        again = await run(bob, PASSWD_NODE, action="complete", sessionid=sid,
                          payload=form_of(bob, password=new, password_verify=verify))
        assert again.get("status") == "executing"
        (kind, text), = notes(again)
        assert kind == "error" and problem in text
        assert problem in (xform(again).field(var).desc or "")
        assert xform(again).field("password").values == ()  # passwords are never echoed back
    finally:
        await slix_close(bob)
    still = await slix(server, "bob@localhost", PASSWORD, plugins=PLUGINS)
    await slix_close(still)


async def test_change_password_speaks_the_requesters_language(server):
    bob = await slix(server, await add_user(server, "bob"), plugins=PLUGINS, lang="zh-CN")
    try:
        first = await run(bob, PASSWD_NODE)
        assert xform(first).title == "修改密码" and xform(first).field("password").label == "新密码"
        again = await run(bob, PASSWD_NODE, action="complete", sessionid=first.get("sessionid"),
                          payload=form_of(bob, password="n3w-secret-pw", password_verify="other-secret"))
        assert notes(again) == [("error", "两次输入的密码不一致")]
        done = await run(bob, PASSWD_NODE, action="complete", sessionid=first.get("sessionid"),
                         payload=form_of(bob, password="n3w-secret-pw", password_verify="n3w-secret-pw"))
        assert notes(done) == [("info", "密码已修改，下次登录请使用新密码。")]
    finally:
        await slix_close(bob)
