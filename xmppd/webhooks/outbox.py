"""The webhook outbox: events written in the same database transaction as the change they report.

One table, ``webhook_outbox``. A row is one event waiting for delivery (or a dead letter); it is
deleted once the app's endpoint accepted it. :class:`Outbox` is the one door for writing an event:
``await outbox.write_txn(conn, event, subject, data, now)`` inside the open transaction of the
change (``conn`` is that transaction's connection), so the event exists exactly when the change
committed. ``write_sqlite`` is the same for code that runs on aiosqlite's connection thread with
the raw ``sqlite3`` connection (the red-packet grab).

The request body is built once, at write time (``{"id", "event", "time", "data"}``), so a retry
sends the same bytes. ``subject`` names what the event is about (``redpacket:<id>``,
``user:<jid>``, ``wallet:<jid>`` ...): events of one subject are delivered in the order they were
written (xmppd/webhooks/delivery.py).

A disabled outbox (``webhooks.url`` empty) writes nothing; ``webhooks.events`` filters names.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from xmppd import timestamps
from xmppd.storage.metadata import MYSQL_TABLE_KWARGS, UtcDateTime, id_type, indexed_string, metadata

from . import events as E

__all__ = ["DISABLED", "Outbox", "OutboxRow", "body_of", "outbox"]

outbox = sa.Table(
    "webhook_outbox",
    metadata,
    sa.Column("id", id_type(), primary_key=True, autoincrement=True),
    sa.Column("event_id", sa.String(32), nullable=False),
    sa.Column("event", sa.String(64), nullable=False),
    sa.Column("subject", indexed_string(), nullable=False),
    sa.Column("body", sa.Text(), nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
    sa.Column("next_at", UtcDateTime(), nullable=False),
    sa.Column("claim", sa.String(32), nullable=True),
    sa.Column("claimed_until", UtcDateTime(), nullable=True),
    sa.Column("dead_at", UtcDateTime(), nullable=True),
    sa.Column("last_error", sa.Text(), nullable=True),
    sa.UniqueConstraint("event_id"),
    sa.Index(None, "subject", "id"),
    sa.Index(None, "dead_at", "next_at"),
    sa.Index(None, "claim"),
    sqlite_autoincrement=True,
    **MYSQL_TABLE_KWARGS,
)

#: The flag a connection carries after an event was written in its transaction (its commit
#: wakes the local delivery worker; see Outbox.on_commit).
DIRTY: Final = "xmppd_outbox_dirty"

_SQLITE_TIME = "%Y-%m-%d %H:%M:%S.%f"  # how SQLAlchemy's DateTime stores a value in SQLite
_SQL_INSERT: Final = (
    "INSERT INTO webhook_outbox (event_id, event, subject, body, created_at, attempts, next_at) "
    "VALUES (?, ?, ?, ?, ?, 0, ?)"
)


def body_of(event_id: str, event: str, at: datetime, data: Mapping[str, Any]) -> str:
    """The request body (compact JSON, keys in the documented order)."""
    return json.dumps({"id": event_id, "event": event, "time": timestamps.millis(at), "data": data}, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int
    event_id: str
    event: str
    subject: str
    body: str
    created_at: datetime
    attempts: int
    next_at: datetime
    dead_at: datetime | None
    last_error: str | None
    claim: str | None = None


class Outbox:
    """The one door for writing an event. ``selected``: the event names written (others are
    dropped); an empty set (``DISABLED``) writes nothing."""

    def __init__(self, selected: Iterable[str] = (), *, new_id: Callable[[], str] | None = None) -> None:
        self.selected = frozenset(selected)
        unknown = self.selected - set(E.EVENTS)
        if unknown:
            raise ValueError(f"unknown webhook events {sorted(unknown)}")
        self._new_id = new_id or (lambda: uuid.uuid4().hex)
        self.written = 0  # events written by this process (committed or not)

    @classmethod
    def from_config(cls, config: Any) -> Outbox:
        w = config.webhooks
        if not w.url:
            return DISABLED
        return cls(E.selected(w.events))

    @property
    def enabled(self) -> bool:
        return bool(self.selected)

    def wants(self, event: str) -> bool:
        return event in self.selected

    def _row(self, event: str, subject: str, data: Mapping[str, Any], now: datetime) -> tuple[str, str]:
        if event not in E.EVENTS:
            raise ValueError(f"unknown webhook event {event!r}")
        event_id = self._new_id()
        return event_id, body_of(event_id, event, now, data)

    async def write_txn(
        self, conn: AsyncConnection, event: str, subject: str, data: Mapping[str, Any], now: datetime
    ) -> str | None:
        """Write one event inside ``conn``'s open transaction; its id, or None when filtered out."""
        if not self.wants(event):
            return None
        event_id, body = self._row(event, subject, data, now)
        await conn.execute(
            outbox.insert().values(
                event_id=event_id, event=event, subject=subject[:191], body=body, created_at=now, attempts=0, next_at=now
            )
        )
        conn.info[DIRTY] = True
        self.written += 1
        return event_id

    def write_sqlite(
        self, db: sqlite3.Connection, event: str, subject: str, data: Mapping[str, Any], now: datetime
    ) -> str | None:
        """:meth:`write_txn` with the raw ``sqlite3`` connection, on its own thread, inside the
        caller's transaction (the caller marks its SQLAlchemy connection dirty: :meth:`mark`)."""
        if not self.wants(event):
            return None
        event_id, body = self._row(event, subject, data, now)
        at = now.astimezone(UTC).replace(tzinfo=None).strftime(_SQLITE_TIME)
        db.execute(_SQL_INSERT, (event_id, event, subject[:191], body, at, at))
        self.written += 1
        return event_id

    def mark(self, conn: AsyncConnection) -> None:
        """The transaction on ``conn`` may write events through :meth:`write_sqlite`."""
        if self.enabled:
            conn.info[DIRTY] = True


#: The outbox of a server without webhooks: every write is a no-op.
DISABLED: Final = Outbox()


def row_of(m: Any) -> OutboxRow:
    return OutboxRow(
        int(m.id), m.event_id, m.event, m.subject, m.body, m.created_at, int(m.attempts), m.next_at, m.dead_at,
        m.last_error, m.claim,
    )
