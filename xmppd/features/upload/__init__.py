"""XEP-0363: HTTP File Upload — images, voice and files, on ``listen.http`` under ``/upload/``.

A client asks the upload service (``upload.<domain>``, listed in the server's disco#items) for a
slot: ``<request xmlns='urn:xmpp:http:upload:0' filename= size= content-type=/>``. The size is
checked against ``upload.max_size`` (``file-too-large`` names the limit) and, with every slot
and file the user already holds, against ``upload.quota``; the answer is a PUT and a GET URL on
one random, unguessable path. The PUT (``xmppd/features/upload/http.py``) must come within
``slot_lifetime``, carry exactly the announced size (and type, when one was announced), and
succeeds once: a second PUT is ``409 Conflict``. The body is streamed to the store, never held
whole. GET serves the file (ranges, ETag, headers that keep a browser from running it) until
``expire_after``. An image also gets a JPEG thumbnail (XEP-0264): its URL is announced in the
slot (``<thumbnail xmlns='urn:xmpp:thumbs:1'/>`` beside ``put`` and ``get``), so the uploader
can put it in its message for chat lists. Files live under ``server.data_dir/upload`` behind
the :class:`~.store.FileStore` interface.
"""
from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated
from urllib.parse import quote

from lxml import etree

from ...config import AtLeast, AtMost, NonNegative, Positive, PositiveInt, parse_hostport
from ...core.dispatch import IqRequest, Target
from ...core.feature import Feature
from ...core.hooks import Routed
from ...errors import Condition, StanzaError
from ...tokens import token_urlsafe
from ...xml import ns
from ...xml.builder import element, sub
from ...xml.forms import Field, Form
from .http import UploadHttp
from .repository import QuotaExceeded, UploadRepository
from .store import LocalFileStore
from .thumbnails import IMAGE_TYPES

NS = "urn:xmpp:http:upload:0"
THUMBS = "urn:xmpp:thumbs:1"
_REQUEST = f"{{{NS}}}request"
# A file name is shown to people and becomes the last segment of a URL: no path, no controls.
_BAD_NAME = re.compile(r"[\x00-\x1f\x7f/\\]")
_CONTENT_TYPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}$")


@dataclass(frozen=True, slots=True)
class UploadOptions:
    # The upload service's JID; "": "upload." + server.domain.
    domain: str = ""
    # Largest file, bytes (100 MiB: a phone's video; the HTTP body is streamed, never held).
    max_size: PositiveInt = 104857600
    # Bytes one user may hold at once, files and open slots together (1 GiB).
    quota: PositiveInt = 1073741824
    # Seconds a slot waits for its PUT.
    slot_lifetime: Annotated[float, AtLeast(10), AtMost(86400)] = 300.0
    # Seconds a file is kept after its upload (30 days); 0: kept until its owner is deleted.
    expire_after: NonNegative = 2592000.0
    # Seconds between sweeps of expired files, unused slots and orphaned parts.
    sweep_interval: Positive = 3600.0
    # The public URL prefix of files; "": <listen.http's URL>/upload (http.public_url's host
    # when set). Behind a reverse proxy or CDN, set it to what clients reach.
    url: str = ""
    # Thumbnails of images: the longest side in pixels (0: no thumbnails), and the largest
    # image (pixels) decoded for one (a 12-megapixel photo is 12000000).
    thumbnail_size: Annotated[int, AtLeast(0), AtMost(1024)] = 256
    thumbnail_max_pixels: Annotated[int, AtLeast(1), AtMost(200_000_000)] = 50_000_000

    def __post_init__(self) -> None:
        if self.quota < self.max_size:
            raise ValueError("upload.quota must be at least upload.max_size")
        if self.url and not re.match(r"^https?://[^/]+(/.*)?$", self.url):
            raise ValueError(f"upload.url must be an http:// or https:// URL, not {self.url!r}")


