"""Webhook delivery: at-least-once, per-subject order, retries with backoff, dead letters.

Every node runs one :class:`DeliveryWorker`; they share the outbox through the database.

* **Claim.** A worker selects the *head* of each subject -- the lowest outbox id of a subject
  that is not a dead letter -- when it is due (``next_at <= now``) and not claimed by a live lease,
  then claims those rows with one conditional ``UPDATE ... SET claim = <token>, claimed_until =
  now + lease WHERE id IN (...) AND dead_at IS NULL AND (claimed_until IS NULL OR claimed_until
  < now)`` and reads back the rows carrying its token. Two workers racing for a row: the database
  gives it to one (SQLite: ``BEGIN IMMEDIATE``; MariaDB: the row lock of the ``UPDATE``, whose
  ``WHERE`` is re-read on the locked row under ``READ COMMITTED``).
* **Per-subject order.** Only a head is ever claimed, and a head stays in the table (claimed)
  while it is being delivered, so the next event of that subject waits until it is delivered or
  dead. A failing subject waits in backoff; the heads of other subjects go on.
* **Delivery.** ``POST webhooks.url`` with the stored body and ``X-Xmppd-Signature``; any 2xx
  within ``webhooks.timeout`` deletes the row (``WHERE id = ? AND claim = <token>``). Anything else
  counts as a failure: ``next_at`` moves by ``retry_min * 2^(attempts-1)`` (at most
  ``retry_max``, with jitter), and once the event is ``dead_after`` seconds old it becomes a dead
  letter (``dead_at`` set): kept, listed and retried by ``xmppctl webhooks``.
* **Crashes.** A node that dies holding claims leaves them until ``claimed_until`` passes; then
  any node takes them again (at-least-once: the receiver may see an event twice and dedupes by
  ``id``).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import random
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import aiohttp
import sqlalchemy as sa

from xmppd.storage.engine import Database

from .outbox import DIRTY, OutboxRow, outbox, row_of

__all__ = ["SIGNATURE_HEADER", "DeliveryWorker", "OutboxStore", "sign", "verify"]

log = logging.getLogger(__name__)

SIGNATURE_HEADER: Final = "X-Xmppd-Signature"
_ERROR_MAX: Final = 500  # characters of a failure kept in last_error
BACKLOG_EVERY: Final = 5.0  # seconds between two counts of the outbox (for /metrics)


def sign(secret: str, body: bytes) -> str:
    """``sha256=<hex HMAC-SHA256 of body keyed with secret>``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, header: str | None) -> bool:
    """Whether ``header`` is the signature of ``body`` (constant-time comparison)."""
    if not secret or not header:
        return False
    return hmac.compare_digest(sign(secret, body).encode(), header.strip().encode())


