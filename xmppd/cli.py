"""The ``xmppd`` and ``xmppctl`` commands (shared/INTERFACE.md)."""
from __future__ import annotations

import argparse
import asyncio
import gc
import getpass
import logging
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from . import __version__, heap
from .config import Config, ConfigError, build, default_config_path, effective_workers, load_raw
from .core.feature import Feature
from .core.loader import FeatureLoadError, discover, order

log = logging.getLogger("xmppd")
EXIT_CONFIG = 2


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="TOML configuration (default: ./conf/xmppd.toml, else the packaged one)")
    parser.add_argument(
        "--set", metavar="SECTION.KEY=VALUE", action="append", default=[], dest="overrides",
        help="override a configuration key; VALUE is read as TOML, a bare word as a string (repeatable)",
    )


def load_config(path: str | None, overrides: list[str]) -> tuple[Config, dict[str, type[Feature]]]:
    """Read, override and validate the configuration, with every installed feature's section."""
    try:
        classes = discover()
    except FeatureLoadError as exc:
        raise ConfigError(str(exc)) from None
    p = Path(path) if path else default_config_path()
    raw = load_raw(p)
    cfg = build(raw, {name: cls.Options for name, cls in classes.items()}, overrides, source=str(p))
    try:
        order(classes, cfg.features.disabled)
    except FeatureLoadError as exc:
        raise ConfigError(str(exc)) from None
    return cfg, classes


def setup_logging(level: str, tag: str = "") -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        # A worker of server.workers names itself: the workers share the supervisor's stderr.
        format="%(asctime)s %(levelname)-7s " + (f"[{tag}] " if tag else "") + "%(name)s: %(message)s",
        stream=sys.stderr,
    )
    # Alembic narrates every plugin and migration step at INFO; we log the summary ourselves.
    logging.getLogger("alembic").setLevel(max(logging.WARNING, logging.getLogger().level))


def run(coro_fn: Callable[[], Awaitable[int]]) -> int:
    """Run on uvloop when it is installed (faster event loop), else asyncio's default."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro_fn())  # type: ignore[arg-type]
    return uvloop.run(coro_fn())  # type: ignore[no-any-return]


# ---------------------------------------------------------------------------------- xmppd


def xmppd_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="xmppd", description="Run the xmppd XMPP server in the foreground.")
    _common(parser)
    parser.add_argument("--version", action="version", version=f"xmppd {__version__}")
    # One of server.workers' processes, started by the supervisor (xmppd/cluster/workers.py).
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        cfg, classes = load_config(args.config, args.overrides)
    except ConfigError as exc:
        print(f"xmppd: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    setup_logging(cfg.log.level, tag=cfg.cluster.node if args.worker else "")
    if cfg.log.wire:
        logging.getLogger("xmppd.wire").setLevel(logging.DEBUG)
    workers = effective_workers(cfg.server.workers)
    if workers > 1 and not args.worker:
        from .cluster.workers import supervise

        return run(lambda: supervise(cfg, classes, list(sys.argv[1:] if argv is None else argv), workers))
    return run(lambda: _serve(cfg, classes, worker=args.worker))


async def _serve(cfg: Config, classes: dict[str, type[Feature]], *, worker: bool = False) -> int:
    from .app import SchemaNotCurrent, Server
    from .cluster.membership import ClusterStartError
    from .transport.tls import CertificateError

    server = Server(cfg, feature_classes=classes)
    server.reuse_port = worker
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await server.start()
    except CertificateError as exc:
        print(f"xmppd: configuration error: tls: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except (OSError, SchemaNotCurrent, ClusterStartError) as exc:
        print(f"xmppd: cannot start: {exc}", file=sys.stderr)
        return 1
    # What start-up built (configuration, features, schema, imported modules) lives as long as
    # the process: move it out of the cyclic collector's reach, so that a full collection no
    # longer walks it every time (under a login storm those walks cost ~10% of the CPU). And
    # collect the young generation every 10,000 container allocations instead of 700: each
    # collection walks every live young object (the sessions being set up), so fewer of them
    # halve the collector's share again; the cyclic garbage waiting meanwhile stays small.
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)
    # Freed memory goes back to the system after a burst, not only the names (xmppd.heap).
    trimmer = asyncio.ensure_future(heap.trim_periodically())
    await stop.wait()
    trimmer.cancel()
    log.info("signal received: shutting down")
    await server.stop()
    return 0


# ---------------------------------------------------------------------------------- xmppctl


class Ctl:
    """What an xmppctl verb gets: the configuration and, on demand, storage.

    A verb that only reads (``set_defaults(readonly=True)``) never creates a database: on the
    embedded default, a missing database file is an error naming the configuration and the path,
    not a new empty database (running xmppctl from another directory must not look like an empty
    server). Every verb that opens storage says on stderr which configuration and database it uses.
    """

    def __init__(self, cfg: Config, classes: dict[str, type[Feature]], *, readonly: bool = False) -> None:
        self.config = cfg
        self.classes = classes
        self.readonly = readonly
        self._db: Any = None

    def describe_storage(self) -> str:
        from .storage.engine import redact_url

        if self.config.is_embedded_storage:
            return f"database {self.embedded_path()}"
        return f"database {redact_url(self.config.storage_url)}"

    def describe_source(self) -> str:
        source = Path(self.config.source)
        return str(source.resolve()) if source.exists() else self.config.source

    def embedded_path(self) -> Path:
        return (self.config.data_dir / "xmppd.db").resolve()

    async def db(self, *, upgrade_embedded: bool = True) -> Any:
        from .storage import migrations
        from .storage.engine import Database

        if self._db is None:
            print(f"xmppctl: configuration {self.describe_source()}; {self.describe_storage()}", file=sys.stderr)
            if self.config.is_embedded_storage and not self.embedded_path().exists():
                if self.readonly:
                    raise CtlError(
                        f"there is no database at {self.embedded_path()}: this command only reads, so it creates none "
                        f"(run it where xmppd runs, or give --config FILE or --set server.data_dir=DIR)"
                    )
                print(f"xmppctl: creating a new database at {self.embedded_path()}", file=sys.stderr)
            if not self.readonly:
                self.config.data_dir.mkdir(parents=True, exist_ok=True)
            self._db = Database.from_url(self.config.storage_url)
            auto = self.config.storage.auto_upgrade
            if auto is None:
                auto = self.config.is_embedded_storage
            if auto and upgrade_embedded:
                await migrations.upgrade(self._db, self.migration_locations())
            elif upgrade_embedded and await migrations.pending(self._db, self.migration_locations()):
                raise CtlError("the database schema is not up to date: run `xmppctl db upgrade` first")
        return self._db

    def migration_locations(self) -> list[str]:
        from .app import feature_migration_locations

        return feature_migration_locations(self.classes.values())

    async def accounts(self) -> Any:
        from .accounts import AccountService
        from .core.feature import deletion_steps
        from .core.loader import order
        from .storage.accounts import SqlAccountRepository
        from .usernames import UsernamePolicy

        db = await self.db()
        # No server here: deleting an account runs every installed feature's deletion step in
        # the same transaction, as the server does (in-memory state is the running server's).
        cfg = self.config
        installed = order(self.classes, cfg.features.disabled)
        policy = UsernamePolicy.from_config(cfg, installed)
        return AccountService(
            SqlAccountRepository(db, outbox=self.outbox()), cfg.server.domain, None, cfg.registration.min_password_length,
            deletion_steps(self.classes.values()), policy,
        )

    def outbox(self) -> Any:
        """The webhook outbox: changes made here write their events as the server's do."""
        from .webhooks.outbox import Outbox

        return Outbox.from_config(self.config)

    async def close(self) -> None:
        if self._db is not None:
            await self._db.dispose()


