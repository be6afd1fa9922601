"""Configuration: one TOML file, typed and validated at start.

Core sections are dataclasses here; every feature declares its own ``Options`` dataclass,
read from the top-level section named after the feature (``[muc]``, ``[redpacket]`` ...).
Unknown sections and keys are errors that name the key; so are values of the wrong type.
``--set SECTION.KEY=VALUE`` overrides are applied after the file, VALUE read as TOML with a
bare word taken as a string.
"""
from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from .usernames import DEFAULT_RESERVED_NAMES


class ConfigError(Exception):
    """A configuration problem, described in one line that names the key."""


# ------------------------------------------------------------------------ declared bounds
#
# Every number and every enumerated string an option takes declares what it accepts, on the
# field's type: ``max_amount: PositiveInt = 20000`` or ``mode: Annotated[str, OneOf("a", "b")]``.
# ``build`` checks them while it reads the file and the ``--set`` overrides, so ``xmppctl check``
# and start-up refuse the same values with the same one line (and a test fails any numeric option
# that declares no bound). Rules that relate several keys stay in the options' ``__post_init__``,
# raising ValueError with a text that names the keys; ``build`` turns that into a ConfigError.


@dataclass(frozen=True, slots=True)
class AtLeast:
    bound: float

    def problem(self, value: Any) -> str | None:
        return None if value >= self.bound else f"must be at least {_num(self.bound)}"


@dataclass(frozen=True, slots=True)
class MoreThan:
    bound: float

    def problem(self, value: Any) -> str | None:
        return None if value > self.bound else f"must be more than {_num(self.bound)}"


@dataclass(frozen=True, slots=True)
class AtMost:
    bound: float

    def problem(self, value: Any) -> str | None:
        return None if value <= self.bound else f"must be at most {_num(self.bound)}"


@dataclass(frozen=True, slots=True)
class OneOf:
    choices: tuple[Any, ...]

    def __init__(self, *choices: Any) -> None:
        object.__setattr__(self, "choices", choices)

    def problem(self, value: Any) -> str | None:
        if value in self.choices:
            return None
        names = [repr(c) if isinstance(c, str) else str(c) for c in self.choices]
        return "must be " + (", ".join(names[:-1]) + " or " + names[-1] if len(names) > 1 else names[0])


Constraint = AtLeast | MoreThan | AtMost | OneOf

PositiveInt = Annotated[int, AtLeast(1)]
NonNegativeInt = Annotated[int, AtLeast(0)]
Positive = Annotated[float, MoreThan(0)]  # a duration or rate that must not be zero
NonNegative = Annotated[float, AtLeast(0)]  # 0 usually turns the thing off


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def constraints_of(tp: Any) -> tuple[Constraint, ...]:
    """The bounds declared on an option's type (empty when none)."""
    if typing.get_origin(tp) is Annotated:
        return tuple(m for m in tp.__metadata__ if isinstance(m, Constraint))
    return ()


@dataclass(frozen=True, slots=True)
class ServerOptions:
    domain: str = "localhost"
    admins: list[str] = field(default_factory=list)
    data_dir: str = "./data"
    name: str = "xmppd"
    default_lang: str = "en"  # language of server texts for clients that name none (xmppd/i18n.py)
    # Processes on this machine sharing the listeners (SO_REUSEPORT), each a cluster node; 0: one
    # per core. More than one needs cluster.redis_url (docs/cluster.md).
    workers: NonNegativeInt = 1


@dataclass(frozen=True, slots=True)
class ListenOptions:
    c2s: str = "127.0.0.1:5222"
    c2s_tls: str = "127.0.0.1:5223"
    http: str = "127.0.0.1:5280"


