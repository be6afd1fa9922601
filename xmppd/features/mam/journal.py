"""The archive's journal: records durable in an append-only file before their SQLite commit.

On an SQLite file a commit costs what its pages cost: every leaf of the two owner-first
indexes (:mod:`.repository`) that a batch touches is written again to the WAL, so a commit of
ten messages between twenty accounts writes some 45 pages. Deliveries and XEP-0198 acks wait
for their records to be durable (:mod:`xmppd.core.durability`), so at one message in flight
per conversation that cost was paid every few messages. With the journal a record is durable
once it is appended here -- one ``write()`` per turn of the event loop for every record the
turn produced, on the loop's thread -- and the deliveries and acks go out; the records stay in
the archive's queue and reach ``mam_messages`` in the writer's large batches (``[mam]
commit_interval``, ``batch_size``), whose pages are shared by hundreds of records.

Durability is SQLite's own with ``synchronous=NORMAL`` (what :mod:`xmppd.storage.engine` sets):
data written returns to the process's caller once it is in the operating system's file cache,
so a crash of the process (SIGKILL, OOM) loses nothing, while an operating-system crash or a
power loss can take back the last writes -- of this file as of the WAL. The next start replays
the file before anything else reads the archive (``Mam._replay``): its records are stored,
those already stored skipped, and the file is emptied.

When it is used: an SQLite file database and one process (no ``cluster.redis_url``): every
reader of the archive is then this process, whose queries first store what is queued
(``Mam.flush``). Several nodes sharing a database read each other's rows, so they commit
before delivering as before; so does MariaDB.

The file (``<database>-mam-journal``, mode 0600) holds records, each a header of two
little-endian 32-bit integers -- the payload's length and its CRC-32 -- and the payload: the
record's seven fields (``ArchivedMessage`` order) in UTF-8, separated by NUL, which neither
XML text nor a JID may contain. A torn last record (a crash in the middle of a write, a full
disk) fails its length or CRC and ends the replay there; nothing after it was acknowledged.
The file is emptied when every record in it is stored (:meth:`Journal.empty`), and rewritten
with only the records not stored yet when it outgrows :data:`MAX_BYTES` without ever being
caught up (:meth:`Journal.rewrite`).
"""
from __future__ import annotations

import fcntl
import logging
import os
import struct
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path

from .repository import ArchivedMessage

__all__ = ["Journal", "JournalBusy", "MAX_BYTES", "journal_path", "read_journal"]

log = logging.getLogger(__name__)

#: Past this size a journal that is never caught up (a sustained load: records always queued)
#: is rewritten with the records not stored yet. At one core's full load (40 s of one2one, ~21
#: MB of journal a second, the queue near queue_size: ~27 MB not stored) a bound of 64 MiB
#: meant a rewrite every ~2 s, ~1.7 % of the CPU; 256 MiB: every ~11 s.
MAX_BYTES = 256 * 1024 * 1024

_HEADER = struct.Struct("<II")
_FIELDS = 7
_SEP = "\x00"


def journal_path(database_file: str) -> Path:
    """The journal beside an SQLite database file."""
    return Path(database_file).expanduser().resolve().with_name(Path(database_file).name + "-mam-journal")


def _encode(records: Iterable[ArchivedMessage]) -> bytes:
    parts: list[bytes] = []
    pack = _HEADER.pack
    crc32 = zlib.crc32
    for r in records:
        payload = f"{r[0]}\x00{r[1]}\x00{r[2]}\x00{r[3]}\x00{r[4]}\x00{r[5]}\x00{r[6]}".encode()
        if payload.count(b"\x00") != _FIELDS - 1:
            raise ValueError(f"archive record {r.seq} holds a NUL character: not journaled")
        parts.append(pack(len(payload), crc32(payload)))
        parts.append(payload)
    return b"".join(parts)


