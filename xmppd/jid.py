"""RFC 7622: XMPP addresses (JIDs), prepared with the PRECIS profiles of precis-i18n.

Parsing is cached: the same strings come back on every stanza of a session, and the hot
path must not redo PRECIS preparation each time.
"""
from __future__ import annotations

import functools
import unicodedata
from dataclasses import dataclass, field

import precis_i18n

_USERNAME = precis_i18n.get_profile("UsernameCaseMapped")
_OPAQUE = precis_i18n.get_profile("OpaqueString")
_LOCAL_FORBIDDEN = frozenset("\"&'/:<>@")
_MAX_PART = 1023


class JIDError(ValueError):
    """The string is not a valid JID (answered with ``jid-malformed``)."""


@dataclass(frozen=True, slots=True, eq=False)
class JID:
    local: str | None
    domain: str
    resource: str | None = None
    # The bare JID (interned: every full JID of an account shares one), the hash and the string,
    # computed once per instance: the router asks for them several times per stanza.
    _bare: "JID | None" = field(default=None, init=False, repr=False, compare=False)
    _hash: int | None = field(default=None, init=False, repr=False, compare=False)
    _str: str | None = field(default=None, init=False, repr=False, compare=False)

    @staticmethod
    def parse(text: str) -> "JID":
        return _parse(text)

    @property
    def bare(self) -> "JID":
        b = self._bare
        if b is None:
            b = self if self.resource is None else _bare_of(self.local, self.domain)
            object.__setattr__(self, "_bare", b)
        return b

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        if other.__class__ is not JID:
            return NotImplemented
        return (
            self.domain == other.domain  # type: ignore[attr-defined]
            and self.local == other.local  # type: ignore[attr-defined]
            and self.resource == other.resource  # type: ignore[attr-defined]
        )

    def __hash__(self) -> int:
        h = self._hash
        if h is None:
            h = hash((self.local, self.domain, self.resource))
            object.__setattr__(self, "_hash", h)
        return h

    def __reduce__(self) -> tuple[type, tuple[str | None, str, str | None]]:
        # Pickles and copies never carry the caches (string hashes differ between processes).
        return (JID, (self.local, self.domain, self.resource))

    @property
    def is_bare(self) -> bool:
        return self.resource is None

    @property
    def is_domain(self) -> bool:
        return self.local is None and self.resource is None

    def with_resource(self, resource: str | None) -> "JID":
        return JID(self.local, self.domain, resource)

    def __str__(self) -> str:
        s = self._str
        if s is None:
            s = _format(self)
            object.__setattr__(self, "_str", s)
        return s


@functools.lru_cache(maxsize=65536)
def _bare_of(local: str | None, domain: str) -> JID:
    return JID(local, domain, None)


@functools.lru_cache(maxsize=65536)
def _format(jid: JID) -> str:
    s = jid.domain
    if jid.local is not None:
        s = f"{jid.local}@{s}"
    if jid.resource is not None:
        s = f"{s}/{jid.resource}"
    return s


def _prep_domain(domain: str) -> str:
    if domain.endswith("."):
        domain = domain[:-1]
    if not domain:
        raise JIDError("empty domainpart")
    if domain.startswith("[") and domain.endswith("]"):  # IPv6 literal
        return domain.lower()
    if domain.isascii():
        d = domain.lower()
    else:
        try:
            d = domain.encode("idna").decode("ascii").lower()
            d = d.encode("ascii").decode("idna")
        except UnicodeError as exc:
            raise JIDError(f"invalid domainpart: {exc}") from None
        # Python's IDNA 2003 codec lets control characters through; IDNA 2008 (RFC 7622 §3.2)
        # disallows them, and no XML could carry them.
        if any(unicodedata.category(c) in ("Cc", "Cs") for c in d):
            raise JIDError(f"invalid character in domainpart {domain!r}")
    for label in d.split("."):
        if not label or len(label) > 63:
            raise JIDError("invalid domain label")
        if d.isascii() and not all(c.isalnum() or c in "-_" for c in label):
            raise JIDError(f"invalid character in domainpart {d!r}")
    if len(d.encode()) > _MAX_PART:
        raise JIDError("domainpart too long")
    return d


@functools.lru_cache(maxsize=65536)
def _parse(text: str) -> JID:
    if not isinstance(text, str) or not text:
        raise JIDError("empty JID")
    slash = text.find("/")
    if slash >= 0:
        rest, resource = text[:slash], text[slash + 1 :]
        if not resource:
            raise JIDError("empty resourcepart")
    else:
        rest, resource = text, None
    at = rest.find("@")
    if at >= 0:
        local, domain = rest[:at], rest[at + 1 :]
        if not local:
            raise JIDError("empty localpart")
    else:
        local, domain = None, rest
    try:
        if local is not None:
            if local.isascii() and local.isalnum():
                local = local.lower()
            else:
                local = _USERNAME.enforce(local)
                if _LOCAL_FORBIDDEN.intersection(local):
                    raise JIDError("forbidden character in localpart")
            if len(local.encode()) > _MAX_PART:
                raise JIDError("localpart too long")
        if resource is not None:
            if not (resource.isascii() and resource.isprintable() and resource.strip() == resource):
                resource = _OPAQUE.enforce(resource)
            if len(resource.encode()) > _MAX_PART:
                raise JIDError("resourcepart too long")
    except UnicodeError as exc:
        raise JIDError(str(exc)) from None
    return JID(local, _prep_domain(domain), resource)


def parse_jid(text: str) -> JID:
    return _parse(text)


def prepare_username(name: str, domain: str) -> str:
    """An account name as stored: the localpart of ``name@domain`` prepared by RFC 7622 (the
    same form every door uses: SASL, registration, xmppctl, the admin commands, the reserved
    names). JIDError says why ``name`` is not one."""
    if "@" in name or "/" in name:
        raise JIDError("a username cannot contain '@' or '/'")
    jid = _parse(f"{name}@{domain}")
    if jid.local is None:
        raise JIDError("a username cannot be empty")
    return jid.local