class OutboxStore:
    """The outbox table's operations for the worker and for ``xmppctl webhooks``."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def claim(self, limit: int, now: datetime, lease_until: datetime) -> list[OutboxRow]:
        """Claim up to ``limit`` due subject heads; the rows now ours."""
        token = uuid.uuid4().hex
        return await self._db.run_txn(self._claim_txn, limit, now, lease_until, token)

    @staticmethod
    async def _claim_txn(conn: Any, limit: int, now: datetime, lease_until: datetime, token: str) -> list[OutboxRow]:
        o = outbox.c
        i = outbox.alias("i")
        head = sa.select(sa.func.min(i.c.id)).where(i.c.subject == o.subject, i.c.dead_at.is_(None)).scalar_subquery()
        free = sa.or_(o.claimed_until.is_(None), o.claimed_until < now)
        ids = (
            await conn.execute(
                sa.select(o.id).where(o.dead_at.is_(None), o.next_at <= now, free, o.id == head).order_by(o.id).limit(limit)
            )
        ).scalars().all()
        if not ids:
            return []
        await conn.execute(
            outbox.update()
            .where(o.id.in_(ids), o.dead_at.is_(None), free)
            .values(claim=token, claimed_until=lease_until, attempts=o.attempts + 1)
        )
        rows = (await conn.execute(sa.select(outbox).where(o.claim == token).order_by(o.id))).all()
        return [row_of(r) for r in rows]

    async def delivered(self, row: OutboxRow) -> None:
        o = outbox.c
        async with self._db.transaction() as conn:
            await conn.execute(outbox.delete().where(o.id == row.id, o.event_id == row.event_id))

    async def failed(self, row: OutboxRow, error: str, next_at: datetime, dead_at: datetime | None) -> None:
        o = outbox.c
        async with self._db.transaction() as conn:
            await conn.execute(
                outbox.update()
                .where(o.id == row.id, o.claim == row.claim)
                .values(claim=None, claimed_until=None, next_at=next_at, dead_at=dead_at, last_error=error[:_ERROR_MAX])
            )

    async def counts(self) -> tuple[int, int]:
        """(events waiting, dead letters)."""
        o = outbox.c
        async with self._db.transaction(readonly=True) as conn:
            rows = (
                await conn.execute(
                    sa.select(o.dead_at.is_(None).label("live"), sa.func.count()).group_by(o.dead_at.is_(None))
                )
            ).all()
        live = sum(int(n) for flag, n in rows if flag)
        dead = sum(int(n) for flag, n in rows if not flag)
        return live, dead

    async def list(self, *, dead: bool | None = True, limit: int = 100, offset: int = 0) -> list[OutboxRow]:
        """Dead letters (``dead=True``), waiting events (``False``) or both (``None``), oldest first."""
        o = outbox.c
        q = sa.select(outbox).order_by(o.id).limit(limit).offset(offset)
        if dead is True:
            q = q.where(o.dead_at.is_not(None))
        elif dead is False:
            q = q.where(o.dead_at.is_(None))
        async with self._db.transaction(readonly=True) as conn:
            return [row_of(r) for r in (await conn.execute(q)).all()]

    async def retry(self, event_ids: Sequence[str] | None, now: datetime) -> int:
        """Put dead letters back in the queue (all of them for ``None``); how many."""
        o = outbox.c
        where = [o.dead_at.is_not(None)]
        if event_ids is not None:
            where.append(o.event_id.in_(list(event_ids)))
        async with self._db.transaction() as conn:
            res = await conn.execute(
                outbox.update().where(*where).values(dead_at=None, next_at=now, attempts=0, claim=None, claimed_until=None)
            )
            conn.info[DIRTY] = True
        return int(res.rowcount)

    async def purge(self, event_ids: Sequence[str] | None) -> int:
        """Delete dead letters (all of them for ``None``); how many."""
        o = outbox.c
        where = [o.dead_at.is_not(None)]
        if event_ids is not None:
            where.append(o.event_id.in_(list(event_ids)))
        async with self._db.transaction() as conn:
            res = await conn.execute(outbox.delete().where(*where))
        return int(res.rowcount)


class DeliveryWorker:
    """Delivers the outbox to ``url``; one per node (see the module docstring)."""

    def __init__(
        self,
        db: Database,
        options: Any,
        *,
        now: Callable[[], datetime] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._db = db
        self.store = OutboxStore(db)
        self.o = options
        self._now = now or (lambda: datetime.now(UTC))
        self._rng = rng or random.Random()
        self._wake = asyncio.Event()
        self._inflight: set[asyncio.Task[None]] = set()
        self._task: asyncio.Task[None] | None = None
        self._http: aiohttp.ClientSession | None = None
        self._listening = False
        self.delivered = 0
        self.failures = 0
        self.dead = 0
        # (events waiting, dead letters) in the whole outbox, refreshed every BACKLOG_EVERY s.
        self.backlog: tuple[int, int] = (0, 0)
        self._backlog_at = 0.0

    # -- lifecycle

    def start(self) -> None:
        sa.event.listen(self._db.engine.sync_engine, "commit", self._on_commit)
        sa.event.listen(self._db.engine.sync_engine, "rollback", self._on_rollback)
        self._listening = True
        self._task = asyncio.get_running_loop().create_task(self._run(), name="webhook-delivery")

    async def stop(self) -> None:
        if self._listening:
            sa.event.remove(self._db.engine.sync_engine, "commit", self._on_commit)
            sa.event.remove(self._db.engine.sync_engine, "rollback", self._on_rollback)
            self._listening = False
        tasks = [t for t in (self._task, *self._inflight) if t is not None]
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self._task = None
        self._inflight.clear()
        if self._http is not None:
            await self._http.close()
            self._http = None

    def wake(self) -> None:
        self._wake.set()

    def collect(self) -> list[Any]:
        """/metrics: the backlog (as last counted) and this node's delivery counters."""
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        backlog = GaugeMetricFamily("xmppd_webhook_backlog", "Webhook events in the outbox, by state", labels=["state"])
        backlog.add_metric(["waiting"], self.backlog[0])
        backlog.add_metric(["dead"], self.backlog[1])
        done = CounterMetricFamily("xmppd_webhook_deliveries", "Webhook requests sent by this node, by outcome", labels=["outcome"])
        done.add_metric(["delivered"], self.delivered)
        done.add_metric(["failed"], self.failures)
        done.add_metric(["dead_lettered"], self.dead)
        return [backlog, done, GaugeMetricFamily("xmppd_webhook_in_flight", "Webhook requests in flight on this node", value=len(self._inflight))]

    def _on_commit(self, conn: Any) -> None:
        # Runs on the event loop's thread (SQLAlchemy's asyncio layer drives the engine there).
        if conn.info.pop(DIRTY, False):
            self._wake.set()

    def _on_rollback(self, conn: Any) -> None:
        conn.info.pop(DIRTY, None)

    # -- the loop

    @property
    def lease(self) -> float:
        return 2 * self.o.timeout + 5.0  # a claim outlives its request; a dead node's lapses soon

    async def _run(self) -> None:
        self._http = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.o.timeout),
            headers={"User-Agent": "xmppd-webhooks", "Content-Type": "application/json"},
        )
        loop = asyncio.get_running_loop()
        while True:
            self._wake.clear()
            if loop.time() - self._backlog_at >= BACKLOG_EVERY:
                self._backlog_at = loop.time()
                try:
                    self.backlog = await self.store.counts()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("webhooks: counting the outbox failed")
            free = self.o.concurrency - len(self._inflight)
            claimed: list[OutboxRow] = []
            if free > 0:
                now = self._now()
                try:
                    claimed = await self.store.claim(free, now, now + timedelta(seconds=self.lease))
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("webhooks: claiming from the outbox failed; trying again")
            for row in claimed:
                task = asyncio.get_running_loop().create_task(self._deliver(row), name=f"webhook-{row.event_id}")
                self._inflight.add(task)
                task.add_done_callback(self._inflight.discard)
            if claimed and len(claimed) == free:
                await asyncio.sleep(0)
                continue  # more may be due: claim again as soon as a slot frees
            waiter = asyncio.ensure_future(self._wake.wait())
            try:
                await asyncio.wait({waiter, *self._inflight}, timeout=self.o.poll_interval, return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()

    async def _deliver(self, row: OutboxRow) -> None:
        body = row.body.encode()
        error: str | None
        try:
            assert self._http is not None
            async with self._http.post(
                self.o.url, data=body, allow_redirects=False,
                headers={SIGNATURE_HEADER: sign(self.o.secret, body), "X-Xmppd-Event": row.event},
            ) as resp:
                await resp.read()
                error = None if 200 <= resp.status < 300 else f"HTTP {resp.status}"
        except asyncio.CancelledError:
            raise  # shutdown: the claim expires and another node (or the next start) takes it
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        try:
            if error is None:
                await self.store.delivered(row)
                self.delivered += 1
            else:
                await self._failed(row, error)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("webhooks: recording the outcome of event %s failed (it will be sent again)", row.event_id)
        finally:
            self._wake.set()  # the subject's next event is now the head

    async def _failed(self, row: OutboxRow, error: str) -> None:
        now = self._now()
        self.failures += 1
        deadline = row.created_at + timedelta(seconds=self.o.dead_after)
        if now >= deadline:
            self.dead += 1
            log.warning("webhooks: event %s (%s) is a dead letter after %d attempts: %s", row.event_id, row.event, row.attempts, error)
            await self.store.failed(row, error, now, now)
            return
        delay = min(self.o.retry_max, self.o.retry_min * 2 ** max(0, row.attempts - 1))
        delay *= self._rng.uniform(0.5, 1.0)
        next_at = min(now + timedelta(seconds=delay), deadline)
        log.info("webhooks: event %s (%s) attempt %d failed (%s); next in %.1fs", row.event_id, row.event, row.attempts, error, (next_at - now).total_seconds())
        await self.store.failed(row, error, next_at, None)

