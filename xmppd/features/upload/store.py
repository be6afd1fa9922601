"""Where uploaded files live: the storage interface and its local-disk implementation.

The feature talks to a :class:`FileStore` only; a file is named by its slot (a random token).
:class:`LocalFileStore` keeps ``<dir>/<slot>`` (and ``<slot>.thumb.jpg``), writes each upload to
``<slot>.part`` and renames it on completion, so a reader never sees half a file and a crash
leaves only ``.part`` files, which the sweeper removes. Disk writes run in a worker thread in
batches, so the event loop never waits for the disk and an upload holds at most one batch in
memory. An S3-compatible store is a later implementation of the same interface (GET then
redirects to a presigned URL).
"""
from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path
from typing import BinaryIO, Protocol

BATCH = 1 << 20  # bytes gathered before one write in the worker thread


class FileWriter(Protocol):
    async def write(self, data: bytes) -> None: ...
    async def commit(self) -> None: ...
    async def abort(self) -> None: ...


class FileStore(Protocol):
    async def open_write(self, slot: str) -> FileWriter: ...
    def local_path(self, slot: str) -> Path | None: ...  # None: not stored here
    def thumbnail_path(self, slot: str) -> Path: ...
    async def delete(self, slot: str) -> None: ...
    async def orphans(self, older_than: float) -> list[str]: ...  # slots of files (and parts) on disk


class _LocalWriter:
    def __init__(self, final: Path) -> None:
        self._final = final
        self._part = final.with_name(final.name + ".part")
        self._file: BinaryIO | None = None
        self._buf: list[bytes] = []
        self._held = 0

    async def _open(self) -> None:
        self._file = await asyncio.to_thread(open, self._part, "wb")

    async def write(self, data: bytes) -> None:
        self._buf.append(data)
        self._held += len(data)
        if self._held >= BATCH:
            await self._drain()

    async def _drain(self) -> None:
        if self._buf:
            chunk, self._buf, self._held = b"".join(self._buf), [], 0
            await asyncio.to_thread(self._file.write, chunk)  # type: ignore[union-attr]

    async def commit(self) -> None:
        await self._drain()
        f, self._file = self._file, None

        def finish() -> None:
            assert f is not None
            f.flush()
            os.fsync(f.fileno())
            f.close()
            os.replace(self._part, self._final)

        await asyncio.to_thread(finish)

    async def abort(self) -> None:
        self._buf, self._held = [], 0
        f, self._file = self._file, None

        def drop() -> None:
            if f is not None:
                f.close()
            with contextlib.suppress(FileNotFoundError):
                self._part.unlink()

        await asyncio.to_thread(drop)


class LocalFileStore:
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        directory.mkdir(parents=True, exist_ok=True)

    async def open_write(self, slot: str) -> _LocalWriter:
        w = _LocalWriter(self.dir / slot)
        await w._open()
        return w

    def local_path(self, slot: str) -> Path | None:
        p = self.dir / slot
        return p if p.is_file() else None

    def thumbnail_path(self, slot: str) -> Path:
        return self.dir / f"{slot}.thumb.jpg"

    async def delete(self, slot: str) -> None:
        def rm() -> None:
            for name in (slot, f"{slot}.part", f"{slot}.thumb.jpg"):
                with contextlib.suppress(FileNotFoundError):
                    (self.dir / name).unlink()

        await asyncio.to_thread(rm)

    async def orphans(self, older_than: float) -> list[str]:
        def scan() -> list[str]:
            out = set()
            with os.scandir(self.dir) as it:
                for e in it:
                    if e.is_file() and e.stat().st_mtime < older_than:
                        out.add(e.name.split(".", 1)[0])
            return sorted(out)

        return await asyncio.to_thread(scan)
