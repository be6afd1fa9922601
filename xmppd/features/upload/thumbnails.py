"""Thumbnails of uploaded images (XEP-0264 metadata), made once after the upload.

Pillow (the maintained Python imaging library: decoders for JPEG, PNG, GIF and WebP, and a
guard against decompression bombs) decodes in a worker thread; an image whose pixel count
passes ``max_pixels`` or that does not decode gets no thumbnail, which only costs the chat list
its preview. ``draft`` lets the JPEG decoder scale down while decoding, so a large photo is
never decoded at full size.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

log = logging.getLogger(__name__)

# The types a thumbnail is made of (what Pillow decodes safely and chat clients display).
IMAGE_TYPES = frozenset(("image/jpeg", "image/png", "image/gif", "image/webp"))


def _make(src: Path, dst: Path, box: int, max_pixels: int) -> tuple[int, int] | None:
    from PIL import Image, ImageOps

    Image.MAX_IMAGE_PIXELS = None  # checked below, per image, with our own bound
    try:
        with Image.open(src) as img:
            if img.width * img.height > max_pixels:
                return None
            img.draft("RGB", (box, box))
            img = ImageOps.exif_transpose(img)  # a phone's portrait photo stays upright
            img.thumbnail((box, box))
            if img.mode not in ("RGB", "L"):
                img = img.convert("RGB")
            tmp = dst.with_name(dst.name + ".part")
            img.save(tmp, "JPEG", quality=80)
            tmp.replace(dst)
            return img.width, img.height
    except Exception as exc:  # any decoder error: no preview, never a failed upload
        log.info("no thumbnail for %s: %s", src.name, exc)
        with contextlib.suppress(FileNotFoundError):
            dst.with_name(dst.name + ".part").unlink()
        return None


async def make_thumbnail(src: Path, dst: Path, box: int, max_pixels: int) -> tuple[int, int] | None:
    """Write a JPEG of at most ``box``×``box`` pixels to ``dst``; its (width, height) or None."""
    return await asyncio.to_thread(_make, src, dst, box, max_pixels)
