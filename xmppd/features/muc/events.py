"""XEP-0045 room events for extensions: typed payloads on a hook chain private to MUC.

Extensions (group mute, red packets) hook in without editing MUC::

    muc = ctx.feature("muc")
    ctx.on_teardown(muc.events.add(GROUPCHAT_BEFORE_BROADCAST, self.check, priority=10))

Handlers return ``Flow.CONTINUE`` or ``Flow.STOP`` (stop silently drops the action where the
event says so) and may raise ``StanzaError`` where the event allows a denial: the sender then
gets that error.
"""
from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lxml import etree

from ...core.hooks import Hook, HookChains
from ...jid import JID
from .affiliations import Affiliation, Role

if TYPE_CHECKING:
    from .occupants import Occupant
    from .room import Room


@dataclass(slots=True)
class PreJoin:
    """Before an occupant enters; raise ``StanzaError`` to refuse (the error goes in the presence)."""

    room: "Room"
    jid: JID  # the full JID joining
    nick: str
    affiliation: Affiliation
    role: Role  # the role it is about to get; a handler may lower it (e.g. muted -> visitor)
    stanza: etree._Element


@dataclass(slots=True)
class GroupchatBeforeBroadcast:
    """A groupchat message about to be broadcast; ``stanza`` is the outgoing copy (from room/nick).

    Raise ``StanzaError`` to refuse it (the sender gets the error), return ``Flow.STOP`` to drop it
    silently, or add children to ``stanza``. A ``<stanza-id by='room'/>`` added here is the
    message's XEP-0359 id (the archive stamps its own); otherwise the room stamps one.
    """

    room: "Room"
    occupant: "Occupant | None"  # None: a server-authored notice kept in history (Room.send_notice(archive=True))
    sender: JID  # the room's JID for such a notice
    stanza: etree._Element


@dataclass(frozen=True, slots=True)
class OccupantRoleChanged:
    room: "Room"
    nick: str
    jid: JID  # the occupant's bare JID
    old: Role
    new: Role
    actor: JID | None
    reason: str | None


@dataclass(frozen=True, slots=True)
class AffiliationChanged:
    """After an affiliation was applied. Run when it changed, and also when an XEP-0045 admin
    request set it again (``item``: the request's ``<item/>``, whose extension children a
    feature may read, e.g. a ban's duration)."""

    room: "Room"
    jid: JID
    old: Affiliation
    new: Affiliation
    actor: JID | None
    reason: str | None
    item: etree._Element | None = None


@dataclass(slots=True)
class AffiliationChangeRequest:
    """An XEP-0045 admin request (§9, §10) is about to change ``jid``'s affiliation (checked
    before any item of the request is applied). Raise ``StanzaError`` to refuse the whole
    request (e.g. an extension child of ``item`` that is malformed)."""

    room: "Room"
    jid: JID
    old: Affiliation
    new: Affiliation
    actor: JID
    item: etree._Element


@dataclass(slots=True)
class AffiliationListItem:
    """An ``<item/>`` of an affiliation list (§9.5 and siblings) about to be sent: a handler may
    add extension children (e.g. when a ban ends)."""

    room: "Room"
    jid: JID
    affiliation: Affiliation
    element: etree._Element


@dataclass(slots=True)
class RoomDiscoInfo:
    """Answering disco#info on a room: append to ``features`` or ``fields`` (var, value)."""

    room: "Room"
    requester: JID
    features: list[str] = field(default_factory=list)
    fields: list[tuple[str, str]] = field(default_factory=list)


@dataclass(slots=True)
class ConfigForm:
    """Building the owner configuration form: append ``xmppd.xml.forms.Field`` objects to ``fields``.

    Values the owner submits for these fields are kept in ``room.config.extra[var]`` (persisted).
    """

    room: "Room"
    fields: list[Any] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class RoomDestroyed:
    room: "Room"
    reason: str | None
    alternate: str | None


@dataclass(frozen=True, slots=True)
class RoomLoaded:
    """A persistent room was loaded from the database by a cluster node that acquired it
    (docs/cluster.md §5): what extensions keep of it elsewhere may be restored now (the
    archive gives back the discussion history sent on join)."""
    room: "Room"


@dataclass(slots=True)
class PrivateMessage:
    """A private message between occupants; raise ``StanzaError`` to refuse, STOP to drop."""

    room: "Room"
    sender: "Occupant"
    recipient: "Occupant"
    stanza: etree._Element


@dataclass(slots=True)
class MessageRetraction:
    """A message of the room is retracted (xmppd/features/muc/moderation.py): by a moderator
    (XEP-0425: ``author`` None, ``announcement`` the message the room is about to broadcast) or
    by its author (XEP-0424: ``author`` the sender's XEP-0421 occupant-id, which the original's
    must equal). A store holding the message with the room's stanza-id ``stanza_id`` replaces it
    with ``tombstone(original)`` and sets ``found``; an archive may stamp the announcement's
    ``<stanza-id by='room'/>`` (the room keeps it)."""

    room: "Room"
    stanza_id: str
    author: str | None
    tombstone: "Callable[[etree._Element], etree._Element]"
    announcement: etree._Element | None
    found: bool = False


