"""Which usernames may be created: reserved names, their look-alikes, and names of our services.

Every door that creates accounts (in-band registration, the admin command, ``xmppctl user add``)
goes through ``AccountService.create``, which asks :meth:`UsernamePolicy.refusal`. A name is
refused when

- it is one of ``registration.reserved_names``, or *confusable* with one: its Unicode TR 39
  skeleton (ICU's ``SpoofChecker``, the reference implementation) is a reserved name's
  skeleton, so ``admіn`` with a Cyrillic і or ``adrnin`` stands for ``admin``;
- it matches a pattern a feature reserves for its own addresses (``Feature.reserved_usernames``,
  e.g. the customer-service session JIDs ``s-<hex>``), also after non-ASCII look-alikes are
  replaced by the ASCII characters they imitate;
- it looks like a domain we serve (``conference.localhost`` as a username), or one below it;
- it names one of ``server.admins`` and the request is public (in-band registration): only an
  operator may create an admin's account. Operators may create admins' accounts even when the
  name is reserved (``admin@example.com`` in ``server.admins`` is the usual first account).

Names arrive prepared (RFC 7622 localpart, so already lower-case and NFC); the reserved names
are prepared the same way when the policy is built.
"""
from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .jid import JID, JIDError, prepare_username

if TYPE_CHECKING:
    from .config import Config

__all__ = ["DEFAULT_RESERVED_NAMES", "UsernamePolicy", "ascii_lookalike", "skeleton"]

#: Names that speak for the service or its operators (RFC 2142 mailbox names and the like).
DEFAULT_RESERVED_NAMES: tuple[str, ...] = (
    "admin", "administrator", "root", "sysadmin", "system", "server", "xmpp", "operator",
    "postmaster", "hostmaster", "webmaster", "abuse", "security", "noc", "support", "help",
    "info", "noreply", "no-reply", "nobody", "mailer-daemon", "moderator", "staff", "official",
)


@functools.cache
def _checker() -> Any:
    import icu  # PyICU: imported on first use (building the checker loads ICU's data)

    return icu.SpoofChecker()


def skeleton(text: str) -> str:
    """The UTS #39 §4 skeleton: two strings are confusable when their skeletons are equal."""
    return str(_checker().getSkeleton(0, text))


def ascii_lookalike(text: str) -> str:
    """``text`` with each non-ASCII character that imitates ASCII replaced by what it imitates
    (Cyrillic ``ѕ`` -> ``s``); ASCII stays as it is, so ASCII patterns can be matched."""
    out = []
    for ch in text:
        if not ch.isascii():
            sk = skeleton(ch)
            if sk.isascii():
                ch = sk
        out.append(ch)
    return "".join(out)


def _prepare(name: str, domain: str, what: str) -> str:
    try:
        return prepare_username(name, domain)
    except JIDError as exc:
        raise ValueError(f"{what} {name!r} is not a valid username: {exc}") from None


@dataclass(frozen=True)
class UsernamePolicy:
    """Build with :meth:`build` (or :meth:`from_config`); ask :meth:`refusal`."""

    reserved: dict[str, str]  # skeleton -> reserved name
    patterns: tuple[tuple[re.Pattern[str], str], ...]  # (pattern, feature that reserves it)
    admins: frozenset[str]  # prepared local parts of server.admins on our domain
    domains: Callable[[], Iterable[str]]  # the domains served, asked at each check
    _domain_skeletons: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def build(
        cls,
        domain: str,
        reserved: Iterable[str],
        *,
        patterns: Iterable[tuple[str, str]] = (),
        admins: Iterable[str] = (),
        domains: Callable[[], Iterable[str]] | None = None,
    ) -> "UsernamePolicy":
        """``reserved`` names (prepared here; ValueError names a bad one), ``patterns`` as
        (regex matched against the whole name, who reserves it), ``admins`` bare JIDs."""
        table = {}
        for name in reserved:
            prepared = _prepare(name, domain, "reserved name")
            table[skeleton(prepared)] = prepared
        admin_locals = set()
        for admin in admins:
            jid = JID.parse(admin)
            if jid.domain == domain and jid.local is not None:
                admin_locals.add(jid.local)
        compiled = tuple((re.compile(p), owner) for p, owner in patterns)
        return cls(table, compiled, frozenset(admin_locals), domains or (lambda: (domain,)))

    @classmethod
    def from_config(
        cls,
        config: "Config",
        feature_classes: Iterable[type],
        domains: Callable[[], Iterable[str]] | None = None,
    ) -> "UsernamePolicy":
        """The policy of a configuration and its loaded features. Without ``domains`` (no
        running server: xmppctl), the served domains are ``server.domain`` and every
        feature section's non-empty ``domain`` option (the defaults lie below server.domain,
        which is covered anyway)."""
        domain = config.server.domain
        if domains is None:
            served = {domain}
            for options in config.sections.values():
                d = getattr(options, "domain", None)
                if isinstance(d, str) and d:
                    served.add(d)
            frozen = tuple(sorted(served))
            domains = lambda: frozen  # noqa: E731
        patterns = [(p, getattr(c, "name", c.__name__)) for c in feature_classes for p in getattr(c, "reserved_usernames", ())]
        return cls.build(domain, config.registration.reserved_names, patterns=patterns, admins=config.server.admins, domains=domains)

    def _domain_skeleton(self, domain: str) -> str:
        sk = self._domain_skeletons.get(domain)
        if sk is None:
            sk = self._domain_skeletons[domain] = skeleton(domain)
        return sk

    def refusal(self, username: str, *, public: bool) -> str | None:
        """Why the prepared ``username`` may not be created, or None. ``public``: the name was
        chosen by a stranger (in-band registration), not by an operator."""
        if username in self.admins:
            return f"the username {username!r} is reserved" if public else None
        sk = skeleton(username)
        reserved = self.reserved.get(sk)
        if reserved is not None:
            if reserved == username:
                return f"the username {username!r} is reserved"
            return f"the username {username!r} is reserved: it looks like {reserved!r}"
        plain = ascii_lookalike(username)
        for pattern, owner in self.patterns:
            if pattern.fullmatch(username) or pattern.fullmatch(plain):
                return f"the username {username!r} is reserved for the addresses of {owner}"
        # The most specific domain it imitates: itself, else the longest one it lies below.
        like = [(sk == dsk, len(dsk), d) for d in self.domains() if sk == (dsk := self._domain_skeleton(d)) or sk.endswith("." + dsk)]
        if like:
            return f"the username {username!r} looks like the domain {max(like)[2]}, which this server serves"
        return None
