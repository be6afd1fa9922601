"""Namespace constants used across the server."""

CLIENT = "jabber:client"
SERVER = "jabber:server"
STREAM = "http://etherx.jabber.org/streams"
FRAMING = "urn:ietf:params:xml:ns:xmpp-framing"
TLS = "urn:ietf:params:xml:ns:xmpp-tls"
SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
BIND = "urn:ietf:params:xml:ns:xmpp-bind"
SESSION = "urn:ietf:params:xml:ns:xmpp-session"
STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
STREAMS = "urn:ietf:params:xml:ns:xmpp-streams"
XML = "http://www.w3.org/XML/1998/namespace"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
REGISTER_FEATURE = "http://jabber.org/features/iq-register"
REGISTER = "jabber:iq:register"
DISCO_INFO = "http://jabber.org/protocol/disco#info"
DISCO_ITEMS = "http://jabber.org/protocol/disco#items"
PING = "urn:xmpp:ping"
VERSION = "jabber:iq:version"
DELAY = "urn:xmpp:delay"
HINTS = "urn:xmpp:hints"  # XEP-0334
SID = "urn:xmpp:sid:0"
DATA_FORMS = "jabber:x:data"

MESSAGE = "{jabber:client}message"
PRESENCE = "{jabber:client}presence"
IQ = "{jabber:client}iq"
STANZA_TAGS = frozenset((MESSAGE, PRESENCE, IQ))


def qname(ns: str, name: str) -> str:
    return f"{{{ns}}}{name}"