class SpeechKind(enum.StrEnum):
    """What a member is about to put in front of others (see ``Speech``)."""

    GROUPCHAT = "groupchat"  # a message to the whole room (body, reactions, anything)
    SUBJECT = "subject"  # a subject change
    PRIVATE = "private"  # a private message to an occupant (XEP-0045 §7.5), whatever its payload
    NICK = "nick"  # a nick change (§7.6)
    STATUS = "status"  # status text (or other content) in presence the room relays (§7.7)
    INVITE = "invite"  # a mediated invitation (§7.8.2), with its reason
    DECLINE = "decline"  # a declined invitation relayed to the inviter (§7.8.3)
    POST = "post"  # something a feature posts into the room on the member's behalf (a red packet ...)


@dataclass(slots=True)
class Speech:
    """The speech gate: every piece of a member's content that a room passes on to others —
    groupchat and private messages, subject and nick changes, status text, invitations, and
    whatever a feature posts on the member's behalf (``Room.may_speak``) — runs this event first.

    Raise ``StanzaError`` to veto (the member gets that error, and for ``STATUS`` the room drops
    the content from the relayed presence instead); ``Flow.STOP`` vetoes with a plain
    ``forbidden``. MUC's own rules (visitors in moderated rooms, ``allow_visitor_*``) run after
    the handlers, so a moderation extension's more specific error wins.
    """

    room: "Room"
    speaker: JID  # the member's bare JID
    occupant: "Occupant | None"  # None: not in the room (an affiliated member, an invitee declining)
    role: Role  # its role, or the role it would get on entering
    kind: SpeechKind
    stanza: etree._Element | None = None  # what goes out, when there is one
    recipient: "Occupant | None" = None  # PRIVATE: the occupant addressed
    feature: str | None = None  # POST: the feature posting (e.g. "redpacket")


@dataclass(slots=True)
class RoleChangeRequest:
    """Before a role changes: a moderator's request (§8.3-§8.6 voice, §9.6/§9.7 moderator status,
    ``actor`` set), or the role an affiliation change would give (``implicit``, ``actor`` the
    admin or None). Raise ``StanzaError`` to refuse an explicit request (nothing of the request
    is applied); for an implicit change a handler may lower ``new`` instead (e.g. keep a muted
    member a visitor)."""

    room: "Room"
    occupant: "Occupant"
    old: Role
    new: Role
    actor: JID | None
    implicit: bool = False


PRE_JOIN: Hook[PreJoin] = Hook("muc/pre-join")
SPEECH: Hook[Speech] = Hook("muc/speech")
ROLE_CHANGE_REQUEST: Hook[RoleChangeRequest] = Hook("muc/role-change-request")
GROUPCHAT_BEFORE_BROADCAST: Hook[GroupchatBeforeBroadcast] = Hook("muc/groupchat-before-broadcast")
OCCUPANT_ROLE_CHANGED: Hook[OccupantRoleChanged] = Hook("muc/occupant-role-changed")
AFFILIATION_CHANGED: Hook[AffiliationChanged] = Hook("muc/affiliation-changed")
AFFILIATION_CHANGE_REQUEST: Hook[AffiliationChangeRequest] = Hook("muc/affiliation-change-request")
AFFILIATION_LIST_ITEM: Hook[AffiliationListItem] = Hook("muc/affiliation-list-item")
ROOM_DISCO_INFO: Hook[RoomDiscoInfo] = Hook("muc/room-disco-info")
CONFIG_FORM: Hook[ConfigForm] = Hook("muc/config-form")
ROOM_DESTROYED: Hook[RoomDestroyed] = Hook("muc/room-destroyed")
ROOM_LOADED: Hook[RoomLoaded] = Hook("muc/room-loaded")
PRIVATE_MESSAGE: Hook[PrivateMessage] = Hook("muc/private-message")
RETRACTION: Hook[MessageRetraction] = Hook("muc/retraction")


class RoomEvents(HookChains):
    """The MUC hook chains (same semantics as the server's: priorities, ``Flow``)."""

    def names(self) -> list[str]:
        return [k for k, v in self._handlers.items() if v]

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return f"<RoomEvents {self.names()!r}>"


__all__: list[Any] = [
    "PRE_JOIN", "SPEECH", "ROLE_CHANGE_REQUEST", "Speech", "SpeechKind", "RoleChangeRequest", "GROUPCHAT_BEFORE_BROADCAST", "OCCUPANT_ROLE_CHANGED", "AFFILIATION_CHANGED",
    "AFFILIATION_CHANGE_REQUEST", "AFFILIATION_LIST_ITEM", "AffiliationChangeRequest", "AffiliationListItem",
    "ROOM_DISCO_INFO", "CONFIG_FORM", "ROOM_DESTROYED", "ROOM_LOADED", "PRIVATE_MESSAGE", "RETRACTION", "RoomEvents",
    "PreJoin", "GroupchatBeforeBroadcast", "OccupantRoleChanged", "AffiliationChanged",
    "RoomDiscoInfo", "ConfigForm", "RoomDestroyed", "RoomLoaded", "PrivateMessage", "MessageRetraction",
]
