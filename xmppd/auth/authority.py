"""Who says a PLAIN secret or an OAUTHBEARER token is good (docs/auth.md).

- OAUTHBEARER: a JWT (``jwt_login.JwtVerifier``).
- PLAIN with JWT configured and a secret shaped like a JWT: the same token check (ejabberd's
  way, so every client can log in with a token).
- PLAIN otherwise, when ``auth.password_login``: the app's callback (``auth.http_url``) when
  set, else the stored SCRAM keys (``sasl.verify_plain``; fake keys for unknown users, so
  they cost the same and fail the same).

Every refusal is logged with its reason and never the secret. The account a token or the
callback vouches for is created at its first login (``AccountService.create``: reserved names
refused) with a random password nobody knows, when ``auth.jwt_create_accounts``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .. import tokens
from ..accounts import InvalidAccount
from ..errors import SaslCondition
from ..protocol.sasl import OAUTHBEARER, ScramCredentials, fake_credentials, verify_plain
from ..storage.accounts import AccountExists
from .callback import AuthCallback, CallbackUnavailable
from .jwt_login import JwtVerifier, TokenRefused, looks_like_jwt

if TYPE_CHECKING:
    from ..app import Server

log = logging.getLogger("xmppd.auth")


@dataclass(frozen=True, slots=True)
class Verdict:
    username: str | None  # the prepared account proved, None when refused
    failure: SaslCondition | None = None
    account: Any = None  # the Account read or created, when there is one


class LoginAuthority:
    def __init__(self, server: Server) -> None:
        opts = server.config.auth
        self.server = server
        self.opts = opts
        self.jwt = JwtVerifier.from_options(opts, server.domain)
        self.callback = AuthCallback(opts, server.domain) if opts.http_url else None

    # What the c2s core offers (protocol/c2s.StreamConfig).
    @property
    def scram(self) -> bool:
        return self.opts.password_login and self.callback is None

    @property
    def plain(self) -> bool:
        return self.opts.password_login or self.jwt is not None

    @property
    def external_plain(self) -> bool:
        return self.jwt is not None or self.callback is not None or not self.opts.password_login

    @property
    def oauthbearer(self) -> bool:
        return self.jwt is not None

    async def verify(self, username: str | None, secret: str, mechanism: str, peer: str) -> Verdict:
        if mechanism == OAUTHBEARER or (self.jwt is not None and looks_like_jwt(secret)):
            return await self._token(username, secret, peer)
        if username is None or not self.opts.password_login:
            log.info("login refused from %s: password logins are off (auth.password_login)", peer)
            return Verdict(None, SaslCondition.NOT_AUTHORIZED)
        if self.callback is not None:
            return await self._callback(username, secret, peer)
        return await self._stored(username, secret)

    async def _token(self, username: str | None, token: str, peer: str) -> Verdict:
        if self.jwt is None:
            return Verdict(None, SaslCondition.NOT_AUTHORIZED)
        try:
            user = self.jwt.verify(token)
        except TokenRefused as exc:
            log.info("token refused from %s: %s", peer, exc)
            return Verdict(None, SaslCondition.NOT_AUTHORIZED)
        if username is not None and username != user:
            log.info("token refused from %s: it names %s, the client asked for %s", peer, user, username)
            return Verdict(None, SaslCondition.NOT_AUTHORIZED)
        return await self._vouched(user, peer, create=self.opts.jwt_create_accounts)

    async def _callback(self, username: str, password: str, peer: str) -> Verdict:
        assert self.callback is not None
        try:
            ok = await self.callback.check(username, password)
        except CallbackUnavailable as exc:
            log.warning("login of %s from %s failed closed: %s", username, peer, exc)
            return Verdict(None, SaslCondition.TEMPORARY_AUTH_FAILURE)
        if not ok:
            log.info("auth callback refused %s from %s", username, peer)
            return Verdict(None, SaslCondition.NOT_AUTHORIZED)
        # The app owns these users: the account here is only their mailbox.
        return await self._vouched(username, peer, create=True)

    async def _vouched(self, user: str, peer: str, *, create: bool) -> Verdict:
        host = self.server
        account = await host.accounts.get(user, host.domain)
        if account is None and create:
            try:
                account = await host.account_service.create(user, tokens.token_urlsafe(32))
                log.info("account %s created at its first login (from %s)", user, peer)
            except AccountExists:
                account = await host.accounts.get(user, host.domain)
            except InvalidAccount as exc:  # ReservedUsername included
                log.info("login of %s from %s refused: cannot create the account: %s", user, peer, exc)
                return Verdict(None, SaslCondition.NOT_AUTHORIZED)
        if account is None:
            log.info("login of %s from %s refused: no such account (auth.jwt_create_accounts is off)", user, peer)
            return Verdict(None, SaslCondition.NOT_AUTHORIZED)
        if account.disabled:
            return Verdict(None, SaslCondition.ACCOUNT_DISABLED)
        return Verdict(user, None, account)

    async def _stored(self, username: str, password: str) -> Verdict:
        host = self.server
        found = await host.accounts.get_credentials(username, host.domain, "SCRAM-SHA-256")
        if found is None:
            creds = fake_credentials(host.fake_scram_key, host.domain, username, "SHA-256")
            verify_plain(password, creds, "SHA-256")  # the same cost as a real account's
            return Verdict(None, SaslCondition.NOT_AUTHORIZED)
        account, stored = found
        creds = ScramCredentials(stored.salt, stored.iterations, stored.stored_key, stored.server_key)
        if not verify_plain(password, creds, "SHA-256"):
            return Verdict(None, SaslCondition.NOT_AUTHORIZED)
        if account.disabled:  # told only to whoever knows the password
            return Verdict(None, SaslCondition.ACCOUNT_DISABLED)
        return Verdict(username, None, account)

    async def close(self) -> None:
        if self.callback is not None:
            await self.callback.close()
