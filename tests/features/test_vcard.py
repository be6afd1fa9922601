"""XEP-0054 vcard-temp over the wire with slixmpp."""
from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from slixmpp.exceptions import IqError

from ..helpers import add_user, running_server, slix, slix_close


async def _client(server, name: str):
    return await slix(server, await add_user(server, name), plugins=("xep_0054", "xep_0030"))


async def test_own_vcard_is_empty_then_set_then_read_by_others(server):
    alice = await _client(server, "alice")
    bob = await _client(server, "bob")
    try:
        iq = alice.make_iq_get()  # no 'to': one's own vCard
        iq.enable("vcard_temp")
        empty = await iq.send()
        assert empty["vcard_temp"].xml.tag == "{vcard-temp}vCard" and len(empty["vcard_temp"].xml) == 0
        card = alice.plugin["xep_0054"].make_vcard()
        card["FN"] = "Alice Liddell 🐇"
        card["NICKNAME"] = "alice"
        card["BDAY"] = "1852-05-04"
        await alice.plugin["xep_0054"].publish_vcard(card)
        mine = await alice.plugin["xep_0054"].get_vcard(alice.boundjid.bare, local=False)
        assert mine["vcard_temp"]["FN"] == "Alice Liddell 🐇"
        theirs = await bob.plugin["xep_0054"].get_vcard(alice.boundjid.bare, local=False)
        assert theirs["vcard_temp"]["FN"] == "Alice Liddell 🐇"
        assert theirs["vcard_temp"]["NICKNAME"] in ("alice", ["alice"])
        assert theirs["from"] == alice.boundjid.bare
        # Replacing works and is whole.
        card2 = alice.plugin["xep_0054"].make_vcard()
        card2["FN"] = "Alice"
        await alice.plugin["xep_0054"].publish_vcard(card2)
        theirs = await bob.plugin["xep_0054"].get_vcard(alice.boundjid.bare, local=False)
        assert theirs["vcard_temp"]["FN"] == "Alice" and not theirs["vcard_temp"]["NICKNAME"]
        info = await alice.plugin["xep_0030"].get_info(jid=server.domain)
        assert "vcard-temp" in info["disco_info"]["features"]
    finally:
        await slix_close(alice)
        await slix_close(bob)


async def test_missing_vcard_and_missing_account_answer_alike(server):
    alice = await _client(server, "alice")
    await add_user(server, "bob")
    try:
        conditions = []
        for who in (f"bob@{server.domain}", f"nobody@{server.domain}"):
            with pytest.raises(IqError) as err:
                await alice.plugin["xep_0054"].get_vcard(who, local=False, timeout=5)
            conditions.append(err.value.iq["error"]["condition"])
        assert conditions == ["item-not-found", "item-not-found"]
    finally:
        await slix_close(alice)


async def test_setting_someone_elses_vcard_is_forbidden(server):
    alice = await _client(server, "alice")
    bob = await _client(server, "bob")
    try:
        card = alice.plugin["xep_0054"].make_vcard()
        card["FN"] = "Not Bob"
        iq = alice.make_iq_set(ito=bob.boundjid.bare)
        iq.append(card)
        with pytest.raises(IqError) as err:
            await iq.send(timeout=5)
        assert err.value.iq["error"]["condition"] == "forbidden"
        with pytest.raises(IqError):
            await alice.plugin["xep_0054"].get_vcard(bob.boundjid.bare, local=False, timeout=5)
    finally:
        await slix_close(alice)
        await slix_close(bob)


async def test_too_large_vcard_is_not_acceptable(tmp_path: Path):
    async with running_server(tmp_path, "vcard.max_size=1024") as server:
        alice = await _client(server, "alice")
        try:
            card = alice.plugin["xep_0054"].make_vcard()
            card["DESC"] = "x" * 2000
            with pytest.raises(IqError) as err:
                await alice.plugin["xep_0054"].publish_vcard(card, timeout=5)
            assert err.value.iq["error"]["condition"] == "not-acceptable"
            assert "at most 1024" in err.value.iq["error"]["text"]
            assert await server.features["vcard"].repo.get("alice", server.domain) is None
            card["DESC"] = "short"
            await alice.plugin["xep_0054"].publish_vcard(card, timeout=5)
            await asyncio.sleep(0)
            assert "short" in await server.features["vcard"].repo.get("alice", server.domain)
        finally:
            await slix_close(alice)
