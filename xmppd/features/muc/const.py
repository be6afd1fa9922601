"""XEP-0045: Multi-User Chat namespaces, status codes and MUC/Sub nodes (ejabberd's urn:xmpp:mucsub:0)."""
from __future__ import annotations

from ...xml import ns

MUC = "http://jabber.org/protocol/muc"
MUC_USER = "http://jabber.org/protocol/muc#user"
MUC_ADMIN = "http://jabber.org/protocol/muc#admin"
MUC_OWNER = "http://jabber.org/protocol/muc#owner"
MUC_UNIQUE = "http://jabber.org/protocol/muc#unique"
MUC_REQUEST = "http://jabber.org/protocol/muc#request"
ROOMCONFIG = "http://jabber.org/protocol/muc#roomconfig"
ROOMINFO = "http://jabber.org/protocol/muc#roominfo"
CONFERENCE = "jabber:x:conference"  # XEP-0249 direct invitations
MUCSUB = "urn:xmpp:mucsub:0"
STABLE_ID = "http://jabber.org/protocol/muc#stable_id"  # the room keeps the sender's message id
SELF_PING_OPTIMIZATION = "http://jabber.org/protocol/muc#self-ping-optimization"  # XEP-0410 §3.4: answered by the room
PUBSUB_EVENT = "http://jabber.org/protocol/pubsub#event"
DATA = ns.DATA_FORMS
SID = ns.SID
DELAY = ns.DELAY
PING = ns.PING

# MUC/Sub event nodes (ejabberd).
NODE_MESSAGES = "urn:xmpp:mucsub:nodes:messages"
NODE_PRESENCE = "urn:xmpp:mucsub:nodes:presence"
NODE_SUBJECT = "urn:xmpp:mucsub:nodes:subject"
NODE_AFFILIATIONS = "urn:xmpp:mucsub:nodes:affiliations"
NODE_CONFIG = "urn:xmpp:mucsub:nodes:config"
NODE_PARTICIPANTS = "urn:xmpp:mucsub:nodes:participants"
NODE_SUBSCRIBERS = "urn:xmpp:mucsub:nodes:subscribers"
NODE_SYSTEM = "urn:xmpp:mucsub:nodes:system"
MUCSUB_NODES = frozenset(
    (NODE_MESSAGES, NODE_PRESENCE, NODE_SUBJECT, NODE_AFFILIATIONS, NODE_CONFIG, NODE_PARTICIPANTS, NODE_SUBSCRIBERS, NODE_SYSTEM)
)


def q(namespace: str, name: str) -> str:
    return f"{{{namespace}}}{name}"


X_MUC = q(MUC, "x")
X_USER = q(MUC_USER, "x")
X_DATA = q(DATA, "x")
ADMIN_QUERY = q(MUC_ADMIN, "query")
OWNER_QUERY = q(MUC_OWNER, "query")
BODY = q(ns.CLIENT, "body")
SUBJECT = q(ns.CLIENT, "subject")
STATUS = q(ns.CLIENT, "status")
SHOW = q(ns.CLIENT, "show")
DISCO_INFO_Q = q(ns.DISCO_INFO, "query")
DISCO_ITEMS_Q = q(ns.DISCO_ITEMS, "query")

# Status codes (XEP-0045 §15.6.2).
S_SELF = "110"
S_NON_ANONYMOUS = "100"
S_CONFIG_NON_PRIVACY = "104"
S_LOGGING = "170"
S_NOT_LOGGING = "171"
S_NOW_NON_ANONYMOUS = "172"
S_NOW_SEMI_ANONYMOUS = "173"
S_NOW_FULLY_ANONYMOUS = "174"
S_CREATED = "201"
S_NICK_MODIFIED = "210"
S_BANNED = "301"
S_NEW_NICK = "303"
S_KICKED = "307"
S_AFFILIATION_REMOVED = "321"
S_MEMBERS_ONLY = "322"
S_SHUTDOWN = "332"
S_ERROR_REPLY = "333"  # removed because its client (or server) answered room traffic with an error
