"""Accounts: the repository of local users and their SCRAM credentials (RFC 5802, RFC 7677).

Usernames arrive prepared (RFC 8265 UsernameCaseMapped, i.e. the lowercased localpart)
and domains prepared too; this module compares them byte-for-byte and never normalises
again. A username and a domain are each at most :data:`MAX_NAME_LENGTH` characters.

Only SCRAM verifiers are stored (salt, iteration count, StoredKey, ServerKey), one row
per mechanism; never a password.

Three implementations of :class:`AccountRepository` pass the same contract tests:
:class:`SqlAccountRepository` (SQLite or MariaDB through :class:`~xmppd.storage.engine.
Database`) and :class:`MemoryAccountRepository` (for tests and ephemeral servers).
"""

from __future__ import annotations

import asyncio
import builtins
import dataclasses
import random
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Protocol

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from xmppd.storage.engine import Database, is_deadlock, is_unique_violation
from xmppd.storage.metadata import (
    INDEXED_TEXT_LENGTH,
    MYSQL_TABLE_KWARGS,
    UtcDateTime,
    id_type,
    indexed_string,
    metadata,
)
from xmppd.webhooks import events as E
from xmppd.webhooks.outbox import DISABLED, Outbox

__all__ = [
    "MAX_NAME_LENGTH",
    "MAX_REASON_LENGTH",
    "SCRAM_MECHANISMS",
    "Account",
    "AccountError",
    "AccountExists",
    "AccountNotFound",
    "AccountDeletion",
    "AccountRepository",
    "DeletionStep",
    "MemoryAccountRepository",
    "SqlAccountRepository",
    "StoredCredentials",
    "account_credentials",
    "account_id_query",
    "accounts",
]

#: Longest username or domain (characters), the indexed-text limit.
MAX_NAME_LENGTH: Final = INDEXED_TEXT_LENGTH
#: Longest mechanism name that fits the column.
MAX_MECHANISM_LENGTH: Final = 32
#: Longest ``disabled_reason`` (characters): what a MySQL TEXT holds in utf8mb4.
MAX_REASON_LENGTH: Final = 65535 // 4
#: The mechanisms xmppd stores verifiers for (-PLUS variants share them).
SCRAM_MECHANISMS: Final = ("SCRAM-SHA-1", "SCRAM-SHA-256")
_MAX_DEADLOCK_RETRIES: Final = 30

Clock = Callable[[], datetime]


def _utcnow() -> datetime:
    return datetime.now(UTC)


# -- live table definitions (the migrations spell their own, frozen copies) ---------

