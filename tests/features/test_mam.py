"""XEP-0313 message archive and XEP-0359 stanza ids over the wire (slixmpp), on SQLite and MariaDB."""
from __future__ import annotations

import asyncio
import itertools
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from slixmpp.exceptions import IqError
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from ..helpers import add_user, running_server, slix, slix_close
from . import muc_support as M

pytestmark = pytest.mark.interop

MAM = "urn:xmpp:mam:2"
RSM = "http://jabber.org/protocol/rsm"
SID = "urn:xmpp:sid:0"
_qids = itertools.count()


class Results:
    """MAM result messages by queryid (raw handler: exactly what the server sent)."""

    def __init__(self, client: Any) -> None:
        self.by_query: dict[str, list[Any]] = {}
        self.inbox: asyncio.Queue[Any] = asyncio.Queue()
        self.last_messages: list[Any] = []  # the archived messages of the last query()
        client.register_handler(Callback("mam-test", MatchXPath("{jabber:client}message"), self._on))

    def _on(self, msg: Any) -> None:
        res = msg.xml.find(f"{{{MAM}}}result")
        if res is not None:
            self.by_query.setdefault(res.get("queryid"), []).append(res)
        else:
            self.inbox.put_nowait(msg)


async def query(client: Any, to: str | None = None, *, max: int | None = None, after: str | None = None, before: str | None = None,
                **fields: Any) -> tuple[list[tuple[str, str]], ET.Element]:
    """(id, body) of each result, and the <fin/>."""
    qid = f"q{next(_qids)}"
    iq = client.make_iq_set(ito=to)
    q = ET.SubElement(iq.xml, f"{{{MAM}}}query", {"queryid": qid})
    if fields:
        x = ET.SubElement(q, "{jabber:x:data}x", {"type": "submit"})
        f = ET.SubElement(x, "{jabber:x:data}field", {"var": "FORM_TYPE", "type": "hidden"})
        ET.SubElement(f, "{jabber:x:data}value").text = MAM
        for var, value in fields.items():
            f = ET.SubElement(x, "{jabber:x:data}field", {"var": var.rstrip("_").replace("_", "-")})
            for v in value if isinstance(value, (list, tuple)) else [value]:
                ET.SubElement(f, "{jabber:x:data}value").text = v
    if max is not None or after is not None or before is not None:
        s = ET.SubElement(q, f"{{{RSM}}}set")
        if max is not None:
            ET.SubElement(s, f"{{{RSM}}}max").text = str(max)
        if after is not None:
            ET.SubElement(s, f"{{{RSM}}}after").text = after
        if before is not None:
            ET.SubElement(s, f"{{{RSM}}}before").text = before or None
    result = await iq.send(timeout=10)
    fin = result.xml.find(f"{{{MAM}}}fin")
    got = client.mam.by_query.pop(qid, [])
    out = []
    client.mam.last_messages = []
    for r in got:
        inner = r.find("{urn:xmpp:forward:0}forwarded/{jabber:client}message")
        assert r.find("{urn:xmpp:forward:0}forwarded/{urn:xmpp:delay}delay").get("stamp")
        client.mam.last_messages.append(inner)
        out.append((r.get("id"), inner.findtext("{jabber:client}body")))
    return out, fin


def rsm(fin: ET.Element) -> tuple[str | None, str | None, int, bool]:
    s = fin.find(f"{{{RSM}}}set")
    return s.findtext(f"{{{RSM}}}first"), s.findtext(f"{{{RSM}}}last"), int(s.findtext(f"{{{RSM}}}count")), fin.get("complete") == "true"


async def client(server, jid, plugins=("xep_0030",)):
    c = await slix(server, jid, plugins=plugins)
    c.mam = Results(c)
    c.send_presence()
    return c


