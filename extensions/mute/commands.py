"""Group mute's XEP-0050 ad-hoc commands (docs/mute.md §8): forms in, the feature's actions out.

The commands hold no state: they read the feature's in-memory mutes and call its actions, so the
rules (hierarchy, limits, notices, audit) are the same as through the iq protocol. The feature
imports this module; this module sees it only through ``service.MuteService``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from xmppd.errors import Condition, StanzaError
from xmppd.features.adhoc import Command, Execution, Field, Form, FormError, Note, Option, Result
from xmppd.features.muc.affiliations import Affiliation
from xmppd.features.muc.view import RoomView
from xmppd.jid import JID, JIDError

from . import policy
from . import protocol as P
from .protocol import MAX_REASON, NS
from .repository import PLATFORM, AuditEntry, MuteAll

if TYPE_CHECKING:
    from .service import MuteService

CMD_MUTE = NS + "#mute"
CMD_UNMUTE = NS + "#unmute"
CMD_MUTE_ALL = NS + "#mute-all"
CMD_UNMUTE_ALL = NS + "#unmute-all"
CMD_LIST = NS + "#list"
CMD_PLATFORM_MUTE = NS + "#platform-mute"
CMD_PLATFORM_UNMUTE = NS + "#platform-unmute"
CMD_PLATFORM_LIST = NS + "#platform-list"
CMD_AUDIT = NS + "#audit"
CMD_MY_MUTES = NS + "#my-mutes"
CMD_KEYWORDS = NS + "#keywords"
CMD_BAN = NS + "#ban"
CMD_PLATFORM_KEYWORDS = NS + "#platform-keywords"
CMD_PLATFORM_KEYWORD_ADD = NS + "#platform-keyword-add"
CMD_PLATFORM_KEYWORD_REMOVE = NS + "#platform-keyword-remove"
_KEYWORD_ACTIONS = (Option("block", "Refuse the message"), Option("mask", "Replace the words with *"),
                    Option("mute", "Refuse the message and mute the sender"))

_DURATIONS = (("300", "5 minutes"), ("600", "10 minutes"), ("3600", "1 hour"), ("86400", "1 day"),
              ("604800", "7 days"), ("0", "Until lifted"))


class MuteCommands:
    """The room commands (a provider on the MUC domain) and the server commands of one feature."""

    def __init__(self, feature: "MuteService") -> None:
        self.f = feature

    def register(self) -> None:
        """Offer the commands; the feature's context undoes this at teardown."""
        self.f.ctx.add_command_provider(self.f.muc_domain, self._room_commands)
        for cmd in self._server_commands():
            self.f.ctx.add_command(cmd)

    def _room_commands(self, requester: JID, target: JID) -> Iterable[Command]:
        room = self.f.muc.get_room(target)
        if room is None or target.local is None:
            return ()
        mod = lambda who, where: self._may(where, who, admin=False)  # noqa: E731
        adm = lambda who, where: self._may(where, who, admin=True)  # noqa: E731
        return (
            Command(CMD_MUTE, "Mute a member", self._cmd_mute, form=_mute_form(self.f.options, "Mute a member", "member",
                    "text-single", "Member (nick or JID)"), may_run=mod),
            Command(CMD_UNMUTE, "Unmute a member", self._cmd_unmute, form=self._unmute_form, may_run=mod),
            Command(CMD_LIST, "List muted members", self._cmd_list, may_run=mod),
            Command(CMD_MUTE_ALL, "Mute everyone", self._cmd_mute_all, form=Form("form", title="Mute everyone", fields=(
                Field("FORM_TYPE", "hidden", values=(NS,)), Field("reason", "text-single", "Reason", validate=_reason_ok))), may_run=adm),
            Command(CMD_UNMUTE_ALL, "Lift the mute on everyone", self._cmd_unmute_all, may_run=adm),
            Command(CMD_KEYWORDS, "Keyword filter", self._cmd_keywords, form=self._keywords_form, may_run=adm),
            Command(CMD_BAN, "Ban a user (for a time)", self._cmd_ban, form=self._ban_form, may_run=adm),
        )

    async def _ban_form(self, ex: Execution) -> Form:
        o = self.f.options
        durations = [Option(v, lbl) for v, lbl in _DURATIONS if v != "0" and int(v) <= o.max_ban_seconds]
        return Form("form", title="Ban a user", instructions=("A timed ban ends by itself; the user may then join again.",),
                    fields=(
            Field("FORM_TYPE", "hidden", values=(NS,)),
            Field("jid", "jid-single", "User (bare JID)", required=True),
            Field("seconds", "list-single", "Duration", values=(durations[0].value if durations else "0",),
                  options=(*durations, Option("0", "Until lifted"))),
            Field("reason", "text-single", "Reason", validate=_reason_ok),
        ))

    async def _cmd_ban(self, ex: Execution) -> Result:
        room = self.f.room_of(ex.target)
        target = ex.values["jid"]
        if target.local is None:
            raise FormError("jid", f"{target} is not a user's JID")
        raw = (ex.values.get("seconds") or "0").strip()
        try:
            seconds = self.f.bans.seconds(raw) if raw != "0" else None
            b = await self.f.bans.ban(room, ex.requester, target, seconds, ex.values.get("reason"))
        except StanzaError as err:
            raise FormError("jid" if err.condition is not Condition.BAD_REQUEST else "seconds",
                            err.text or err.condition.value) from None
        if b is None:
            return Result((Note(f"{target.bare} is banned until an admin lifts it."),))
        return Result((Note(f"{target.bare} is banned until {P.iso(b.until)}."),))

    async def _keywords_form(self, ex: Execution) -> Form:
        """The room's keyword filter as it is now, to edit."""
        room = self.f.room_of(ex.target)
        extra = room.config.extra
        return Form("form", title="Keyword filter", instructions=("One word or phrase per line; no words: no filter.",), fields=(
            Field("FORM_TYPE", "hidden", values=(NS,)),
            Field("words", "text-multi", "Words", values=tuple(extra.get(policy.KEYWORDS_FIELD) or ())),
            Field("action", "list-single", "What a listed word does", required=True,
                  values=tuple((extra.get(policy.KEYWORDS_ACTION_FIELD) or ["block"])[:1]),
                  options=(Option("block", "Refuse the message"), Option("mask", "Replace the words with *"),
                           Option("mute", "Refuse the message and mute the sender"))),
            Field("minutes", "text-single", "Minutes of the mute (action mute)",
                  values=tuple((extra.get(policy.KEYWORDS_MINUTES_FIELD) or ["10"])[:1])),
        ))

    async def _cmd_keywords(self, ex: Execution) -> Result:
        room = self.f.room_of(ex.target)
        words = [w for w in (ex.values.get("words") or "").split("\n") if w.strip()]
        raw = (ex.values.get("minutes") or "10").strip()
        if not (raw.isascii() and raw.isdigit() and len(raw) < 9):
            raise FormError("minutes", f"{raw!r} is not a whole number of minutes")
        try:
            rule = await self.f.set_keywords(room, ex.requester, words, ex.values.get("action") or "block", int(raw))
        except StanzaError as err:
            raise FormError("words", err.text or err.condition.value) from None
        if rule is None:
            return Result((Note("The keyword filter is off."),))
        return Result((Note(f"{len(rule.words)} word(s) filtered; action: {rule.action}"
                            + (f" ({rule.minutes} minutes)." if rule.action == "mute" else ".")),))

    def _may(self, target: JID, requester: JID, *, admin: bool) -> bool:
        room = self.f.muc.get_room(target)
        if room is None:
            return False
        if admin:
            return self.f.ctx.is_admin(requester) or room.affiliation(requester.bare).rank >= Affiliation.ADMIN.rank
        return self.f.is_moderator(room, requester)

    def _member(self, room: RoomView, value: str) -> JID:
        value = value.strip()
        occ = room.occupants.get(value)
        if occ is not None:
            return occ.bare  # type: ignore[no-any-return]
        try:
            j = JID.parse(value)
        except JIDError:
            j = None
        if j is None or j.local is None or j.resource is not None:
            raise FormError("member", f"{value!r} is neither the nick of an occupant nor a JID")
        return j.bare

    async def _cmd_mute(self, ex: Execution) -> Result:
        room = self.f.room_of(ex.target)
        target = self._member(room, ex.values["member"])
        seconds = int(ex.values["seconds"] or "0") or None
        try:
            m = await self.f.mute_member(room, ex.requester, target, seconds, ex.values.get("reason"))
        except StanzaError as err:
            raise FormError("member", err.text or err.condition.value) from None
        how = f"for {P.duration(seconds, 'en')}" if seconds else "until lifted"
        return Result((Note(f"{target} is muted {how}" + (f" (until {P.iso(m.until)})." if m.until else ".")),))

    async def _unmute_form(self, ex: Execution) -> Form:
        room = self.f.room_of(ex.target)
        now = self.f.now()
        opts = []
        for m in self.f.room_mutes(room.jid_s):
            left = P.remaining(m.until, now)
            label = f"{self.f.display(room, JID.parse(m.jid))[0]} ({m.jid}, " + (f"{left} s left)" if left is not None else "until lifted)")
            opts.append(Option(m.jid, label))
        if not opts:
            raise StanzaError(Condition.ITEM_NOT_FOUND, "nobody is muted in this room")
        return Form("form", title="Unmute a member", fields=(
            Field("FORM_TYPE", "hidden", values=(NS,)),
            Field("member", "list-single", "Member", required=True, options=tuple(opts)),
        ))

    async def _cmd_unmute(self, ex: Execution) -> Result:
        room = self.f.room_of(ex.target)
        target = JID.parse(ex.values["member"])
        try:
            await self.f.unmute_member(room, ex.requester, target)
        except StanzaError as err:
            raise FormError("member", err.text or err.condition.value) from None
        return Result((Note(f"{target} may speak again."),))

    async def _cmd_list(self, ex: Execution) -> Result:
        room = self.f.room_of(ex.target)
        now = self.f.now()
        rows = []
        for m in self.f.room_mutes(room.jid_s):
            left = P.remaining(m.until, now)
            rows.append((
                Field("nick", values=(self.f.display(room, JID.parse(m.jid))[0],)), Field("jid", "jid-single", values=(m.jid,)),
                Field("until", values=(P.iso(m.until) if m.until else "until lifted",)),
                Field("remaining", values=(str(left) if left is not None else "",)),
                Field("by", "jid-single", values=(m.actor,)), Field("reason", values=(m.reason or "",)),
            ))
        state = self.f.all_muted.get(room.jid_s)
        notes = [Note(f"{len(rows)} member(s) muted." + (f" Everyone is muted since {P.iso(state.since)}." if state else ""))]
        return Result(tuple(notes), _table("Muted members", rows, ("nick", "jid", "until", "remaining", "by", "reason")))

    async def _cmd_mute_all(self, ex: Execution) -> Result:
        room = self.f.room_of(ex.target)
        await self.f.set_mute_all(room, ex.requester, ex.values.get("reason"))
        return Result((Note("Everyone is muted; owners and admins may still speak."),))

    async def _cmd_unmute_all(self, ex: Execution) -> Result:
        room = self.f.room_of(ex.target)
        await self.f.lift_mute_all(room, ex.requester)
        return Result((Note("Everyone may speak again."),))

    def _server_commands(self) -> list[Command]:
        audit_form = Form("form", title="Mute audit log", fields=(
            Field("FORM_TYPE", "hidden", values=(NS,)),
            Field("room", "jid-single", "Room (empty: every room and the platform)"),
            Field("jid", "jid-single", "Member (empty: everybody)"),
            Field("max", "list-single", "Entries", values=("50",), options=tuple(Option(v) for v in ("10", "50", "100"))),
        ))
        return [
            Command(CMD_PLATFORM_MUTE, "Mute an account on the whole server", self._cmd_platform_mute, admin_only=True,
                    form=_mute_form(self.f.options, "Mute an account on the whole server", "member", "jid-single", "Account")),
            Command(CMD_PLATFORM_UNMUTE, "Unmute an account on the whole server", self._cmd_platform_unmute, admin_only=True,
                    form=Form("form", title="Unmute an account", fields=(
                        Field("FORM_TYPE", "hidden", values=(NS,)), Field("member", "jid-single", "Account", required=True)))),
            Command(CMD_PLATFORM_LIST, "List accounts muted on the whole server", self._cmd_platform_list, admin_only=True),
            Command(CMD_AUDIT, "Read the mute audit log", self._cmd_audit, admin_only=True, form=audit_form),
            Command(CMD_PLATFORM_KEYWORDS, "List the platform keyword list", self._cmd_platform_keywords, admin_only=True),
            Command(CMD_PLATFORM_KEYWORD_ADD, "Add words to the platform keyword list", self._cmd_platform_keyword_add,
                    admin_only=True, form=Form("form", title="Add words to the platform keyword list", fields=(
                        Field("FORM_TYPE", "hidden", values=(NS,)),
                        Field("words", "text-multi", "Words (one word or phrase per line)", required=True),
                        Field("action", "list-single", "What a listed word does", required=True, values=("block",),
                              options=_KEYWORD_ACTIONS),
                        Field("minutes", "text-single", "Minutes of the platform mute (action mute)", values=("10",))))),
            Command(CMD_PLATFORM_KEYWORD_REMOVE, "Remove words from the platform keyword list",
                    self._cmd_platform_keyword_remove, admin_only=True, form=self._keyword_remove_form),
            Command(CMD_MY_MUTES, "My mutes", self._cmd_my_mutes,
                    may_run=lambda who, where: who.local is not None and who.domain == self.f.ctx.domain),
        ]

    async def _cmd_platform_mute(self, ex: Execution) -> Result:
        target = ex.values["member"].bare
        seconds = int(ex.values["seconds"] or "0") or None
        try:
            await self.f.platform_mute(ex.requester, target, seconds, ex.values.get("reason"))
        except StanzaError as err:
            raise FormError("member", err.text or err.condition.value) from None
        how = f"for {P.duration(seconds, 'en')}" if seconds else "until lifted"
        return Result((Note(f"{target} is muted on the whole server {how}."),))

    async def _cmd_platform_unmute(self, ex: Execution) -> Result:
        target = ex.values["member"].bare
        try:
            await self.f.platform_unmute(ex.requester, target)
        except StanzaError as err:
            raise FormError("member", err.text or err.condition.value) from None
        return Result((Note(f"{target} may speak again."),))

    async def _cmd_platform_keywords(self, ex: Execution) -> Result:
        rows = [(Field("word", values=(k.word,)), Field("action", values=(k.action,)),
                 Field("minutes", values=(str(k.minutes) if k.action == "mute" else "",)),
                 Field("by", "jid-single", values=(k.actor,)), Field("since", values=(P.iso(k.created_at),)))
                for k in self.f.platform_words.words]
        return Result((Note(f"{len(rows)} word(s) on the platform list (at most {self.f.options.max_platform_keywords})."),),
                      _table("Platform keyword list", rows, ("word", "action", "minutes", "by", "since")))

    async def _cmd_platform_keyword_add(self, ex: Execution) -> Result:
        words = [w for w in (ex.values.get("words") or "").split("\n") if w.strip()]
        raw = (ex.values.get("minutes") or "10").strip()
        if not (raw.isascii() and raw.isdigit() and len(raw) < 9):
            raise FormError("minutes", f"{raw!r} is not a whole number of minutes")
        try:
            listed = await self.f.platform_words.add(ex.requester, words, ex.values.get("action") or "block", int(raw))
        except StanzaError as err:
            raise FormError("words", err.text or err.condition.value) from None
        return Result((Note(f"{len(words)} word(s) added; {len(listed)} on the platform list."),))

    async def _keyword_remove_form(self, ex: Execution) -> Form:
        words = self.f.platform_words.words
        if not words:
            raise StanzaError(Condition.ITEM_NOT_FOUND, "the platform keyword list is empty")
        return Form("form", title="Remove words from the platform keyword list", fields=(
            Field("FORM_TYPE", "hidden", values=(NS,)),
            Field("words", "list-multi", "Words", required=True,
                  options=tuple(Option(k.word, f"{k.word} ({k.action})") for k in words)),
        ))

    async def _cmd_platform_keyword_remove(self, ex: Execution) -> Result:
        words = ex.values.get("words") or ()
        n = await self.f.platform_words.remove(ex.requester, list(words))
        return Result((Note(f"{n} word(s) removed; {len(self.f.platform_words.words)} on the platform list."),))

    async def _cmd_platform_list(self, ex: Execution) -> Result:
        now = self.f.now()
        rows = []
        for m in self.f.room_mutes(PLATFORM):
            left = P.remaining(m.until, now)
            rows.append((Field("jid", "jid-single", values=(m.jid,)),
                         Field("until", values=(P.iso(m.until) if m.until else "until lifted",)),
                         Field("remaining", values=(str(left) if left is not None else "",)),
                         Field("by", "jid-single", values=(m.actor,)), Field("reason", values=(m.reason or "",))))
        return Result((Note(f"{len(rows)} account(s) muted on the whole server."),),
                      _table("Accounts muted on the whole server", rows, ("jid", "until", "remaining", "by", "reason")))

    async def _cmd_my_mutes(self, ex: Execution) -> Result:
        """The requester's own mutes (read-only): where, which, since and until when, by whom, why,
        in the requesting session's language."""
        lang = self.f.ctx.languages.of(ex.requester)

        def t(key: str, /, **fields: Any) -> str:
            return P.text(lang, "my." + key, **fields)

        now = self.f.now()
        mutes = self.f.mutes_of(ex.requester.bare)
        rows = []
        for where, kind, m in mutes:
            if isinstance(m, MuteAll):
                since, until, left = m.since, t("until_lifted"), ""
            else:
                since, until = m.created_at, P.iso(m.until) if m.until else t("until_lifted")
                left = str(P.remaining(m.until, now)) if m.until else ""
            rows.append((
                Field("room", "jid-single", values=(where,) if where != PLATFORM else ()),
                Field("kind", values=(t("kind_" + kind),)), Field("since", values=(P.iso(since),)),
                Field("until", values=(until,)), Field("remaining", values=(left,)),
                Field("by", "jid-single", values=(m.actor,)), Field("reason", values=(m.reason or "",)),
            ))
        platform = any(kind == "platform" for _w, kind, _m in mutes)
        rooms = len({where for where, _k, _m in mutes if where != PLATFORM})
        text = t("platform_yes" if platform else "platform_no") + (t("rooms", n=rooms) if rooms else t("no_rooms"))
        columns = ("room", "kind", "since", "until", "remaining", "by", "reason")
        reported = tuple(Field(c, "jid-single" if c in ("room", "by") else "text-single", t("col_" + c)) for c in columns)
        return Result((Note(text),), Form("result", title=t("title"), reported=reported, items=tuple(rows)))

    async def _cmd_audit(self, ex: Execution) -> Result:
        room = ex.values.get("room")
        who = ex.values.get("jid")
        entries = await self.f.repo.audit(room=str(room.bare) if room else None, target=str(who.bare) if who else None,
                                        limit=int(ex.values.get("max") or "50"))
        rows = [_audit_row(e) for e in entries]
        return Result((Note(f"{len(rows)} entries, newest first."),),
                      _table("Mute audit log", rows, ("id", "at", "actor", "action", "room", "target", "seconds", "until", "reason")))