accounts: Final = sa.Table(
    "accounts",
    metadata,
    sa.Column("id", id_type(), primary_key=True, autoincrement=True),
    sa.Column("username", indexed_string(), nullable=False),
    sa.Column("domain", indexed_string(), nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("disabled", sa.Boolean(), nullable=False, server_default=sa.false()),
    sa.Column("disabled_reason", sa.Text(), nullable=True),
    sa.UniqueConstraint("domain", "username"),
    sqlite_autoincrement=True,
    **MYSQL_TABLE_KWARGS,
)

account_credentials: Final = sa.Table(
    "account_credentials",
    metadata,
    sa.Column(
        "account_id",
        id_type(),
        sa.ForeignKey("accounts.id", ondelete="CASCADE"),
        primary_key=True,
        autoincrement=False,
    ),
    sa.Column("mechanism", sa.String(MAX_MECHANISM_LENGTH), primary_key=True),
    sa.Column("salt", sa.LargeBinary(), nullable=False),
    sa.Column("iterations", sa.Integer(), nullable=False),
    sa.Column("stored_key", sa.LargeBinary(), nullable=False),
    sa.Column("server_key", sa.LargeBinary(), nullable=False),
    sa.CheckConstraint("iterations > 0", name="iterations_positive"),
    **MYSQL_TABLE_KWARGS,
)


# -- values --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoredCredentials:
    """A SCRAM verifier for one mechanism (``SCRAM-SHA-1``, ``SCRAM-SHA-256``)."""

    mechanism: str
    salt: bytes
    iterations: int
    stored_key: bytes
    server_key: bytes

    def __post_init__(self) -> None:
        if not self.mechanism or len(self.mechanism) > MAX_MECHANISM_LENGTH:
            raise ValueError(f"bad mechanism name {self.mechanism!r}")
        if isinstance(self.iterations, bool) or not isinstance(self.iterations, int):
            raise TypeError("iterations must be an int")
        if self.iterations < 1:
            raise ValueError("iterations must be positive")
        for name in ("salt", "stored_key", "server_key"):
            value = getattr(self, name)
            if not isinstance(value, bytes | bytearray | memoryview):
                raise TypeError(f"{name} must be bytes")
            if not isinstance(value, bytes):
                object.__setattr__(self, name, bytes(value))

    def __repr__(self) -> str:  # keys are secrets: keep them out of logs
        return f"StoredCredentials(mechanism={self.mechanism!r}, iterations={self.iterations})"


@dataclass(frozen=True, slots=True)
class Account:
    id: int
    username: str
    domain: str
    created_at: datetime  # timezone-aware, UTC
    disabled: bool
    disabled_reason: str | None


@dataclass(frozen=True, slots=True)
class AccountDeletion:
    """An account being deleted, as the deletion steps of features see it (inside the
    transaction that deletes it, the row still there and locked)."""

    account: Account
    now: datetime  # timezone-aware, UTC
    # The webhook outbox of the deleting repository: steps write their events in this same
    # transaction (docs/webhooks.md).
    outbox: Outbox = DISABLED

    @property
    def jid(self) -> str:
        """The bare JID, as features that key by JID store it."""
        return f"{self.account.username}@{self.account.domain}"


#: One feature's part of an account deletion: ``(name, step)``; ``step(conn, deletion)`` runs
#: inside the deleting transaction and returns what its feature wants to know after the commit.
DeletionStep = tuple[str, Callable[[AsyncConnection, AccountDeletion], Awaitable[Any]]]


class AccountError(Exception):
    """Base of the account repository errors; carries the account's name."""

    def __init__(self, username: str, domain: str) -> None:
        super().__init__(username, domain)
        self.username = username
        self.domain = domain

    def __str__(self) -> str:
        return f"{type(self).__name__}: {self.username}@{self.domain}"


class AccountExists(AccountError):
    """``create`` of a (username, domain) that already exists."""


class AccountNotFound(AccountError):
    """An update of an account that does not exist."""


class AccountRepository(Protocol):
    """Local accounts and their SCRAM credentials.

    Contract (shared by all implementations, pinned by ``tests/storage``):

    * ``create`` raises :class:`AccountExists` on a duplicate (username, domain); under
      concurrency exactly one creator wins (a database constraint decides). It raises
      ``ValueError`` for an empty or over-long name or two credentials for the same
      mechanism. Credentials may be empty.
    * ``get``/``get_credentials`` return ``None`` when nothing matches; disabled
      accounts are returned (with ``disabled=True``): refusing them is the caller's job.
    * ``set_credentials`` replaces all of an account's credentials; ``set_disabled``
      stores *reason* when disabling and clears it when enabling; both raise
      :class:`AccountNotFound`.
    * ``delete`` removes the account and its credentials and tells whether it existed.
      ``delete_with`` does the same in one transaction with every feature's deletion step
      (run in order, before the row goes, with the row locked against a concurrent update);
      it returns the steps' results by feature name, or ``None`` when there was no account.
      A step that raises rolls the whole deletion back.
    * ``list`` orders by (domain, username), by code point; ``limit``/``offset`` page it.
    """

    async def create(
        self, username: str, domain: str, credentials: Iterable[StoredCredentials]
    ) -> Account: ...

    async def get(self, username: str, domain: str) -> Account | None: ...

    async def get_credentials(
        self, username: str, domain: str, mechanism: str
    ) -> tuple[Account, StoredCredentials] | None: ...

    async def set_credentials(
        self, username: str, domain: str, credentials: Iterable[StoredCredentials]
    ) -> None: ...

    async def delete(self, username: str, domain: str) -> bool: ...

    async def delete_with(
        self, username: str, domain: str, steps: Sequence[DeletionStep]
    ) -> Mapping[str, Any] | None: ...

    async def set_disabled(
        self, username: str, domain: str, disabled: bool, reason: str | None = None
    ) -> None: ...

    async def count(self, domain: str | None = None) -> int: ...

    async def list(
        self, domain: str | None = None, *, limit: int | None = None, offset: int = 0
    ) -> builtins.list[Account]: ...


# -- shared validation ---------------------------------------------------------------


def _check_name(username: str, domain: str) -> None:
    for what, value in (("username", username), ("domain", domain)):
        if not isinstance(value, str) or not value:
            raise ValueError(f"{what} must be a non-empty string")
        if len(value) > MAX_NAME_LENGTH:
            raise ValueError(f"{what} longer than {MAX_NAME_LENGTH} characters")


def _check_credentials(credentials: Iterable[StoredCredentials]) -> tuple[StoredCredentials, ...]:
    result = tuple(credentials)
    seen: set[str] = set()
    for cred in result:
        if not isinstance(cred, StoredCredentials):
            raise TypeError(f"expected StoredCredentials, got {type(cred).__name__}")
        if cred.mechanism in seen:
            raise ValueError(f"two credentials for {cred.mechanism}")
        seen.add(cred.mechanism)
    return result


def _check_reason(reason: str | None) -> None:
    if reason is not None and (not isinstance(reason, str) or len(reason) > MAX_REASON_LENGTH):
        raise ValueError(f"reason must be a string of at most {MAX_REASON_LENGTH} characters")


def _check_page(limit: int | None, offset: int) -> None:
    if limit is not None and limit < 0:
        raise ValueError("limit must not be negative")
    if offset < 0:
        raise ValueError("offset must not be negative")


def _now(clock: Clock) -> datetime:
    value = clock()
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("the clock must return aware datetimes")
    return value.astimezone(UTC)


# -- SQL -----------------------------------------------------------------------------

_ACCOUNT_COLUMNS: Final = (
    accounts.c.id,
    accounts.c.username,
    accounts.c.domain,
    accounts.c.created_at,
    accounts.c.disabled,
    accounts.c.disabled_reason,
)


def _account_of(row: Sequence[Any]) -> Account:
    """An :class:`Account` from a row of ``_ACCOUNT_COLUMNS``, in their order."""
    id_, username, domain, created_at, disabled, reason = row
    return Account(int(id_), username, domain, created_at, bool(disabled), reason)


# The read behind a message to an account with no session here and not seen lately
# (xmppd.core.known_accounts): through the storage fast path, on SQLite on the loop's thread.
_ACCOUNT_QUERY: Final = sa.select(*_ACCOUNT_COLUMNS).where(
    accounts.c.domain == sa.bindparam("domain"), accounts.c.username == sa.bindparam("username"))


def _where_name(username: str, domain: str) -> sa.ColumnElement[bool]:
    return sa.and_(accounts.c.domain == domain, accounts.c.username == username)


def account_id_query(username: str, domain: str) -> sa.Select[tuple[int]]:
    """``SELECT id FROM accounts WHERE …``: the one way a feature's table finds its account's
    id (``.scalar_subquery()`` inside a statement, ``.with_for_update()`` to lock the account)."""
    return sa.select(accounts.c.id).where(_where_name(username, domain))


_CREDENTIALS_QUERY = (
    sa.select(
        *_ACCOUNT_COLUMNS,
        account_credentials.c.salt,
        account_credentials.c.iterations,
        account_credentials.c.stored_key,
        account_credentials.c.server_key,
    )
    .select_from(accounts.join(account_credentials))
    .where(
        accounts.c.domain == sa.bindparam("domain"),
        accounts.c.username == sa.bindparam("username"),
        account_credentials.c.mechanism == sa.bindparam("mechanism"),
    )
)


class SqlAccountRepository(AccountRepository):
    """Accounts in SQL (``accounts``, ``account_credentials``)."""

    def __init__(self, db: Database, *, clock: Clock = _utcnow, outbox: Outbox = DISABLED) -> None:
        self._db = db
        self._clock = clock
        self._outbox = outbox  # account.created / deleted / disabled / enabled (docs/webhooks.md)

    def close(self) -> None:
        """Nothing of its own to close: its reads go through the Database's fast path, which the
        Database's owner disposes of."""

    async def create(
        self, username: str, domain: str, credentials: Iterable[StoredCredentials]
    ) -> Account:
        _check_name(username, domain)
        creds = _check_credentials(credentials)
        return await self._db.run_txn(self._create_txn, username, domain, creds, _now(self._clock))

    async def _create_txn(
        self,
        conn: AsyncConnection,
        username: str,
        domain: str,
        creds: tuple[StoredCredentials, ...],
        created_at: datetime,
    ) -> Account:
        try:
            result = await conn.execute(
                accounts.insert().values(
                    username=username,
                    domain=domain,
                    created_at=created_at,
                    disabled=False,
                    disabled_reason=None,
                )
            )
        except IntegrityError as exc:
            if is_unique_violation(exc):
                raise AccountExists(username, domain) from None
            raise
        assert result.inserted_primary_key is not None
        account_id = int(result.inserted_primary_key[0])
        await self._insert_credentials_txn(conn, account_id, creds)
        jid = f"{username}@{domain}"
        await self._outbox.write_txn(conn, E.ACCOUNT_CREATED, f"user:{jid}", {"jid": jid}, created_at)
        return Account(account_id, username, domain, created_at, False, None)

    @staticmethod
    async def _insert_credentials_txn(
        conn: AsyncConnection, account_id: int, creds: tuple[StoredCredentials, ...]
    ) -> None:
        if creds:
            await conn.execute(
                account_credentials.insert(),
                [
                    {
                        "account_id": account_id,
                        "mechanism": c.mechanism,
                        "salt": c.salt,
                        "iterations": c.iterations,
                        "stored_key": c.stored_key,
                        "server_key": c.server_key,
                    }
                    for c in creds
                ],
            )

    async def get(self, username: str, domain: str) -> Account | None:
        row = await self._db.fastpath.fetch_one(_ACCOUNT_QUERY, {"username": username, "domain": domain})
        return None if row is None else _account_of(row)

    async def get_credentials(
        self, username: str, domain: str, mechanism: str
    ) -> tuple[Account, StoredCredentials] | None:
        # Every login: one prebuilt statement through the storage fast path (an SQLite file: read
        # on the loop's thread, never waiting for a lock; else, or when busy, without BEGIN/ROLLBACK).
        row = await self._db.fastpath.fetch_one(
            _CREDENTIALS_QUERY, {"username": username, "domain": domain, "mechanism": mechanism})
        if row is None:
            return None
        # The columns of _CREDENTIALS_QUERY, in order.
        salt, iterations, stored_key, server_key = row[6:]
        return _account_of(row[:6]), StoredCredentials(
            mechanism=mechanism,
            salt=bytes(salt),
            iterations=int(iterations),
            stored_key=bytes(stored_key),
            server_key=bytes(server_key),
        )

    async def set_credentials(
        self, username: str, domain: str, credentials: Iterable[StoredCredentials]
    ) -> None:
        creds = _check_credentials(credentials)
        await self._db.run_txn(self._set_credentials_txn, username, domain, creds)

    async def _set_credentials_txn(
        self,
        conn: AsyncConnection,
        username: str,
        domain: str,
        creds: tuple[StoredCredentials, ...],
    ) -> None:
        # FOR UPDATE: a concurrent delete waits for us instead of racing the inserts.
        account_id = (
            await conn.execute(
                account_id_query(username, domain).with_for_update()
            )
        ).scalar()
        if account_id is None:
            raise AccountNotFound(username, domain)
        await conn.execute(
            account_credentials.delete().where(account_credentials.c.account_id == account_id)
        )
        await self._insert_credentials_txn(conn, int(account_id), creds)

    async def delete(self, username: str, domain: str) -> bool:
        return await self.delete_with(username, domain, ()) is not None

    async def delete_with(
        self, username: str, domain: str, steps: Sequence[DeletionStep]
    ) -> Mapping[str, Any] | None:
        # Every step only touches the database, so a deadlock victim is rerun whole.
        for attempt in range(_MAX_DEADLOCK_RETRIES):
            try:
                return await self._db.run_txn(self._delete_txn, username, domain, tuple(steps), _now(self._clock))
            except DBAPIError as exc:
                if not is_deadlock(exc) or attempt == _MAX_DEADLOCK_RETRIES - 1:
                    raise
                await asyncio.sleep(random.uniform(0.001, 0.005 * (attempt + 1)))
        raise AssertionError("unreachable")

    async def _delete_txn(
        self, conn: AsyncConnection, username: str, domain: str, steps: tuple[DeletionStep, ...], now: datetime
    ) -> Mapping[str, Any] | None:
        # FOR UPDATE: a concurrent password change or disable waits for the deletion.
        row = (
            await conn.execute(sa.select(*_ACCOUNT_COLUMNS).where(_where_name(username, domain)).with_for_update())
        ).first()
        if row is None:
            return None
        deletion = AccountDeletion(_account_of(row), now, self._outbox)
        settled: dict[str, Any] = {}
        for name, step in steps:
            settled[name] = await step(conn, deletion)
        # Rows with a foreign key to accounts.id (credentials, roster, offline ...) go with
        # it: ON DELETE CASCADE, in this same statement.
        await conn.execute(accounts.delete().where(accounts.c.id == deletion.account.id))
        jid = f"{username}@{domain}"
        await self._outbox.write_txn(conn, E.ACCOUNT_DELETED, f"user:{jid}", {"jid": jid}, now)
        return settled

    async def set_disabled(
        self, username: str, domain: str, disabled: bool, reason: str | None = None
    ) -> None:
        _check_reason(reason)
        await self._db.run_txn(self._set_disabled_txn, username, domain, disabled, reason)

    async def _set_disabled_txn(
        self, conn: AsyncConnection, username: str, domain: str, disabled: bool, reason: str | None
    ) -> None:
        result = await conn.execute(
            accounts.update()
            .where(_where_name(username, domain))
            .values(disabled=bool(disabled), disabled_reason=reason if disabled else None)
        )
        # rowcount counts *matched* rows on MySQL too (SQLAlchemy sets CLIENT.FOUND_ROWS).
        if result.rowcount == 0:
            raise AccountNotFound(username, domain)
        jid = f"{username}@{domain}"
        if disabled:
            await self._outbox.write_txn(conn, E.ACCOUNT_DISABLED, f"user:{jid}", {"jid": jid, "reason": reason}, _now(self._clock))
        else:
            await self._outbox.write_txn(conn, E.ACCOUNT_ENABLED, f"user:{jid}", {"jid": jid}, _now(self._clock))

    async def count(self, domain: str | None = None) -> int:
        return await self._db.read_txn(self._count_txn, domain)

    @staticmethod
    async def _count_txn(conn: AsyncConnection, domain: str | None) -> int:
        query = sa.select(sa.func.count()).select_from(accounts)
        if domain is not None:
            query = query.where(accounts.c.domain == domain)
        return int((await conn.execute(query)).scalar_one())

    async def list(
        self, domain: str | None = None, *, limit: int | None = None, offset: int = 0
    ) -> builtins.list[Account]:
        _check_page(limit, offset)
        return await self._db.read_txn(self._list_txn, domain, limit, offset)

    @staticmethod
    async def _list_txn(
        conn: AsyncConnection, domain: str | None, limit: int | None, offset: int
    ) -> builtins.list[Account]:
        query = sa.select(*_ACCOUNT_COLUMNS).order_by(accounts.c.domain, accounts.c.username)
        if domain is not None:
            query = query.where(accounts.c.domain == domain)
        if limit is not None:
            query = query.limit(limit)
        if offset:
            query = query.offset(offset)
        return [_account_of(row) for row in await conn.execute(query)]


# -- memory ----------------------------------------------------------------------------


class MemoryAccountRepository(AccountRepository):
    """In-process twin of :class:`SqlAccountRepository` with the same behaviour.

    No method awaits anything, so each runs atomically on the event loop.
    """

    def __init__(self, *, clock: Clock = _utcnow) -> None:
        self._clock = clock
        self._accounts: dict[tuple[str, str], Account] = {}  # (domain, username)
        self._credentials: dict[int, dict[str, StoredCredentials]] = {}
        self._next_id = 1

    async def create(
        self, username: str, domain: str, credentials: Iterable[StoredCredentials]
    ) -> Account:
        _check_name(username, domain)
        creds = _check_credentials(credentials)
        created_at = _now(self._clock)
        if (domain, username) in self._accounts:
            raise AccountExists(username, domain)
        account = Account(self._next_id, username, domain, created_at, False, None)
        self._next_id += 1
        self._accounts[(domain, username)] = account
        self._credentials[account.id] = {c.mechanism: c for c in creds}
        return account

    async def get(self, username: str, domain: str) -> Account | None:
        return self._accounts.get((domain, username))

    async def get_credentials(
        self, username: str, domain: str, mechanism: str
    ) -> tuple[Account, StoredCredentials] | None:
        account = self._accounts.get((domain, username))
        if account is None:
            return None
        cred = self._credentials[account.id].get(mechanism)
        return None if cred is None else (account, cred)

    async def set_credentials(
        self, username: str, domain: str, credentials: Iterable[StoredCredentials]
    ) -> None:
        creds = _check_credentials(credentials)
        account = self._accounts.get((domain, username))
        if account is None:
            raise AccountNotFound(username, domain)
        self._credentials[account.id] = {c.mechanism: c for c in creds}

    async def delete(self, username: str, domain: str) -> bool:
        return await self.delete_with(username, domain, ()) is not None

    async def delete_with(
        self, username: str, domain: str, steps: Sequence[DeletionStep]
    ) -> Mapping[str, Any] | None:
        if steps:
            raise ValueError("deletion steps need a database transaction: use SqlAccountRepository")
        account = self._accounts.pop((domain, username), None)
        if account is None:
            return None
        del self._credentials[account.id]
        return {}

    async def set_disabled(
        self, username: str, domain: str, disabled: bool, reason: str | None = None
    ) -> None:
        _check_reason(reason)
        account = self._accounts.get((domain, username))
        if account is None:
            raise AccountNotFound(username, domain)
        self._accounts[(domain, username)] = dataclasses.replace(
            account, disabled=bool(disabled), disabled_reason=reason if disabled else None
        )

    async def count(self, domain: str | None = None) -> int:
        if domain is None:
            return len(self._accounts)
        return sum(1 for d, _ in self._accounts if d == domain)

    async def list(
        self, domain: str | None = None, *, limit: int | None = None, offset: int = 0
    ) -> builtins.list[Account]:
        _check_page(limit, offset)
        keys = sorted(k for k in self._accounts if domain is None or k[0] == domain)
        keys = keys[offset:] if limit is None else keys[offset : offset + limit]
        return [self._accounts[k] for k in keys]
