"""The typed view of the mute feature that its parts get (ad-hoc commands, iq handlers, timed
bans, the platform keyword list, the REST API): what they may read and call, so none of them
imports ``feature`` and ``feature`` imports each of them once."""
from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from xmppd.features.muc.view import RoomDirectoryView, RoomView
from xmppd.jid import JID

from . import policy
from .repository import Mute, MuteAll, MuteRepository

if TYPE_CHECKING:
    from xmppd.core.feature import FeatureContext

    from .bans import TimedBans
    from .platform_keywords import PlatformKeywords


class MuteService(Protocol):
    ctx: "FeatureContext"
    options: Any  # feature.MuteOptions
    repo: MuteRepository
    muc: RoomDirectoryView
    muc_domain: str
    all_muted: dict[str, MuteAll]
    bans: "TimedBans"
    platform_words: "PlatformKeywords"

    # lookups
    def now(self) -> datetime: ...
    def room_of(self, jid: JID) -> RoomView: ...
    def room_mutes(self, room_s: str) -> list[Mute]: ...
    def mutes_of(self, bare: JID) -> list[tuple[str, str, Mute | MuteAll]]: ...
    def display(self, room: RoomView, bare: JID) -> tuple[str, str | None]: ...
    def seconds(self, raw: str | None) -> int | None: ...

    # permissions
    def acts_as_admin(self, actor: JID) -> bool: ...
    def is_moderator(self, room: RoomView, requester: JID) -> bool: ...
    def check_server_admin(self, actor: JID) -> None: ...

    # actions
    async def mute_member(self, room: RoomView, actor: JID, target: JID, seconds: int | None, reason: str | None,
                          lang: str | None = None) -> Mute: ...
    async def unmute_member(self, room: RoomView, actor: JID, target: JID, lang: str | None = None) -> None: ...
    async def set_mute_all(self, room: RoomView, actor: JID, reason: str | None, lang: str | None = None) -> MuteAll: ...
    async def lift_mute_all(self, room: RoomView, actor: JID, lang: str | None = None) -> None: ...
    async def platform_mute(self, actor: JID, target: JID, seconds: int | None, reason: str | None) -> Mute: ...
    async def platform_unmute(self, actor: JID, target: JID) -> None: ...
    async def set_keywords(self, room: RoomView, actor: JID, words: list[str], action: str,
                           minutes: int) -> policy.KeywordRule | None: ...


__all__ = ["MuteService"]