async def test_archive_paging_both_ways_and_every_filter(tmp_path, storage_overrides):
    async with running_server(tmp_path, *storage_overrides) as srv:
        await add_user(srv, "alice")
        await add_user(srv, "bob")
        await add_user(srv, "carol")
        alice = await client(srv, "alice@localhost/a")
        bob = await client(srv, "bob@localhost/b")
        carol = await client(srv, "carol@localhost/c")
        try:
            t0 = datetime.now(UTC)
            for i in range(25):
                sender = carol if i % 5 == 0 else bob
                sender.send_message(mto="alice@localhost", mbody=f"m{i}", mtype="chat")
                got = await asyncio.wait_for(alice.mam.inbox.get(), 5)
                # XEP-0359: the id of alice's archive, before delivery
                sid = got.xml.find(f"{{{SID}}}stanza-id")
                assert sid is not None and sid.get("by") == "alice@localhost" and len(sid.get("id")) >= 16
            t1 = datetime.now(UTC)

            # forward, 10 at a time
            page, fin = await query(alice, max=10)
            assert [b for _, b in page] == [f"m{i}" for i in range(10)]
            first, last, count, complete = rsm(fin)
            assert count == 25 and not complete and first == page[0][0] and last == page[-1][0]
            seen = list(page)
            while not complete:
                page, fin = await query(alice, max=10, after=last)
                seen += page
                _, last, _, complete = rsm(fin)
            assert [b for _, b in seen] == [f"m{i}" for i in range(25)]
            ids = [i for i, _ in seen]
            assert len(set(ids)) == 25
            # backward from the end
            page, fin = await query(alice, max=10, before="")
            assert [b for _, b in page] == [f"m{i}" for i in range(15, 25)] and not rsm(fin)[3]
            page, fin = await query(alice, max=10, before=page[0][0])
            page, fin = await query(alice, max=10, before=page[0][0])
            assert [b for _, b in page] == [f"m{i}" for i in range(5)] and rsm(fin)[3]
            # with (bare and full), start/end, after-id/before-id, ids
            page, fin = await query(alice, with_="carol@localhost")
            assert [b for _, b in page] == [f"m{i}" for i in range(0, 25, 5)] and rsm(fin)[2] == 5
            page, _ = await query(alice, with_="carol@localhost/c")
            assert len(page) == 5
            page, _ = await query(alice, with_="carol@localhost/elsewhere")
            assert page == []
            page, _ = await query(alice, start=(t1 + timedelta(seconds=5)).isoformat())
            assert page == []
            page, _ = await query(alice, start=(t0 - timedelta(seconds=1)).isoformat(), end=(t1 + timedelta(seconds=1)).isoformat())
            assert len(page) == 25
            page, _ = await query(alice, **{"after_id": ids[3], "before_id": ids[7]})
            assert [b for _, b in page] == ["m4", "m5", "m6"]
            page, _ = await query(alice, ids=[ids[9], ids[2]])
            assert [b for _, b in page] == ["m2", "m9"]
            page, fin = await query(alice, max=2, with_="bob@localhost", after=ids[1])
            assert [b for _, b in page] == ["m2", "m3"] and rsm(fin)[2] == 20
            # the senders' archives have their outgoing messages
            page, fin = await query(bob)
            assert len(page) == 20 and rsm(fin)[3]
            # errors: unknown id, bad date, someone else's archive
            for kw, cond in (({"after": "no-such-id"}, "item-not-found"), ({"start": "yesterday"}, "bad-request")):
                with pytest.raises(IqError) as exc:
                    await query(alice, **kw)
                assert exc.value.iq["error"]["condition"] == cond
            with pytest.raises(IqError) as exc:
                await query(bob, to="alice@localhost")
            assert exc.value.iq["error"]["condition"] == "forbidden"
            # slixmpp's own MAM client walks it too
            bob.register_plugin("xep_0313")
            bob.register_plugin("xep_0059")
            got_bodies = [m["mam_result"]["forwarded"]["stanza"]["body"] async for m in bob.plugin["xep_0313"].iterate(rsm={"max": 7})]
            assert got_bodies == [f"m{i}" for i in range(25) if i % 5]
        finally:
            for c in (alice, bob, carol):
                await slix_close(c)