def _reason_ok(value: Any) -> None:
    if value is not None and len(value) > MAX_REASON:
        raise ValueError(f"at most {MAX_REASON} characters")


def _mute_form(o: Any, title: str, var: str, ftype: str, label: str) -> Form:
    options = [Option(v, lbl) for v, lbl in _DURATIONS if v == "0" and o.allow_open_ended or v != "0" and int(v) <= o.max_seconds]
    return Form("form", title=title, fields=(
        Field("FORM_TYPE", "hidden", values=(NS,)),
        Field(var, ftype, label, required=True),
        Field("seconds", "list-single", "Duration", values=(options[0].value,), options=tuple(options)),
        Field("reason", "text-single", "Reason", validate=_reason_ok),
    ))


def _table(title: str, rows: Sequence[tuple[Field, ...]], columns: tuple[str, ...]) -> Form:
    reported = tuple(Field(c, "jid-single" if c in ("jid", "by", "actor", "target", "room") else "text-single", c.capitalize())
                     for c in columns)
    return Form("result", title=title, reported=reported, items=tuple(rows))


def _audit_row(e: AuditEntry) -> tuple[Field, ...]:
    return (
        Field("id", values=(str(e.id),)), Field("at", values=(P.iso(e.at),)), Field("actor", "jid-single", values=(e.actor,)),
        Field("action", values=(e.action,)), Field("room", "jid-single", values=(e.room,) if e.room else ()),
        Field("target", "jid-single", values=(e.target,) if e.target else ()),
        Field("seconds", values=(str(e.seconds),) if e.seconds is not None else ()),
        Field("until", values=(P.iso(e.until),) if e.until else ()), Field("reason", values=(e.reason,) if e.reason else ()),
    )
