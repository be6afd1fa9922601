"""The feature API: the one way anything plugs into the server, core or extension.

A feature is a class with metadata (``name``, ``implements``, ``disco_features``, ``depends``,
``Options``, ``migrations``), ``setup()``/``teardown()``, and handlers declared with
``@iq_handler`` and ``@hook``. Everything it registers goes through its ``FeatureContext`` and
is undone automatically at teardown. Features load through the ``xmppd.features`` entry-point
group, so ``extensions/`` (and third-party packages) load exactly like core ones.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from lxml import etree

from ..i18n import Catalog, Languages, Translator
from ..jid import JID
from .dispatch import IqHandler, Target
from .hooks import Flow, Hook

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection

    from ..api.framework import Operation
    from ..config import Config
    from ..errors import StreamErrorCondition
    from ..features.adhoc.command import Command, Provider
    from ..storage.accounts import AccountDeletion, AccountRepository, DeletionStep
    from ..storage.engine import Database
    from ..webhooks.outbox import Outbox
    from .control import ControlKind
    from .interfaces import AccountAdmin, FeatureHost, Lifecycle
    from .invalidation import Drop, Flush, Invalidation
    from .router import Router, Service
    from .server_owned import ServerOwned
    from .sessions import SessionRegistry

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class NoOptions:
    pass


@dataclass(frozen=True, slots=True)
class _IqMark:
    type: str
    qname: str
    target: Target


@dataclass(frozen=True, slots=True)
class _HookMark:
    hook: Hook[Any]
    priority: int


def iq_handler(type: str, qname: str, *, target: Target = Target.HOST) -> Callable[[F], F]:
    """Declare a method as the handler of iq ``type`` with payload ``qname`` on the main domain."""

    def mark(fn: F) -> F:
        fn.__dict__.setdefault("_xmppd_marks", []).append(_IqMark(type, qname, target))
        return fn

    return mark


def hook(h: Hook[Any], priority: int = 0) -> Callable[[F], F]:
    """Declare a method as a handler in hook chain ``h``; it returns a ``Flow`` (a coroutine
    function, or a plain function returning the ``Flow`` or an awaitable of it: see .hooks)."""

    def mark(fn: F) -> F:
        fn.__dict__.setdefault("_xmppd_marks", []).append(_HookMark(h, priority))
        return fn

    return mark


class Clock:
    """Injected time: ``now()`` wall clock (UTC seconds), ``monotonic()`` for intervals."""

    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()


class Feature:
    """Base class of every feature. Subclasses set the class metadata below."""

    name: ClassVar[str]
    implements: ClassVar[tuple[str, ...]] = ()  # "XEP-0199", "RFC 6121" ...
    disco_features: ClassVar[tuple[str, ...]] = ()  # advertised on the server domain
    account_disco_features: ClassVar[tuple[str, ...]] = ()  # advertised on account bare JIDs
    depends: ClassVar[tuple[str, ...]] = ()
    Options: ClassVar[type] = NoOptions
    migrations: ClassVar[str | None] = None  # path of an alembic versions folder
    # Elements only the server writes into stanzas (xmppd.core.server_owned): clients' copies
    # are stripped by the router before routing. Declare every one your feature authors.
    server_owned: ClassVar[tuple["ServerOwned", ...]] = ()
    # Regexes of usernames that would pass for this feature's own addresses; no account may be
    # created with a name any of them matches in full (xmppd/usernames.py).
    reserved_usernames: ClassVar[tuple[str, ...]] = ()

    def __init__(self, ctx: "FeatureContext", options: Any) -> None:
        self.ctx = ctx
        self.options = options
        self.log = logging.getLogger(type(self).__module__)

    async def setup(self) -> None:
        """Register what is not declared with decorators; read storage; arm timers."""

    async def teardown(self) -> None:
        """Release what setup acquired outside the context (the context undoes the rest)."""

    @classmethod
    async def delete_account_txn(cls, conn: "AsyncConnection", deletion: "AccountDeletion") -> Any:
        """This feature's part of deleting an account, inside the one transaction that deletes
        it (the account row still there, locked): remove or settle what of the account is in
        this feature's tables that ``ON DELETE CASCADE`` does not reach (rows keyed by JID).
        Runs in ``xmppctl`` too, with no server: use only ``conn``. What it returns reaches the
        ``ACCOUNT_DELETED`` hooks (``event.settled[name]``), which run after the commit to
        update in-memory state. Raising rolls the whole deletion back."""
        return None

    @classmethod
    def deletes_accounts(cls) -> bool:
        """Whether this class contributes a :meth:`delete_account_txn`."""
        return cls.delete_account_txn.__func__ is not Feature.delete_account_txn.__func__  # type: ignore[attr-defined]

    @classmethod
    def register_cli(cls, subparsers: Any) -> None:
        """Add ``xmppctl`` verbs: ``subparsers.add_parser(...).set_defaults(func=async (ctl, args) -> int)``."""


class FeatureContext:
    """What a feature may touch; every registration is undone at teardown."""

    def __init__(self, server: "FeatureHost", name: str) -> None:
        self._server = server
        self.name = name
        self._undo: list[Callable[[], None]] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self.log = logging.getLogger(f"xmppd.features.{name}")

    # -- what the feature reads
    @property
    def config(self) -> "Config":
        return self._server.config

    @property
    def domain(self) -> str:
        return self._server.domain

    @property
    def router(self) -> "Router":
        return self._server.router

    @property
    def sessions(self) -> "SessionRegistry":
        return self._server.sessions

    @property
    def db(self) -> "Database":
        return self._server.db

    @property
    def outbox(self) -> "Outbox":
        """The one door for webhook events (docs/webhooks.md): ``write_txn`` inside the change's
        own transaction."""
        return self._server.outbox

    @property
    def accounts(self) -> "AccountRepository":
        return self._server.accounts

    @property
    def clock(self) -> Clock:
        return self._server.clock

    @property
    def rng(self) -> random.Random:
        return self._server.rng

    @property
    def account_service(self) -> "AccountAdmin":
        """Create, change, disable and delete accounts (registration, admin commands)."""
        return self._server.account_service

    @property
    def lifecycle(self) -> "Lifecycle":
        """``started`` (an event set once the server runs) and ``stopping``."""
        return self._server

    async def account_exists(self, bare: JID) -> bool:
        """Whether the local account ``bare`` exists: no database read for an account with a
        session here or seen before (xmppd/core/known_accounts.py; deletions are invalidated on
        every node)."""
        return await self._server.known_accounts.exists(bare)

    async def kick(self, jid: JID, condition: "StreamErrorCondition", text: str) -> int:
        """End ``jid``'s sessions (a bare JID: all of them) with a stream error; how many ended."""
        return await self._server.kick(jid, condition, text)

    def loaded_features(self) -> list[Feature]:
        """Every loaded feature, in load order (disco lists what they implement)."""
        return list(self._server.features.values())

    def feature(self, name: str) -> Any:
        """Another loaded feature (declare it in ``depends``)."""
        return self._server.features[name]

    def has_feature(self, name: str) -> bool:
        return name in self._server.features

    def is_admin(self, jid: JID) -> bool:
        return self._server.is_admin(jid)

    @property
    def languages(self) -> Languages:
        """Which language each reader gets (xmppd/i18n.py): ``languages.of(jid)``."""
        return self._server.languages

    def translator(self, folder: str | Path) -> Translator:
        """The feature's texts (``folder``: its ``locale/`` of ``<lang>.toml`` catalogues) in each
        recipient's language (xmppd/i18n.py)."""
        return Translator(Catalog.load(folder), self._server.languages)

    # -- registrations
    def add_iq_handler(self, type: str, qname: str, handler: IqHandler, *, target: Target = Target.HOST, domain: str | None = None) -> Callable[[], None]:
        """Register; returns the removal (also undone at teardown; removing twice is harmless)."""
        remove = self._server.iq_table.add(type, target, domain or self.domain, qname, handler)

        def undo() -> None:
            remove()
            if undo in self._undo:
                self._undo.remove(undo)

        self._undo.append(undo)
        return undo

    def add_hook(self, h: Hook[Any], handler: Callable[[Any], "Flow | Awaitable[Flow]"], priority: int = 0) -> None:
        self._undo.append(self._server.hooks.add(h, handler, priority))

    def add_service(self, domain: str, service: "Service") -> None:
        self._undo.append(self.router.add_service(domain, service))

    def add_stream_feature(self, make: Callable[[bool], list[etree._Element]]) -> None:
        """Offer what ``make(authenticated)`` returns in <stream:features/>. The server builds its
        features once and reuses them: call :meth:`refresh_stream_features` when the answer changes."""
        self._undo.append(self._server.add_stream_feature(make))

    def refresh_stream_features(self) -> None:
        self._server.refresh_stream_features()

    def add_nonza_handler(self, namespace: str, handler: Callable[[Any, etree._Element], Awaitable[None]]) -> None:
        self._undo.append(self._server.add_nonza_handler(namespace, handler))

    def add_preauth_iq_handler(self, qname: str, handler: Callable[[Any, etree._Element], Awaitable[None]]) -> None:
        self._undo.append(self._server.add_preauth_iq_handler(qname, handler))

    def add_control(self, name: str, kind: "ControlKind") -> None:
        """Answer requests ``name`` from other cluster nodes (xmppd/core/control.py); unused
        without a cluster. Name it after the feature: the names share one space."""
        controls = self.router.controls
        if name in controls:
            raise ValueError(f"control kind {name} is already registered")
        controls[name] = kind
        self._undo.append(lambda: controls.pop(name, None))  # type: ignore[func-returns-value]
    def invalidation(self, name: str, drop: "Drop", flush: "Flush | None" = None) -> "Invalidation":
        """Name a cache that another cluster node can make stale (xmppd/core/invalidation.py):
        call ``publish(key)`` after each of this node's writes of what ``key`` names; the other
        nodes then run ``drop(key)``, and ``flush()`` runs whenever invalidations may have been
        missed. With one node, ``publish`` does nothing."""
        inv = self._server.invalidations.register(name, drop, flush)
        self._undo.append(inv.close)
        return inv

    def add_http_route(self, method: str, path: str, handler: Callable[[Any], Awaitable[Any]]) -> None:
        """Serve ``method path`` on ``listen.http`` (an aiohttp handler; call it in ``setup``)."""
        self._undo.append(self._server.add_http_route(method, path, handler))

    def http_base_url(self) -> str | None:
        """Where ``listen.http`` is reached (``http.public_url``'s origin or the bound port on
        the domain); None without the listener. Known once the server listens."""
        return self._server.http_base_url()

    def add_api(self, operations: "Iterable[Operation]") -> None:
        """Serve REST API operations under ``/api/v1`` (xmppd/api/framework.py, docs/api.md):
        the token, scope, path, query and body are checked before the handler runs."""
        self._undo.append(self._server.api.add(operations))

    def add_metrics(self, collect: Callable[[], Iterable[Any]]) -> None:
        """Add figures to ``/metrics``: ``collect()`` runs at each scrape and returns
        prometheus_client metric families (xmppd/metrics.py has ``gauge`` and ``labelled``).
        Keep what it reads in memory: it must not wait for anything."""
        self._undo.append(self._server.metrics.add(collect))

    def add_command(self, command: "Command", jid: JID | str | None = None) -> None:
        """Offer an XEP-0050 ad-hoc command on ``jid`` (default: the server domain); undone at
        teardown. Needs the ``adhoc`` feature (declare it in ``depends``)."""
        self._undo.append(self.feature("adhoc").register(command, jid))

    def add_command_provider(self, domain: str, provider: "Provider") -> None:
        """Ad-hoc commands on any JID of ``domain`` (rooms ...), decided per (requester, target
        JID) by ``provider``; undone at teardown. Needs the ``adhoc`` feature."""
        self._undo.append(self.feature("adhoc").register_provider(domain, provider))

    def on_teardown(self, undo: Callable[[], None]) -> None:
        self._undo.append(undo)

    # -- doing things
    async def send(self, stanza: etree._Element) -> None:
        """Route a stanza from the server or a service (``from`` must be set)."""
        await self.router.send(stanza)

    async def send_iq(self, stanza: etree._Element, timeout: float = 30.0) -> etree._Element:
        """Send an iq get/set and wait for its result or error (raises TimeoutError)."""
        return await self._server.send_iq(stanza, timeout)

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str | None = None) -> asyncio.Task[Any]:
        """A background task owned by the feature: cancelled at teardown, errors logged."""
        task = asyncio.get_running_loop().create_task(coro, name=name or f"{self.name}-task")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.log.error("background task %s failed", task.get_name(), exc_info=task.exception())

    def call_later(self, delay: float, callback: Callable[[], Any]) -> asyncio.TimerHandle:
        handle = asyncio.get_running_loop().call_later(delay, callback)
        self._undo.append(handle.cancel)
        return handle

    # -- lifecycle (called by the server)
    def bind_declared(self, feature: Feature) -> None:
        for owned in type(feature).server_owned:
            self._undo.append(self.router.add_server_only(owned.qname, owned.check()))
        for attr in dir(type(feature)):
            fn = getattr(type(feature), attr, None)
            marks = getattr(fn, "_xmppd_marks", None)
            if not marks:
                continue
            bound = getattr(feature, attr)
            for mark in marks:
                if isinstance(mark, _IqMark):
                    self.add_iq_handler(mark.type, mark.qname, bound, target=mark.target)
                elif isinstance(mark, _HookMark):
                    self.add_hook(mark.hook, bound, mark.priority)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        while self._undo:
            undo = self._undo.pop()
            try:
                undo()
            except Exception:  # teardown must finish
                self.log.exception("undoing a registration failed")


def deletion_steps(classes: "Iterable[type[Feature]]") -> "list[DeletionStep]":
    """The ``delete_account_txn`` of every class that has one, in load order."""
    return [(c.name, c.delete_account_txn) for c in classes if c.deletes_accounts()]


def options_of(cls: type[Feature]) -> type:
    opts = cls.Options
    if not dataclasses.is_dataclass(opts):
        raise TypeError(f"{cls.__name__}.Options must be a dataclass")
    return opts