async def test_preferences_and_hints(tmp_path):
    async with running_server(tmp_path) as srv:
        for u in ("alice", "bob", "spam"):
            await add_user(srv, u)
        alice = await client(srv, "alice@localhost/a")
        bob = await client(srv, "bob@localhost/b")
        spam = await client(srv, "spam@localhost/s")
        try:
            iq = alice.make_iq_get()
            ET.SubElement(iq.xml, f"{{{MAM}}}prefs")
            res = await iq.send(timeout=5)
            assert res.xml.find(f"{{{MAM}}}prefs").get("default") == "always"
            iq = alice.make_iq_set()
            p = ET.SubElement(iq.xml, f"{{{MAM}}}prefs", {"default": "always"})
            ET.SubElement(ET.SubElement(p, f"{{{MAM}}}never"), f"{{{MAM}}}jid").text = "spam@localhost"
            ET.SubElement(p, f"{{{MAM}}}always")
            res = await iq.send(timeout=5)
            assert res.xml.find(f"{{{MAM}}}prefs/{{{MAM}}}never/{{{MAM}}}jid").text == "spam@localhost"

            spam.send_message(mto="alice@localhost", mbody="buy now", mtype="chat")
            got = await asyncio.wait_for(alice.mam.inbox.get(), 5)
            assert got.xml.find(f"{{{SID}}}stanza-id") is None  # not archived: no archive id
            m = bob.make_message(mto="alice@localhost", mbody="ephemeral", mtype="chat")
            m.xml.append(ET.fromstring("<no-store xmlns='urn:xmpp:hints'/>"))
            m.send()
            await asyncio.wait_for(alice.mam.inbox.get(), 5)
            m = bob.make_message(mto="alice@localhost", mtype="chat")
            m.xml.append(ET.fromstring("<encrypted xmlns='eu.siacs.conversations.axolotl'/>"))
            m.xml.append(ET.fromstring("<store xmlns='urn:xmpp:hints'/>"))
            m.send()
            await asyncio.wait_for(alice.mam.inbox.get(), 5)
            bob.send_message(mto="alice@localhost", mbody="kept", mtype="chat")
            await asyncio.wait_for(alice.mam.inbox.get(), 5)
            m = bob.make_message(mto="alice@localhost", mtype="chat")
            m.xml.append(ET.fromstring("<composing xmlns='http://jabber.org/protocol/chatstates'/>"))
            m.send()
            await asyncio.wait_for(alice.mam.inbox.get(), 5)
            page, _ = await query(alice)
            assert [b for _, b in page] == [None, "kept"]  # the stored body-less one, then "kept"
            with pytest.raises(IqError) as exc:
                iq = alice.make_iq_set()
                ET.SubElement(iq.xml, f"{{{MAM}}}prefs", {"default": "sometimes"})
                await iq.send(timeout=5)
            assert exc.value.iq["error"]["condition"] == "bad-request"
        finally:
            for c in (alice, bob, spam):
                await slix_close(c)