@dataclass(frozen=True, slots=True)
class C2SOptions:
    require_tls: bool = True
    max_stanza_size: PositiveInt = 262144
    preauth_max_stanza_size: PositiveInt = 10240
    max_depth: PositiveInt = 64
    auth_timeout: Positive = 30.0
    tls_handshake_timeout: Positive = 15.0
    max_connections_per_ip: PositiveInt = 32
    max_sessions_per_account: PositiveInt = 10
    max_auth_attempts: PositiveInt = 3
    # Password guessing (core/limits.AuthThrottle, docs/security.md): failures from one
    # address, or for one account from one address, within the window get further attempts
    # from that address temporary-auth-failure; failures for one account from everywhere only
    # make its later attempts wait (doubling from 0.5 s, at most auth_delay_max seconds).
    auth_failures_per_ip: PositiveInt = 10
    auth_failures_per_account: PositiveInt = 5
    auth_failure_window: Positive = 300.0
    auth_delay_max: Annotated[float, AtLeast(0), AtMost(60)] = 5.0
    write_buffer_limit: PositiveInt = 1048576
    # Inbound shaping per session (token buckets, see docs/security.md): bytes and top-level
    # elements a second, and how many may come at once. A rate of 0 turns that bucket off.
    rate_bytes: NonNegative = 32768.0
    burst_bytes: NonNegativeInt = 131072
    rate_stanzas: NonNegative = 50.0
    burst_stanzas: NonNegativeInt = 500
    preauth_rate_bytes: NonNegative = 2048.0
    preauth_burst_bytes: NonNegativeInt = 16384
    preauth_rate_stanzas: NonNegative = 5.0
    preauth_burst_stanzas: NonNegativeInt = 30
    # Seconds a session may stay slowed down by the stanza rate without a break (or hold a
    # backlog worth that long) before policy-violation ends it.
    flood_grace: Positive = 30.0
    # Seconds a stanza may stay half-received (begun, not ended) before connection-timeout.
    stanza_timeout: Positive = 60.0


@dataclass(frozen=True, slots=True)
class TlsOptions:
    cert: str = ""
    key: str = ""


@dataclass(frozen=True, slots=True)
class StorageOptions:
    url: str = ""
    pool_size: PositiveInt = 10
    auto_upgrade: bool | None = None  # None: only on the embedded SQLite default


@dataclass(frozen=True, slots=True)
class RegistrationOptions:
    open: bool = False
    min_password_length: PositiveInt = 8
    # In-band registrations accepted from one address per hour (XEP-0077 §8 abuse control).
    per_ip_per_hour: NonNegativeInt = 5
    # Usernames no door creates, nor any name confusable with them (xmppd/usernames.py).
    reserved_names: list[str] = field(default_factory=lambda: list(DEFAULT_RESERVED_NAMES))


@dataclass(frozen=True, slots=True)
class LogOptions:
    level: Annotated[str, OneOf("debug", "info", "warning", "error", "critical")] = "info"
    wire: bool = False  # full XML on the xmppd.wire logger at DEBUG


@dataclass(frozen=True, slots=True)
class FeaturesOptions:
    disabled: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class HttpOptions:
    """The HTTP listener: XMPP over WebSocket (RFC 7395) and host-meta (XEP-0156)."""

    tls: bool = False  # serve https/wss on listen.http with the server certificate
    trusted_proxies: list[str] = field(default_factory=list)  # IPs/CIDRs whose X-Forwarded-* count
    # Every WebSocket counts as secure for c2s.require_tls (Prosody's name): development, or
    # behind your own TLS that cannot be listed in trusted_proxies. Never on a public ws://.
    consider_websocket_secure: bool = False
    cors_origins: list[str] = field(default_factory=lambda: ["*"])  # Origins allowed; "*": any
    ws_ping_interval: Positive = 30.0
    ws_ping_timeout: Positive = 15.0
    max_message_size: NonNegativeInt = 0  # 0: c2s.max_stanza_size
    public_url: str = ""  # advertised in host-meta; "": from the request's Host and scheme


