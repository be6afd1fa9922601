"""Red-packet texts follow the sender's language: the request's xml:lang, else the sender's stream
xml:lang (xmppd/i18n.py), no longer always English (issue 16 item 5)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from xmppd_extensions.redpacket import slixmpp_plugin

from ...helpers import add_user, slix, slix_close
from .servers import STRANGERS
from .servers import rp_running_server as running_server
from .test_wire import inbox

pytestmark = pytest.mark.interop


async def _client(server, name: str, lang: str):
    c = await slix(server, await add_user(server, name), lang=lang)
    c.register_plugin("redpacket", module=slixmpp_plugin)
    c.send_presence()
    return c


@pytest.mark.parametrize(("lang", "packet_text", "grabbed_text"), [
    ("zh", "[红包] alice给你发了一个红包：恭喜发财——请在应用中打开", "bob领取了你的红包"),
    ("en", "[红包] alice sent you a red packet: 恭喜发财 — open it in the app", "bob opened your red packet"),
], ids=["zh", "en"])
async def test_packet_and_notices_in_the_senders_stream_language(tmp_path: Path, lang: str, packet_text: str, grabbed_text: str) -> None:
    async with running_server(tmp_path, STRANGERS, "redpacket.expiry=60.0") as srv:
        feat = srv.features["redpacket"]
        a, b = await _client(srv, "alice", lang), await _client(srv, "bob", "en")
        try:
            await feat.repo.topup("alice@localhost", 1000, feat.now())
            packets, notices = inbox(b, "redpacket"), inbox(a, "redpacket_grabbed")
            sent = await a.plugin["redpacket"].send_packet("bob@localhost", client_id="c1", total=100, greeting="恭喜发财")  # no xml:lang
            msg = await asyncio.wait_for(packets.get(), 5)
            assert msg["body"] == packet_text
            await b.plugin["redpacket"].open_packet(sent["id"])
            grabbed = await asyncio.wait_for(notices.get(), 5)
            assert grabbed["body"].startswith(grabbed_text)
        finally:
            for c in (a, b):
                await slix_close(c)
