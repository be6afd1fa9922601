"""XEP-0363 HTTP file upload over the wire: slixmpp finds the service and uploads with its own
HTTP client, aioxmpp asks for a slot and PUTs with aiohttp; GET serves the bytes with safe
headers; images get a thumbnail (XEP-0264); every refusal is the one the XEP or HTTP names; a
used, expired or unknown slot is refused; expired files and orphans are swept."""
from __future__ import annotations

import asyncio
import io
import os
import time

import aiohttp
import aioxmpp
import aioxmpp.httpupload
import pytest
import sqlalchemy as sa
from PIL import Image
from slixmpp import ET
from slixmpp.exceptions import IqError

from xmppd.features.upload.repository import upload_files

from ..aiox import aioxmpp_client
from ..helpers import add_user, running_server, slix, slix_close

NS = "urn:xmpp:http:upload:0"


HTTP = "listen.http=127.0.0.1:0"


@pytest.fixture
async def server(tmp_path):
    async with running_server(tmp_path, HTTP) as srv:
        yield srv


async def _slot(client, filename: str, size: int, ctype: str | None = "text/plain"):
    iq = client.make_iq_get(ito=f"upload.{client.boundjid.domain}")
    attrs = {"filename": filename, "size": str(size)}
    if ctype:
        attrs["content-type"] = ctype
    ET.SubElement(iq.xml, f"{{{NS}}}request", attrs)
    res = await iq.send(timeout=5)
    slot = res.xml.find(f"{{{NS}}}slot")
    return slot.find(f"{{{NS}}}put").get("url"), slot.find(f"{{{NS}}}get").get("url"), slot


async def test_slixmpp_discovers_uploads_and_the_file_is_served_safely(server):
    alice = await slix(server, await add_user(server, "alice"), plugins=("xep_0030", "xep_0363"))
    try:
        data = os.urandom(300_000)
        url = await alice.plugin["xep_0363"].upload_file("notes.txt", size=len(data), content_type="text/plain",
                                                         input_file=io.BytesIO(data), timeout=10)
        assert url.startswith(f"http://localhost:{server.ports['http']}/upload/") and url.endswith("/notes.txt")
        assert alice.plugin["xep_0363"].max_file_size == 104857600  # from the service's disco form
        async with aiohttp.ClientSession() as http:
            async with http.get(url) as r:
                assert r.status == 200 and await r.read() == data
                assert r.headers["Content-Type"] == "text/plain"
                assert r.headers["X-Content-Type-Options"] == "nosniff"
                assert r.headers["Content-Security-Policy"].startswith("default-src 'none'")
                assert r.headers["Content-Disposition"].startswith("attachment")
                assert r.headers["Access-Control-Allow-Origin"] == "*"
            async with http.get(url, headers={"Range": "bytes=10-19"}) as r:
                assert r.status == 206 and await r.read() == data[10:20]
            async with http.put(url, data=data) as r:  # a slot is used once
                assert r.status == 409
            async with http.get(url.rsplit("/", 2)[0] + "/no-such-slot/notes.txt") as r:
                assert r.status == 404
    finally:
        await slix_close(alice)


async def test_aioxmpp_slot_and_put(server):
    jid = await add_user(server, "bob")
    async with aioxmpp_client(server, jid) as client:
        slot = await aioxmpp.httpupload.request_slot(client, aioxmpp.JID.fromstr(f"upload.{server.domain}"),
                                                     "voice.ogg", 5000, "audio/ogg")
        body = b"O" * 5000
        async with aiohttp.ClientSession() as http:
            async with http.put(slot.put.url, data=body, headers={"Content-Type": "audio/ogg"}) as r:
                assert r.status == 201
            async with http.get(slot.get.url) as r:
                assert await r.read() == body and r.headers["Content-Disposition"].startswith("inline")


async def test_an_image_gets_a_thumbnail(server):
    alice = await slix(server, await add_user(server, "alice"))
    try:
        buf = io.BytesIO()
        Image.new("RGB", (1200, 800), (200, 30, 30)).save(buf, "PNG")
        png = buf.getvalue()
        put, get, slot = await _slot(alice, "photo.png", len(png), "image/png")
        thumb = slot.find("{urn:xmpp:thumbs:1}thumbnail")
        assert thumb is not None and thumb.get("media-type") == "image/jpeg"
        async with aiohttp.ClientSession() as http:
            async with http.put(put, data=png, headers={"Content-Type": "image/png"}) as r:
                assert r.status == 201
            async with http.get(thumb.get("uri")) as r:
                assert r.status == 200 and r.headers["Content-Type"] == "image/jpeg"
                img = Image.open(io.BytesIO(await r.read()))
                assert img.format == "JPEG" and img.size == (256, 171)
            async with http.get(get) as r:
                assert r.headers["Content-Disposition"].startswith("inline")
                assert thumb.get("uri") in r.headers["Link"]
        # not an image: no thumbnail announced
        _, _, slot = await _slot(alice, "a.txt", 10)
        assert slot.find("{urn:xmpp:thumbs:1}thumbnail") is None
    finally:
        await slix_close(alice)


