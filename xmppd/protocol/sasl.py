"""RFC 6120 §6: SASL negotiation, server side, without I/O.

Mechanisms: SCRAM-SHA-256-PLUS, SCRAM-SHA-1-PLUS (RFC 5802, RFC 7677, channel binding
``tls-server-end-point`` of RFC 5929), SCRAM-SHA-256, SCRAM-SHA-1, PLAIN (RFC 4616) and
OAUTHBEARER (RFC 7628, a JSON Web Token from the app's backend: docs/auth.md) and, on the
anonymous host only, ANONYMOUS (RFC 4505, XEP-0175: the driver makes up the account,
:class:`NeedGuest`).

PLAIN is checked here against stored keys, or, when the server has another authority for it
(tokens, the app's auth callback), handed to the driver as :class:`NeedVerification`, as
OAUTHBEARER's token always is; the driver answers with :meth:`SaslServer.verification_result`.

The server side of SCRAM is written here from RFC 5802 §3 and §7 (a few HMACs over strings
this module has already parsed and checked); the ``scramp`` library derives new credentials
(:func:`make_credentials`) and prepares non-ASCII strings with SASLprep (RFC 4013). Around the
arithmetic: the username is read from the client-first message *before* the account is
looked up (the lookup is a question to the driver, :class:`NeedCredentials`, answered with
:meth:`SaslServer.credentials_result`), the authzid rule, the channel-binding policy, fake
credentials for unknown users, and the mapping of every error to a SASL condition. Every
comparison of a secret or of what the client proves (proof, nonce, channel binding) is
:func:`hmac.compare_digest`.

Credentials are kept only as SCRAM keys (:class:`ScramCredentials`); PLAIN is checked by
recomputing the StoredKey from the offered password (:func:`verify_plain`).

``scramp.core`` imports :mod:`ssl` at module level (for an ``isinstance`` check used by
``tls-unique``). To keep this protocol core free of ssl/socket at import time, scramp is
imported lazily, when credentials are made or a non-ASCII string needs SASLprep; nothing here
performs I/O.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, field
from typing import Final, Literal, TypeAlias

from xmppd import tokens
from xmppd.errors import SaslCondition, SaslFailure
from xmppd.jid import JID, JIDError

HashName: TypeAlias = Literal["SHA-1", "SHA-256"]

#: Iteration count of new credentials; fake credentials for unknown users use it too.
DEFAULT_ITERATIONS: Final = 4096
#: Salt length of new credentials and of fake credentials.
SALT_LENGTH: Final = 16
#: RFC 7622 §3.3: a localpart is at most 1023 octets.
MAX_USERNAME_OCTETS: Final = 1023

CB_TLS_SERVER_END_POINT: Final = "tls-server-end-point"

_HASHLIB: Final[dict[str, str]] = {"SHA-1": "sha1", "SHA-256": "sha256"}
_DIGEST_SIZE: Final[dict[str, int]] = {"SHA-1": 20, "SHA-256": 32}

# mechanism -> (hash, uses channel binding); strongest first.
_SCRAM: Final[dict[str, tuple[HashName, bool]]] = {
    "SCRAM-SHA-256-PLUS": ("SHA-256", True),
    "SCRAM-SHA-1-PLUS": ("SHA-1", True),
    "SCRAM-SHA-256": ("SHA-256", False),
    "SCRAM-SHA-1": ("SHA-1", False),
}
PLAIN: Final = "PLAIN"
OAUTHBEARER: Final = "OAUTHBEARER"
ANONYMOUS: Final = "ANONYMOUS"
MECHANISMS: Final = (*_SCRAM, PLAIN, OAUTHBEARER, ANONYMOUS)
#: RFC 4505 §3: the trace information is at most 255 characters.
MAX_ANONYMOUS_TRACE: Final = 255
#: Longest OAUTHBEARER initial response accepted (a token is a few hundred bytes to a few KB).
MAX_OAUTHBEARER_OCTETS: Final = 16384


# One text for every "wrong secret" outcome, so that nothing tells an unknown user apart.
_AUTH_FAILED: Final = "authentication failed"

_NONCE_RE: Final = re.compile(r"[\x21-\x2b\x2d-\x7e]+")  # printable ASCII except ','
_EXT_RE: Final = re.compile(r"[A-Za-z]=[^,]+")
_CB_NAME_RE: Final = re.compile(r"[A-Za-z0-9.\-]+")
# RFC 5802 §5.1 attribute names: an extension attribute may not reuse one.
_SCRAM_ATTRS: Final = frozenset("anmrcsipve")
#: Random bytes in the server's part of the nonce (RFC 5802 §5.1 "r=": unpredictable).
SERVER_NONCE_BYTES: Final = 18


def saslprep(text: str) -> str:
    """RFC 4013 SASLprep; raises :class:`ValueError` for a prohibited string.

    Printable ASCII is its own preparation (RFC 4013 maps and prohibits only control
    characters and non-ASCII code points, NFKC leaves ASCII alone and no ASCII character is
    RandALCat), so only other strings go through scramp's full implementation.
    """
    if text.isascii() and text.isprintable():
        return text
    from scramp import ScramException
    from scramp.utils import saslprep as full

    try:
        return full(text)  # type: ignore[no-any-return]
    except ScramException as exc:
        raise ValueError(str(exc)) from None


def _server_nonce() -> str:
    return tokens.token_urlsafe(SERVER_NONCE_BYTES)


def _hmac(key: bytes, msg: bytes, algo: str) -> bytes:
    return hmac.digest(key, msg, algo)


# --------------------------------------------------------------------------- credentials


@dataclass(frozen=True, slots=True)
class ScramCredentials:
    """What storage keeps per (user, hash): never the password itself."""

    salt: bytes
    iterations: int
    stored_key: bytes = field(repr=False)
    server_key: bytes = field(repr=False)


def _check_hash(hash_name: str) -> str:
    try:
        return _HASHLIB[hash_name]
    except KeyError:
        raise ValueError(f"unsupported SCRAM hash {hash_name!r}; use 'SHA-1' or 'SHA-256'") from None


def make_credentials(
    password: str,
    hash_name: HashName,
    iterations: int = DEFAULT_ITERATIONS,
    salt: bytes | None = None,
) -> ScramCredentials:
    """Derive the SCRAM keys of ``password`` (prepared with SASLprep, as scramp does).

    Raises :class:`ValueError` for a password SASLprep prohibits, an iteration count below
    4096 or a salt shorter than 12 bytes (scramp's limits).
    """
    _check_hash(hash_name)
    from scramp import ScramException, ScramMechanism

    if salt is None:
        salt = secrets.token_bytes(SALT_LENGTH)
    try:
        s, stored_key, server_key, i = ScramMechanism(f"SCRAM-{hash_name}").make_auth_info(
            password, iteration_count=iterations, salt=salt
        )
    except ScramException as exc:
        raise ValueError(f"cannot make SCRAM credentials: {exc}") from None
    return ScramCredentials(salt=s, iterations=i, stored_key=stored_key, server_key=server_key)


def verify_plain(password: str, creds: ScramCredentials, hash_name: HashName) -> bool:
    """Check a cleartext password against stored SCRAM keys, in constant time.

    SaltedPassword = Hi(SASLprep(password), salt, i); ClientKey = HMAC(SaltedPassword,
    "Client Key"); StoredKey = H(ClientKey), compared with :func:`hmac.compare_digest`.
    """
    algo = _check_hash(hash_name)
    try:
        prepared = saslprep(password).encode("utf-8")
        salted = hashlib.pbkdf2_hmac(algo, prepared, creds.salt, creds.iterations)
    except (ValueError, OverflowError):
        return False
    client_key = hmac.new(salted, b"Client Key", algo).digest()
    stored_key = hashlib.new(algo, client_key).digest()
    return hmac.compare_digest(stored_key, creds.stored_key)


def fake_credentials(key: bytes, domain: str, account_key: str, hash_name: HashName) -> ScramCredentials:
    """Deterministic credentials for a user that does not exist.

    Derived with HMAC from ``key`` (the server's persistent secret, the same on every node and
    after every restart: ``storage.secrets``) and the prepared username, so an unknown user sees
    the same salt on every attempt, as a real user would, and the exchange fails like a wrong
    password: at the final step, with not-authorized, at the same cost. Everything else in the
    answer has the shape of a real account's: a salt of :data:`SALT_LENGTH` bytes, different
    for each hash as :func:`make_credentials` makes them, and :data:`DEFAULT_ITERATIONS`.
    """
    if len(key) < 16:
        raise ValueError("the key of fake credentials must have at least 16 bytes")
    size = _DIGEST_SIZE[hash_name]
    ident = b"\0".join((domain.encode(), hash_name.encode(), account_key.encode("utf-8", "surrogatepass")))

    def derive(label: bytes) -> bytes:
        return hmac.new(key, label + b"\0" + ident, hashlib.sha256).digest()

    return ScramCredentials(
        salt=derive(b"salt")[:SALT_LENGTH],
        iterations=DEFAULT_ITERATIONS,
        stored_key=derive(b"stored-key")[:size],
        server_key=derive(b"server-key")[:size],
    )


def offered_mechanisms(
    *,
    tls: bool,
    channel_binding_available: bool,
    allow_plain_without_tls: bool = False,
    scram: bool = True,
    plain: bool = True,
    oauthbearer: bool = False,
    anonymous: bool = False,
) -> list[str]:
    """The mechanisms to advertise, strongest first.

    -PLUS variants only with channel-binding data (which needs TLS); PLAIN only over TLS
    unless the operator explicitly allows it in the clear; OAUTHBEARER (a bearer token) only
    over TLS, always. ``scram``/``plain``/``oauthbearer``: which the server can check at all.
    ``anonymous``: the anonymous host, where ANONYMOUS is the one mechanism (docs/auth.md).
    """
    if anonymous:
        return [ANONYMOUS]
    mechs = [m for m, (_, plus) in _SCRAM.items() if scram and (not plus or (tls and channel_binding_available))]
    if plain and (tls or allow_plain_without_tls):
        mechs.append(PLAIN)
    if oauthbearer and tls:
        mechs.append(OAUTHBEARER)
    return mechs


# --------------------------------------------------------------------------- steps


@dataclass(frozen=True, slots=True)
class NeedCredentials:
    """Look up ``username``'s credentials for ``hash_name`` and call ``credentials_result``."""

    username: str
    hash_name: HashName


@dataclass(frozen=True, slots=True)
class NeedVerification:
    """Check ``secret`` (a PLAIN password or token, an OAUTHBEARER token) for ``username``
    (the authcid or authzid as sent, None when OAUTHBEARER named nobody) and call
    ``verification_result``."""

    username: str | None
    secret: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class NeedGuest:
    """ANONYMOUS (RFC 4505): admit a guest or not (the driver's limits), and make up its
    account; answer with ``verification_result`` (a fresh random username, or None and why).
    ``trace``: what the client sent (RFC 4505 §3 trace information), for logs at most."""

    trace: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class Challenge:
    """Send ``<challenge/>`` with ``data`` (the driver base64-encodes it)."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Success:
    """Authenticated as ``username`` (the authcid); ``additional_data`` goes in ``<success/>``."""

    username: str
    additional_data: bytes | None


@dataclass(frozen=True, slots=True)
class Failure:
    """Send ``<failure/>`` with ``condition`` and ``text``; the exchange is over."""

    condition: SaslCondition
    text: str


SaslStep: TypeAlias = NeedCredentials | NeedVerification | NeedGuest | Challenge | Success | Failure


class _State(enum.Enum):
    INITIAL = enum.auto()
    WAIT_INITIAL_RESPONSE = enum.auto()  # empty challenge sent, waiting for the first data
    WAIT_CREDENTIALS = enum.auto()  # NeedCredentials returned
    WAIT_CLIENT_FINAL = enum.auto()  # SCRAM server-first sent
    WAIT_VERIFICATION = enum.auto()  # NeedVerification returned
    WAIT_ERROR_ACK = enum.auto()  # OAUTHBEARER error challenge sent (RFC 7628 §3.2.3)
    DONE = enum.auto()


def _decode_saslname(value: str) -> str | None:
    """RFC 5802 saslname: ``=2C`` is ',' and ``=3D`` is '='; any other '=' is an error."""
    i = value.find("=")
    while i >= 0:
        if value[i + 1 : i + 3] not in ("2C", "3D"):
            return None
        i = value.find("=", i + 3)
    return value.replace("=2C", ",").replace("=3D", "=")


def _b64(value: str) -> bytes | None:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None


class SaslServer:
    """One SASL exchange with one client, for one mechanism.

    Driving it: ``start(initial)``, then feed each ``<response/>`` to ``respond`` and answer
    :class:`NeedCredentials` with ``credentials_result``; send what each step says. Client
    input never raises: malformed data gives a :class:`Failure`. A call in the wrong state
    (including after the exchange is over, see :attr:`done`) also gives a Failure.

    Unknown users: call ``credentials_result(None)``; the exchange continues with fake
    credentials derived from ``fake_key`` (:func:`fake_credentials`) and fails exactly like a
    wrong password. Refusals that do not depend on
    the password (``temporary-auth-failure``, or ``account-disabled`` when the driver does
    not pass the credentials) are reported immediately; ``credentials_result(creds,
    failure=...)`` reports ``failure`` only once the client has proved it knows the
    password (a wrong password still gives not-authorized), so that a disabled account
    is not revealed to someone who does not know its password.
    """

    def __init__(
        self,
        mechanism: str,
        *,
        domain: str,
        channel_binding: tuple[str, bytes] | None,
        tls: bool,
        allow_plain_without_tls: bool = False,
        fake_key: bytes,
        external_plain: bool = False,
    ) -> None:
        if len(fake_key) < 16:
            raise ValueError("fake_key must have at least 16 bytes")
        if channel_binding is not None:
            if not tls:
                raise ValueError("channel binding data without TLS")
            cb_name, cb_data = channel_binding
            if cb_name != CB_TLS_SERVER_END_POINT:
                raise ValueError(f"unsupported channel binding type {cb_name!r}")
            if not isinstance(cb_data, bytes) or not cb_data:
                raise ValueError("channel binding data must be non-empty bytes")
        if mechanism in _SCRAM:
            hash_name, plus = _SCRAM[mechanism]
            if plus and channel_binding is None:
                raise SaslFailure(SaslCondition.INVALID_MECHANISM, f"{mechanism} needs channel binding")
        elif mechanism == PLAIN:
            hash_name, plus = "SHA-256", False
            if not tls and not allow_plain_without_tls:
                raise SaslFailure(SaslCondition.ENCRYPTION_REQUIRED, "PLAIN requires TLS")
        elif mechanism == OAUTHBEARER:
            hash_name, plus = "SHA-256", False
            if not tls:
                raise SaslFailure(SaslCondition.ENCRYPTION_REQUIRED, "OAUTHBEARER requires TLS")
        elif mechanism == ANONYMOUS:
            hash_name, plus = "SHA-256", False
        else:
            raise SaslFailure(SaslCondition.INVALID_MECHANISM, "unsupported mechanism")
        self.mechanism: Final = mechanism
        self.authcid: str | None = None
        self._domain = domain
        self._fake_key = fake_key
        self._channel_binding = channel_binding
        self._hash_name: HashName = hash_name
        self._plus = plus
        self._state = _State.INITIAL
        self._deferred_failure: SaslCondition | None = None
        self._external_plain = external_plain
        self._error_after_ack: SaslCondition | None = None
        # PLAIN
        self._password: str | None = None
        # SCRAM (RFC 5802 §3 names)
        self._gs2_header: bytes | None = None  # as sent, authzid included: the cbind-input
        self._client_first_bare: str | None = None
        self._nonce: str | None = None  # the client's part, then client + server
        self._server_first: str | None = None
        self._creds: ScramCredentials | None = None

    # ----------------------------------------------------------------- driver API

    @property
    def done(self) -> bool:
        """True once a Success or Failure has been returned; send nothing more after it."""
        return self._state is _State.DONE

    def start(self, initial: bytes | None) -> SaslStep:
        """``<auth/>`` received: ``initial`` is its decoded content, None when it had none."""
        if self._state is not _State.INITIAL:
            return self._unexpected("auth")
        if initial is None:
            if self.mechanism == ANONYMOUS:
                # RFC 4505's one message is all optional: no initial response is an empty trace
                # (as Prosody and ejabberd take it; xmpp.js cannot read an empty challenge "=").
                return self._first(b"")
            self._state = _State.WAIT_INITIAL_RESPONSE
            return Challenge(b"")
        return self._first(initial)

    def respond(self, data: bytes) -> SaslStep:
        """``<response/>`` received, with its decoded content."""
        if self._state is _State.WAIT_INITIAL_RESPONSE:
            return self._first(data)
        if self._state is _State.WAIT_CLIENT_FINAL:
            return self._scram_final(data)
        if self._state is _State.WAIT_ERROR_ACK:
            # RFC 7628 §3.2.3: the client acknowledges the error with a single %x01; the
            # exchange fails either way.
            condition = self._error_after_ack or SaslCondition.NOT_AUTHORIZED
            return self._fail(condition, _failure_text(condition))
        return self._unexpected("response")

    def verification_result(self, username: str | None, failure: SaslCondition | None = None) -> SaslStep:
        """Answer to :class:`NeedVerification`: the account the secret proved (its prepared
        username), or None and the reason (``failure``, not-authorized by default)."""
        if self._state is not _State.WAIT_VERIFICATION:
            return self._unexpected("verification")
        if username is None or failure is not None:
            condition = failure or SaslCondition.NOT_AUTHORIZED
            if self.mechanism == OAUTHBEARER:
                # RFC 7628 §3.2.2: the error goes in a challenge the client must answer.
                self._error_after_ack = condition
                self._state = _State.WAIT_ERROR_ACK
                status = "invalid_token" if condition is SaslCondition.NOT_AUTHORIZED else "temporarily_unavailable"
                return Challenge(b'{"status":"' + status.encode() + b'"}')
            return self._fail(condition, _failure_text(condition))
        self.authcid = username
        return self._finish(Success(username, None))

    def credentials_result(self, creds: ScramCredentials | None, *, failure: SaslCondition | None = None) -> SaslStep:
        """Answer to :class:`NeedCredentials`: the user's keys, None if there is no such user.

        ``failure`` without ``creds`` is reported at once; with ``creds`` it is reported
        only after the client proved the password (see the class docstring).
        """
        if self._state is not _State.WAIT_CREDENTIALS:
            return self._unexpected("credentials")
        if failure is not None and creds is None:
            return self._finish(Failure(failure, _failure_text(failure)))
        self._deferred_failure = failure
        if creds is None:
            creds = fake_credentials(self._fake_key, self._domain, self._account_key(), self._hash_name)
        if self.mechanism == PLAIN:
            return self._plain_verify(creds)
        return self._scram_server_first(creds)

    def abort(self) -> SaslStep:
        """``<abort/>`` received."""
        return self._finish(Failure(SaslCondition.ABORTED, "aborted by the client"))

    # ----------------------------------------------------------------- common

    def _finish(self, step: Success | Failure) -> Success | Failure:
        self._state = _State.DONE
        self._password = None
        self._creds = None
        self._client_first_bare = None
        self._server_first = None
        self._gs2_header = None
        return step

    def _fail(self, condition: SaslCondition, text: str) -> Failure:
        step = self._finish(Failure(condition, text))
        assert isinstance(step, Failure)
        return step

    def _unexpected(self, what: str) -> Failure:
        return self._fail(SaslCondition.MALFORMED_REQUEST, f"unexpected {what} at this point")

    def _first(self, data: bytes) -> SaslStep:
        if self.mechanism == PLAIN:
            return self._plain_first(data)
        if self.mechanism == OAUTHBEARER:
            return self._oauthbearer_first(data)
        if self.mechanism == ANONYMOUS:
            return self._anonymous_first(data)
        return self._scram_first(data)

    def _succeed(self, additional_data: bytes | None) -> SaslStep:
        if self._deferred_failure is not None:
            return self._fail(self._deferred_failure, _failure_text(self._deferred_failure))
        assert self.authcid is not None
        return self._finish(Success(self.authcid, additional_data))

    def _authzid_ok(self, authzid: str, authcid: str) -> bool:
        """The authzid may only name the authcid itself: as given, or as its bare JID."""
        if hmac.compare_digest(authzid.encode("utf-8", "surrogatepass"), authcid.encode("utf-8", "surrogatepass")):
            return True
        if "@" in authcid or "/" in authcid or "/" in authzid:
            return False
        try:
            wanted = JID.parse(f"{authcid}@{self._domain}")
            given = JID.parse(authzid)
        except JIDError:
            return False
        return given.is_bare and given.local is not None and given == wanted

    def _account_key(self) -> str:
        """The username as the account store would see it (case-folded localpart)."""
        assert self.authcid is not None
        if "@" not in self.authcid and "/" not in self.authcid:
            try:
                local = JID.parse(f"{self.authcid}@{self._domain}").local
            except JIDError:
                local = None
            if local is not None:
                return local
        return self.authcid

    def _check_username(self, username: str) -> str | None:
        """Why ``username`` is unacceptable, or None."""
        if not username:
            return "empty username"
        if len(username.encode("utf-8", "surrogatepass")) > MAX_USERNAME_OCTETS:
            return "username too long"
        return None

    # ----------------------------------------------------------------- PLAIN

    def _plain_first(self, data: bytes) -> SaslStep:
        parts = data.split(b"\0")
        if len(parts) != 3:
            return self._fail(SaslCondition.MALFORMED_REQUEST, "expected authzid NUL authcid NUL password")
        try:
            authzid, authcid, password = (p.decode("utf-8") for p in parts)
        except UnicodeDecodeError:
            return self._fail(SaslCondition.MALFORMED_REQUEST, "PLAIN message is not UTF-8")
        if not password:
            return self._fail(SaslCondition.MALFORMED_REQUEST, "empty password")
        if (why := self._check_username(authcid)) is not None:
            return self._fail(SaslCondition.MALFORMED_REQUEST, why)
        if authzid and not self._authzid_ok(authzid, authcid):
            return self._fail(SaslCondition.INVALID_AUTHZID, "authzid must be your own address")
        self.authcid = authcid
        if self._external_plain:
            self._state = _State.WAIT_VERIFICATION
            return NeedVerification(authcid, password)
        self._password = password
        self._state = _State.WAIT_CREDENTIALS
        return NeedCredentials(authcid, self._hash_name)

    # ----------------------------------------------------------------- OAUTHBEARER

    def _oauthbearer_first(self, data: bytes) -> SaslStep:
        """RFC 7628 §3.1: gs2-header %x01 *(kvpair) %x01, with ``auth=Bearer <token>``."""
        malformed = SaslCondition.MALFORMED_REQUEST
        if len(data) > MAX_OAUTHBEARER_OCTETS:
            return self._fail(malformed, "initial response too long")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return self._fail(malformed, "initial response is not UTF-8")
        head, sep, rest = text.partition(",")
        if not sep or head not in ("n", "y"):
            # p=: OAUTHBEARER has no channel binding (RFC 7628 §3.1).
            return self._fail(malformed, "malformed gs2 header: expected n,[a=authzid],")
        authz_attr, sep, kv = rest.partition(",")
        if not sep or not kv.startswith("\x01") or not kv.endswith("\x01\x01"):
            return self._fail(malformed, "malformed OAUTHBEARER message")
        authzid: str | None = None
        if authz_attr:
            if not authz_attr.startswith("a="):
                return self._fail(malformed, "malformed authzid")
            authzid = _decode_saslname(authz_attr[2:])
            if not authzid or self._check_username(authzid) is not None:
                return self._fail(malformed, "malformed authzid")
            if "@" in authzid:  # a bare JID of this domain names its local part
                try:
                    jid = JID.parse(authzid)
                except JIDError:
                    jid = None
                if jid is None or not jid.is_bare or jid.local is None or jid.domain != self._domain:
                    return self._fail(SaslCondition.INVALID_AUTHZID, "authzid must be your own address")
                authzid = jid.local
        token: str | None = None
        for pair in kv[1:-2].split("\x01"):
            key, eq, value = pair.partition("=")
            if not eq or not key.isalpha():
                return self._fail(malformed, "malformed key/value pair")
            if key == "auth":
                scheme, _, credentials = value.partition(" ")
                if scheme.lower() != "bearer" or not credentials.strip():
                    return self._fail(malformed, "auth must be 'Bearer <token>'")
                token = credentials.strip()
        if token is None:
            return self._fail(malformed, "no auth=Bearer <token>")
        self.authcid = authzid
        self._state = _State.WAIT_VERIFICATION
        return NeedVerification(authzid, token)

    # ----------------------------------------------------------------- ANONYMOUS

    def _anonymous_first(self, data: bytes) -> SaslStep:
        """RFC 4505 §3: optional trace information, UTF-8, at most 255 characters."""
        try:
            trace = data.decode("utf-8")
        except UnicodeDecodeError:
            return self._fail(SaslCondition.MALFORMED_REQUEST, "trace information is not UTF-8")
        if len(trace) > MAX_ANONYMOUS_TRACE or not trace.isprintable():
            return self._fail(SaslCondition.MALFORMED_REQUEST, "trace information must be at most 255 printable characters")
        self._state = _State.WAIT_VERIFICATION
        return NeedGuest(trace)

    def _plain_verify(self, creds: ScramCredentials) -> SaslStep:
        assert self._password is not None
        ok = verify_plain(self._password, creds, self._hash_name)
        self._password = None
        if not ok:
            return self._fail(SaslCondition.NOT_AUTHORIZED, _AUTH_FAILED)
        return self._succeed(None)

    # ----------------------------------------------------------------- SCRAM

    def _scram_first(self, data: bytes) -> SaslStep:
        """Parse client-first-message (RFC 5802 §7) far enough to know whom to look up."""
        malformed = SaslCondition.MALFORMED_REQUEST
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return self._fail(malformed, "client-first-message is not UTF-8")
        if "\0" in text:
            return self._fail(malformed, "NUL in client-first-message")
        parts = text.split(",")
        if len(parts) < 4:
            return self._fail(malformed, "malformed client-first-message")
        flag, authz_attr, user_attr, nonce_attr, *extensions = parts

        cb_name: str | None = None
        if flag.startswith("p="):
            cb_name = flag[2:]
            if not _CB_NAME_RE.fullmatch(cb_name):
                return self._fail(malformed, "malformed channel binding name")
        elif flag not in ("n", "y"):
            return self._fail(malformed, "malformed gs2-cbind-flag")

        authzid: str | None = None
        if authz_attr:
            if not authz_attr.startswith("a="):
                return self._fail(malformed, "malformed authzid")
            authzid = _decode_saslname(authz_attr[2:])
            if not authzid:
                return self._fail(malformed, "malformed authzid")

        if user_attr.startswith("m="):
            return self._fail(malformed, "mandatory SCRAM extensions are not supported")
        if not user_attr.startswith("n="):
            return self._fail(malformed, "missing username")
        username = _decode_saslname(user_attr[2:])
        if username is None:
            return self._fail(malformed, "malformed saslname")
        if (why := self._check_username(username)) is not None:
            return self._fail(malformed, why)
        if not nonce_attr.startswith("r=") or not _NONCE_RE.fullmatch(nonce_attr[2:]):
            return self._fail(malformed, "malformed nonce")
        if extensions and not _extensions_ok(extensions):
            return self._fail(malformed, "malformed extension")

        try:
            if not saslprep(username):
                return self._fail(malformed, "empty username")
        except ValueError:
            return self._fail(malformed, "username prohibited by SASLprep")

        # Channel-binding policy (RFC 5802 §6). Refusals here do not depend on the user.
        if self._plus:
            assert self._channel_binding is not None
            if cb_name != self._channel_binding[0]:
                return self._fail(
                    SaslCondition.NOT_AUTHORIZED,
                    f"{self.mechanism} requires channel binding p={self._channel_binding[0]}",
                )
        elif cb_name is not None:
            return self._fail(SaslCondition.NOT_AUTHORIZED, "channel binding requires a -PLUS mechanism")
        elif flag == "y" and self._channel_binding is not None:
            # The client supports channel binding but thinks we do not: someone removed the
            # -PLUS mechanisms from our offer.
            return self._fail(SaslCondition.NOT_AUTHORIZED, "channel binding downgrade detected")

        if authzid is not None and not self._authzid_ok(authzid, username):
            return self._fail(SaslCondition.INVALID_AUTHZID, "authzid must be your own address")

        self.authcid = username
        self._gs2_header = f"{flag},{authz_attr},".encode()
        self._client_first_bare = text[len(flag) + len(authz_attr) + 2 :]
        self._nonce = nonce_attr[2:]
        self._state = _State.WAIT_CREDENTIALS
        return NeedCredentials(username, self._hash_name)

    def _scram_server_first(self, creds: ScramCredentials) -> SaslStep:
        """server-first-message (RFC 5802 §7): r=client-nonce+server-nonce, s=salt, i=count."""
        if not _usable(creds, self._hash_name):
            return self._fail(SaslCondition.TEMPORARY_AUTH_FAILURE, "stored credentials are unusable")
        assert self._nonce is not None
        self._nonce += _server_nonce()
        self._server_first = f"r={self._nonce},s={base64.b64encode(creds.salt).decode('ascii')},i={creds.iterations}"
        self._creds = creds
        self._state = _State.WAIT_CLIENT_FINAL
        return Challenge(self._server_first.encode("ascii"))

    def _scram_final(self, data: bytes) -> SaslStep:
        """Check client-final-message (RFC 5802 §7): c=, r=, [extensions,] p=; then the proof (§3)."""
        malformed = SaslCondition.MALFORMED_REQUEST
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return self._fail(malformed, "client-final-message is not UTF-8")
        parts = text.split(",")
        if (
            len(parts) < 3
            or not parts[0].startswith("c=")
            or not parts[1].startswith("r=")
            or not parts[-1].startswith("p=")
            or (len(parts) > 3 and not _extensions_ok(parts[2:-1]))
            or "\0" in text
        ):
            return self._fail(malformed, "malformed client-final-message")
        proof = _b64(parts[-1][2:])
        cbind_input = _b64(parts[0][2:])
        if cbind_input is None or proof is None:
            return self._fail(malformed, "malformed base64 in client-final-message")
        size = _DIGEST_SIZE[self._hash_name]
        if len(proof) != size:
            return self._fail(malformed, "client proof has the wrong length")
        creds, nonce, gs2_header = self._creds, self._nonce, self._gs2_header
        assert creds is not None and nonce is not None and gs2_header is not None
        if not hmac.compare_digest(parts[1][2:].encode(), nonce.encode()):
            return self._fail(SaslCondition.NOT_AUTHORIZED, "nonce mismatch")
        # c= is the gs2-header exactly as sent in client-first (authzid included), followed
        # by the channel-binding data for -PLUS.
        if self._plus:
            assert self._channel_binding is not None
            gs2_header += self._channel_binding[1]
        if not hmac.compare_digest(cbind_input, gs2_header):
            return self._fail(SaslCondition.NOT_AUTHORIZED, "channel binding mismatch")
        # AuthMessage = client-first-message-bare "," server-first-message ","
        #               client-final-message-without-proof
        auth_message = f"{self._client_first_bare},{self._server_first},{text[: -len(parts[-1]) - 1]}".encode()
        algo = _HASHLIB[self._hash_name]
        # ClientKey = ClientProof XOR HMAC(StoredKey, AuthMessage); H(ClientKey) must be StoredKey.
        signature = _hmac(creds.stored_key, auth_message, algo)
        client_key = (int.from_bytes(proof, "big") ^ int.from_bytes(signature, "big")).to_bytes(size, "big")
        if not hmac.compare_digest(hashlib.new(algo, client_key).digest(), creds.stored_key):
            return self._fail(SaslCondition.NOT_AUTHORIZED, _AUTH_FAILED)
        return self._succeed(b"v=" + base64.b64encode(_hmac(creds.server_key, auth_message, algo)))


def _extensions_ok(extensions: list[str]) -> bool:
    """Extension attributes (RFC 5802 §5.1): ``x=value``, each name once, none of SCRAM's own."""
    names = set()
    for e in extensions:
        if not _EXT_RE.fullmatch(e) or e[0] in _SCRAM_ATTRS or e[0] in names:
            return False
        names.add(e[0])
    return True


def _usable(creds: ScramCredentials, hash_name: HashName) -> bool:
    size = _DIGEST_SIZE[hash_name]
    return (
        isinstance(creds.salt, bytes)
        and len(creds.salt) >= 12
        and isinstance(creds.iterations, int)
        and 4096 <= creds.iterations <= 10_000_000
        and isinstance(creds.stored_key, bytes)
        and len(creds.stored_key) == size
        and isinstance(creds.server_key, bytes)
        and len(creds.server_key) == size
    )


def _failure_text(condition: SaslCondition) -> str:
    return {
        SaslCondition.ACCOUNT_DISABLED: "account disabled",
        SaslCondition.CREDENTIALS_EXPIRED: "credentials expired",
        SaslCondition.TEMPORARY_AUTH_FAILURE: "temporary authentication failure",
        SaslCondition.NOT_AUTHORIZED: _AUTH_FAILED,
    }.get(condition, condition.value)
