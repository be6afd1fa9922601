"""XEP-0045 room events for extensions: typed payloads on a hook chain private to MUC.

Extensions (group mute, red packets) hook in without editing MUC::

    muc = ctx.feature("muc")
    ctx.on_teardown(muc.events.add(GROUPCHAT_BEFORE_BROADCAST, self.check, priority=10))

Handlers return ``Flow.CONTINUE`` or ``Flow.STOP`` (stop silently drops the action where the
event says so) and may raise ``StanzaError`` where the event allows a denial: the sender then
gets that error.
"""
from __future__ import annotations

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
    occupant: "Occupant"
    sender: JID
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
    room: "Room"
    jid: JID
    old: Affiliation
    new: Affiliation
    actor: JID | None
    reason: str | None


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


@dataclass(slots=True)
class PrivateMessage:
    """A private message between occupants; raise ``StanzaError`` to refuse, STOP to drop."""

    room: "Room"
    sender: "Occupant"
    recipient: "Occupant"
    stanza: etree._Element


PRE_JOIN: Hook[PreJoin] = Hook("muc/pre-join")
GROUPCHAT_BEFORE_BROADCAST: Hook[GroupchatBeforeBroadcast] = Hook("muc/groupchat-before-broadcast")
OCCUPANT_ROLE_CHANGED: Hook[OccupantRoleChanged] = Hook("muc/occupant-role-changed")
AFFILIATION_CHANGED: Hook[AffiliationChanged] = Hook("muc/affiliation-changed")
ROOM_DISCO_INFO: Hook[RoomDiscoInfo] = Hook("muc/room-disco-info")
CONFIG_FORM: Hook[ConfigForm] = Hook("muc/config-form")
ROOM_DESTROYED: Hook[RoomDestroyed] = Hook("muc/room-destroyed")
PRIVATE_MESSAGE: Hook[PrivateMessage] = Hook("muc/private-message")


class RoomEvents(HookChains):
    """The MUC hook chains (same semantics as the server's: priorities, ``Flow``)."""

    def names(self) -> list[str]:
        return [k for k, v in self._handlers.items() if v]

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return f"<RoomEvents {self.names()!r}>"


__all__: list[Any] = [
    "PRE_JOIN", "GROUPCHAT_BEFORE_BROADCAST", "OCCUPANT_ROLE_CHANGED", "AFFILIATION_CHANGED",
    "ROOM_DISCO_INFO", "CONFIG_FORM", "ROOM_DESTROYED", "PRIVATE_MESSAGE", "RoomEvents",
    "PreJoin", "GroupchatBeforeBroadcast", "OccupantRoleChanged", "AffiliationChanged",
    "RoomDiscoInfo", "ConfigForm", "RoomDestroyed", "PrivateMessage",
]