async def test_slot_refusals(tmp_path):
    async with running_server(tmp_path, HTTP, "upload.max_size=1000", "upload.quota=2500") as srv:
        alice = await slix(srv, await add_user(srv, "alice"))
        try:
            with pytest.raises(IqError) as err:
                await _slot(alice, "big.bin", 1001)
            assert err.value.iq["error"]["condition"] == "not-acceptable"
            assert err.value.iq["error"]["type"] == "modify"
            too = err.value.iq.xml.find(f"{{jabber:client}}error/{{{NS}}}file-too-large/{{{NS}}}max-file-size")
            assert too is not None and too.text == "1000"
            for name, size in (("a/b", 10), ("a\\b", 10), ("", 10), ("..", 10), ("ok.txt", 0), ("ok.txt", -3), ("ok.txt", "ten")):
                iq = alice.make_iq_get(ito=f"upload.{srv.domain}")
                ET.SubElement(iq.xml, f"{{{NS}}}request", {"filename": name, "size": str(size)})
                with pytest.raises(IqError) as err:
                    await iq.send(timeout=5)
                assert err.value.iq["error"]["condition"] == "bad-request", (name, size)
            # the quota counts open slots too
            await _slot(alice, "1.bin", 1000)
            await _slot(alice, "2.bin", 1000)
            with pytest.raises(IqError) as err:
                await _slot(alice, "3.bin", 1000)
            assert err.value.iq["error"]["condition"] == "resource-constraint"
            assert "quota" in err.value.iq["error"]["text"]
        finally:
            await slix_close(alice)


async def test_put_refusals_leave_nothing(server):
    alice = await slix(server, await add_user(server, "alice"))
    store = server.features["upload"].store
    try:
        put, get, _ = await _slot(alice, "f.txt", 100)
        slot = put.rsplit("/", 2)[1]
        async with aiohttp.ClientSession() as http:
            async with http.put(put, data=b"x" * 99) as r:
                assert r.status == 400
            async with http.put(put, data=b"x" * 101) as r:
                assert r.status == 413
            async with http.put(put, data=b"x" * 100, headers={"Content-Type": "image/png"}) as r:
                assert r.status == 415
            async with http.put(put.replace("/f.txt", "/other.txt"), data=b"x" * 100) as r:
                assert r.status == 404
            async with http.get(get) as r:
                assert r.status == 404  # nothing was stored
            assert store.local_path(slot) is None and not list(store.dir.glob("*.part"))

            # a client that goes away mid-body: nothing kept, the slot still usable
            reader, writer = await asyncio.open_connection("127.0.0.1", server.ports["http"])
            path = put.split(str(server.ports["http"]), 1)[1]
            writer.write(f"PUT {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n".encode() + b"y" * 40)
            await writer.drain()
            await asyncio.sleep(0.2)
            writer.close()
            await asyncio.sleep(0.3)
            assert store.local_path(slot) is None and not list(store.dir.glob("*.part"))
            async with http.put(put, data=b"z" * 100, headers={"Content-Type": "text/plain"}) as r:
                assert r.status == 201
            async with http.get(get) as r:
                assert await r.read() == b"z" * 100

            # an expired slot
            put2, _, _ = await _slot(alice, "late.txt", 5)
            async with server.db.transaction() as conn:
                await conn.execute(sa.update(upload_files).where(upload_files.c.slot == put2.rsplit("/", 2)[1]).values(expires=int(time.time()) - 1))
            async with http.put(put2, data=b"12345") as r:
                assert r.status == 410
    finally:
        await slix_close(alice)


async def test_expired_files_and_orphans_are_swept(tmp_path):
    async with running_server(tmp_path, HTTP, "upload.expire_after=1") as srv:
        alice = await slix(srv, await add_user(srv, "alice"))
        feature = srv.features["upload"]
        try:
            put, get, _ = await _slot(alice, "old.txt", 3)
            async with aiohttp.ClientSession() as http:
                async with http.put(put, data=b"abc") as r:
                    assert r.status == 201
                orphan = feature.store.dir / "orphanslot.part"
                orphan.write_bytes(b"left by a crash")
                os.utime(orphan, (time.time() - 3600, time.time() - 3600))
                await asyncio.sleep(2.1)
                async with http.get(get) as r:
                    assert r.status == 404  # expired: no longer served
                assert await feature.sweep() == 1
                assert feature.store.local_path(put.rsplit("/", 2)[1]) is None
                assert not orphan.exists()
                assert await feature.repo.used("alice", srv.domain) == 0
        finally:
            await slix_close(alice)


async def test_disco(server):
    alice = await slix(server, await add_user(server, "alice"), plugins=("xep_0030",))
    try:
        items = await alice.plugin["xep_0030"].get_items(jid=server.domain, timeout=5)
        assert f"upload.{server.domain}" in [i[0] for i in items["disco_items"]["items"]]
        info = await alice.plugin["xep_0030"].get_info(jid=f"upload.{server.domain}", timeout=5)
        assert ("store", "file") == tuple(next(iter(info["disco_info"]["identities"]))[:2])
        assert NS in info["disco_info"]["features"]
    finally:
        await slix_close(alice)


async def test_no_http_listener_no_upload_service(tmp_path):
    async with running_server(tmp_path) as srv:  # listen.http off
        alice = await slix(srv, await add_user(srv, "alice"), plugins=("xep_0030",))
        try:
            items = await alice.plugin["xep_0030"].get_items(jid=srv.domain, timeout=5)
            assert f"upload.{srv.domain}" not in [i[0] for i in items["disco_items"]["items"]]
        finally:
            await slix_close(alice)