async def test_room_archive(tmp_path, storage_overrides):
    async with running_server(tmp_path, *storage_overrides) as srv:
        owner = await M.user(srv, "owner")
        guest = await M.user(srv, "guest")
        outsider = await M.user(srv, "outsider")
        for c in (owner, guest, outsider):
            c.mam = Results(c)
        room = M.room_jid(srv, "lounge")
        secret = M.room_jid(srv, "secret")
        try:
            await M.create(owner, room, "Boss")
            pres, *_ = await M.join(guest, room, "Guest")
            assert {"110", "170"} <= M.codes(pres)  # XEP-0045 §7.2.12: this room is logged
            info = await owner.plugin["xep_0030"].get_info(jid=room)
            assert MAM in info["disco_info"]["features"]
            sids = []
            for i in range(6):
                sender = owner if i % 2 == 0 else guest
                sender.send_message(mto=room, mbody=f"g{i}", mtype="groupchat")
                got = await guest.inbox.message(lambda m, i=i: m["body"] == f"g{i}")
                sid = got.xml.find(f"{{{SID}}}stanza-id")
                assert sid.get("by") == room
                sids.append(sid.get("id"))
            page, fin = await query(guest, room, max=4)
            assert [b for _, b in page] == ["g0", "g1", "g2", "g3"] and not rsm(fin)[3]
            assert [i for i, _ in page] == sids[:4]  # the ids MUC stamped
            page, fin = await query(outsider, room, before="", max=2)
            assert [b for _, b in page] == ["g4", "g5"]
            page, _ = await query(guest, room, with_=f"{room}/Guest")
            assert [b for _, b in page] == ["g1", "g3", "g5"]
            # members-only rooms: outsiders may not read
            await M.create(owner, secret, "Boss", members_only=True)
            owner.send_message(mto=secret, mbody="classified", mtype="groupchat")
            await owner.inbox.message(lambda m: m["body"] == "classified")
            with pytest.raises(IqError) as exc:
                await query(outsider, secret)
            assert exc.value.iq["error"]["condition"] == "forbidden"
            page, fin = await query(owner, secret)
            assert [b for _, b in page] == ["classified"]
            # the owner turns archiving off: nothing more is kept
            form = M.SlixForm()
            form["type"] = "submit"
            form.add_field(var="FORM_TYPE", ftype="hidden", value=M.ROOMCONFIG)
            form.add_field(var="mam#enabled", value="0")
            await owner.plugin["xep_0045"].set_room_config(room, form, timeout=5)
            # §10.2.1: the occupants are told that logging is now off (104 + 171) ...
            note = await guest.inbox.message(lambda m: M.codes(m) >= {"104", "171"})
            assert note["type"] == "groupchat" and "170" not in M.codes(note)
            with pytest.raises(IqError) as exc:
                await query(guest, room)
            assert exc.value.iq["error"]["condition"] == "feature-not-implemented"
            # ... and whoever joins now is not told it is logged.
            pres, *_ = await M.join(outsider, room, "Late")
            assert "110" in M.codes(pres) and "170" not in M.codes(pres)
            # Turned on again: 170.
            form = M.SlixForm()
            form["type"] = "submit"
            form.add_field(var="FORM_TYPE", ftype="hidden", value=M.ROOMCONFIG)
            form.add_field(var="mam#enabled", value="1")
            await owner.plugin["xep_0045"].set_room_config(room, form, timeout=5)
            note = await guest.inbox.message(lambda m: M.codes(m) >= {"104", "170"})
            assert "171" not in M.codes(note)
        finally:
            for c in (owner, guest, outsider):
                await slix_close(c)


async def test_clean_shutdown_keeps_every_archived_message_and_retention_purges(tmp_path):
    async with running_server(tmp_path, "mam.retention_days=1") as srv:
        await add_user(srv, "alice")
        await add_user(srv, "bob")
        bob = await client(srv, "bob@localhost/b")
        for i in range(300):
            bob.send_message(mto="alice@localhost", mbody=f"n{i}", mtype="chat")
        await bob.plugin["xep_0030"].get_info(jid="localhost")  # everything before it was handled
        await slix_close(bob)
    async with running_server(tmp_path, "mam.retention_days=1") as srv:
        alice = await client(srv, "alice@localhost/a")
        try:
            _, fin = await query(alice, max=0)
            assert rsm(fin)[2] == 300  # stored offline too, and every one archived
            mam = srv.features["mam"]
            assert await mam.purge() == 0
            real_now = srv.clock.now
            srv.clock.now = lambda: real_now() + 2 * 86_400  # type: ignore[method-assign]
            assert await mam.purge() == 600  # alice's 300 and bob's 300
            _, fin = await query(alice, max=0)
            assert rsm(fin)[2] == 0
        finally:
            await slix_close(alice)


def count_batches(mam: Any, until: int = 0) -> tuple[list[int], asyncio.Event]:
    """Record the size of every batch the archive writer stores; the event is set once
    ``until`` records in all were stored."""
    batches: list[int] = []
    enough = asyncio.Event()
    real_store = mam.repo.store_many

    async def counting_store(messages: list[Any]) -> None:
        batches.append(len(messages))
        await real_store(messages)
        if until and sum(batches) >= until:
            enough.set()

    real_now = mam.repo.store_now

    def counting_now(messages: list[Any]) -> bool:
        if not real_now(messages):
            return False
        batches.append(len(messages))
        if until and sum(batches) >= until:
            enough.set()
        return True

    mam.repo.store_many = counting_store
    mam.repo.store_now = counting_now
    return batches, enough