@dataclass(frozen=True, slots=True)
class ClusterOptions:
    """Several nodes serving one domain (docs/cluster.md); nothing connects when redis_url is ""."""

    redis_url: str = ""  # "": one node; redis://host:6379/0 joins every node on that Redis
    node: str = ""  # this node's unique name; "": <host name>:<c2s port>
    heartbeat: Positive = 2.0  # seconds between two renewals of this node's registry entry
    # Seconds after its last heartbeat by which the other nodes know a dead node is down.
    node_timeout: Annotated[float, MoreThan(0), AtMost(60)] = 10.0
    prefix: str = "xmppd"  # every Redis key and channel starts with "<prefix>:"
    # Entries kept in a node's bus stream (XADD MAXLEN ~): bounds Redis's memory for a node
    # that stopped reading; a live node removes each entry once handled.
    bus_max: Annotated[int, MoreThan(0)] = 100000
    # Seconds a node resuming a session (XEP-0198) waits for the node that held it to hand it
    # over; also how long a node that stops gracefully keeps its stream-management sessions for
    # their clients to resume on another node before it stores their messages offline.
    handover_timeout: Annotated[float, MoreThan(0), AtMost(60)] = 5.0
    # The address ("host" or "host:port") clients are sent to when another node leaves
    # (see-other-host); "": the c2s listen address if it names one, else the host name, with the
    # c2s port.
    address: str = ""

    def __post_init__(self) -> None:
        if self.node_timeout < 3 * self.heartbeat:
            raise ValueError(
                f"cluster.node_timeout ({_num(self.node_timeout)}) must be at least three cluster.heartbeat "
                f"({_num(self.heartbeat)}): a live node must get several renewals in before it counts as down"
            )
        if self.redis_url and not self.redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(f"cluster.redis_url must start with redis://, rediss:// or unix://, not {self.redis_url!r}")
        if not self.prefix or any(c in self.prefix for c in " {}*?[]"):
            raise ValueError(f"cluster.prefix {self.prefix!r} must be a non-empty word without spaces, braces or glob characters")
        if any(c in self.node for c in " {}*?[]"):
            raise ValueError(f"cluster.node {self.node!r} must not contain spaces, braces or glob characters")


@dataclass(frozen=True, slots=True)
class AuthOptions:
    """Logins with the app's identity (docs/auth.md): JWT and the HTTP auth callback."""

    jwt_secret: str = field(default="", repr=False)  # HS256 key; never logged
    jwt_public_key: str = ""  # path of a PEM public key: RS256 or ES256 tokens
    jwt_jid_claim: str = "jid"  # the claim naming the user: a bare JID or a local part
    jwt_issuer: str = ""  # "": iss not checked
    jwt_audience: str = ""  # "": aud not checked
    jwt_create_accounts: bool = True
    password_login: bool = True
    http_url: str = ""  # "": no callback
    http_timeout: Positive = 3.0
    http_retries: Annotated[int, AtLeast(0), AtMost(5)] = 1
    http_cache_seconds: NonNegative = 60.0

    def __post_init__(self) -> None:
        if self.jwt_secret and self.jwt_public_key:
            raise ValueError("auth.jwt_secret and auth.jwt_public_key exclude each other: set one")
        if self.jwt_secret and len(self.jwt_secret.encode()) < 32:
            raise ValueError("auth.jwt_secret must have at least 32 bytes (RFC 7518 §3.2: HS256 needs a 256-bit key)")
        if self.http_url and not self.http_url.startswith(("http://", "https://")):
            raise ValueError(f"auth.http_url must start with http:// or https://, not {self.http_url!r}")
        if not self.jwt_jid_claim:
            raise ValueError("auth.jwt_jid_claim must name a claim")
        if not self.password_login and not self.jwt:
            raise ValueError("auth.password_login = false needs auth.jwt_secret or auth.jwt_public_key: otherwise nobody can log in")

    @property
    def jwt(self) -> bool:
        return bool(self.jwt_secret or self.jwt_public_key)


@dataclass(frozen=True, slots=True)
class AnonymousOptions:
    """Anonymous visitors (docs/auth.md, "Anonymous visitors"): a second host on which the only
    login is SASL ANONYMOUS (RFC 4505, XEP-0175), for a website's chat widget. Off when domain is ""."""

    domain: str = ""  # "": off; e.g. "guest.example.com" (not server.domain)
    # Where visitors may send stanzas besides the customer-service domain and the server itself
    # (iq get only): domains ("conference.example.com") or bare JIDs ("sales@example.com").
    allow_to: list[str] = field(default_factory=list)
    # Anonymous logins accepted from one address (an IPv4 address, an IPv6 /64) per minute.
    logins_per_ip_per_minute: PositiveInt = 10
    # Anonymous sessions at the same time: on this node, and from one address.
    max_sessions: PositiveInt = 1000
    max_sessions_per_ip: PositiveInt = 5


