"""Canned replies (docs §6.1): texts an agent sends with one command (``!r <name>``), shared by a
queue (kept by its supervisors and admins) or personal (each agent's own, which win over a shared
one of the same name)."""
from __future__ import annotations

import re
from typing import TYPE_CHECKING

from xmppd.errors import Condition
from xmppd.jid import JID

from .protocol import CsError
from .repository import Canned

if TYPE_CHECKING:
    from .service import CsService

NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
MAX_TEXT = 4000
MAX_PER_OWNER = 200  # canned replies one queue or one agent keeps


class CannedReplies:
    def __init__(self, cs: "CsService") -> None:
        self.cs = cs

    async def put(self, queue: str, who: JID, name: str, text: str, personal: bool) -> None:
        """Set (empty ``text``: remove) a shared or the requester's personal canned reply."""
        cs = self.cs
        me = str(who.bare)
        if personal:
            if cs.role(queue, me) != "agent":
                raise CsError(Condition.FORBIDDEN, "only_agent")
            owner = me
        else:
            if cs.role(queue, me) != "supervisor" and not cs.ctx.is_admin(who):
                raise CsError(Condition.FORBIDDEN, "only_supervisor")
            owner = ""
        await self.store(queue, owner, name, text)

    async def store(self, queue: str, owner: str, name: str, text: str) -> None:
        """Set (empty ``text``: remove) the reply ``name`` of ``owner`` ("": shared), checked;
        whoever asks has been checked by the caller (``put``, the REST API)."""
        cs = self.cs
        name = name.strip().lower()
        if not NAME.match(name):
            raise CsError(Condition.BAD_REQUEST, "canned_name")
        text = text.strip()
        if len(text) > MAX_TEXT:
            raise CsError(Condition.BAD_REQUEST, "canned_text", most=MAX_TEXT)
        if not text:
            await cs.repo.delete_canned(queue, owner, name)
            return
        have = await cs.repo.canned(queue, (owner,))
        if len(have) >= MAX_PER_OWNER and all(c.name != name for c in have):
            raise CsError(Condition.RESOURCE_CONSTRAINT, "canned_many", most=MAX_PER_OWNER)
        await cs.repo.put_canned(Canned(queue, owner, name, text))

    async def visible(self, queue: str, who: str) -> list[Canned]:
        """The queue's shared replies and ``who``'s personal ones."""
        return await self.cs.repo.canned(queue, ("", who))

    async def text(self, queue: str, who: str, name: str) -> str | None:
        found = {c.owner: c.text for c in await self.visible(queue, who) if c.name == name.strip().lower()}
        return found.get(who) or found.get("")
