"""XEP-0313: Message Archive Management (urn:xmpp:mam:2), with XEP-0359 stanza ids.

What is archived: messages of type chat, or normal with a body, for and from local accounts
(one row in each local party's archive), and groupchat messages with a body in rooms whose
archiving is on (``[mam] rooms_default``, the room configuration field ``mam#enabled``).
XEP-0334 hints: ``<no-store/>`` and ``<no-permanent-store/>`` keep a message out, ``<store/>``
keeps one without a body in. Messages the server re-delivers (offline storage, stream
management re-routing) already carry their ``<stanza-id by='owner'/>`` and are not archived
twice. Preferences (``<prefs default='always|never|roster'>`` with always/never lists) decide
per account.

Every archived incoming message gets ``<stanza-id xmlns='urn:xmpp:sid:0' by='<owner>'
id='...'/>`` before it is delivered, so clients can de-duplicate; in rooms the archive stamps
the room's stanza-id before the broadcast (MUC keeps it). The id is the archive's ``seq``
encrypted (see :mod:`.ids`): opaque to clients, decoded by the server, so no id index is kept.

Writes are group commits: records go into a bounded queue, committed in batches; queries flush it first (a client always finds what it was just sent), and teardown
flushes it (a clean shutdown loses nothing). When the queue is full the sender waits
(back-pressure) rather than a message going unarchived. What the server delivers or
acknowledges is archived (:mod:`xmppd.core.durability`): each record's commit ticket joins the
barrier of the stanza being processed, so the message reaches its recipients, and counts in the
sender's XEP-0198 ``<a h=''/>``, once the batch holding it has committed -- a crash never loses
an archived copy of a message somebody saw or was told was received. A waited-for record is
committed in the next turn of the event loop (``Mam._kick``, scheduled by the first record of a
turn): every stanza taken in during one turn, from any session, shares that commit; while each
turn brings more records the commit waits one more turn, at most ``GATHER_TURNS`` (the next
messages of other conversations, a turn or two behind, share it too; a lone message waits one
empty turn). On an SQLite file that commit runs right there, on the loop's own thread,
when no other writer is in the way (``MamRepository.store_now``,
:class:`xmppd.storage.inline.InlineWriter`: no task to wake, no hand-off to a driver thread,
whose GIL waits cost milliseconds on a busy loop), and the deliveries and acks it releases go
out in the same turn (``Ticket.on_done``). Records nobody waits for yet linger up to
``commit_interval`` (in the writer task, ``Mam._write_loop``) to make larger batches; the
writer task also takes every batch that cannot be committed inline (MariaDB, another writer in
the way) and retries failures.
A failing write is retried (backing off up to 30 s) until storage takes it, never dropped.

With the journal (:mod:`.journal`; an SQLite file and one process, ``[mam] journal``) a record
is durable once appended there, and nothing waits for the table: while the archive is quiet
(:data:`QUIET_RECORDS`) each record is appended as it is enqueued, before its delivery, and
nothing is held; under load the records of a turn share one append in the next turn
(``Mam._kick`` -> ``Mam._journal_now``), which completes their tickets. Either way the records
stay queued and the writer task stores them in the table in large batches (``batch_size``,
``commit_interval``), then empties the journal; a query stores what is queued first. What a
crash left in the journal is stored at the next start, before the seq clock starts.

Queries: the XEP-0313 form (``with``, ``start``, ``end``, ``after-id``, ``before-id``,
``ids``), XEP-0059 paging (``max``, ``after``, ``before``; ``<first>``, ``<last>``,
``<count>``, ``complete``), and what ``urn:xmpp:mam:2#extended`` promises: ``<flip-page/>``
(the page sent newest first) and ``<metadata/>`` (first and last id and time; empty for an
empty archive). An unknown form field is ``feature-not-implemented`` (§4.1.4). Accounts query
their own archive (anyone else: forbidden); room
archives answer members of members-only rooms and anyone not banned elsewhere. A periodic purge
drops messages older than ``[mam] retention_days`` (0: keep forever).
"""
from __future__ import annotations

import asyncio
import collections
import copy
import functools
import itertools
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from lxml import etree

from ... import timestamps
from ...config import AtLeast, AtMost, NonNegativeInt, OneOf, Positive, PositiveInt
from ...core import durability
from ...core import hooks as H
from ...core.dispatch import IqRequest, Target
from ...core.durability import StoreFailed, Ticket
from ...core.feature import Feature, hook, iq_handler
from ...core.hooks import AccountEvent, Flow, Routed
from ...core.server_owned import owned
from ...core.tasks import stop_tasks
from ...errors import Condition, StanzaError
from ...jid import JID, JIDError
from ...xml import ns
from ...xml.forms import Field, Form
from . import retraction
from .ids import EPOCH_US, NODE_BITS, IdCodec, NodeLease, SeqClock, time_of
from .journal import Journal, JournalBusy, journal_path
from .repository import ArchivedMessage, ArchiveQuery, MamRepository, Prefs, SqlMamRepository, UnknownId, stanza_bytes

if TYPE_CHECKING:
    from ...core.session import Session

__all__ = ["Mam", "MamOptions", "MAM"]

MAM = "urn:xmpp:mam:2"
MAM_EXTENDED = "urn:xmpp:mam:2#extended"
RSM = "http://jabber.org/protocol/rsm"
FORWARD = "urn:xmpp:forward:0"
ROOM_FIELD = "mam#enabled"
_STANZA_ID = f"{{{ns.SID}}}stanza-id"
_BODY = f"{{{ns.CLIENT}}}body"
_NO_STORE = (f"{{{ns.HINTS}}}no-store", f"{{{ns.HINTS}}}no-permanent-store")
_STORE = f"{{{ns.HINTS}}}store"
_RETRACT = f"{{{retraction.RETRACT}}}retract"
_CARBONS = ("{urn:xmpp:carbons:2}sent", "{urn:xmpp:carbons:2}received")
_STANZA_ID_TEMPLATE = etree.Element(_STANZA_ID, nsmap={None: ns.SID})
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True)
# What the recipient's <stanza-id by='...' id='...'/> adds at most, beyond its 'by' (for the quota)
_STAMP_BYTES = 96


# Turns of the event loop a commit waits at most while each turn brings more records (_kick).
GATHER_TURNS = 4

# With the journal: after a turn of the event loop that brought at most this many records (the
# turns of ~10 conversations with one message in flight each bring 6-14), the next records are
# appended one by one as they come and nothing is held for them (what holding and releasing a
# delivery costs is more than an append); after a busier turn the records of a turn share one
# append in the next turn (_journal_now): under load one write() for dozens of messages.
QUIET_RECORDS = 32