@dataclass(frozen=True, slots=True)
class WebhooksOptions:
    """Events POSTed to the app's backend (docs/webhooks.md); nothing is written when url is ""."""

    url: str = ""  # "": no events are written or sent
    secret: str = field(default="", repr=False)  # HMAC-SHA256 key of X-Xmppd-Signature; never logged
    events: list[str] = field(default_factory=list)  # names or AREA.*; []: every event
    timeout: Annotated[float, MoreThan(0), AtMost(60)] = 10.0
    retry_min: Annotated[float, AtLeast(0.1), AtMost(3600)] = 1.0
    retry_max: Annotated[float, AtLeast(1), AtMost(86400)] = 600.0
    dead_after: Annotated[float, AtLeast(1), AtMost(2592000)] = 86400.0
    concurrency: Annotated[int, AtLeast(1), AtMost(256)] = 8
    poll_interval: Annotated[float, MoreThan(0), AtMost(60)] = 1.0

    def __post_init__(self) -> None:
        from .webhooks.events import check_filter

        if self.url and not self.url.startswith(("http://", "https://")):
            raise ValueError(f"webhooks.url must start with http:// or https://, not {self.url!r}")
        if self.url and len(self.secret.encode()) < 16:
            raise ValueError("webhooks.secret must have at least 16 bytes when webhooks.url is set (the app checks every request's signature with it)")
        if self.retry_max < self.retry_min:
            raise ValueError("webhooks.retry_max must be at least webhooks.retry_min")
        check_filter(self.events)


@dataclass(frozen=True, slots=True)
class ApiToken:
    """One bearer token of the REST API: ``admin`` may do everything, ``read`` only GET."""

    token: str = field(default="", repr=False)  # never logged
    scope: Annotated[str, OneOf("admin", "read")] = "read"
    name: str = ""  # who holds it, for the logs ("" : "token <n>")

    def __post_init__(self) -> None:
        if len(self.token) < 24 or not self.token.isascii() or not self.token.isprintable() or " " in self.token:
            raise ValueError("api.tokens: every token must be at least 24 printable ASCII characters without spaces")


@dataclass(frozen=True, slots=True)
class ApiOptions:
    """The REST API on listen.http under /api/v1 (docs/api.md)."""

    tokens: list[ApiToken] = field(default_factory=list)  # none: every call is refused (401)
    max_page: Annotated[int, AtLeast(1), AtMost(1000)] = 100  # the largest `limit` a list accepts
    max_body: Annotated[int, AtLeast(1024), AtMost(1048576)] = 65536  # bytes of a request body

    def __post_init__(self) -> None:
        seen = set()
        for t in self.tokens:
            if t.token in seen:
                raise ValueError("api.tokens: the same token is listed twice")
            seen.add(t.token)


@dataclass(frozen=True, slots=True)
class MetricsOptions:
    """/metrics (Prometheus text format) and /health on listen.http."""

    allow: list[str] = field(default_factory=lambda: ["127.0.0.1", "::1"])  # IPs/CIDRs that may read /metrics
    health_timeout: Annotated[float, MoreThan(0), AtMost(30)] = 2.0  # seconds storage has to answer /health


CORE_SECTIONS: dict[str, type] = {
    "server": ServerOptions,
    "listen": ListenOptions,
    "c2s": C2SOptions,
    "tls": TlsOptions,
    "storage": StorageOptions,
    "registration": RegistrationOptions,
    "log": LogOptions,
    "features": FeaturesOptions,
    "http": HttpOptions,
    "cluster": ClusterOptions,
    "auth": AuthOptions,
    "anonymous": AnonymousOptions,
    "webhooks": WebhooksOptions,
    "api": ApiOptions,
    "metrics": MetricsOptions,
}


@dataclass(frozen=True)
class Config:
    server: ServerOptions
    listen: ListenOptions
    c2s: C2SOptions
    tls: TlsOptions
    storage: StorageOptions
    registration: RegistrationOptions
    log: LogOptions
    features: FeaturesOptions
    http: HttpOptions
    cluster: ClusterOptions
    auth: AuthOptions
    anonymous: AnonymousOptions
    webhooks: WebhooksOptions
    api: ApiOptions
    metrics: MetricsOptions
    sections: Mapping[str, Any]  # every section, features' included, as typed options
    source: str = "<defaults>"

    @property
    def data_dir(self) -> Path:
        return Path(self.server.data_dir)

    @property
    def storage_url(self) -> str:
        return self.storage.url or f"sqlite+aiosqlite:///{(self.data_dir / 'xmppd.db').as_posix()}"

    @property
    def is_embedded_storage(self) -> bool:
        return not self.storage.url

    def section(self, name: str) -> Any:
        return self.sections[name]