async def test_busy_writer_gathers_records_nobody_waits_for_into_large_batches_and_queries_see_them_at_once(tmp_path):
    # commit_interval=5: after its first commit the writer waits (up to 5 s or batch_size records)
    # so that records nobody waits for pile up into one batch; a query writes what is queued
    # first. (Messages to an offline account: no delivery waits for their archive records.)
    async with running_server(tmp_path, "mam.commit_interval=5", "mam.batch_size=1000") as srv:
        await add_user(srv, "alice")
        await add_user(srv, "bob")
        batches, _ = count_batches(srv.features["mam"])
        bob = await client(srv, "bob@localhost/b")
        alice = None
        try:
            for r in range(10):  # ten bursts with pauses: an eager writer would commit each alone
                for i in range(20 * r, 20 * r + 20):
                    bob.send_message(mto="alice@localhost", mbody=f"b{i}", mtype="chat")
                await bob.plugin["xep_0030"].get_info(jid="localhost")  # the burst was handled
                await asyncio.sleep(0.05)
            alice = await client(srv, "alice@localhost/a")
            # Each message is archived twice (alice's and bob's copy): 400 records, written in
            # very few transactions, not one per message.
            got, fin = await query(alice, max=250)
            assert rsm(fin)[2] == 200 and [b for _, b in got[:3]] == ["b0", "b1", "b2"]
            assert sum(batches) == 400
            assert len(batches) <= 4, batches
            _, fin = await query(bob, max=0)
            assert rsm(fin)[2] == 200
        finally:
            if alice is not None:
                await slix_close(alice)
            await slix_close(bob)


def test_mam_options_are_validated_while_the_configuration_loads():
    from xmppd.config import ConfigError, build
    from xmppd.core.loader import discover
    from xmppd.features.mam import MamOptions

    assert MamOptions().commit_interval == 0.25
    assert MamOptions().max_bytes_per_user == 100 * 1024 * 1024
    sections = {n: c.Options for n, c in discover().items()}
    for bad, message in (("mam.commit_interval=-1", "mam.commit_interval must be at least 0, not -1"),
                         ("mam.commit_interval=11", "mam.commit_interval must be at most 10, not 11"),
                         ("mam.max_bytes_per_user=-1", "mam.max_bytes_per_user must be at least 0, not -1"),
                         ("mam.purge_batch=0", "mam.purge_batch must be at least 1, not 0")):
        with pytest.raises(ConfigError) as exc:
            build({}, sections, [bad])
        assert str(exc.value) == message


async def test_lingering_writer_commits_as_soon_as_batch_size_records_wait(tmp_path):
    # commit_interval=10 would hold records for 10 s; batch_size=50 cuts it short.
    async with running_server(tmp_path, "mam.commit_interval=10", "mam.batch_size=50") as srv:
        await add_user(srv, "alice")
        await add_user(srv, "bob")
        batches, enough = count_batches(srv.features["mam"], until=250)
        bob = await client(srv, "bob@localhost/b")
        try:
            for i in range(150):
                bob.send_message(mto="alice@localhost", mbody=f"c{i}", mtype="chat")
            await asyncio.wait_for(enough.wait(), 9)  # less than commit_interval, and no query flushes
            assert all(n <= 50 for n in batches), batches
        finally:
            await slix_close(bob)


async def alice_and_bob(srv: Any) -> tuple[Any, Any]:
    """Accounts alice and bob, each with a client (resources a and b) that sent its presence."""
    for u in ("alice", "bob"):
        await add_user(srv, u)
    return await client(srv, "alice@localhost/a"), await client(srv, "bob@localhost/b")