@dataclass(frozen=True, slots=True)
class MamOptions:
    # Days messages are kept; 0 keeps them forever. The purge runs every purge_interval seconds,
    # deleting at most purge_batch messages per transaction (oldest first).
    retention_days: NonNegativeInt = 0
    purge_interval: Positive = 3600.0
    purge_batch: PositiveInt = 1000
    # Bytes (UTF-8, as stored) one account's archive may hold; 0: no limit. A message that
    # would take the sender's or a local recipient's archive over it is refused with
    # resource-constraint and stored nowhere. Rooms' archives are not limited by it.
    max_bytes_per_user: NonNegativeInt = 104_857_600
    # Archiving for accounts without preferences: "always", "never" or "roster".
    default_mode: Annotated[str, OneOf("always", "never", "roster")] = "always"
    # Whether rooms archive unless their owner turns it off.
    rooms_default: bool = True
    # Most results one query page returns (a larger <max/> is cut to this).
    max_page: PositiveInt = 250
    # Records waiting to be written; beyond it senders wait for storage (at most ~1 KiB each:
    # 20 MiB; room for two batches while one is written).
    queue_size: PositiveInt = 20000
    # Records written per transaction (larger batches: fewer commits and thread hand-offs).
    batch_size: PositiveInt = 4000
    # Under load, records nobody waits for yet are committed at most once per commit_interval
    # seconds (or when batch_size records wait), so that they pile up into large batches: every
    # commit rewrites each index leaf page it touches, and with many owners a batch of 100 costs
    # about twice as much CPU per record as one of 1,000 (bench/mam_bench.py), one of 1,000
    # about 1.5x one of 4,000 (bench one2one: 5.0 against 1.6 µs of COMMIT per record). A
    # record that a delivery or an XEP-0198 ack waits for is durable in the journal at once, or
    # without it committed as soon as the writer is free; an idle writer commits at once; a
    # query flushes first, so nothing is read stale. 0 disables it.
    commit_interval: Annotated[float, AtLeast(0), AtMost(10)] = 0.25
    # On an SQLite file with one process (no cluster.redis_url): a record is durable once it is
    # appended to the journal beside the database (.journal), so deliveries and acks wait for
    # one write() per turn of the event loop, not for an SQLite commit; the records reach the
    # archive's table in the writer's large batches. false: every record waited for is
    # committed to SQLite first (as with MariaDB or a cluster).
    journal: bool = True

def _parse_time(value: str, var: str) -> int:
    try:
        dt = timestamps.parse(value)
    except ValueError:
        raise StanzaError(Condition.BAD_REQUEST, f"{var}: not a XEP-0082 date-time: {value!r}") from None
    return int(dt.timestamp() * 1_000_000)


def _worth_archiving(msg: etree._Element, groupchat: bool = False) -> bool:
    typ = msg.get("type") or "normal"
    if groupchat != (typ == "groupchat") or typ not in ("chat", "normal", "groupchat"):
        return False
    body = store = False
    for child in msg:
        tag = child.tag
        if tag == _BODY:
            body = True
        elif tag in _NO_STORE or tag in _CARBONS:
            return False
        elif tag == _STORE:
            store = True
    return body or store


# ArchivedMessage from a tuple in its field order, without NamedTuple's Python-level __new__
# (the hooks' time_of inlined too: (seq >> NODE_BITS) + EPOCH_US).
_record = functools.partial(tuple.__new__, ArchivedMessage)

# What one walk of a one-to-one message's children finds (:func:`_scan`).
_WORTH = 1  # worth archiving: chat or normal, a body or <store/>, no <no-store/>, not a carbon
_RETRACTS = 2  # a <retract/> (XEP-0424)
_STAMPED = 4  # a <stanza-id/> (maybe the recipient's: re-delivered, archived already)


def _scan(msg: etree._Element) -> int:
    """:data:`_WORTH` (what ``_worth_archiving(msg)`` says), :data:`_RETRACTS`, :data:`_STAMPED`."""
    flags = body = store = refused = 0
    for child in msg:
        tag = child.tag
        if tag == _BODY:
            body = 1
        elif tag == _STANZA_ID:
            flags |= _STAMPED
        elif tag == _RETRACT:
            flags |= _RETRACTS
        elif tag in _NO_STORE or tag in _CARBONS:
            refused = 1
        elif tag == _STORE:
            store = 1
    if (body or store) and not refused and (msg.get("type") or "normal") in ("chat", "normal"):
        flags |= _WORTH
    return flags


@functools.lru_cache(maxsize=4096)
def _stamp_of(owner: str) -> tuple[etree._Element, str]:
    """The recipient's ``<stanza-id by='owner'/>`` without its id (a copy of it is the stamp,
    its id set), and how lxml serialises it up to the id's value: the stamp's text is that, the
    id and ``"/>`` (what ``etree.tostring`` of the stamp gives, without serialising it)."""
    stamp = _STANZA_ID_TEMPLATE.__copy__()
    stamp.set("by", owner)
    probe = stamp.__copy__()
    probe.set("id", "0")
    text = etree.tostring(probe, encoding="unicode")
    assert text.endswith(' id="0"/>'), text
    return stamp, text[:-4]


