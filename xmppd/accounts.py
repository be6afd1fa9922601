"""Account management shared by xmppctl, in-band registration and admin commands.

Usernames are prepared here (RFC 7622 localpart rules) and passwords turned into SCRAM keys
for both hashes; the repository never sees a password. When a live server is attached, account
hooks run so that features clean up what belongs to a deleted account.
"""
from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from .core.hooks import ACCOUNT_CREATED, ACCOUNT_DELETED, AccountEvent
from .errors import StreamErrorCondition
from .jid import JID, JIDError
from .protocol.sasl import make_credentials
from .storage.accounts import Account, AccountExists, AccountNotFound, AccountRepository, StoredCredentials

if TYPE_CHECKING:
    from .app import Server
    from .usernames import UsernamePolicy

__all__ = ["AccountExists", "AccountNotFound", "AccountService", "InvalidAccount", "ReservedUsername", "credentials_for"]


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
        policy: "UsernamePolicy | None" = None,
    ) -> None:
        self.repo = repo
        self.domain = domain
        self.server = server
        self.min_password_length = min_password_length
        self.policy = policy  # None: any valid username (tools and tests without a config)
        # Bumped before every disable or delete: an account read at authentication is still
        # good at resource binding when this has not moved in between (no second read).
        self.generation = 0

    def prepare(self, username: str) -> str:
        try:
            jid = JID.parse(f"{username}@{self.domain}")
        except JIDError as exc:
            raise InvalidAccount(f"invalid username {username!r}: {exc}") from None
        if jid.local is None or jid.resource is not None or "@" in username or "/" in username:
            raise InvalidAccount(f"invalid username {username!r}")
        return jid.local

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

    async def delete(self, username: str) -> bool:
        """Delete the account and everything of it; its live sessions end first."""
        username = self.prepare(username)
        if await self.repo.get(username, self.domain) is None:
            return False
        self.generation += 1
        if self.server is not None:
            await self.server.kick(JID(username, self.domain), StreamErrorCondition.NOT_AUTHORIZED, "the account has been deleted")
            await self.server.hooks.run(ACCOUNT_DELETED, AccountEvent(username, self.domain))
        return await self.repo.delete(username, self.domain)