async def test_both_copies_of_a_message_are_what_was_sent_and_delivered(tmp_path, storage_overrides):
    """The sender's copy and the recipient's (serialised once, the recipient's with its
    stanza-id added to the sender's text): every child and character kept, the recipient's
    copy stamped with the id it was delivered with, the sender's not stamped by the recipient."""
    async with running_server(tmp_path, *storage_overrides) as srv:
        alice, bob = await alice_and_bob(srv)
        try:
            body = "a < b & c > d, \"quoted\" 'text', ünïcödé ✓"
            m = bob.make_message(mto="alice@localhost", mbody=body, mtype="chat")
            ET.SubElement(m.xml, "{urn:example:thing}thing", {"x": "1&2"}).text = "<inner>"
            m.send()
            got = await asyncio.wait_for(alice.mam.inbox.get(), 5)
            live_id = got.xml.find(f"{{{SID}}}stanza-id").get("id")
            for who, owner in ((alice, "alice@localhost"), (bob, "bob@localhost")):
                page, _ = await query(who)
                assert [b for _, b in page] == [body]
                kept = who.mam.last_messages[0]
                thing = kept.find("{urn:example:thing}thing")
                assert thing is not None and thing.get("x") == "1&2" and thing.text == "<inner>"
                stamps = [(s.get("by"), s.get("id")) for s in kept.findall(f"{{{SID}}}stanza-id")]
                assert stamps == ([(owner, live_id)] if who is alice else [])
                assert (page[0][0] == live_id) is (who is alice)  # each archive its own id
        finally:
            for c in (alice, bob):
                await slix_close(c)


def _garble(archive_id: str) -> str:
    return archive_id[:10] + ("0" if archive_id[10] != "0" else "1") + archive_id[11:]


async def _error_of(client: Any, **kw: Any) -> str:
    with pytest.raises(IqError) as exc:
        await query(client, **kw)
    return exc.value.iq["error"]["condition"]


async def test_archive_ids_are_opaque_and_foreign_or_garbled_ids_are_unknown(tmp_path, storage_overrides):
    async with running_server(tmp_path, *storage_overrides) as srv:
        alice, bob = await alice_and_bob(srv)
        try:
            live = []
            for i in range(30):
                bob.send_message(mto="alice@localhost", mbody=f"o{i}", mtype="chat")
                got = await asyncio.wait_for(alice.mam.inbox.get(), 5)
                live.append(got.xml.find(f"{{{SID}}}stanza-id").get("id"))
            page, _ = await query(alice)
            ids = [i for i, _ in page]
            assert ids == live and len(set(ids)) == 30  # the id delivered is the archive's
            # Nothing to read from them: fixed length, no shared time prefix, no order.
            assert {len(i) for i in ids} == {32}
            assert ids != sorted(ids) and ids != sorted(ids, reverse=True)
            assert len({i[:3] for i in ids}) > 10
            bob_page, _ = await query(bob)
            bob_ids = [i for i, _ in bob_page]
            assert not set(bob_ids) & set(ids)  # each archive's copy has its own id
            # a garbled id, another archive's id, one that is not even hex: unknown
            for bad in (_garble(ids[5]), bob_ids[5], "z" * 32, ids[5][:-2]):
                assert await _error_of(alice, max=5, after=bad) == "item-not-found"
                assert await _error_of(alice, max=5, before=bad) == "item-not-found"
                assert await _error_of(alice, after_id=bad) == "item-not-found"
                assert await _error_of(alice, before_id=bad) == "item-not-found"
            page, _ = await query(alice, ids=[_garble(ids[1]), ids[2], bob_ids[3]])
            assert [b for _, b in page] == ["o2"]
        finally:
            for c in (alice, bob):
                await slix_close(c)