class Mam(Feature):
    name = "mam"
    implements = ("XEP-0313", "XEP-0359", "XEP-0059", "XEP-0334", "XEP-0424")
    account_disco_features = (MAM, MAM_EXTENDED, ns.SID)
    disco_features = (ns.SID,)
    depends = ("disco", "roster", "muc")
    Options = MamOptions
    migrations = str(Path(__file__).parent / "migrations")
    # Only an archive sends results (XEP-0313 §4.2): a client's would fake someone's history.
    # XEP-0424 §6 / XEP-0425 §5: a <retracted/> tombstone is the archive's word, never a client's.
    server_owned = owned(MAM, "result") + owned(retraction.RETRACT, "retracted")

    repo: MamRepository

    def _metrics(self) -> list[Any]:
        """/metrics: records waiting for their group commit (xmppd/metrics.py)."""
        from ...metrics import gauge

        return [gauge("xmppd_archive_queue", "Archive records enqueued and not stored yet on this node", self._enqueued - self._stored)]

    async def setup(self) -> None:
        self.repo = SqlMamRepository(self.ctx.db)
        self.ids: IdCodec = await self.repo.open()
        # The journal (.journal): what a crash left in it is stored before anything reads the
        # archive or picks a new seq (max_seq below).
        self._journal: Journal | None = None
        self._durable = 0  # records enqueued up to this one are durable in the journal
        self._turn_mark = 0  # records enqueued when the last turn's _kick ran ...
        self._quiet = True  # ... and whether that turn brought at most QUIET_RECORDS
        db_file = self.ctx.db.sqlite_file
        if db_file is not None:
            path = journal_path(db_file)
            try:
                journal = Journal(path)
            except JournalBusy:
                self.log.warning("the archive journal %s is held by another process (a second xmppd on this database "
                                 "without a cluster?): not replayed, not used", path)
            else:
                await self._replay(journal)
                if self.options.journal and not self.ctx.config.cluster.redis_url:
                    self._journal = journal
                else:
                    journal.close(remove=True)
        self._encode = self.ids.encode
        self._clock = self.ctx.clock
        self._lease = NodeLease(self.repo, self.ctx.clock, self.log)
        self._seqs: SeqClock = await self._lease.claim(await self.repo.max_seq())
        self._renewer = self.ctx.spawn(self._lease.keep(), "mam-lease")
        # Records not stored yet, oldest first (at most queue_size: beyond, senders wait).
        self._pending: collections.deque[ArchivedMessage] = collections.deque()
        self._space = asyncio.Event()  # set when the queue has room again
        self._inflight: list[ArchivedMessage] = []  # the batch the writer task is storing
        self.ctx.add_metrics(self._metrics)
        self._work = asyncio.Event()  # records for the writer task (lingering, or not inline)
        self._wake = asyncio.Event()  # batch_size records wait, or somebody waits for a ticket
        self._lock = asyncio.Lock()
        self._kick_handle: asyncio.Handle | None = None  # a _kick scheduled for this turn's records
        self._last_commit = 0.0
        self._gathered = 0  # records pending when _kick last put its commit off a turn ...
        self._gather_turns = 0  # ... and how many turns it did so for this commit
        self._loop_time = asyncio.get_running_loop().time
        # Commit tickets (xmppd.core.durability): [records enqueued up to it, ticket], oldest first.
        self._tickets: collections.deque[list[Any]] = collections.deque()
        self._ticket: Ticket | None = None  # the open one, shared until the writer cuts a batch
        self._enqueued = 0  # records ever enqueued ...
        self._stored = 0  # ... and stored (always a prefix: the queue is FIFO)
        self._prefs: dict[str, Prefs] = {}
        self._prefs_generation = 0  # moves at every invalidation: a load racing with one keeps nothing
        # Another cluster node's change of someone's preferences (xmppd/core/invalidation.py).
        self._prefs_inval = self.ctx.invalidation("mam-prefs", self._prefs_invalidated, self._prefs_flush)
        # Quota bookkeeping (max_bytes_per_user): stored bytes per owner as last read or kept up
        # to date since, and bytes queued, not stored yet.
        self._quota = self.options.max_bytes_per_user
        self._queue_size = self.options.queue_size
        self._used: dict[str, int] = {}
        self._queued_bytes: dict[str, int] = {}
        self._writer = self.ctx.spawn(self._write_loop(), "mam-writer")
        if self.options.retention_days:
            self._purge_timer = self.ctx.call_later(self.options.purge_interval, self._schedule_purge)
        muc = self.ctx.feature("muc") if self.ctx.has_feature("muc") else None
        self.muc = muc
        if muc is not None:
            from ..muc import events as E

            self.ctx.on_teardown(muc.events.add(E.GROUPCHAT_BEFORE_BROADCAST, self._room_message, priority=-1000))
            self.ctx.on_teardown(muc.events.add(E.CONFIG_FORM, self._room_form))
            self.ctx.on_teardown(muc.events.add(E.ROOM_DISCO_INFO, self._room_disco))
            self.ctx.on_teardown(muc.events.add(E.ROOM_DESTROYED, self._room_destroyed))
            self.ctx.on_teardown(muc.events.add(E.ROOM_LOADED, self._room_loaded))
            self.ctx.on_teardown(muc.events.add(E.RETRACTION, self._room_retraction))  # XEP-0424/0425: .retraction
            self.ctx.on_teardown(muc.add_logger(self.room_archiving))  # status 170 for archived rooms
            for typ in ("get", "set"):
                self.ctx.add_iq_handler(typ, f"{{{MAM}}}query", self._room_query, target=Target.BARE, domain=muc.domain)

    async def teardown(self) -> None:
        if self._kick_handle is not None:
            self._kick_handle.cancel()
            self._kick_handle = None
        await stop_tasks(self._writer, self._renewer)
        try:
            async with asyncio.timeout(10):
                await self.flush()
        finally:
            for _, ticket in self._tickets:
                ticket.failed(StoreFailed("the archive shut down before storing the message"))
            self._tickets.clear()
        if self._journal is not None:
            self._journal.close(remove=self._stored == self._enqueued)
        await self._lease.release()
        close = getattr(self.repo, "close", None)
        if close is not None:
            await close()

    # ---------------------------------------------------------------- writing

    async def _write_loop(self) -> None:
        """The writer task: commits what :meth:`_kick` leaves to it -- records nobody waits for
        yet while the writer is busy (lingering up to commit_interval, so that they pile up into
        large batches), and every batch that cannot be committed on the loop's thread (another
        backend, another writer in the way) or failed (retried, see :meth:`_store`)."""
        pending = self._pending
        interval = self.options.commit_interval
        batch_size = self.options.batch_size
        clock = self._loop_time
        while True:
            await self._work.wait()
            self._work.clear()
            if not pending:
                continue
            wait = self._last_commit + interval - clock()
            if wait > 0 and not self._wake.is_set() and len(pending) < batch_size:
                # Busy, and nobody waits for these records yet: let the batch grow (batch_size
                # records, a delivery or an ack waiting, or a flush() cut it short).
                await self._woken_or(wait)
            async with self._lock:
                if not pending:
                    continue  # committed meanwhile (_kick, flush)
                # The batch is in _inflight until stored, so that a flush() after a cancelled
                # store writes it first, in order.
                batch = self._inflight = self._take()
                await self._store(batch)
                self._inflight = []
            if pending:
                self._work.set()

    async def _woken_or(self, seconds: float) -> None:
        """Sleep *seconds*, or less if batch_size records wait or a ticket is waited for."""
        try:
            async with asyncio.timeout(seconds):
                await self._wake.wait()
        except TimeoutError:
            pass

    def _take(self) -> list[ArchivedMessage]:
        """Cut a batch: the oldest records (at most batch_size); later ones get a new ticket."""
        pending = self._pending
        n = min(len(pending), self.options.batch_size)
        batch = [pending.popleft() for _ in range(n)]
        self._cut()
        if not self._space.is_set():
            self._space.set()
        return batch

    def _cut(self) -> None:
        """A batch is cut: records enqueued from now on get a new ticket."""
        self._ticket = None
        self._wake.clear()

    def _kick(self) -> None:
        """Scheduled by the first record of a turn of the event loop, run in the next turn --
        once every stanza that turn took in was processed -- so that records of several
        sessions share one commit. When somebody waits for them (a delivery, an ack: the
        ticket was hurried), batch_size records wait, or the writer was idle for
        commit_interval, the batch is committed here and now, on the loop's thread
        (:meth:`MamRepository.store_now`), and the deliveries and acks it releases go out in
        this same turn: no writer task to wake, no hand-off. Anything else is the writer
        task's (:meth:`_write_loop`). With the journal the turn's records are appended to it
        instead (:meth:`_journal_now`) and the table is the writer task's alone."""
        self._kick_handle = None
        journal = self._journal
        if journal is not None and not journal.broken:
            self._quiet = self._enqueued - self._turn_mark <= QUIET_RECORDS
            self._turn_mark = self._enqueued
            if self._enqueued <= max(self._durable, self._stored):
                self._work.set()  # (appended as they came: stored by the writer task)
                return
            if self._journal_now(journal):
                return
        pending = self._pending
        if not pending or self._lock.locked():
            return  # (the writer task stores a batch: it takes these next)
        if (not self._wake.is_set() and len(pending) < self.options.batch_size
                and self._loop_time() - self._last_commit < self.options.commit_interval):
            self._work.set()  # nobody waits yet, and the writer is busy: linger in the task
            return
        waiting = len(pending)
        if waiting > self._gathered and waiting < self.options.batch_size and self._gather_turns < GATHER_TURNS:
            # Records came in since the last look: one more turn first (at most GATHER_TURNS).
            # That turn reads the sockets that are ready, so the next stanzas of other
            # conversations -- on their way at one message in flight each, a turn or two apart --
            # share this commit: one commit for ten messages costs about what one for one does.
            # A lone message waits one empty turn.
            self._gathered = waiting
            self._gather_turns += 1
            self._kick_handle = asyncio.get_running_loop().call_soon(self._kick)
            return
        n = min(len(pending), self.options.batch_size)
        batch = [pending[i] for i in range(n)]
        try:
            stored = self.repo.store_now(batch)
        except Exception as exc:  # the writer task retries it (and logs what keeps failing)
            self.log.debug("archive commit on the loop's thread failed (%s): the writer retries", exc)
            stored = False
        if not stored:
            self._wake.set()
            self._work.set()
            return
        for _ in range(n):
            pending.popleft()
        self._cut()
        if not self._space.is_set():
            self._space.set()
        self._committed(batch)
        if pending and self._kick_handle is None:
            # A backlog beyond batch_size (enqueued before this turn): the next batch in the
            # next turn, without lingering.
            self._wake.set()
            self._kick_handle = asyncio.get_running_loop().call_soon(self._kick)

    def _journal_now(self, journal: Journal) -> bool:
        """:meth:`_kick` with the journal: the records not durable yet are appended to it (one
        write), their tickets are done -- the deliveries and acks they hold go out in this
        turn -- and the writer task stores them in its next batch. False when the journal
        refused them (then they are committed to SQLite as without one)."""
        durable = max(self._durable, self._stored)
        pending = self._pending
        first = self._enqueued - len(pending) + 1  # the enqueue number of pending[0]
        if durable + 1 < first:  # (part of the writer's batch in flight, not committed yet)
            records = self._inflight[durable - self._stored :]
            records.extend(pending)
        else:  # the newest records: taken from the right (pending holds the journaled ones too)
            records = list(itertools.islice(reversed(pending), self._enqueued - durable))
            records.reverse()
        if not self._append(journal, records):
            self._wake.set()  # (what waits for them was not told yet)
            return False
        self._durable = self._enqueued
        self._cut()
        self._release(self._durable)
        if len(pending) >= self.options.batch_size:
            self._wake.set()
        self._work.set()  # stored by the writer task, lingering up to commit_interval
        return True

    def _append(self, journal: Journal, records: Any) -> bool:
        """Append *records* to the journal; False (logged) when it refused them."""
        try:
            journal.append(records)
        except OSError as exc:
            self._journal_broke(journal, "appending to", exc)
            return False
        except ValueError as exc:
            self.log.warning("archive records not journaled (%s): committed to the database first", exc)
            return False
        return True

    def _journal_broke(self, journal: Journal, doing: str, exc: OSError) -> None:
        """The journal failed (a full disk): from now on the archive commits before delivering."""
        journal.broken = True
        self.log.error("%s the archive journal %s failed (%s): archived messages are committed to the database "
                       "before they are delivered from now on", doing, journal.path, exc)

    def _release(self, durable: int) -> None:
        """Every ticket of records enqueued up to *durable* is done."""
        tickets = self._tickets
        while tickets and tickets[0][0] <= durable:
            tickets.popleft()[1].committed()

    async def _replay(self, journal: Journal) -> None:
        """Store what the journal holds (a crash left it) and empty it."""
        records = journal.recorded()
        if records:
            # (under a sustained load most of a journal is stored already: looked up by primary
            # key rather than each tried and refused)
            stored = await self.repo.stored([r.seq for r in records])
            missing: dict[int, ArchivedMessage] = {}  # (a rewrite cut short: a record twice)
            for r in records:
                if r.seq not in stored:
                    missing.setdefault(r.seq, r)
            missing_list = list(missing.values())
            size = self.options.batch_size
            for i in range(0, len(missing_list), size):
                await self.repo.store_many(missing_list[i : i + size])
            self.log.warning("archive journal %s: %d records stored after an unclean stop (%d of its %d were stored already)",
                             journal.path, len(missing), len(stored), len(records))
        journal.replayed()

    async def _store(self, batch: list[ArchivedMessage]) -> None:
        """Write ``batch`` (the oldest records not stored), retrying until storage takes it: a
        record is never dropped, and what waits for it (deliveries, acks) waits meanwhile."""
        delay = 0.5
        while True:
            try:
                await self.repo.store_many(batch)
                break
            except Exception:
                self.log.exception("writing %d archived messages failed; retrying in %.1f s", len(batch), delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
        self._committed(batch)

    def _committed(self, batch: list[ArchivedMessage]) -> None:
        """``batch`` is committed: quota bookkeeping, and the tickets it completes."""
        self._stored += len(batch)
        self._gathered = self._gather_turns = 0
        self._last_commit = self._loop_time()
        if self._quota:
            used, queued = self._used, self._queued_bytes
            for m in batch:
                n = stanza_bytes(m.stanza)
                left = queued.get(m.owner, 0) - n
                if left > 0:
                    queued[m.owner] = left
                else:
                    queued.pop(m.owner, None)
                if m.owner in used:
                    used[m.owner] += n
        self._release(self._stored)
        journal = self._journal
        if journal is not None and not journal.broken:
            # Journaled records not stored yet: those of pending up to _durable.
            unstored = self._durable - (self._enqueued - len(self._pending))
            try:
                if unstored <= 0:
                    journal.empty()
                elif journal.full:
                    journal.rewrite(list(itertools.islice(self._pending, unstored)))
            except OSError as exc:
                self._journal_broke(journal, "emptying", exc)

    def _hurry(self, ticket: Ticket) -> None:
        """Somebody waits for ``ticket``: commit now, not at the end of the linger (with the
        journal the next :meth:`_kick`, already scheduled, makes it durable instead)."""
        if self._journal is None or self._journal.broken:
            self._wake.set()

    async def flush(self) -> None:
        """Write everything queued (and a batch cut short by cancellation) now."""
        async with self._lock:
            pending = self._pending
            # (in _inflight while stored: _journal_now finds every record not durable yet)
            batch = self._inflight = self._inflight + list(pending)
            pending.clear()
            self._cut()
            self._space.set()
            if batch:
                await self._store(batch)
            self._inflight = []

    async def _enqueue(self, record: ArchivedMessage, size: int | None = None) -> None:
        """Queue ``record`` (``size``: its :func:`stanza_bytes`, when the caller has it),
        waiting for room first. (The hot callers check for room themselves and :meth:`_push`:
        no coroutine per record.)"""
        if len(self._pending) >= self._queue_size:
            await self._room()
        self._push(record, size)

    async def _room(self) -> None:
        """Back-pressure: wait until the queue has room for one more record."""
        while len(self._pending) >= self._queue_size:
            self._space.clear()
            self._wake.set()
            self._work.set()
            await self._space.wait()

    def _push(self, record: ArchivedMessage, size: int | None = None) -> None:
        """Queue ``record`` now; the queue has room (see :meth:`_enqueue`)."""
        if self._quota:
            self._queued_bytes[record.owner] = self._queued_bytes.get(record.owner, 0) + (
                stanza_bytes(record.stanza) if size is None else size)
        pending = self._pending
        pending.append(record)
        self._enqueued += 1
        journal = self._journal
        if (self._quiet and journal is not None and not journal.broken
                and max(self._durable, self._stored) + 1 == self._enqueued and self._append(journal, (record,))):
            # A quiet archive: durable now (as every record before it), nothing to hold.
            self._durable = self._enqueued
        else:
            self._hold_ticket()
        if self._kick_handle is None:
            self._kick_handle = asyncio.get_running_loop().call_soon(self._kick)
        if len(pending) >= self.options.batch_size:
            self._wake.set()  # a lingering writer commits now

    def _hold_ticket(self) -> None:
        """The barrier of the stanza being processed waits for the ticket of the newest record."""
        # The record's ticket (see .durability): shared by the records enqueued between two
        # batch cuts, committed once every one of them is durable (batches are FIFO prefixes).
        ticket = self._ticket
        if ticket is None:
            ticket = self._ticket = Ticket(self._hurry)
            self._tickets.append([self._enqueued, ticket])
        else:
            self._tickets[-1][0] = self._enqueued
        durability.hold(ticket)

    async def _new_id(self) -> tuple[int, str]:
        """A new ``seq`` (this node's, time-ordered) and its public id."""
        if self._clock.monotonic() >= self._lease.valid_until:  # rare: see NodeLease
            await self._lease.refresh()
        seq = self._seqs.next(int(self._clock.now() * 1_000_000))
        return seq, self._encode(seq)

    def _id_now(self) -> tuple[int, str] | None:
        """:meth:`_new_id` without an await: None when the lease must be renewed first (rare)."""
        clock = self._clock
        if clock.monotonic() >= self._lease.valid_until:
            return None
        seq = self._seqs.next(int(clock.now() * 1_000_000))
        return seq, self._encode(seq)

    def _now(self) -> int:
        return int(self.ctx.clock.now() * 1_000_000)

    # ---------------------------------------------------------------- quota

    async def _over_quota(self, owner: str, size: int) -> bool:
        """Would ``size`` more bytes take ``owner``'s archive over max_bytes_per_user?"""
        used = self._used.get(owner)
        if used is None:
            used = await self.repo.usage(owner)
            if len(self._used) > 50_000:
                self._used.clear()
            used = self._used.setdefault(owner, used)
        return used + self._queued_bytes.get(owner, 0) + size > self._quota

    def _refuse(self, r: Routed, owner: str) -> Flow:
        self.ctx.router.bounce(r, StanzaError(
            Condition.RESOURCE_CONSTRAINT,
            f"the message archive of {owner} is full (mam.max_bytes_per_user); the message was not stored or delivered"))
        return Flow.STOP

    # ---------------------------------------------------------------- preferences

    async def prefs_of(self, owner: str) -> Prefs:
        p = self._prefs.get(owner)
        if p is None:
            generation = self._prefs_generation
            p = await self.repo.get_prefs(owner) or Prefs(self.options.default_mode)
            if generation == self._prefs_generation:
                if len(self._prefs) > 50_000:
                    self._prefs.clear()
                self._prefs[owner] = p
        return p

    def _prefs_invalidated(self, owner: str) -> None:
        self._prefs_generation += 1
        self._prefs.pop(owner, None)

    def _prefs_flush(self) -> None:
        self._prefs_generation += 1
        self._prefs.clear()

    async def _wanted(self, owner: JID, other: JID, owner_s: str | None = None) -> bool:
        p = self._prefs.get(owner_s or str(owner))
        if p is None:
            p = await self.prefs_of(owner_s or str(owner))
        if p.default == "always" and not p.never:
            return True  # (the usual case: nobody listed)
        other_s = str(other.bare)
        if other_s in p.never:
            return False
        if other_s in p.always:
            return True
        if p.default == "always":
            return True
        if p.default == "roster" and self.ctx.has_feature("roster"):
            return await self.ctx.feature("roster").item(owner, other.bare) is not None
        return False

    # ---------------------------------------------------------------- archiving accounts

    def _already_archived(self, msg: etree._Element, owner: str) -> bool:
        for c in msg:
            if c.tag == _STANZA_ID and c.get("by") == owner:
                return True
        return False

    def _always(self, owner_s: str) -> bool:
        """``owner_s``'s cached preferences archive everything (the usual case: nobody listed):
        :meth:`_wanted` without an await nor the peer's JID formatted."""
        p = self._prefs.get(owner_s)
        return p is not None and p.default == "always" and not p.never

    def _room_left(self, owner_s: str, size: int) -> bool | None:
        """:meth:`_over_quota` from what is cached, negated (room for ``size`` more bytes);
        None when the archive's usage is not cached (then ask :meth:`_over_quota`)."""
        used = self._used.get(owner_s)
        if used is None:
            return None
        return used + self._queued_bytes.get(owner_s, 0) + size <= self._quota

    async def _incoming(self, r: Routed) -> Flow:
        to = r.to
        if to is None or to.local is None:
            return Flow.CONTINUE
        msg = r.stanza
        sent = r.archived  # (the sender's copy: worth archiving, and serialised already)
        if sent is not None and sent[1] == len(msg):
            flags = sent[2]
        else:
            sent = None  # no sender's copy, or a child was added or removed since: serialised below
            flags = _scan(msg)
            if not flags & _WORTH:
                return Flow.CONTINUE
        owner = to.bare
        owner_s = str(owner)
        if flags & _STAMPED and self._already_archived(msg, owner_s):
            return Flow.CONTINUE
        frm = r.from_jid
        if not self._always(owner_s) and not await self._wanted(owner, frm, owner_s):
            return Flow.CONTINUE
        if not await self.ctx.account_exists(owner):
            return Flow.CONTINUE  # no such account: the router bounces it
        ids = self._id_now() or await self._new_id()
        seq, sid = ids
        template, head = _stamp_of(owner_s)
        stamp = template.__copy__()  # (copy.copy's dispatch costs more than the copy)
        stamp.set("id", sid)
        msg.append(stamp)
        if sent is not None and (end := sent[0].rfind("</")) > 0:
            # Serialised once for both archives: the sender's copy, as on_sent wrote it, with
            # the stamp before the closing tag (what serialising the stamped message gives).
            text = sent[0]
            data = f'{text[:end]}{head}{sid}"/>{text[end:]}'
        else:
            data = etree.tostring(msg, encoding="unicode")  # archived as it is now
        size = stanza_bytes(data)
        if self._quota:
            origin = r.origin
            # (a local account's message to another was checked against both archives by on_sent)
            if (origin is None or origin.jid is None or origin.jid.bare == owner) and (
                    not self._room_left(owner_s, size) and await self._over_quota(owner_s, size)):
                msg.remove(stamp)
                return self._refuse(r, owner_s)
        if len(self._pending) >= self._queue_size:
            await self._room()
        self._push(_record((owner_s, sid, (seq >> NODE_BITS) + EPOCH_US, str(frm.bare), frm.resource or "", data, seq)), size)
        return Flow.CONTINUE

    # (plain functions returning the coroutine or the Flow: no coroutine of their own, see core.hooks)
    @hook(H.MESSAGE_BARE)
    def on_bare(self, r: Routed) -> Awaitable[Flow]:
        return self._incoming(r)

    @hook(H.MESSAGE_FULL)
    def on_full(self, r: Routed) -> Awaitable[Flow]:
        return self._incoming(r)

    @hook(H.STANZA_IN, priority=-50)
    def on_sent(self, r: Routed) -> Flow | Awaitable[Flow]:
        """The sender's copy (:meth:`_sent`), then a retraction's tombstone (:meth:`_retraction`):
        one hook for both, every message passes through it, one walk of its children."""
        if r.kind != "message":
            return Flow.CONTINUE
        flags = _scan(r.stanza)
        if not flags & _RETRACTS:
            return self._sent(r, flags) if flags & _WORTH else Flow.CONTINUE
        return self._sent_and_retraction(r, flags)

    async def _sent_and_retraction(self, r: Routed, flags: int) -> Flow:
        if flags & _WORTH and await self._sent(r, flags) is Flow.STOP:
            return Flow.STOP
        return await self._retraction(r)

    async def _sent(self, r: Routed, flags: int) -> Flow:
        """The sender's copy: a local account's outgoing message (worth archiving: ``flags``
        from :func:`_scan`), in its own archive."""
        origin = r.origin
        if origin is None or origin.jid is None:
            return Flow.CONTINUE
        owner = origin.jid.bare
        to = r.to
        if to is None or (to.local == owner.local and to.domain == owner.domain):
            return Flow.CONTINUE  # to oneself: archived once, as incoming
        owner_s = str(owner)
        wanted = self._always(owner_s) or await self._wanted(owner, to, owner_s)
        msg = r.stanza
        # Serialised once: the recipient's copy (_incoming) is this text and its stamp.
        data = etree.tostring(msg, encoding="unicode")
        r.archived = (data, len(msg), flags)
        size = stanza_bytes(data)
        if self._quota:
            # Both archives at once, before anything is stored: over the quota, the message is
            # refused whole (no copy in one archive and not the other, nothing delivered).
            if wanted and not self._room_left(owner_s, size) and await self._over_quota(owner_s, size):
                return self._refuse(r, owner_s)
            if to.local is not None and to.domain == self.ctx.domain:
                peer = to.bare
                peer_s = str(peer)
                peer_size = size + _STAMP_BYTES + len(peer_s)
                if (not self._room_left(peer_s, peer_size)
                        and not (flags & _STAMPED and self._already_archived(msg, peer_s))
                        and await self._over_quota(peer_s, peer_size) and await self._wanted(peer, owner, peer_s)
                        and await self.ctx.account_exists(peer)):
                    return self._refuse(r, peer_s)
        if not wanted:
            return Flow.CONTINUE
        ids = self._id_now() or await self._new_id()
        seq, sid = ids
        if len(self._pending) >= self._queue_size:
            await self._room()
        self._push(_record((owner_s, sid, (seq >> NODE_BITS) + EPOCH_US, str(to.bare), to.resource or "", data, seq)), size)
        return Flow.CONTINUE

    async def _retraction(self, r: Routed) -> Flow:
        """XEP-0424 one-to-one: a local account's retraction tombstones its message (.retraction)."""
        await retraction.direct(self, r, timestamps.micros_of_us(self._now()))
        return Flow.CONTINUE

    async def _room_retraction(self, ev: Any) -> Flow:
        return await retraction.in_room(self, ev)

    async def archive_sent(self, owner: JID, msg: etree._Element) -> None:
        """Public: the sender's copy of a message a service wrote on a local account's behalf
        (a red packet to a contact, sent by the server from ``owner``'s bare JID): kept in
        ``owner``'s archive as if the account had sent it, by the same rules (preferences,
        hints, worth archiving). The recipient's copy is archived as any incoming message."""
        to = msg.get("to")
        if not to or not _worth_archiving(msg):
            return
        peer = JID.parse(to)
        if not await self._wanted(owner.bare, peer) or not await self.ctx.account_exists(owner.bare):
            return
        seq, sid = await self._new_id()
        await self._enqueue(ArchivedMessage(str(owner.bare), sid, time_of(seq), str(peer.bare), peer.resource or "",
                                            etree.tostring(msg, encoding="unicode"), seq))

    @classmethod
    async def delete_account_txn(cls, conn: Any, deletion: Any) -> None:
        """The archive and preferences of a deleted account go with it (keyed by JID)."""
        await SqlMamRepository.delete_owner_txn(conn, deletion.jid)

    @hook(H.ACCOUNT_DELETED)
    async def on_account_deleted(self, ev: AccountEvent) -> Flow:
        """After the commit: what was still buffered for the account is written, then removed."""
        owner = str(ev.jid)
        await self.flush()
        await self.repo.delete_owner(owner)
        self._prefs.pop(owner, None)
        self._prefs_inval.publish(owner)
        self._used.pop(owner, None)
        return Flow.CONTINUE

    # ---------------------------------------------------------------- archiving rooms

    def room_archiving(self, room: Any) -> bool:
        """Public: does this room archive its messages?"""
        values = room.config.extra.get(ROOM_FIELD)
        if values:
            return values[0] in ("1", "true")
        return self.options.rooms_default

    async def _room_message(self, ev: Any) -> Flow:
        room = ev.room
        if not self.room_archiving(room) or not _worth_archiving(ev.stanza, groupchat=True):
            return Flow.CONTINUE
        out = ev.stanza
        nick = ev.occupant.nick if ev.occupant is not None else ""  # None: the room's own notice
        room_s = room.jid_s
        seq, sid = await self._new_id()
        # The room's stanza-id is the archive's: MUC keeps a <stanza-id by='room'/> that a
        # before-broadcast handler stamped, and broadcasts what this last handler leaves.
        stamp = copy.copy(_STANZA_ID_TEMPLATE)
        stamp.set("id", sid)
        stamp.set("by", room_s)
        out.append(stamp)
        kept = copy.deepcopy(out)
        kept.attrib.pop("to", None)
        record = ArchivedMessage(room_s, sid, time_of(seq), room_s, nick, etree.tostring(kept, encoding="unicode"), seq)
        await self._enqueue(record)
        return Flow.CONTINUE

    async def _room_form(self, ev: Any) -> Flow:
        ev.fields.append(Field(ROOM_FIELD, "boolean", label="Archive the room's messages (XEP-0313)",
                               values=("1" if self.room_archiving(ev.room) else "0",)))
        return Flow.CONTINUE

    async def _room_disco(self, ev: Any) -> Flow:
        if self.room_archiving(ev.room):
            ev.features.extend((MAM, ns.SID))
        return Flow.CONTINUE

    async def _room_destroyed(self, ev: Any) -> Flow:
        await self.flush()
        await self.repo.delete_owner(ev.room.jid_s)
        return Flow.CONTINUE

    async def _room_loaded(self, ev: Any) -> Flow:
        """A room loaded by the cluster node that acquired it (docs/cluster.md §5): its history
        sent on join is the archive's last messages with a body (what the previous owner kept
        in memory and lost)."""
        room = ev.room
        size = room.config.history_length
        if not size or not self.room_archiving(room):
            return Flow.CONTINUE
        await self.flush()  # (the room's last messages may still be queued here)
        page = await self.repo.query(ArchiveQuery(owner=room.jid_s, max=size, before=""))
        for m in page.items:
            el = etree.fromstring(m.stanza, _PARSER)
            if el.find(f"{{{ns.CLIENT}}}body") is not None:
                room.history.add(el, m.ts / 1_000_000)
        return Flow.CONTINUE

    async def _room_query(self, req: IqRequest) -> Any:
        assert self.muc is not None
        room = self.muc.get_room(req.to.bare)
        if room is None:
            raise StanzaError(Condition.ITEM_NOT_FOUND, "no such room")
        if not self.room_archiving(room):
            raise StanzaError(Condition.FEATURE_NOT_IMPLEMENTED, "this room does not archive its messages")
        from ..muc.affiliations import Affiliation

        aff = room.affiliation(req.from_jid.bare)
        if aff is Affiliation.OUTCAST or (room.config.members_only and aff.rank < Affiliation.MEMBER.rank):
            raise StanzaError(Condition.FORBIDDEN, "only members may read this room's archive")
        return await self._query(req, room.jid_s)

    # ---------------------------------------------------------------- queries

    @iq_handler("get", f"{{{MAM}}}query", target=Target.BARE)
    async def form(self, req: IqRequest) -> etree._Element:
        self._own(req)
        return self._form_element()

    @iq_handler("set", f"{{{MAM}}}query", target=Target.BARE)
    async def query(self, req: IqRequest) -> Any:
        self._own(req)
        return await self._query(req, str(req.to.bare))

    def _own(self, req: IqRequest) -> None:
        if not req.is_self:
            raise StanzaError(Condition.FORBIDDEN, "an archive is read by its owner only")

    def _form_element(self) -> etree._Element:
        q = etree.Element(f"{{{MAM}}}query", nsmap={None: MAM})
        form = Form("form", fields=(
            Field("FORM_TYPE", "hidden", values=(MAM,)),
            Field("with", "jid-single"),
            Field("start", "text-single"),
            Field("end", "text-single"),
            Field("after-id", "text-single"),
            Field("before-id", "text-single"),
            Field("ids", "text-multi"),
        ))
        q.append(form.to_element())
        return q

    async def _query(self, req: IqRequest, owner: str) -> Any:
        payload = req.payload
        queryid = payload.get("queryid")
        filters: dict[str, tuple[str, ...]] = {}
        x = payload.find(f"{{{ns.DATA_FORMS}}}x")
        if x is not None:
            form = Form.from_element(x)
            if form.form_type not in (None, MAM):
                raise StanzaError(Condition.BAD_REQUEST, f"the query form's FORM_TYPE must be {MAM}")
            for f in form.fields:
                if f.var and f.var != "FORM_TYPE":
                    if f.var not in ("with", "start", "end", "after-id", "before-id", "ids"):
                        # XEP-0313 §4.1.4: a field the server does not recognise
                        raise StanzaError(Condition.FEATURE_NOT_IMPLEMENTED, f"unknown query field {f.var!r}")
                    filters[f.var] = f.values
        with_jid = with_res = None
        if filters.get("with"):
            try:
                w = JID.parse(filters["with"][0])
            except (JIDError, ValueError) as exc:
                raise StanzaError(Condition.JID_MALFORMED, f"with: {exc}") from None
            with_jid, with_res = str(w.bare), w.resource
        start = _parse_time(filters["start"][0], "start") if filters.get("start") else None
        end = _parse_time(filters["end"][0], "end") if filters.get("end") else None
        rsm = payload.find(f"{{{RSM}}}set")
        limit = self.options.max_page
        after = before = None
        if rsm is not None:
            text = rsm.findtext(f"{{{RSM}}}max")
            if text is not None:
                if not text.strip().isdigit():
                    raise StanzaError(Condition.BAD_REQUEST, "rsm max must be a non-negative integer")
                limit = min(int(text), limit)
            after = rsm.findtext(f"{{{RSM}}}after")
            b = rsm.find(f"{{{RSM}}}before")
            if b is not None:
                before = b.text or ""
        if after is not None and before is not None:
            raise StanzaError(Condition.BAD_REQUEST, "rsm: after and before together")
        q = ArchiveQuery(
            owner, limit, with_jid, with_res, start, end,
            (filters.get("after-id") or (None,))[0], (filters.get("before-id") or (None,))[0],
            tuple(filters["ids"]) if "ids" in filters else None, after, before,
        )
        await self.flush()
        try:
            page = await self.repo.query(q)
        except UnknownId as exc:
            raise StanzaError(Condition.ITEM_NOT_FOUND, f"no message with id {exc.args[0]!r} in this archive") from None
        origin: "Session | None" = req.origin
        # <flip-page/> (XEP-0313 §4.3.5, part of #extended): the same page, sent newest first.
        flip = payload.find(f"{{{MAM}}}flip-page") is not None
        for m in reversed(page.items) if flip else page.items:
            out = etree.Element(ns.MESSAGE, {"to": str(req.from_jid), "from": owner}, nsmap={None: ns.CLIENT})
            if req.stanza.get("id"):
                out.set("id", f"{req.stanza.get('id')}-{m.stanza_id}")
            res = etree.SubElement(out, f"{{{MAM}}}result", {"id": m.stanza_id}, nsmap={None: MAM})
            if queryid is not None:
                res.set("queryid", queryid)
            fwd = etree.SubElement(res, f"{{{FORWARD}}}forwarded", nsmap={None: FORWARD})
            etree.SubElement(fwd, f"{{{ns.DELAY}}}delay", {"stamp": timestamps.micros_of_us(m.ts)}, nsmap={None: ns.DELAY})
            fwd.append(etree.fromstring(m.stanza, _PARSER))
            if origin is not None:
                await self.ctx.router.deliver_to(req.from_jid, out, "message")
            else:
                await self.ctx.send(out)
        fin = etree.Element(f"{{{MAM}}}fin", nsmap={None: MAM})
        if page.complete:
            fin.set("complete", "true")
        if queryid is not None:
            fin.set("queryid", queryid)
        s = etree.SubElement(fin, f"{{{RSM}}}set", nsmap={None: RSM})
        if page.items:
            etree.SubElement(s, f"{{{RSM}}}first").text = page.items[0].stanza_id
            etree.SubElement(s, f"{{{RSM}}}last").text = page.items[-1].stanza_id
        etree.SubElement(s, f"{{{RSM}}}count").text = str(page.count)
        return fin

    @iq_handler("get", f"{{{MAM}}}metadata", target=Target.BARE)
    async def metadata(self, req: IqRequest) -> etree._Element:
        """Archive metadata (XEP-0313 §5, part of #extended): id and time of the first and last
        message; an empty archive answers an empty ``<metadata/>``."""
        self._own(req)
        owner = str(req.to.bare)
        await self.flush()
        first = await self.repo.query(ArchiveQuery(owner, 1))
        last = await self.repo.query(ArchiveQuery(owner, 1, before=""))
        md = etree.Element(f"{{{MAM}}}metadata", nsmap={None: MAM})
        if first.items and last.items:
            for name, m in (("start", first.items[0]), ("end", last.items[-1])):
                etree.SubElement(md, f"{{{MAM}}}{name}", {"id": m.stanza_id, "timestamp": timestamps.micros_of_us(m.ts)})
        return md

    # ---------------------------------------------------------------- preferences

    @iq_handler("get", f"{{{MAM}}}prefs", target=Target.BARE)
    async def prefs_get(self, req: IqRequest) -> etree._Element:
        self._own(req)
        return self._prefs_element(await self.prefs_of(str(req.to.bare)))

    @iq_handler("set", f"{{{MAM}}}prefs", target=Target.BARE)
    async def prefs_set(self, req: IqRequest) -> etree._Element:
        self._own(req)
        el = req.payload
        default = el.get("default")
        if default not in ("always", "never", "roster"):
            raise StanzaError(Condition.BAD_REQUEST, "default must be always, never or roster")

        def jids(name: str) -> tuple[str, ...]:
            out = []
            for j in el.findall(f"{{{MAM}}}{name}/{{{MAM}}}jid"):
                try:
                    out.append(str(JID.parse((j.text or "").strip()).bare))
                except (JIDError, ValueError) as exc:
                    raise StanzaError(Condition.JID_MALFORMED, f"{name}: {exc}") from None
            return tuple(dict.fromkeys(out))

        prefs = Prefs(default, jids("always"), jids("never"))
        owner = str(req.to.bare)
        await self.repo.set_prefs(owner, prefs)
        self._prefs[owner] = prefs
        self._prefs_inval.publish(owner)
        return self._prefs_element(prefs)

    def _prefs_element(self, p: Prefs) -> etree._Element:
        el = etree.Element(f"{{{MAM}}}prefs", {"default": p.default}, nsmap={None: MAM})
        for name, items in (("always", p.always), ("never", p.never)):
            box = etree.SubElement(el, f"{{{MAM}}}{name}")
            for j in items:
                etree.SubElement(box, f"{{{MAM}}}jid").text = j
        return el

    # ---------------------------------------------------------------- retention

    def _schedule_purge(self) -> None:
        self.ctx.spawn(self.purge(), "mam-purge")
        self._purge_timer = self.ctx.call_later(self.options.purge_interval, self._schedule_purge)

    async def purge(self) -> int:
        """Delete messages older than the retention period, purge_batch per transaction (the
        archive stays writable in between); returns how many."""
        if not self.options.retention_days:
            return 0
        await self.flush()
        cutoff = self._now() - self.options.retention_days * 86_400 * 1_000_000  # by seq time, see repository
        batch = self.options.purge_batch
        n = 0
        try:
            while True:
                done = await self.repo.purge_before(cutoff, batch)
                n += done
                if done < batch:
                    break
                await asyncio.sleep(0)
        finally:
            self._used.clear()  # re-read: the purge took bytes off
        if n:
            self.log.info("purged %d archived messages older than %d days", n, self.options.retention_days)
        return n