def parse_override(text: str) -> tuple[str, str, Any]:
    """``SECTION.KEY=VALUE`` -> (section, key, value); VALUE as TOML, else a bare string."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected SECTION.KEY=VALUE")
    path, raw = text.split("=", 1)
    path = path.strip()
    if path.count(".") != 1 or not all(path.split(".")):
        raise ConfigError(f"--set {text!r}: the key must be SECTION.KEY")
    section, key = path.split(".")
    raw = raw.strip()
    if raw == "":
        value: Any = ""
    else:
        try:
            value = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw
    return section, key, value


def load_raw(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None


def build(raw: Mapping[str, Any], feature_sections: Mapping[str, type], overrides: list[str] = (), source: str = "<defaults>") -> Config:  # type: ignore[assignment]
    data: dict[str, dict[str, Any]] = {}
    known = {**CORE_SECTIONS, **feature_sections}
    for section, values in raw.items():
        if section not in known:
            raise ConfigError(f"unknown section [{section}] (known: {', '.join(sorted(known))})")
        if not isinstance(values, dict):
            raise ConfigError(f"{section} must be a table")
        data[section] = dict(values)
    for ov in overrides:
        section, key, value = parse_override(ov)
        if section not in known:
            raise ConfigError(f"--set {section}.{key}: unknown section [{section}]")
        data.setdefault(section, {})[key] = value
    sections = {name: make_options(cls, data.get(name, {}), name) for name, cls in known.items()}
    cfg = Config(**{k: sections[k] for k in CORE_SECTIONS}, sections=sections, source=source)
    _validate(cfg)
    return cfg


def make_options(cls: type, values: Mapping[str, Any], section: str) -> Any:
    """Build a frozen options dataclass from a table, checking names and types."""
    hints = typing.get_type_hints(cls, include_extras=True)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in values.items():
        if key not in names:
            raise ConfigError(f"unknown key {section}.{key} (known: {', '.join(sorted(names))})")
        kwargs[key] = _coerce(value, hints[key], f"{section}.{key}")
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as exc:  # a rule across keys, from the options' __post_init__
        text = str(exc)
        raise ConfigError(text if text.startswith(f"{section}.") or text.startswith(f"{section}:") else f"[{section}] {text}") from None


def _coerce(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if origin is Annotated:
        result = _coerce(value, tp.__origin__, key)
        for c in constraints_of(tp):
            problem = c.problem(result)
            if problem:
                raise ConfigError(f"{key} {problem}, not {value!r}")
        return result
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{key}: invalid value {value!r}")
    if origin is list:
        (item,) = typing.get_args(tp) or (Any,)
        if not isinstance(value, list):
            raise ConfigError(f"{key} must be a list, not {type(value).__name__} {value!r}")
        return [_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key} must be a table, not {type(value).__name__}")
        return dict(value)
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false, not {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key} must be an integer, not {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key} must be a number, not {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key} must be a string, not {value!r}")
        return value
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{key} must be a table")
        return make_options(tp, value, key)
    raise ConfigError(f"{key}: unsupported option type {tp!r}")


def parse_hostport(value: str, key: str) -> tuple[str, int] | None:
    """``"127.0.0.1:5222"`` / ``"[::1]:5222"`` -> (host, port); ``""`` -> None (listener off)."""
    if value == "":
        return None
    if value.startswith("["):
        host, sep, port = value[1:].partition("]:")
    else:
        host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"{key} must be HOST:PORT (or empty to turn it off), not {value!r}")
    return host, int(port)


def _validate(cfg: Config) -> None:
    from .jid import JID, JIDError

    try:
        d = JID.parse(cfg.server.domain)
    except JIDError as exc:
        raise ConfigError(f"server.domain {cfg.server.domain!r} is not a valid domain: {exc}") from None
    if not d.is_domain:
        raise ConfigError(f"server.domain {cfg.server.domain!r} must be a bare domain")
    for i, admin in enumerate(cfg.server.admins):
        try:
            a = JID.parse(admin)
        except JIDError as exc:
            raise ConfigError(f"server.admins[{i}] {admin!r} is not a valid JID: {exc}") from None
        if a.resource is not None or a.local is None:
            raise ConfigError(f"server.admins[{i}] {admin!r} must be a bare JID like user@domain")
    from .i18n import normalise

    if normalise(cfg.server.default_lang) is None:
        raise ConfigError(f"server.default_lang {cfg.server.default_lang!r} is not a language tag such as en or zh-Hans")
    for key in ("c2s", "c2s_tls", "http"):
        parse_hostport(getattr(cfg.listen, key), f"listen.{key}")
    for i, name in enumerate(cfg.registration.reserved_names):
        try:
            a = JID.parse(f"{name}@{cfg.server.domain}")
        except JIDError as exc:
            raise ConfigError(f"registration.reserved_names[{i}] {name!r} is not a valid username: {exc}") from None
        if a.resource is not None or "@" in name or "/" in name:
            raise ConfigError(f"registration.reserved_names[{i}] {name!r} is not a valid username")
    _validate_anonymous(cfg)
    if bool(cfg.tls.cert) != bool(cfg.tls.key):
        raise ConfigError("tls.cert and tls.key must be given together")
    _validate_shaping(cfg.c2s)
    _validate_http(cfg)
    workers = effective_workers(cfg.server.workers)
    if workers > 1 and not cfg.cluster.redis_url:
        raise ConfigError(
            f"server.workers = {cfg.server.workers} ({workers} processes) needs cluster.redis_url: "
            "processes serving the same users must be one cluster"
        )
    url = cfg.storage.url
    if url and not (url.startswith("sqlite+aiosqlite://") or url.startswith("mysql+aiomysql://")):
        raise ConfigError(f"storage.url must start with sqlite+aiosqlite:// or mysql+aiomysql://, not {url.split('://')[0]}://")


def _validate_anonymous(cfg: Config) -> None:
    from .jid import JID, JIDError

    a = cfg.anonymous
    if a.domain:
        try:
            d = JID.parse(a.domain)
        except JIDError as exc:
            raise ConfigError(f"anonymous.domain {a.domain!r} is not a valid domain: {exc}") from None
        if not d.is_domain or d.domain != a.domain:
            raise ConfigError(f"anonymous.domain {a.domain!r} must be a bare domain, written as {d.domain!r}")
        if d.domain == JID.parse(cfg.server.domain).domain:
            raise ConfigError("anonymous.domain must not be server.domain: anonymous visitors get a host of their own")
    if a.max_sessions_per_ip > a.max_sessions:
        raise ConfigError("anonymous.max_sessions_per_ip must not exceed anonymous.max_sessions")
    for i, entry in enumerate(a.allow_to):
        try:
            j = JID.parse(entry)
        except JIDError as exc:
            raise ConfigError(f"anonymous.allow_to[{i}] {entry!r} is not a valid domain or JID: {exc}") from None
        if j.resource is not None:
            raise ConfigError(f"anonymous.allow_to[{i}] {entry!r} must be a domain or a bare JID")


def effective_workers(workers: int) -> int:
    """``server.workers`` as a number of processes (0: one per core)."""
    import os

    return workers or os.cpu_count() or 1


def _validate_shaping(c: C2SOptions) -> None:
    for prefix in ("", "preauth_"):
        for unit in ("bytes", "stanzas"):
            rate, burst = getattr(c, f"{prefix}rate_{unit}"), getattr(c, f"{prefix}burst_{unit}")
            if rate and burst < 1:
                raise ConfigError(f"c2s.{prefix}burst_{unit} must be at least 1 when c2s.{prefix}rate_{unit} is not 0")


def _validate_http(cfg: Config) -> None:
    import ipaddress

    h = cfg.http
    for i, net in enumerate(h.trusted_proxies):
        try:
            ipaddress.ip_network(net, strict=False)
        except ValueError:
            raise ConfigError(f"http.trusted_proxies[{i}] {net!r} is not an IP address or CIDR network") from None
    for i, net in enumerate(cfg.metrics.allow):
        try:
            ipaddress.ip_network(net, strict=False)
        except ValueError:
            raise ConfigError(f"metrics.allow[{i}] {net!r} is not an IP address or CIDR network") from None
    if h.public_url and not (h.public_url.startswith("ws://") or h.public_url.startswith("wss://")):
        raise ConfigError(f"http.public_url must be a ws:// or wss:// URL, not {h.public_url!r}")


def default_config_path() -> Path:
    """``./conf/xmppd.toml`` when it exists, else the copy packaged with xmppd."""
    local = Path("conf/xmppd.toml")
    if local.exists():
        return local
    return Path(__file__).with_name("default.toml")
