"""The narrow interfaces between the core and the server that composes it.

``xmppd.app.Server`` is the composition root: it builds the router, the session registry, the
account service, the features, and it satisfies these protocols. The core and the features see
only these: a ``Session`` needs a :class:`SessionHost`, a feature its ``FeatureContext`` (which
hands out :class:`AccountAdmin`, :class:`SessionControl` and :class:`Lifecycle`). A cluster node
(issue 17) changes what stands behind them, not who uses them.
"""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

from lxml import etree

if TYPE_CHECKING:
    import random

    from ..api.framework import ApiRoutes
    from ..config import Config
    from ..errors import StreamErrorCondition
    from ..i18n import Languages
    from ..jid import JID
    from ..metrics import Metrics
    from ..storage.accounts import Account, AccountRepository
    from ..storage.engine import Database
    from .dispatch import IqTable
    from .feature import Clock, Feature
    from .hooks import HookChains
    from .invalidation import Invalidations
    from .known_accounts import KnownAccounts
    from .limits import AuthThrottle
    from .router import Router
    from .session import Session
    from .sessions import SessionRegistry


class AccountAdmin(Protocol):
    """Creating, changing and deleting accounts (``xmppd.accounts.AccountService``)."""

    generation: int  # moves before every disable or delete (see Session._bind)

    def prepare(self, username: str) -> str: ...
    async def create(self, username: str, password: str, *, public: bool = False) -> "Account": ...
    async def set_password(self, username: str, password: str) -> None: ...
    async def set_disabled(self, username: str, disabled: bool, reason: str | None = None) -> None: ...
    async def delete(
        self, username: str, *, requester: "Session | None" = None, answer: Callable[[], None] | None = None
    ) -> bool: ...


class SessionControl(Protocol):
    """Ending an account's sessions (admin commands, disabling and deleting accounts)."""

    async def kick(self, jid: "JID", condition: "StreamErrorCondition", text: str, *, spare: "Session | None" = None) -> int: ...


class Lifecycle(Protocol):
    """Where the server is in its life: features that wait for the start or act on the stop."""

    @property
    def started(self) -> asyncio.Event: ...  # set once every feature is set up and listening
    @property
    def stopping(self) -> bool: ...  # True once stop() began: closing sessions are not users leaving


class SessionHost(Protocol):
    """What a client ``Session`` needs from the server it runs in -- and nothing else."""

    config: "Config"
    domain: str
    router: "Router"
    sessions: "SessionRegistry"
    hooks: "HookChains"
    accounts: "AccountRepository"
    account_service: AccountAdmin
    auth_throttle: "AuthThrottle"
    live: "set[Session]"

    async def handle_nonza(self, session: "Session", el: etree._Element) -> None: ...
    async def handle_preauth_iq(self, session: "Session", el: etree._Element) -> None: ...
    def connection_closed(self, session: "Session") -> None: ...


class FeatureHost(SessionControl, Lifecycle, Protocol):
    """What a ``FeatureContext`` draws on: the server's parts that features may reach, each
    handed to the feature through the context (never the host itself)."""

    config: "Config"
    domain: str
    router: "Router"
    sessions: "SessionRegistry"
    hooks: "HookChains"
    iq_table: "IqTable"
    db: "Database"
    accounts: "AccountRepository"
    account_service: AccountAdmin
    clock: "Clock"
    rng: "random.Random"
    languages: "Languages"
    features: "dict[str, Feature]"
    outbox: Any  # webhooks.outbox.Outbox
    api: "ApiRoutes"
    metrics: "Metrics"
    invalidations: "Invalidations"
    known_accounts: "KnownAccounts"

    def is_admin(self, jid: "JID") -> bool: ...
    def add_stream_feature(self, make: Callable[[bool], list[etree._Element]]) -> Callable[[], None]: ...
    def refresh_stream_features(self) -> None: ...
    def add_nonza_handler(self, namespace: str, handler: Callable[[Any, etree._Element], Awaitable[None]]) -> Callable[[], None]: ...
    def add_preauth_iq_handler(self, qname: str, handler: Callable[[Any, etree._Element], Awaitable[None]]) -> Callable[[], None]: ...
    async def send_iq(self, stanza: etree._Element, timeout: float) -> etree._Element: ...
    def add_http_route(self, method: str, path: str, handler: Callable[[Any], Awaitable[Any]]) -> Callable[[], None]: ...
    def http_base_url(self) -> str | None: ...
