"""The typed view of group chat that extensions use (red packets; the model for others): which
JIDs are rooms, who is a member, the room's speech gate for content posted on a member's behalf,
and posting a server-authored message that is part of the room's history.

Published by the MUC feature (``ctx.feature("muc").directory``), so an extension reaches rooms
through this :class:`RoomDirectory` protocol, never through the MUC feature's internals."""
from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from lxml import etree

from ...errors import Condition, StanzaError
from ...jid import JID
from ...xml import ns
from .events import SpeechKind

if TYPE_CHECKING:
    from .service import Muc

__all__ = ["MucRoomDirectory", "RoomDirectory"]


class RoomDirectory(Protocol):
    """What an extension needs from group chat: membership, the speech gate, posting as the room."""

    def is_room(self, jid: JID) -> bool: ...

    async def is_member(self, room: JID, user: JID) -> bool: ...

    async def may_post(self, room: JID, user: JID, message: etree._Element, *, feature: str) -> None:
        """The room's speech gate for ``message`` posted on ``user``'s behalf: raises
        ``StanzaError`` when the user may not speak there now (muted, a visitor ...)."""

    async def post(self, room: JID, message: etree._Element) -> None:
        """Deliver ``message`` (type groupchat, from the room's bare JID) to the room, as part
        of its history: the room's archive keeps it (``Room.send_notice(archive=True)``)."""


class MucRoomDirectory:
    """:class:`RoomDirectory` over this server's MUC service: members are affiliated members and
    above, and anyone currently in the room; messages come from the room."""

    def __init__(self, muc: Muc) -> None:
        self._muc = muc

    def is_room(self, jid: JID) -> bool:
        return jid.local is not None and jid.resource is None and self._muc.get_room(jid) is not None

    async def is_member(self, room: JID, user: JID) -> bool:
        r = self._muc.get_room(room)
        if r is None:
            return False
        bare = user.bare
        return bool(r.is_member(bare)) or any(full.bare == bare for full in r.occupants.full_jids())

    async def may_post(self, room: JID, user: JID, message: etree._Element, *, feature: str) -> None:
        r = self._muc.get_room(room)
        if r is None:
            raise StanzaError(Condition.ITEM_NOT_FOUND, f"there is no room {room}")
        await r.may_speak(user.bare, SpeechKind.POST, stanza=message, feature=feature)

    async def post(self, room: JID, message: etree._Element) -> None:
        r = self._muc.get_room(room)
        if r is None:
            return
        body = message.find(f"{{{ns.CLIENT}}}body")
        children = [c for c in message if c is not body]
        # The body keeps its language: the room writes a fresh message around it.
        await r.send_notice(body.text if body is not None else None, children=children,
                            lang=body.get(ns.XML_LANG) if body is not None else None,
                            id=message.get("id"), archive=True)
