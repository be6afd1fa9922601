"""Group mute in MUC rooms (docs/mute.md §2, §3): the handlers of MUC's events. The speech gate
(member mutes, mute-all, slow mode, the platform's and the room's keyword filters), the
pre-join role, XEP-0045 voice and affiliation changes, the room configuration form, room disco,
a room loaded or destroyed. The slow-mode clocks live here; mutes and actions are the
feature's, reached through ``service.MuteService``."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lxml import etree

from xmppd.core.hooks import Flow
from xmppd.errors import StanzaError
from xmppd.features.adhoc import Field, Option
from xmppd.features.muc import events as E
from xmppd.features.muc.affiliations import Affiliation, Role
from xmppd.features.muc.view import RoomView
from xmppd.jid import JID

from . import policy
from . import protocol as P
from .protocol import NS
from .repository import PLATFORM, Mute

if TYPE_CHECKING:
    from .service import MuteService


class MuteRooms:
    """MUC's events for the mute feature, registered on MUC's event bus (undone at teardown)."""

    def __init__(self, f: "MuteService") -> None:
        self.f = f
        self._said: dict[str, dict[JID, float]] = {}  # slow mode: room -> member -> time of its last message (cache of mute_slow)

    def register(self) -> None:
        f = self.f
        ev = f.muc.events
        for h, fn in ((E.PRE_JOIN, self._pre_join), (E.SPEECH, self._speech),
                      (E.ROLE_CHANGE_REQUEST, self._role_change_request), (E.OCCUPANT_ROLE_CHANGED, self._role_changed),
                      (E.AFFILIATION_CHANGED, self._affiliation_changed), (E.CONFIG_FORM, self._config_form),
                      (E.ROOM_DESTROYED, self._room_destroyed), (E.ROOM_DISCO_INFO, self._room_disco),
                      (E.GROUPCHAT_BEFORE_BROADCAST, self._said_now), (E.ROOM_LOADED, self._room_loaded)):
            f.ctx.on_teardown(ev.add(h, fn, priority=100))  # type: ignore[arg-type]

    async def _speech(self, ev: E.Speech) -> Flow:
        """MUC's speech gate: whatever a muted member would put in front of others is refused."""
        err = self.speech_block(ev.room, ev.speaker, ev.role, ev.kind, ev.recipient)
        if err is None and ev.kind is E.SpeechKind.GROUPCHAT:
            err = await self.slow_block(ev.room, ev.speaker, ev.role)
            if err is None and ev.stanza is not None:  # the platform's list before the room's (§3.7)
                err = await self.f.platform_words.refuse(ev.room.jid_s, ev.speaker, ev.stanza)
            if err is None and ev.stanza is not None:
                err = await self._keyword_block(ev.room, ev.speaker, ev.role, ev.stanza)
        elif err is None and ev.kind is E.SpeechKind.PRIVATE and ev.stanza is not None and self.f.options.filter_chat:
            err = await self.f.platform_words.refuse(ev.room.jid_s, ev.speaker, ev.stanza)  # a private chat (§3.7)
            if err is None:
                self.f.platform_words.mask(ev.speaker, ev.stanza)
        if err is not None:
            raise err
        return Flow.CONTINUE

    def speech_block(self, room: RoomView, bare: JID, role: Role | None, kind: E.SpeechKind,
                     recipient: Any = None) -> StanzaError | None:
        """Why ``bare`` may not say this ``kind`` of thing in ``room`` now (None: it may).

        Every kind is refused under any mute (platform, member, everyone) except: private messages
        when the room lets muted members send them (``xmppd#mute_block_private`` = 0; a platform
        mute still refuses them, except to a server admin), and declines, which only a platform
        mute refuses (the decliner is not speaking in the room)."""
        if kind is E.SpeechKind.DECLINE:
            pm = self.f.active(PLATFORM, bare) if self.f.mutes else None
            return P.platform_muted_error(pm) if pm is not None else None
        if kind is E.SpeechKind.PRIVATE:
            pm = self.f.active(PLATFORM, bare) if self.f.mutes else None
            if pm is not None and not (recipient is not None and self.f.ctx.is_admin(recipient.bare)):
                return P.platform_muted_error(pm)
            if not self._block_private(room):
                return None
            return self.f.room_block(room, bare, role, platform=False)
        return self.f.room_block(room, bare, role)

    def _block_private(self, room: RoomView) -> bool:
        return room.config.extra.get(P.BLOCK_PRIVATE_FIELD, ["1"])[:1] != ["0"]

    async def slow_block(self, room: RoomView, bare: JID, role: Role | None) -> StanzaError | None:
        """Slow mode (docs/mute.md §3.4): a member who spoke less than the room's interval ago waits.
        Moderators, owners, admins and server admins are exempt."""
        interval = policy.slow_interval(room.config.extra, self.f.options.max_slow_seconds)
        if interval == 0 or self.f.privileged(room, bare, role):
            return None
        wait = policy.slow_wait((await self.said_in(room.jid_s)).get(bare), self.f.ctx.clock.now(), interval)
        return P.slow_mode_error(room.jid_s, interval, wait) if wait else None

    async def said_in(self, room_s: str) -> dict[JID, float]:
        """When each member last spoke in the room: kept in ``mute_slow`` by the node holding the
        room, read once when this node starts serving it (after a restart or a move)."""
        said = self._said.get(room_s)
        if said is None:
            said = {JID.parse(j): ms / 1000 for j, ms in (await self.f.repo.slow_times(room_s)).items()}
            self._said[room_s] = said
        return said

    async def _keyword_block(self, room: RoomView, bare: JID, role: Role | None, st: etree._Element) -> StanzaError | None:
        """The keyword filter (docs/mute.md §3.5), actions ``block`` and ``mute``: the message is
        refused; with ``mute`` the sender is muted for the room's minutes first (by the server)."""
        rule = self.f.keyword_rule(room)
        if rule is None or rule.action == "mask" or self.f.privileged(room, bare, role):
            return None
        word = next((w for b in st.iterfind(P.BODY) if (w := policy.find_keyword(b.text or "", rule.words))), None)
        if word is None:
            return None
        if rule.action == "mute":
            m = await self.f.mute_member(room, JID(None, self.f.ctx.domain), bare, rule.minutes * 60,
                                         f"keyword filter: {word}")
            return P.muted_error(room.jid_s, m)
        return P.filtered_error(room.jid_s, word)

    async def _said_now(self, ev: E.GroupchatBeforeBroadcast) -> Flow:
        """A message passed every gate and goes out: the keyword filter masks its words (action
        ``mask``), and its sender's slow-mode clock starts."""
        if ev.occupant is None:
            return Flow.CONTINUE  # a server-authored notice
        self.f.platform_words.mask(ev.sender.bare, ev.stanza)  # the platform's words first (§3.7)
        rule = self.f.keyword_rule(ev.room)
        if rule is not None and rule.action == "mask" and not self.f.privileged(ev.room, ev.sender.bare, ev.occupant.role):
            for b in ev.stanza.iterfind(P.BODY):
                if b.text:
                    b.text = policy.mask(b.text, rule.words)
        interval = policy.slow_interval(ev.room.config.extra, self.f.options.max_slow_seconds)
        if interval == 0:
            if self._said.pop(ev.room.jid_s, None):
                await self.f.repo.forget_slow(ev.room.jid_s)
            return Flow.CONTINUE
        if self.f.privileged(ev.room, ev.sender.bare, ev.occupant.role):
            return Flow.CONTINUE  # exempt: no clock to keep
        said = await self.said_in(ev.room.jid_s)
        now = self.f.ctx.clock.now()
        if len(said) > 2 * len(ev.room.occupants) + 16:
            policy.prune_said(said, now, interval)
        said[ev.sender.bare] = now
        # Written through: slow mode lets each member speak once per interval, so this costs at
        # most (members / interval) writes a second, and the clock survives a restart or a move.
        await self.f.repo.set_slow_time(ev.room.jid_s, str(ev.sender.bare), int(now * 1000))
        return Flow.CONTINUE

    async def _pre_join(self, ev: E.PreJoin) -> Flow:
        if ev.role.rank > Role.VISITOR.rank and ev.affiliation.rank < Affiliation.ADMIN.rank:
            if self.f.active(ev.room.jid_s, ev.jid.bare) is not None:
                ev.role = Role.VISITOR
        return Flow.CONTINUE

    async def _role_change_request(self, ev: E.RoleChangeRequest) -> Flow:
        """XEP-0045 voice obeys the mute hierarchy (§2): a voice revoke is a mute, so it needs the
        right to mute; a voice (or moderator) grant to a muted visitor lifts the mute, so it needs
        the right to lift it (``not-allowed`` otherwise); an affiliation change below admin keeps a
        muted occupant a visitor."""
        room, bare = ev.room, ev.occupant.bare
        if (room.jid_s, bare) in self.f.applying:
            return Flow.CONTINUE
        if ev.new is Role.VISITOR and ev.old.rank >= Role.PARTICIPANT.rank and ev.actor is not None and not ev.implicit:
            self.f.check_can_mute(room, ev.actor, bare)  # a voice revoke is a mute (§5): the same hierarchy
            return Flow.CONTINUE
        if ev.new.rank <= Role.VISITOR.rank:
            return Flow.CONTINUE
        m = self.f.active(room.jid_s, bare)
        if m is None:
            return Flow.CONTINUE
        if ev.implicit:
            if room.affiliation(bare).rank < Affiliation.ADMIN.rank:
                ev.new = Role.VISITOR
            return Flow.CONTINUE
        if ev.old is Role.VISITOR and ev.actor is not None:
            self.f.check_can_mute(room, ev.actor, bare)
            self.f.check_can_lift(room, ev.actor, m)
        return Flow.CONTINUE

    async def _role_changed(self, ev: E.OccupantRoleChanged) -> Flow:
        """XEP-0045 §8.4/§8.3: a moderator's voice revoke is an open-ended mute; a voice grant lifts it."""
        room, bare = ev.room, ev.jid.bare
        if (room.jid_s, bare) in self.f.applying or ev.actor is None:
            return Flow.CONTINUE
        if ev.new is Role.VISITOR and ev.old.rank >= Role.PARTICIPANT.rank:
            now = self.f.now()
            m = Mute(room.jid_s, str(bare), None, ev.reason, str(ev.actor.bare), now, "voice")
            await self.f.store(m, ev.actor.bare, None)
            await self.f.room_notice(room, "mute", bare, ev.actor.bare, None, ev.reason, None)
        elif ev.old is Role.VISITOR and ev.new.rank >= Role.PARTICIPANT.rank and (room.jid_s, bare) in self.f.mutes:
            await self.f.lift(room.jid_s, bare, ev.actor.bare, lang=None, restore=False)
        return Flow.CONTINUE

    async def _affiliation_changed(self, ev: E.AffiliationChanged) -> Flow:
        # Admins and owners can't be muted in their room: a promotion lifts the mute.
        if ev.new.rank >= Affiliation.ADMIN.rank and (ev.room.jid_s, ev.jid.bare) in self.f.mutes:
            await self.f.lift(ev.room.jid_s, ev.jid.bare, (ev.actor or JID(None, self.f.ctx.domain)).bare, lang=None, restore=False)
        return Flow.CONTINUE

    async def _config_form(self, ev: E.ConfigForm) -> Flow:
        ev.fields.extend([
            Field(P.LANG_FIELD, "text-single", "Natural language for room discussions (mute notices)",
                  values=(self.f.options.default_lang,)),
            Field(P.BLOCK_PRIVATE_FIELD, "boolean", "Muted members may not send private messages either", values=("1",)),
            Field(P.EXEMPT_MODERATORS_FIELD, "boolean", "Moderators may speak when everyone is muted", values=("0",)),
            Field(P.ALLOWLIST_FIELD, "jid-multi", "Who else may speak when everyone is muted"),
            Field(policy.KEYWORDS_FIELD, "text-multi", "Keyword filter: one word or phrase per line"),
            Field(policy.KEYWORDS_ACTION_FIELD, "list-single", "Keyword filter: what a listed word does", values=("block",),
                  options=(Option("block", "Refuse the message"), Option("mask", "Replace the words with *"),
                           Option("mute", "Refuse the message and mute the sender"))),
            Field(policy.KEYWORDS_MINUTES_FIELD, "text-single", "Keyword filter: minutes of the mute", values=("10",)),
            Field(policy.SLOW_FIELD, "text-single",
                  f"Slow mode: seconds a member waits between two messages (0: off, at most {self.f.options.max_slow_seconds})",
                  values=("0",)),
        ])
        return Flow.CONTINUE

    async def _room_disco(self, ev: E.RoomDiscoInfo) -> Flow:
        ev.features.append(NS)
        if ev.room.jid_s in self.f.all_muted:
            ev.fields.append(("xmppd#mute_all", "1"))
        return Flow.CONTINUE

    async def _room_loaded(self, ev: E.RoomLoaded) -> Flow:
        """This node now serves the room (cluster: it took the lease): slow-mode clocks read again."""
        self._said.pop(ev.room.jid_s, None)
        return Flow.CONTINUE

    async def _room_destroyed(self, ev: E.RoomDestroyed) -> Flow:
        room = ev.room.jid_s
        self._said.pop(room, None)
        await self.f.forget_room(room)
        return Flow.CONTINUE


__all__ = ["MuteRooms"]
