"""RFC 6120 error conditions: stanza errors (§8.3), stream errors (§4.9) and SASL failures (§6.5).

One table maps every stanza error condition to its default error type, so handlers only name
the condition: ``raise StanzaError(Condition.ITEM_NOT_FOUND, text="no such room")``.
"""
from __future__ import annotations

import enum

NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
NS_STREAMS = "urn:ietf:params:xml:ns:xmpp-streams"
NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl"


class ErrorType(enum.StrEnum):
    AUTH = "auth"
    CANCEL = "cancel"
    CONTINUE = "continue"
    MODIFY = "modify"
    WAIT = "wait"


class Condition(enum.StrEnum):
    """Stanza error conditions (RFC 6120 §8.3.3)."""

    BAD_REQUEST = "bad-request"
    CONFLICT = "conflict"
    FEATURE_NOT_IMPLEMENTED = "feature-not-implemented"
    FORBIDDEN = "forbidden"
    GONE = "gone"
    INTERNAL_SERVER_ERROR = "internal-server-error"
    ITEM_NOT_FOUND = "item-not-found"
    JID_MALFORMED = "jid-malformed"
    NOT_ACCEPTABLE = "not-acceptable"
    NOT_ALLOWED = "not-allowed"
    NOT_AUTHORIZED = "not-authorized"
    POLICY_VIOLATION = "policy-violation"
    RECIPIENT_UNAVAILABLE = "recipient-unavailable"
    REDIRECT = "redirect"
    REGISTRATION_REQUIRED = "registration-required"
    REMOTE_SERVER_NOT_FOUND = "remote-server-not-found"
    REMOTE_SERVER_TIMEOUT = "remote-server-timeout"
    RESOURCE_CONSTRAINT = "resource-constraint"
    SERVICE_UNAVAILABLE = "service-unavailable"
    SUBSCRIPTION_REQUIRED = "subscription-required"
    UNDEFINED_CONDITION = "undefined-condition"
    UNEXPECTED_REQUEST = "unexpected-request"

    @property
    def default_type(self) -> ErrorType:
        return _DEFAULT_TYPES[self]


_DEFAULT_TYPES: dict[Condition, ErrorType] = {
    Condition.BAD_REQUEST: ErrorType.MODIFY,
    Condition.CONFLICT: ErrorType.CANCEL,
    Condition.FEATURE_NOT_IMPLEMENTED: ErrorType.CANCEL,
    Condition.FORBIDDEN: ErrorType.AUTH,
    Condition.GONE: ErrorType.CANCEL,
    Condition.INTERNAL_SERVER_ERROR: ErrorType.WAIT,
    Condition.ITEM_NOT_FOUND: ErrorType.CANCEL,
    Condition.JID_MALFORMED: ErrorType.MODIFY,
    Condition.NOT_ACCEPTABLE: ErrorType.MODIFY,
    Condition.NOT_ALLOWED: ErrorType.CANCEL,
    Condition.NOT_AUTHORIZED: ErrorType.AUTH,
    Condition.POLICY_VIOLATION: ErrorType.MODIFY,
    Condition.RECIPIENT_UNAVAILABLE: ErrorType.WAIT,
    Condition.REDIRECT: ErrorType.MODIFY,
    Condition.REGISTRATION_REQUIRED: ErrorType.AUTH,
    Condition.REMOTE_SERVER_NOT_FOUND: ErrorType.CANCEL,
    Condition.REMOTE_SERVER_TIMEOUT: ErrorType.WAIT,
    Condition.RESOURCE_CONSTRAINT: ErrorType.WAIT,
    Condition.SERVICE_UNAVAILABLE: ErrorType.CANCEL,
    Condition.SUBSCRIPTION_REQUIRED: ErrorType.AUTH,
    Condition.UNDEFINED_CONDITION: ErrorType.CANCEL,
    Condition.UNEXPECTED_REQUEST: ErrorType.WAIT,
}


class StreamErrorCondition(enum.StrEnum):
    """Stream error conditions (RFC 6120 §4.9.3)."""

    BAD_FORMAT = "bad-format"
    BAD_NAMESPACE_PREFIX = "bad-namespace-prefix"
    CONFLICT = "conflict"
    CONNECTION_TIMEOUT = "connection-timeout"
    HOST_GONE = "host-gone"
    HOST_UNKNOWN = "host-unknown"
    IMPROPER_ADDRESSING = "improper-addressing"
    INTERNAL_SERVER_ERROR = "internal-server-error"
    INVALID_FROM = "invalid-from"
    INVALID_NAMESPACE = "invalid-namespace"
    INVALID_XML = "invalid-xml"
    NOT_AUTHORIZED = "not-authorized"
    NOT_WELL_FORMED = "not-well-formed"
    POLICY_VIOLATION = "policy-violation"
    REMOTE_CONNECTION_FAILED = "remote-connection-failed"
    RESET = "reset"
    RESOURCE_CONSTRAINT = "resource-constraint"
    RESTRICTED_XML = "restricted-xml"
    SEE_OTHER_HOST = "see-other-host"
    SYSTEM_SHUTDOWN = "system-shutdown"
    UNDEFINED_CONDITION = "undefined-condition"
    UNSUPPORTED_ENCODING = "unsupported-encoding"
    UNSUPPORTED_FEATURE = "unsupported-feature"
    UNSUPPORTED_STANZA_TYPE = "unsupported-stanza-type"
    UNSUPPORTED_VERSION = "unsupported-version"


class SaslCondition(enum.StrEnum):
    """SASL failure conditions (RFC 6120 §6.5)."""

    ABORTED = "aborted"
    ACCOUNT_DISABLED = "account-disabled"
    CREDENTIALS_EXPIRED = "credentials-expired"
    ENCRYPTION_REQUIRED = "encryption-required"
    INCORRECT_ENCODING = "incorrect-encoding"
    INVALID_AUTHZID = "invalid-authzid"
    INVALID_MECHANISM = "invalid-mechanism"
    MALFORMED_REQUEST = "malformed-request"
    MECHANISM_TOO_WEAK = "mechanism-too-weak"
    NOT_AUTHORIZED = "not-authorized"
    TEMPORARY_AUTH_FAILURE = "temporary-auth-failure"


class XmppError(Exception):
    """Base of the errors below."""


class StanzaError(XmppError):
    """A stanza-level error; the dispatcher turns it into an ``<error/>`` reply.

    ``app`` is an optional application-specific condition element (an lxml element in a
    namespace of its own), sent beside the defined condition. ``lang``: the language of ``text``
    (its ``xml:lang``; features render it in the requester's language through xmppd/i18n.py).
    """

    def __init__(
        self,
        condition: Condition,
        text: str | None = None,
        *,
        type: ErrorType | None = None,
        app: object | None = None,
        by: str | None = None,
        lang: str = "en",
    ) -> None:
        super().__init__(f"{condition.value}: {text}" if text else condition.value)
        self.condition = condition
        self.text = text
        self.type = type or condition.default_type
        self.app = app
        self.by = by
        self.lang = lang


class StreamError(XmppError):
    """A stream-level error: the stream is closed with this condition."""

    def __init__(self, condition: StreamErrorCondition, text: str | None = None, app: object | None = None) -> None:
        super().__init__(f"{condition.value}: {text}" if text else condition.value)
        self.condition = condition
        self.text = text
        self.app = app


class SaslFailure(XmppError):
    def __init__(self, condition: SaslCondition, text: str | None = None) -> None:
        super().__init__(f"{condition.value}: {text}" if text else condition.value)
        self.condition = condition
        self.text = text
