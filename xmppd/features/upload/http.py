"""The HTTP side of XEP-0363: PUT into a slot, GET (and HEAD) a file or its thumbnail.

PUT ``/upload/<slot>/<name>``: the slot must be pending, ``Content-Length`` must be the size
asked for (a chunked body without one is refused: the size is the contract), the
``Content-Type`` the type asked for when one was (or the generic ``application/octet-stream``;
the file is served with the slot's type either way). The body streams into the store; more bytes
than announced stop it at once (413), fewer (the client went away) leave nothing behind. Only
when the file is complete and on disk is the slot marked used, in one conditional update, so a
slot is used once even by two PUTs at the same moment (the loser gets 409).

GET serves through aiohttp's ``FileResponse`` (sendfile, ranges, ETag, If-Modified-Since), with
headers that keep a browser from treating an upload as a page of this origin
(``Content-Security-Policy: default-src 'none'``, ``X-Content-Type-Options: nosniff``, and
``Content-Disposition: attachment`` for anything that is not an image, audio or video). CORS is
open (``*``): the slot's secret URL is the authorisation, no cookie is involved, and web
clients (Converse.js, the uniapp H5 build) upload from their own origin.
"""
from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from aiohttp import web

from .thumbnails import IMAGE_TYPES, make_thumbnail

if TYPE_CHECKING:
    from . import Upload

_CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, HEAD, PUT, OPTIONS",
    "Access-Control-Allow-Headers": "Content-Type",
    "Access-Control-Max-Age": "86400",
}
_SAFE = {"X-Content-Type-Options": "nosniff", "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'"}
_INLINE = ("image/", "audio/", "video/")


def _error(status: int, text: str) -> web.Response:
    return web.Response(status=status, text=text + "\n", headers=_CORS)


class UploadHttp:
    def __init__(self, feature: "Upload") -> None:
        self.f = feature

    def register(self, ctx: Any) -> None:
        # The thumbnail route first: "/upload/thumbs/<slot>.jpg" also matches the file pattern.
        ctx.add_http_route("GET", "/upload/thumbs/{slot}.jpg", self.get_thumbnail)
        ctx.add_http_route("PUT", "/upload/{slot}/{name}", self.put)
        ctx.add_http_route("GET", "/upload/{slot}/{name}", self.get)
        ctx.add_http_route("OPTIONS", "/upload/{slot}/{name}", self.options)

    async def options(self, request: web.Request) -> web.Response:
        return web.Response(status=204, headers=_CORS)

    async def put(self, request: web.Request) -> web.Response:
        f = self.f
        slot = request.match_info["slot"]
        meta = await f.repo.get(slot)
        now = int(time.time())
        if meta is None or meta.filename != request.match_info["name"]:
            return _error(404, "no such upload slot")
        if meta.uploaded is not None:
            return _error(409, "this slot was used already")
        if meta.expires is not None and meta.expires < now:
            return _error(410, "this slot expired: ask for a new one")
        length = request.content_length
        if length is None:
            return _error(411, "send Content-Length: the size asked for in the slot")
        if length != meta.size:
            return _error(413 if length > meta.size else 400, f"the slot is for {meta.size} bytes, not {length}")
        ctype = (request.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        # application/octet-stream is what generic HTTP clients send for "bytes": not a claim.
        if meta.content_type and ctype not in ("", "application/octet-stream", meta.content_type):
            return _error(415, f"the slot is for {meta.content_type}, not {ctype}")
        writer = await f.store.open_write(slot)
        got = 0
        try:
            async for chunk in request.content.iter_any():  # what arrived, as it arrives
                got += len(chunk)
                if got > meta.size:
                    await writer.abort()
                    return _error(413, f"more than the {meta.size} bytes of the slot")
                await writer.write(chunk)
        except BaseException:
            await writer.abort()  # the client went away (or the server stops): nothing kept
            raise
        if got != meta.size:
            await writer.abort()
            return _error(400, f"{got} bytes received of {meta.size}")
        await writer.commit()
        expires = now + int(f.options.expire_after) if f.options.expire_after else None
        if not await f.repo.complete(slot, now, expires):
            # Another PUT finished first (or the slot expired meanwhile): its file stays.
            return _error(409, "this slot was used already")
        if meta.content_type in IMAGE_TYPES and f.options.thumbnail_size:
            path = f.store.local_path(slot)
            if path is not None:
                dims = await make_thumbnail(path, f.store.thumbnail_path(slot), f.options.thumbnail_size,
                                            f.options.thumbnail_max_pixels)
                if dims is not None:
                    await f.repo.set_thumbnail(slot, *dims)
        return web.Response(status=201, headers=_CORS)

    async def _stored(self, slot: str) -> Any:
        meta = await self.f.repo.get(slot)
        if meta is None or meta.uploaded is None or (meta.expires is not None and meta.expires < int(time.time())):
            return None
        return meta

    async def get(self, request: web.Request) -> web.StreamResponse:
        slot = request.match_info["slot"]
        meta = await self._stored(slot)
        path = self.f.store.local_path(slot) if meta is not None else None
        if meta is None or path is None:
            return _error(404, "no such file")
        ctype = meta.content_type or "application/octet-stream"
        disposition = "inline" if ctype.startswith(_INLINE) and ctype != "image/svg+xml" else "attachment"
        headers = {
            **_CORS, **_SAFE,
            "Content-Type": ctype,
            "Content-Disposition": f"{disposition}; filename*=UTF-8''{quote(meta.filename, safe='')}",
            "Cache-Control": "public, max-age=31536000, immutable",  # a slot's bytes never change
        }
        if meta.thumb is not None:
            headers["Link"] = f'<{self.f.thumbnail_url(slot)}>; rel="preview"; type="image/jpeg"'
        return web.FileResponse(path, headers=headers)

    async def get_thumbnail(self, request: web.Request) -> web.StreamResponse:
        slot = request.match_info["slot"]
        meta = await self._stored(slot)
        path = self.f.store.thumbnail_path(slot)
        if meta is None or meta.thumb is None:
            return _error(404, "no thumbnail")
        with contextlib.suppress(OSError):
            if path.is_file():
                headers = {**_CORS, **_SAFE, "Content-Type": "image/jpeg", "Cache-Control": "public, max-age=31536000, immutable",
                           "X-Image-Width": str(meta.thumb[0]), "X-Image-Height": str(meta.thumb[1])}
                return web.FileResponse(path, headers=headers)
        return _error(404, "no thumbnail")