class Upload(Feature):
    name = "upload"
    implements = ("XEP-0363", "XEP-0264")
    depends = ("disco",)
    Options = UploadOptions
    migrations = str(Path(__file__).parent / "migrations")

    async def setup(self) -> None:
        self.domain = self.options.domain or f"upload.{self.ctx.domain}"
        self.serving = bool(self.options.url or parse_hostport(self.ctx.config.listen.http, "listen.http"))
        if not self.serving:
            self.log.info("file upload is off: it needs listen.http (or upload.url)")
            return
        self.repo = UploadRepository(self.ctx.db)
        self.store = LocalFileStore(Path(self.ctx.config.data_dir) / "upload")
        self.http = UploadHttp(self)
        self.http.register(self.ctx)
        self.ctx.add_service(self.domain, self)
        for target in (Target.HOST, Target.BARE):
            self.ctx.add_iq_handler("get", f"{{{ns.DISCO_INFO}}}query", self.disco_info, target=target, domain=self.domain)
            self.ctx.add_iq_handler("get", f"{{{ns.DISCO_ITEMS}}}query", self.disco_items, target=target, domain=self.domain)
        self.ctx.add_iq_handler("get", _REQUEST, self.request_slot, domain=self.domain)
        self.ctx.on_teardown(self.ctx.feature("disco").add_item(self.domain, "HTTP File Upload"))
        self.ctx.spawn(self._sweep_loop(), "upload-sweep")

    # ---------------------------------------------------------------- the service domain

    async def receive(self, r: Routed) -> None:
        if r.kind == "iq":
            await self.ctx.router.dispatch_iq(r, Target.HOST if r.to is None or r.to.local is None else Target.BARE)
        elif r.kind == "message" and r.stanza.get("type") not in ("error", "groupchat", "headline"):
            self.ctx.router.bounce(r, StanzaError(Condition.SERVICE_UNAVAILABLE, "the upload service takes slot requests only"))

    async def disco_info(self, req: IqRequest) -> etree._Element:
        if req.to.local is not None or req.payload.get("node"):
            raise StanzaError(Condition.ITEM_NOT_FOUND, "no such node")
        q = element(f"{{{ns.DISCO_INFO}}}query", default_ns=ns.DISCO_INFO)
        sub(q, f"{{{ns.DISCO_INFO}}}identity", {"category": "store", "type": "file", "name": "HTTP File Upload"})
        for var in (ns.DISCO_INFO, ns.DISCO_ITEMS, NS):
            sub(q, f"{{{ns.DISCO_INFO}}}feature", {"var": var})
        form = Form("result", fields=(Field("FORM_TYPE", "hidden", values=(NS,)),
                                      Field("max-file-size", "text-single", values=(str(self.options.max_size),))))
        q.append(form.to_element())
        return q

    async def disco_items(self, req: IqRequest) -> etree._Element:
        if req.to.local is not None or req.payload.get("node"):
            raise StanzaError(Condition.ITEM_NOT_FOUND, "no such node")
        return element(f"{{{ns.DISCO_ITEMS}}}query", default_ns=ns.DISCO_ITEMS)

    # ---------------------------------------------------------------- slots

    def base_url(self) -> str:
        if self.options.url:
            return self.options.url.rstrip("/")
        base = self.ctx.http_base_url()
        if base is None:
            raise StanzaError(Condition.SERVICE_UNAVAILABLE, "file upload needs listen.http")
        return f"{base}/upload"

    def file_url(self, slot: str, filename: str) -> str:
        return f"{self.base_url()}/{slot}/{quote(filename, safe='')}"

    def thumbnail_url(self, slot: str) -> str:
        return f"{self.base_url()}/thumbs/{slot}.jpg"

    async def request_slot(self, req: IqRequest) -> etree._Element:
        user = req.from_jid
        if user.domain != self.ctx.domain or user.local is None:
            raise StanzaError(Condition.FORBIDDEN, "file upload is for this server's users")
        p = req.payload
        filename = (p.get("filename") or "").strip()
        size_s = p.get("size") or ""
        content_type = (p.get("content-type") or "").strip()
        if not filename or len(filename) > 255 or _BAD_NAME.search(filename) or filename in (".", ".."):
            raise StanzaError(Condition.BAD_REQUEST, "the filename must be 1 to 255 characters, without '/' or control characters")
        if not size_s.isdigit() or int(size_s) <= 0:
            raise StanzaError(Condition.BAD_REQUEST, "the size must be a positive number of bytes")
        if content_type and not _CONTENT_TYPE.match(content_type):
            raise StanzaError(Condition.BAD_REQUEST, f"{content_type!r} is not a MIME type")
        size = int(size_s)
        if size > self.options.max_size:
            too = etree.Element(f"{{{NS}}}file-too-large", nsmap={None: NS})
            etree.SubElement(too, f"{{{NS}}}max-file-size").text = str(self.options.max_size)
            raise StanzaError(Condition.NOT_ACCEPTABLE, f"the file is larger than {self.options.max_size} bytes", app=too)
        now = int(time.time())
        slot = token_urlsafe(24)
        try:
            ok = await self.repo.reserve(user.local, user.domain, slot, filename, size, content_type.lower(), now,
                                         now + int(self.options.slot_lifetime), self.options.quota)
        except QuotaExceeded as exc:
            raise StanzaError(Condition.RESOURCE_CONSTRAINT,
                              f"upload quota reached: {exc.used} of {self.options.quota} bytes used") from None
        if not ok:
            raise StanzaError(Condition.FORBIDDEN, "no such account")
        url = self.file_url(slot, filename)
        out = element(f"{{{NS}}}slot", default_ns=NS)
        sub(out, f"{{{NS}}}put", {"url": url})
        sub(out, f"{{{NS}}}get", {"url": url})
        if content_type.lower() in IMAGE_TYPES and self.options.thumbnail_size:
            sub(out, f"{{{THUMBS}}}thumbnail", {"uri": self.thumbnail_url(slot), "media-type": "image/jpeg"})
        return out

    # ---------------------------------------------------------------- expiry

    async def _sweep_loop(self) -> None:
        await self.ctx.lifecycle.started.wait()
        while True:
            try:
                await self.sweep()
            except Exception:
                self.log.exception("upload sweep failed")
            await asyncio.sleep(self.options.sweep_interval)

    async def sweep(self) -> int:
        """Remove expired files and unused slots, and files without a row (their owner was
        deleted, or a crash left a part); returns how many slots went."""
        now = int(time.time())
        gone = 0
        while batch := await self.repo.expired(now, 500):
            for slot in batch:
                await self.store.delete(slot)
            await self.repo.delete(batch)
            gone += len(batch)
        # On disk without a row: only files older than a slot's life (a PUT may be under way).
        candidates = await self.store.orphans(time.time() - self.options.slot_lifetime - 60)
        for i in range(0, len(candidates), 500):
            chunk = candidates[i:i + 500]
            known = await self.repo.existing(chunk)
            for slot in chunk:
                if slot not in known:
                    await self.store.delete(slot)
        if gone:
            self.log.info("upload: %d expired files and slots removed", gone)
        return gone