async def test_archive_order_survives_a_clock_step_back(tmp_path, storage_overrides):
    async with running_server(tmp_path, *storage_overrides) as srv:
        for u in ("alice", "bob"):
            await add_user(srv, u)
        alice = await client(srv, "alice@localhost/a")
        bob = await client(srv, "bob@localhost/b")
        real_now = srv.clock.now
        try:

            async def send(tag: str, n: int) -> None:
                for i in range(n):
                    bob.send_message(mto="alice@localhost", mbody=f"{tag}{i}", mtype="chat")
                    await asyncio.wait_for(alice.mam.inbox.get(), 5)

            await send("before", 5)
            srv.clock.now = lambda: real_now() - 3600  # type: ignore[method-assign]  # NTP steps the clock back an hour
            await send("during", 5)
            srv.clock.now = real_now  # type: ignore[method-assign]
            await send("after", 5)
            expected = [f"{tag}{i}" for tag in ("before", "during", "after") for i in range(5)]
            page, fin = await query(alice)
            assert [b for _, b in page] == expected and rsm(fin)[2] == 15
            assert len({i for i, _ in page}) == 15
            # paging walks the same order, both ways
            first, fin = await query(alice, max=7)
            second, _ = await query(alice, max=7, after=rsm(fin)[1])
            third, _ = await query(alice, max=7, after=second[-1][0])
            assert [b for _, b in first + second + third] == expected
            last, fin = await query(alice, max=7, before="")
            assert [b for _, b in last] == expected[8:]
            # the stamps never go backwards (the stepped-back messages are stamped just after "before4")
            stamps = await _stamps(alice)
            assert stamps == sorted(stamps) and len(set(stamps)) == 15
            # a time window from before the first message catches all of them
            page, _ = await query(alice, start=stamps[0], end=stamps[-1])
            assert [b for _, b in page] == expected
            page, _ = await query(alice, start=stamps[5])
            assert [b for _, b in page] == expected[5:]
        finally:
            srv.clock.now = real_now  # type: ignore[method-assign]
            for c in (alice, bob):
                await slix_close(c)


async def _stamps(c: Any) -> list[str]:
    """The <delay stamp/> of every message in c's archive, in archive order."""
    qid = f"q{next(_qids)}"
    iq = c.make_iq_set()
    ET.SubElement(iq.xml, f"{{{MAM}}}query", {"queryid": qid})
    await iq.send(timeout=10)
    return [r.find("{urn:xmpp:forward:0}forwarded/{urn:xmpp:delay}delay").get("stamp") for r in c.mam.by_query.pop(qid, [])]


async def test_two_servers_on_one_database_use_different_node_ids(tmp_path, mariadb_url):
    shared = [f"storage.url={mariadb_url}", "storage.auto_upgrade=true"]
    async with running_server(tmp_path / "one", *shared) as one, running_server(tmp_path / "two", *shared) as two:
        mam1, mam2 = one.features["mam"], two.features["mam"]
        assert {mam1._lease.node, mam2._lease.node} == {0, 1}
        assert mam1.ids.encode(123) == mam2.ids.encode(123)  # one key for the whole database
        for u in ("alice", "bob", "carol"):
            await add_user(one, u)
        # Not a cluster (no routing between them), but both archive into alice's archive: bob
        # writes to her on node one, carol on node two, taking turns.
        alice1 = await client(one, "alice@localhost/one")
        alice2 = await client(two, "alice@localhost/two")
        bob = await client(one, "bob@localhost/b")
        carol = await client(two, "carol@localhost/c")
        try:
            expected = []
            for i in range(10):
                bob.send_message(mto="alice@localhost", mbody=f"b{i}", mtype="chat")
                await asyncio.wait_for(alice1.mam.inbox.get(), 5)
                carol.send_message(mto="alice@localhost", mbody=f"c{i}", mtype="chat")
                await asyncio.wait_for(alice2.mam.inbox.get(), 5)
                expected += [f"b{i}", f"c{i}"]
            await mam2.flush()
            page, fin = await query(alice1)  # through node one
            assert [b for _, b in page] == expected and rsm(fin)[2] == 20
            nodes = [mam1.ids.decode(i) & 2047 for i, _ in page]  # type: ignore[operator]
            assert nodes == [mam1._lease.node, mam2._lease.node] * 10
            await mam1.flush()
            again, _ = await query(alice2)  # node two reads the ids node one issued, and pages with them
            assert again == page
            tail, _ = await query(alice2, after=page[14][0])
            assert [b for _, b in tail] == expected[15:]
        finally:
            for c in (alice1, alice2, bob, carol):
                await slix_close(c)
        async with running_server(tmp_path / "three", *shared) as three:
            assert three.features["mam"]._lease.node == 2
    async with running_server(tmp_path / "four", *shared) as four:
        assert four.features["mam"]._lease.node == 0  # the others stopped: their ids are free again


