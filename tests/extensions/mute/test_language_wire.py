"""A platform-mute notice reaches the muted user in their stream language (xmppd/i18n.py), not the
operator's default (issue 16 item 5)."""

from __future__ import annotations

import pytest

from xmppd_extensions.mute import slixmpp_plugin

from ...helpers import add_user, slix
from .support import ADMIN, PLUGINS, Inbox, client
from .test_wire import close

pytestmark = pytest.mark.interop


@pytest.mark.parametrize(("lang", "text"), [
    ("zh-CN", "管理员 将 carol 全站禁言 10 分钟，理由：刷屏"),
    ("en", "carol was muted on this server for 10 minutes by an administrator (reason: 刷屏)"),
], ids=["zh", "en"])
async def test_platform_mute_notice_in_the_muted_users_language(srv, lang: str, text: str) -> None:
    admin = await client(srv, ADMIN.split("@")[0])
    carol = await slix(srv, await add_user(srv, "carol"), plugins=PLUGINS, lang=lang)
    carol.register_plugin("mute", module=slixmpp_plugin)
    carol.inbox = Inbox(carol)
    carol.send_presence()
    try:
        await admin.plugin["mute"].platform_mute("carol@localhost", seconds=600, reason="刷屏")
        headline = await carol.inbox.message(lambda m: m["type"] == "headline" and m["mute_notice"]["scope"] == "platform")
        assert headline["body"] == text
    finally:
        await close(admin, carol)