class CtlError(Exception):
    pass


def _read_password(given: str | None) -> str:
    if given is not None:
        return given
    if sys.stdin.isatty():
        p1 = getpass.getpass("Password: ")
        p2 = getpass.getpass("Again: ")
        if p1 != p2:
            raise CtlError("the passwords differ")
        return p1
    line = sys.stdin.readline()
    return line.rstrip("\r\n")


def _split_jid(ctl: Ctl, text: str) -> str:
    from .jid import JID, JIDError

    try:
        jid = JID.parse(text)
    except JIDError as exc:
        raise CtlError(f"{text!r} is not a valid JID: {exc}") from None
    if jid.local is None or jid.resource is not None:
        raise CtlError(f"{text!r} must be a bare JID like user@{ctl.config.server.domain}")
    if jid.domain != ctl.config.server.domain:
        raise CtlError(f"{jid.domain} is not served here (server.domain is {ctl.config.server.domain})")
    return jid.local


async def _user_add(ctl: Ctl, args: argparse.Namespace) -> int:
    from .accounts import AccountExists

    username = _split_jid(ctl, args.jid)
    svc = await ctl.accounts()
    try:
        await svc.create(username, _read_password(args.password))
    except AccountExists:
        raise CtlError(f"{args.jid} already exists") from None
    print(f"created {username}@{ctl.config.server.domain}")
    return 0


async def _user_del(ctl: Ctl, args: argparse.Namespace) -> int:
    username = _split_jid(ctl, args.jid)
    svc = await ctl.accounts()
    if not await svc.delete(username):
        raise CtlError(f"{args.jid} does not exist")
    print(f"deleted {username}@{ctl.config.server.domain}")
    return 0