async def test_extended_flip_page_metadata_and_unknown_fields(tmp_path):
    """What urn:xmpp:mam:2#extended promises: <flip-page/> and <metadata/> (XEP-0313 §4.3.5, §5)."""
    async with running_server(tmp_path) as srv:
        await add_user(srv, "alice")
        await add_user(srv, "bob")
        await add_user(srv, "carol")
        alice = await client(srv, "alice@localhost/a")
        bob = await client(srv, "bob@localhost/b")
        carol = await client(srv, "carol@localhost/c")
        try:
            info = await alice.plugin["xep_0030"].get_info(jid="alice@localhost")
            assert "urn:xmpp:mam:2#extended" in info["disco_info"]["features"]
            # An empty archive: an empty <metadata/>.
            iq = carol.make_iq_get(ito="carol@localhost")
            ET.SubElement(iq.xml, f"{{{MAM}}}metadata")
            md = (await iq.send(timeout=5)).xml.find(f"{{{MAM}}}metadata")
            assert md is not None and len(md) == 0
            for i in range(5):
                bob.send_message(mto="alice@localhost", mbody=f"f{i}", mtype="chat")
                await asyncio.wait_for(alice.mam.inbox.get(), 5)
            forward, fin = await query(alice, max=3)
            assert [b for _, b in forward] == ["f0", "f1", "f2"]
            # The same page, flipped: sent newest first; the RSM set is unchanged.
            iq = alice.make_iq_set(ito=None)
            q = ET.SubElement(iq.xml, f"{{{MAM}}}query", {"queryid": "flip"})
            s = ET.SubElement(q, f"{{{RSM}}}set")
            ET.SubElement(s, f"{{{RSM}}}max").text = "3"
            ET.SubElement(q, f"{{{MAM}}}flip-page")
            flipped_fin = (await iq.send(timeout=5)).xml.find(f"{{{MAM}}}fin")
            flipped = [(r.get("id"), r.findtext("{urn:xmpp:forward:0}forwarded/{jabber:client}message/{jabber:client}body"))
                       for r in alice.mam.by_query.pop("flip")]
            assert flipped == list(reversed(forward))
            assert rsm(flipped_fin) == rsm(fin)
            # Metadata: the first and the last message of the archive, with their times.
            everything, _ = await query(alice)
            iq = alice.make_iq_get(ito="alice@localhost")
            ET.SubElement(iq.xml, f"{{{MAM}}}metadata")
            md = (await iq.send(timeout=5)).xml.find(f"{{{MAM}}}metadata")
            start, end = md.find(f"{{{MAM}}}start"), md.find(f"{{{MAM}}}end")
            assert start.get("id") == everything[0][0] and end.get("id") == everything[-1][0]
            t0 = datetime.fromisoformat(start.get("timestamp").replace("Z", "+00:00"))
            t1 = datetime.fromisoformat(end.get("timestamp").replace("Z", "+00:00"))
            assert t0 <= t1 and abs(datetime.now(UTC) - t1) < timedelta(minutes=1)
            # Someone else's metadata: forbidden, like a query.
            iq = bob.make_iq_get(ito="alice@localhost")
            ET.SubElement(iq.xml, f"{{{MAM}}}metadata")
            with pytest.raises(IqError) as exc:
                await iq.send(timeout=5)
            assert exc.value.iq["error"]["condition"] == "forbidden"
            # §4.1.4: a form field the server does not know -> feature-not-implemented.
            with pytest.raises(IqError) as exc:
                await query(alice, urn_example_search="juliet")
            assert exc.value.iq["error"]["condition"] == "feature-not-implemented"
        finally:
            for c in (alice, bob, carol):
                await slix_close(c)
