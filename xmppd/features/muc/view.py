"""What extensions may see and do of group chat: typed views the MUC feature publishes.

Extensions (group mute, red packets) reach rooms through these protocols instead of ``Any``:
the MUC feature (``ctx.feature("muc")``) is a :class:`RoomDirectoryView`, its rooms are
:class:`RoomView`. Only what is listed here is theirs to use; the rest of ``Room`` is MUC's own.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Protocol

from lxml import etree

from ...jid import JID
from .affiliations import Affiliation, Role

if TYPE_CHECKING:
    from .config_form import RoomConfig
    from .events import RoomEvents, SpeechKind
    from .occupants import Occupant
    from .repository import StoredAffiliation


class OccupantsView(Protocol):
    """A room's occupants, found by nick, full JID or bare JID."""

    def __len__(self) -> int: ...

    def __iter__(self) -> Iterator["Occupant"]: ...

    def get(self, nick: str) -> "Occupant | None": ...

    def of_jid(self, full: JID) -> "Occupant | None": ...

    def of_bare(self, bare: JID) -> "Occupant | None": ...


class RoomView(Protocol):
    """One room, as extensions see it."""

    jid_s: str  # the room's bare JID
    config: "RoomConfig"  # read it; change it only through reconfigure (extensions' fields: config.extra)
    occupants: OccupantsView
    affiliations: Mapping[JID, "StoredAffiliation"]

    def affiliation(self, bare: JID) -> Affiliation: ...

    async def set_role(self, nick: str, role: Role, *, actor: JID | None = None, reason: str | None = None) -> None: ...

    async def set_affiliation(self, jid: JID, aff: Affiliation, *, actor: JID | None = None, reason: str | None = None,
                              nick: str | None = None) -> None: ...

    async def reconfigure(self, new: "RoomConfig") -> None: ...

    async def may_speak(self, speaker: JID, kind: "SpeechKind", *, stanza: etree._Element | None = None,
                        recipient: "Occupant | None" = None, feature: str | None = None, role: Role | None = None) -> None: ...

    async def send_notice(self, body: str | None = None, *, children: Iterable[etree._Element] = (),
                          lang: str | None = None) -> None: ...


class RoomDirectoryView(Protocol):
    """The MUC feature, as extensions see it: its service domain, its room events, its rooms."""

    domain: str

    @property
    def events(self) -> "RoomEvents": ...

    def get_room(self, jid: JID | str) -> RoomView | None: ...
