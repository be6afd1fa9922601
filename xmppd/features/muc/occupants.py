"""XEP-0045 §7.2: occupants of a room, by nick and by real full JID (multi-session nicks, §7.2.9)."""
from __future__ import annotations

from dataclasses import dataclass, field

from lxml import etree

from ...jid import JID
from .affiliations import Role


@dataclass(slots=True)
class Occupant:
    """One nick in a room; a user may be present with several resources under it (§7.2.9)."""

    nick: str
    bare: JID
    role: Role
    # real full JID -> the last presence it sent to the room (children we relay)
    sessions: dict[JID, etree._Element] = field(default_factory=dict)

    @property
    def presence(self) -> etree._Element:
        """The presence shown for the nick: the most recent one of its sessions."""
        return next(reversed(self.sessions.values()))

    @property
    def primary(self) -> JID:
        return next(reversed(self.sessions))


class Occupants:
    __slots__ = ("by_nick", "by_jid")

    def __init__(self) -> None:
        self.by_nick: dict[str, Occupant] = {}
        self.by_jid: dict[JID, Occupant] = {}  # real full JID -> occupant

    def __len__(self) -> int:
        return len(self.by_nick)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(list(self.by_nick.values()))

    def get(self, nick: str) -> Occupant | None:
        return self.by_nick.get(nick)

    def of_jid(self, full: JID) -> Occupant | None:
        return self.by_jid.get(full)

    def of_bare(self, bare: JID) -> Occupant | None:
        for occ in self.by_nick.values():
            if occ.bare == bare:
                return occ
        return None

    def add(self, occ: Occupant, full: JID, presence: etree._Element) -> None:
        occ.sessions.pop(full, None)
        occ.sessions[full] = presence
        self.by_nick[occ.nick] = occ
        self.by_jid[full] = occ

    def remove_session(self, full: JID) -> Occupant | None:
        """Forget one session; returns the occupant (whose ``sessions`` may now be empty)."""
        occ = self.by_jid.pop(full, None)
        if occ is None:
            return None
        occ.sessions.pop(full, None)
        if not occ.sessions:
            self.by_nick.pop(occ.nick, None)
        return occ

    def remove(self, occ: Occupant) -> None:
        for full in list(occ.sessions):
            self.by_jid.pop(full, None)
        self.by_nick.pop(occ.nick, None)

    def rename(self, occ: Occupant, new_nick: str) -> None:
        self.by_nick.pop(occ.nick, None)
        occ.nick = new_nick
        self.by_nick[new_nick] = occ

    def full_jids(self):  # type: ignore[no-untyped-def]
        return self.by_jid.keys()