async def _user_passwd(ctl: Ctl, args: argparse.Namespace) -> int:
    from .accounts import AccountNotFound

    username = _split_jid(ctl, args.jid)
    svc = await ctl.accounts()
    try:
        await svc.set_password(username, _read_password(args.password))
    except AccountNotFound:
        raise CtlError(f"{args.jid} does not exist") from None
    print(f"password changed for {username}@{ctl.config.server.domain}")
    return 0


async def _user_list(ctl: Ctl, args: argparse.Namespace) -> int:
    svc = await ctl.accounts()
    accounts = await svc.repo.list(args.domain)
    for account in accounts:
        flag = "  (disabled)" if account.disabled else ""
        print(f"{account.username}@{account.domain}{flag}")
    if not accounts:
        print("xmppctl: no accounts" + (f" on {args.domain}" if args.domain else ""), file=sys.stderr)
    return 0


async def _db_upgrade(ctl: Ctl, args: argparse.Namespace) -> int:
    from .storage import migrations

    db = await ctl.db(upgrade_embedded=False)
    applied = await migrations.upgrade(db, ctl.migration_locations())
    print(f"applied {len(applied)} migrations" + (f": {', '.join(applied)}" if applied else " (already up to date)"))
    return 0


async def _check(ctl: Ctl, args: argparse.Namespace) -> int:
    from .transport import tls

    cfg = ctl.config
    if cfg.tls.cert:
        try:
            tls.make_server_context(Path(cfg.tls.cert), Path(cfg.tls.key))
        except tls.CertificateError as exc:
            raise CtlError(f"tls: {exc}") from None
    from .storage.engine import Database, redact_url

    db = Database.from_url(cfg.storage_url) if not cfg.is_embedded_storage else None
    if db is not None:
        try:
            async with db.transaction(readonly=True) as conn:
                import sqlalchemy as sa

                await asyncio.wait_for(conn.execute(sa.text("SELECT 1")), 10)
        except Exception as exc:
            raise CtlError(f"storage.url {redact_url(cfg.storage_url)} cannot be reached: {exc}") from None
        finally:
            await db.dispose()
    if cfg.cluster.redis_url:
        from .cluster.status import check_reachable

        await check_reachable(cfg.cluster.redis_url)
    features = ", ".join(c.name for c in order(ctl.classes, cfg.features.disabled))
    print(f"configuration {cfg.source} is valid; domain {cfg.server.domain}; {ctl.describe_storage()}; features: {features}")
    return 0


def xmppctl_parser(classes: dict[str, type[Feature]]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xmppctl", description="Manage an xmppd server's data through its storage.")
    _common(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    user = sub.add_parser("user", help="accounts: add, del, passwd, list").add_subparsers(dest="verb", metavar="VERB", required=True)
    p = user.add_parser("add", help="create an account (password from stdin when --password is not given)")
    p.add_argument("jid")
    p.add_argument("--password")
    p.set_defaults(func=_user_add)
    p = user.add_parser("del", help="delete an account and its data")
    p.add_argument("jid")
    p.set_defaults(func=_user_del)
    p = user.add_parser("passwd", help="change an account's password")
    p.add_argument("jid")
    p.add_argument("--password")
    p.set_defaults(func=_user_passwd)
    p = user.add_parser("list", help="list accounts")
    p.add_argument("domain", nargs="?")
    p.set_defaults(func=_user_list, readonly=True)

    db = sub.add_parser("db", help="storage: upgrade").add_subparsers(dest="verb", metavar="VERB", required=True)
    db.add_parser("upgrade", help="apply schema migrations").set_defaults(func=_db_upgrade)

    sub.add_parser("check", help="validate the configuration and exit non-zero with the reason").set_defaults(func=_check)
    from .cluster.status import add_cli as add_cluster_cli

    add_cluster_cli(sub)
    from .webhooks.cli import add_cli as add_webhooks_cli

    add_webhooks_cli(sub)
    for cls in classes.values():
        cls.register_cli(sub)  # features add their own verbs (wallet topup ...)
    return parser


def xmppctl_main(argv: list[str] | None = None) -> int:
    try:
        classes = discover()
    except FeatureLoadError as exc:
        print(f"xmppctl: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    args = xmppctl_parser(classes).parse_args(argv)
    try:
        cfg, classes = load_config(args.config, args.overrides)
    except ConfigError as exc:
        print(f"xmppctl: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    async def main() -> int:
        ctl = Ctl(cfg, classes, readonly=getattr(args, "readonly", False))
        try:
            return await args.func(ctl, args)
        except CtlError as exc:
            print(f"xmppctl: {exc}", file=sys.stderr)
            return 1
        finally:
            await ctl.close()

    try:
        return run(main)
    except Exception as exc:  # storage unreachable, bad data: one clear line, not a traceback
        from .accounts import InvalidAccount

        if isinstance(exc, InvalidAccount):
            print(f"xmppctl: {exc}", file=sys.stderr)
            return 1
        print(f"xmppctl: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # how the server.workers supervisor starts each worker
    sys.exit(xmppd_main())
