"""Account management shared by xmppctl, in-band registration and admin commands.

Usernames are prepared here (RFC 7622 localpart rules) and passwords turned into SCRAM keys
for both hashes; the repository never sees a password. When a live server is attached, account
hooks run so that features clean up what belongs to a deleted account; deleting is one
transaction to which every feature contributes (:meth:`AccountService.delete`).
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from .core.feature import deletion_steps
from .core.hooks import ACCOUNT_CREATED, ACCOUNT_DELETED, ACCOUNT_DELETING, AccountEvent
from .errors import StreamErrorCondition
from .jid import JID, JIDError, prepare_username
from .protocol.sasl import make_credentials
from .storage.accounts import (
    Account,
    AccountExists,
    AccountNotFound,
    AccountRepository,
    DeletionStep,
    StoredCredentials,
)

if TYPE_CHECKING:
    from .app import Server
    from .core.session import Session
    from .usernames import UsernamePolicy

__all__ = ["AccountExists", "AccountNotFound", "AccountService", "InvalidAccount", "ReservedUsername", "credentials_for"]


_DELETED = "the account has been deleted"


class InvalidAccount(ValueError):
    """A username or password that cannot be used, with the reason."""


class ReservedUsername(InvalidAccount):
    """A valid username that no account may have (usernames.UsernamePolicy), with the reason."""


def credentials_for(password: str) -> list[StoredCredentials]:
    if not password:
        raise InvalidAccount("the password is empty")
    out = []
    for hash_name in ("SHA-1", "SHA-256"):
        try:
            c = make_credentials(password, hash_name)
        except ValueError as exc:
            raise InvalidAccount(f"unusable password: {exc}") from None
        out.append(StoredCredentials(f"SCRAM-{hash_name}", c.salt, c.iterations, c.stored_key, c.server_key))
    return out


class AccountService:
    def __init__(
        self,
        repo: AccountRepository,
        domain: str,
        server: "Server | None" = None,
        min_password_length: int = 1,
        deletion_steps: Sequence[DeletionStep] = (),
        policy: "UsernamePolicy | None" = None,
    ) -> None:
        self.repo = repo
        # Without a live server (xmppctl): the features' deletion steps, given by the caller.
        self.deletion_steps = tuple(deletion_steps)
        self.domain = domain
        self.server = server
        self.min_password_length = min_password_length
        self.policy = policy  # None: any valid username (tools and tests without a config)
        # Bumped before every disable or delete: an account read at authentication is still
        # good at resource binding when this has not moved in between (no second read).
        self.generation = 0

    def prepare(self, username: str) -> str:
        try:
            return prepare_username(username, self.domain)
        except JIDError as exc:
            raise InvalidAccount(f"invalid username {username!r}: {exc}") from None

    def _check_password(self, password: str) -> None:
        if len(password) < self.min_password_length:
            raise InvalidAccount(f"the password must have at least {self.min_password_length} characters")

    async def create(self, username: str, password: str, *, public: bool = False) -> Account:
        """Create an account. ``public``: the name was chosen by a stranger (in-band
        registration) rather than by an operator (xmppctl, the admin command): then even the
        names of ``server.admins`` are refused. Every door comes through here, so the
        username policy is checked in this one place."""
        username = self.prepare(username)
        if self.policy is not None and (why := self.policy.refusal(username, public=public)) is not None:
            raise ReservedUsername(why)
        self._check_password(password)
        # Key derivation (PBKDF2, twice) takes milliseconds: keep it off the event loop.
        account = await self.repo.create(username, self.domain, await asyncio.to_thread(credentials_for, password))
        if self.server is not None:
            await self.server.hooks.run(ACCOUNT_CREATED, AccountEvent(username, self.domain))
        return account

    async def set_password(self, username: str, password: str) -> None:
        username = self.prepare(username)
        self._check_password(password)
        await self.repo.set_credentials(username, self.domain, await asyncio.to_thread(credentials_for, password))

    async def set_disabled(self, username: str, disabled: bool, reason: str | None = None) -> None:
        username = self.prepare(username)
        self.generation += 1
        await self.repo.set_disabled(username, self.domain, disabled, reason)
        if disabled and self.server is not None:
            await self.server.kick(JID(username, self.domain), StreamErrorCondition.NOT_AUTHORIZED, "the account has been disabled")

    def _steps(self) -> Sequence[DeletionStep]:
        server = self.server
        if server is None:
            return self.deletion_steps
        # Loaded features in load order, then the disabled ones: their tables are there too.
        loaded = [type(f) for f in server.features.values()]
        return deletion_steps([*loaded, *(c for c in server.installed_features.values() if c not in loaded)])

    async def delete(
        self, username: str, *, requester: "Session | None" = None, answer: Callable[[], None] | None = None
    ) -> bool:
        """Delete the account and everything of it, completely, before returning.

        1. Its sessions end (all but ``requester``, the session asking, if any), and
           ``ACCOUNT_DELETING`` runs: what must be told while the account's data is stored.
        2. One transaction: every feature's ``delete_account_txn`` (red packets addressed to it
           are refunded, its wallet settled ...) and the account row with everything
           cascading from it. A crash before the commit leaves the account whole; after, gone.
        3. ``ACCOUNT_DELETED`` updates in-memory state (caches, timers, notices).
        4. ``answer()`` (the requester's reply), then the requester's session ends too, as does
           any session that authenticated while this ran.
        So when anyone is answered, the name is free: re-registering it at once succeeds, and
        the new account inherits nothing.
        """
        username = self.prepare(username)
        if await self.repo.get(username, self.domain) is None:
            return False
        jid = JID(username, self.domain)
        server = self.server
        self.generation += 1  # a login racing this cannot bind (see Session), the final kick ends it
        if server is not None:
            await server.kick(jid, StreamErrorCondition.NOT_AUTHORIZED, _DELETED, spare=requester)
            await server.hooks.run(ACCOUNT_DELETING, AccountEvent(username, self.domain))
        settled = await self.repo.delete_with(username, self.domain, self._steps())
        self.generation += 1
        if settled is None:  # deleted meanwhile by someone else
            return False
        if server is not None:
            await server.hooks.run(ACCOUNT_DELETED, AccountEvent(username, self.domain, settled))
        if answer is not None:
            answer()
        if server is not None:
            if requester is not None:  # its cleanup runs after the stanza being handled: no wait
                requester.close(StreamErrorCondition.NOT_AUTHORIZED, _DELETED)
            await server.kick(jid, StreamErrorCondition.NOT_AUTHORIZED, _DELETED, spare=requester)
        return True
