"""Events that the client-stream core gives its driver: questions to answer and facts to act on."""
from __future__ import annotations

from dataclasses import dataclass, field

from lxml import etree

from ..errors import SaslCondition, StreamErrorCondition
from ..jid import JID


@dataclass(frozen=True, slots=True)
class StreamOpened:
    """A stream header arrived and was answered; ``restart`` after TLS or SASL."""

    to: str | None
    lang: str
    restart: bool


@dataclass(frozen=True, slots=True)
class TlsRequested:
    """STARTTLS was accepted (``<proceed/>`` is queued): the driver upgrades the transport,
    then calls ``tls_established``."""


@dataclass(frozen=True, slots=True)
class CredentialsNeeded:
    """SASL needs the stored credentials of ``username``; answer with ``credentials_result``."""

    username: str
    hash_name: str
    mechanism: str


@dataclass(frozen=True, slots=True)
class VerificationNeeded:
    """SASL needs ``secret`` (a PLAIN password or token, an OAUTHBEARER token) checked by the
    server's authority for it (docs/auth.md); ``username`` is the prepared account named by the
    client, None when it named none. Answer with ``verification_result``."""

    username: str | None
    secret: str = field(repr=False)
    mechanism: str


@dataclass(frozen=True, slots=True)
class AnonymousLogin:
    """SASL ANONYMOUS on the anonymous host (RFC 4505): admit the guest (limits) and answer
    ``verification_result`` with a fresh random username, or None and the failure."""

    trace: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class AuthFailed:
    """A SASL failure; ``username`` is the prepared account name tried, None when there is none."""

    username: str | None
    condition: SaslCondition


@dataclass(frozen=True, slots=True)
class Authenticated:
    """SASL succeeded for the account ``username`` (prepared)."""

    username: str
    mechanism: str


@dataclass(frozen=True, slots=True)
class PreAuthIq:
    """An iq allowed before authentication (in-band registration); answer with ``send_element``."""

    element: etree._Element


@dataclass(frozen=True, slots=True)
class BindRequested:
    """Resource binding; answer with ``bind_result`` or ``bind_error``."""

    iq_id: str
    resource: str | None


@dataclass(frozen=True, slots=True)
class StanzaReceived:
    """A message, presence or iq from the bound client, ``from`` already stamped."""

    element: etree._Element
    kind: str  # "message" | "presence" | "iq"
    to: JID | None


@dataclass(frozen=True, slots=True)
class NonzaReceived:
    """A top-level element in a namespace a feature registered (stream management, CSI, ...)."""

    element: etree._Element


@dataclass(frozen=True, slots=True)
class StanzaRejected:
    """A stanza answered with an error by the core itself (bad ``to``); nothing to do but count."""

    condition: str
    replied: bool = False  # the core wrote an error reply (a stanza the client counts)


@dataclass(frozen=True, slots=True)
class AuthUnavailable:
    """The stream could offer no way to authenticate (TLS is required and this connection has
    none, nor STARTTLS): the core closed it with ``policy-violation`` and ``text`` instead of
    sending empty features; the driver logs why and what to change. ``StreamClosed`` follows."""

    text: str


@dataclass(frozen=True, slots=True)
class StreamClosed:
    """The stream is over; ``error`` is the condition we sent, or None for a clean close."""

    error: StreamErrorCondition | None
    text: str | None = None
    by_peer: bool = False
    lost: bool = False  # the connection went away without a close (XEP-0198 may hibernate)
