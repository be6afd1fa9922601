"""The platform keyword list (docs/mute.md §3.7): words that no room message and no one-to-one
message may carry, managed by server admins, checked before a room's own list.

The list is stored (``mute_keywords``) and kept in memory on every node; a change publishes the
invalidation ``mute-keywords`` and every other node reads the list again (the P:inval pub/sub
door, milliseconds), so a word added on one node is enforced on all of them at once.

Each word has its action: ``block`` (refused), ``mask`` (stars), ``mute`` (refused, and the
sender is muted on the whole platform for the word's minutes: the platform's rule, the platform's
sanction). Server admins are not filtered.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from lxml import etree

from xmppd.errors import Condition, StanzaError
from xmppd.jid import JID

from . import policy
from . import protocol as P
from .repository import Keyword

if TYPE_CHECKING:
    from .service import MuteService


class PlatformKeywords:
    def __init__(self, feature: "MuteService") -> None:
        self.f = feature
        self.words: list[Keyword] = []
        self._entries: list[tuple[str, str, int]] = []

    async def start(self) -> None:
        await self._reload()
        self._inval = self.f.ctx.invalidation("mute-keywords", self._invalidated, self._reload)

    async def _invalidated(self, _key: str) -> None:
        await self._reload()

    async def _reload(self) -> None:
        self._set(await self.f.repo.keywords())

    def _set(self, words: list[Keyword]) -> None:
        self.words = words
        self._entries = [(k.word, k.action, k.minutes) for k in words]

    # ------------------------------------------------------------------ management (server admins)

    async def add(self, actor: JID, words: Sequence[str], action: str, minutes: int) -> list[Keyword]:
        """Add words (or change their action); the list afterwards."""
        f, o = self.f, self.f.options
        f.check_server_admin(actor)
        if action not in policy.KEYWORD_ACTIONS:
            raise StanzaError(Condition.BAD_REQUEST, f"the action is one of {', '.join(policy.KEYWORD_ACTIONS)}")
        clean = sorted({policy.normalize_keyword(w) for w in words if w.strip()})
        if not clean:
            raise StanzaError(Condition.BAD_REQUEST, "give at least one word")
        if any(len(w) > policy.MAX_KEYWORD for w in clean):
            raise StanzaError(Condition.BAD_REQUEST, f"a word or phrase has at most {policy.MAX_KEYWORD} characters")
        if not 1 <= minutes <= o.max_seconds // 60:
            raise StanzaError(Condition.BAD_REQUEST, f"minutes are 1 to {o.max_seconds // 60}")
        known = {k.word for k in self.words}
        if len(known | set(clean)) > o.max_platform_keywords:
            raise StanzaError(Condition.NOT_ACCEPTABLE, f"the platform list holds at most {o.max_platform_keywords} words")
        now = f.now()
        for w in clean:
            await f.repo.put_keyword(Keyword(w, action, minutes, str(actor.bare), now))
        await self._changed()
        return self.words

    async def remove(self, actor: JID, words: Sequence[str]) -> int:
        """Remove words; how many were listed."""
        self.f.check_server_admin(actor)
        n = 0
        for w in {policy.normalize_keyword(w) for w in words if w.strip()}:
            n += await self.f.repo.remove_keyword(w)
        await self._changed()
        return n

    async def _changed(self) -> None:
        await self._reload()
        self._inval.publish("list")

    # ------------------------------------------------------------------ enforcement

    def _exempt(self, bare: JID) -> bool:
        return not self._entries or self.f.ctx.is_admin(bare)

    async def refuse(self, room: str | None, bare: JID, stanza: etree._Element) -> StanzaError | None:
        """Why the message may not go out (a listed word whose action is block or mute; with mute
        the sender is platform-muted first), else None (``mask`` words are starred by :meth:`mask`)."""
        if self._exempt(bare):
            return None
        hit = policy.platform_hit([b.text or "" for b in stanza.iterfind(P.BODY)], self._entries)
        if hit is None or hit[1] == "mask":
            return None
        word, action, minutes = hit
        if action == "mute":
            m = await self.f.platform_mute(JID(None, self.f.ctx.domain), bare, minutes * 60, f"keyword filter: {word}")
            return P.platform_muted_error(m)
        return P.filtered_error(room, word, platform=True)

    def mask(self, bare: JID, stanza: etree._Element) -> None:
        """Star the listed ``mask`` words in the message's bodies."""
        if self._exempt(bare):
            return
        words = [w for w, action, _m in self._entries if action == "mask"]
        if not words:
            return
        for b in stanza.iterfind(P.BODY):
            if b.text:
                b.text = policy.mask(b.text, words)