def _decode(data: bytes) -> Iterator[ArchivedMessage]:
    """The records of a journal's bytes, up to the first torn or damaged one."""
    pos, end = 0, len(data)
    while pos + _HEADER.size <= end:
        size, crc = _HEADER.unpack_from(data, pos)
        payload = data[pos + _HEADER.size : pos + _HEADER.size + size]
        if len(payload) < size or zlib.crc32(payload) != crc:
            log.warning("archive journal: a damaged record at byte %d ends the replay (a crash in the middle of a write)", pos)
            return
        f = payload.decode().split(_SEP)
        if len(f) != _FIELDS:
            log.warning("archive journal: a malformed record at byte %d ends the replay", pos)
            return
        yield ArchivedMessage(f[0], f[1], int(f[2]), f[3], f[4], f[5], int(f[6]))
        pos += _HEADER.size + size
    if pos != end:
        log.warning("archive journal: %d torn bytes at its end (a crash in the middle of a write)", end - pos)


def read_journal(path: Path) -> list[ArchivedMessage]:
    """Every intact record of the journal at *path* (and of a rewrite a crash interrupted), in
    the order written; [] when there is none. A record may appear twice (stored is skipped)."""
    out: list[ArchivedMessage] = []
    for p in (path, _rewrite_path(path)):
        try:
            data = p.read_bytes()
        except FileNotFoundError:
            continue
        out.extend(_decode(data))
    return out


def _rewrite_path(path: Path) -> Path:
    return path.with_name(path.name + ".new")


def _write(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class JournalBusy(OSError):
    """Another process holds the journal (a second xmppd on the same database, no cluster)."""


def _open_locked(path: Path, flags: int) -> int:
    """Open *path* and take its exclusive lock (held as long as the file is open), or raise
    :class:`JournalBusy`."""
    fd = os.open(path, flags | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise JournalBusy(f"{path} is locked by another process") from None
    except BaseException:
        os.close(fd)
        raise
    return fd


class Journal:
    """One journal file, open for appending and locked by this process (see the module's doc):
    a second process on the same database gets :class:`JournalBusy` and neither replays nor
    empties the journal of the first."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = _open_locked(path, os.O_WRONLY | os.O_APPEND)
        self.size = os.fstat(self._fd).st_size
        self.broken = False  # an append failed: what follows a torn record would not be replayed

    def recorded(self) -> list[ArchivedMessage]:
        """What the file holds (and a rewrite a crash interrupted): the records a crash left,
        read before anything is appended; then :meth:`replayed` once they are stored."""
        return read_journal(self.path)

    def append(self, records: Iterable[ArchivedMessage]) -> None:
        """Make *records* durable (one ``write``); raises ``OSError`` (a full disk) or
        ``ValueError`` (a NUL in a field): then nothing after the last whole record counts."""
        data = _encode(records)
        _write(self._fd, data)
        self.size += len(data)

    @property
    def full(self) -> bool:
        """Past :data:`MAX_BYTES`: time to :meth:`rewrite` it."""
        return self.size >= MAX_BYTES

    def empty(self) -> None:
        """Every record in the file is stored: empty it (appends go on from its start)."""
        if self.size:
            os.ftruncate(self._fd, 0)
            self.size = 0

    def replayed(self) -> None:
        """What :meth:`recorded` returned is stored: empty the file, and remove what a crash in
        a rewrite left beside it."""
        self.empty()
        _rewrite_path(self.path).unlink(missing_ok=True)

    def rewrite(self, unstored: list[ArchivedMessage]) -> None:
        """Replace the file by one holding only *unstored* (the journaled records not stored
        yet): written beside it, then renamed over it -- a crash in between leaves both, and
        both are replayed."""
        new = _rewrite_path(self.path)
        fd = _open_locked(new, os.O_WRONLY | os.O_TRUNC | os.O_APPEND)  # (locked before it is the journal)
        try:
            data = _encode(unstored)
            _write(fd, data)
            os.replace(new, self.path)
        except BaseException:
            os.close(fd)
            raise
        os.close(self._fd)
        self._fd = fd
        self.size = len(data)

    def close(self, remove: bool) -> None:
        """Close the file (and release its lock); *remove* it first when every record it holds
        is stored."""
        if remove:
            self.path.unlink(missing_ok=True)
            _rewrite_path(self.path).unlink(missing_ok=True)
        os.close(self._fd)
        self._fd = -1
