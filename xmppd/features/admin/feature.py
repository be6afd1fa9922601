"""XEP-0133: Service Administration as ad-hoc commands, for the server admins only.

Every command works on real state: accounts through ``server.account_service`` (which runs the
account hooks and ends the sessions of disabled and deleted accounts), sessions through
``server.kick``, announcements through the router, and the message of the day in storage,
shown once per version at login (after the session's first available presence).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ...accounts import AccountExists, AccountNotFound, InvalidAccount, ReservedUsername
from ...core import hooks as H
from ...core.feature import Feature, hook
from ...core.hooks import Flow, Routed
from ...errors import StreamErrorCondition
from ...jid import JID
from ...xml import ns
from ...xml.builder import stanza, sub
from ...xml.forms import Field, Form, FormError, Option
from ..adhoc import Command, Execution, Note, Result
from .repository import MAX_MOTD_LENGTH, Motd, SqlMotdRepository

ADMIN = "http://jabber.org/protocol/admin"
_FT = Field("FORM_TYPE", "hidden", values=(ADMIN,))


def node(name: str) -> str:
    return f"{ADMIN}#{name}"


def _form(title: str, instructions: str, *fields: Field) -> Form:
    return Form("form", title, (instructions,), (_FT, *fields))


def _result(*fields: Field) -> Form:
    return Form("result", fields=(_FT, *fields))


_ACCOUNTJIDS = Field("accountjids", "jid-multi", "The Jabber ID(s)", required=True)
_MOTD_FIELD = Field("motd", "text-multi", "Message of the day", required=True)
_MAX_ITEMS = Field(
    "max_items",
    "list-single",
    "Maximum number of items to show",
    values=("100",),
    options=tuple(Option(v) for v in ("25", "50", "75", "100", "150", "200", "none")),
)

ADD_USER = _form(
    "Adding a user",
    "Fill out this form to add a user.",
    Field("accountjid", "jid-single", "The Jabber ID for the account to be added", required=True),
    Field("password", "text-private", "The password for this account", required=True),
    Field("password-verify", "text-private", "Retype password", required=True),
    Field("email", "text-single", "Email address"),
    Field("given_name", "text-single", "Given name"),
    Field("surname", "text-single", "Family name"),
)
DELETE_USER = _form("Deleting a user", "Fill out this form to delete a user.", _ACCOUNTJIDS)
DISABLE_USER = _form("Disabling a user", "Fill out this form to disable a user.", _ACCOUNTJIDS)
REENABLE_USER = _form("Re-enabling a user", "Fill out this form to re-enable a user.", _ACCOUNTJIDS)
END_SESSION = _form(
    "Ending a user session",
    "Fill out this form to end a user's session (a bare JID ends all of them).",
    Field("accountjids", "jid-multi", "The Jabber ID(s) whose session is to be ended", required=True),
)
CHANGE_PASSWORD = _form(
    "Changing a user password",
    "Fill out this form to change a user's password.",
    Field("accountjid", "jid-single", "The Jabber ID for this account", required=True),
    Field("password", "text-private", "The password for this account", required=True),
)
ONLINE_USERS = _form("Getting the list of online users", "How many users to show.", _MAX_ITEMS)
ANNOUNCE = _form(
    "Making an announcement",
    "Fill out this form to make an announcement to all active users of this service.",
    Field("subject", "text-single", "Subject"),
    Field("announcement", "text-multi", "Announcement", required=True),
)
SET_MOTD = _form("Setting the message of the day", "Users are shown it once, at their next login.", _MOTD_FIELD)


class Admin(Feature):
    name = "admin"
    implements = ("XEP-0133",)
    depends = ("adhoc",)
    migrations = str(Path(__file__).parent / "migrations")

    async def setup(self) -> None:
        self.repo = SqlMotdRepository(self.ctx.db)
        self.motd: Motd | None = await self.repo.get(self.ctx.domain)
        self.tr = self.ctx.translator(Path(__file__).parent / "locale")
        adhoc = self.ctx.feature("adhoc")
        for cmd in self.commands():
            self.ctx.on_teardown(adhoc.register(cmd))

    def commands(self) -> list[Command]:
        def admin(name: str, title: str, handler: Any, form: Any = None, stages: tuple[Any, ...] = ()) -> Command:
            return Command(node(name), title, handler, form=form, stages=stages, admin_only=True)

        return [
            admin("add-user", "Add a User", self._add_user, ADD_USER),
            admin("delete-user", "Delete a User", self._delete_user, DELETE_USER),
            admin("disable-user", "Disable a User", self._disable_user, DISABLE_USER),
            admin("reenable-user", "Re-Enable a User", self._reenable_user, REENABLE_USER),
            admin("end-user-session", "End User Session", self._end_session, END_SESSION),
            admin("change-user-password", "Change User Password", self._change_password, CHANGE_PASSWORD),
            admin("get-registered-users-num", "Get Number of Registered Users", self._registered_num),
            admin("get-online-users-num", "Get Number of Online Users", self._online_num),
            admin("get-online-users-list", "Get List of Online Users", self._online_list, ONLINE_USERS),
            admin("get-online-users", "Get List of Online Users", self._online_list, ONLINE_USERS),
            admin("announce", "Send Announcement to Online Users", self._announce, ANNOUNCE),
            admin("set-motd", "Set Message of the Day", self._set_motd, SET_MOTD),
            admin("edit-motd", "Edit Message of the Day", self._set_motd, self._edit_motd_form),
            admin("delete-motd", "Delete Message of the Day", self._delete_motd),
        ]

    # ------------------------------------------------------------------ helpers

    def _t(self, ex: Execution, key: str, /, **fields: Any) -> str:
        """Text ``key`` in the requesting admin's language (xmppd/i18n.py)."""
        return self.tr(ex.requester, key, **fields)

    def _local(self, jid: JID | None, var: str, ex: Execution) -> str:
        """The username of a JID of this server, or FormError naming the field."""
        if jid is None:
            raise FormError(var, self._t(ex, "error.jid_required"))
        if jid.domain != self.ctx.domain or jid.local is None or jid.resource is not None:
            raise FormError(var, self._t(ex, "error.not_local", jid=jid, domain=self.ctx.domain))
        try:
            return self.ctx.account_service.prepare(jid.local)
        except InvalidAccount as exc:
            raise FormError(var, str(exc)) from None

    def _locals(self, ex: Execution, var: str = "accountjids") -> list[str]:
        names = [self._local(j, var, ex) for j in ex.values[var]]
        if not names:
            raise FormError(var, self._t(ex, "error.one_account"))
        return names

    def _jid(self, username: str) -> str:
        return f"{username}@{self.ctx.domain}"

    # ------------------------------------------------------------------ accounts

    async def _add_user(self, ex: Execution) -> Result:
        v = ex.values
        username = self._local(v["accountjid"], "accountjid", ex)
        if v["password"] != v["password-verify"]:
            raise FormError("password-verify", self._t(ex, "error.passwords_differ"))
        try:
            await self.ctx.account_service.create(username, v["password"])
        except AccountExists:
            raise FormError("accountjid", self._t(ex, "error.exists", jid=self._jid(username))) from None
        except ReservedUsername as exc:
            raise FormError("accountjid", str(exc)) from None
        except InvalidAccount as exc:
            raise FormError("password", str(exc)) from None
        self.log.info("admin %s added %s", ex.requester.bare, self._jid(username))
        return Result((Note(self._t(ex, "note.created", jid=self._jid(username))),))

    async def _delete_user(self, ex: Execution) -> Result:
        names = self._locals(ex)
        done: list[str] = []
        missing: list[str] = []
        for username in names:
            (done if await self.ctx.account_service.delete(username) else missing).append(self._jid(username))
        self.log.info("admin %s deleted %s", ex.requester.bare, ", ".join(done) or "nobody")
        return self._outcome(ex, "deleted", done, missing)

    async def _set_disabled(self, ex: Execution, disabled: bool) -> Result:
        done: list[str] = []
        missing: list[str] = []
        for username in self._locals(ex):
            try:
                await self.ctx.account_service.set_disabled(username, disabled, "disabled by an administrator" if disabled else None)
            except AccountNotFound:
                missing.append(self._jid(username))
            else:
                done.append(self._jid(username))
        self.log.info("admin %s %s %s", ex.requester.bare, "disabled" if disabled else "re-enabled", ", ".join(done) or "nobody")
        return self._outcome(ex, "disabled" if disabled else "reenabled", done, missing)

    async def _disable_user(self, ex: Execution) -> Result:
        return await self._set_disabled(ex, True)

    async def _reenable_user(self, ex: Execution) -> Result:
        return await self._set_disabled(ex, False)

    async def _change_password(self, ex: Execution) -> Result:
        username = self._local(ex.values["accountjid"], "accountjid", ex)
        try:
            await self.ctx.account_service.set_password(username, ex.values["password"])
        except AccountNotFound:
            raise FormError("accountjid", self._t(ex, "error.no_account", jid=self._jid(username))) from None
        except InvalidAccount as exc:
            raise FormError("password", str(exc)) from None
        self.log.info("admin %s changed the password of %s", ex.requester.bare, self._jid(username))
        return Result((Note(self._t(ex, "note.password_changed", jid=self._jid(username))),))

    # ------------------------------------------------------------------ sessions

    async def _end_session(self, ex: Execution) -> Result:
        ended, none = 0, []
        for jid in ex.values["accountjids"]:
            if jid.domain != self.ctx.domain or jid.local is None:
                raise FormError("accountjids", self._t(ex, "error.not_user", jid=jid, domain=self.ctx.domain))
            n = await self.ctx.kick(jid, StreamErrorCondition.POLICY_VIOLATION, "an administrator ended your session")
            ended += n
            if not n:
                none.append(str(jid))
        notes = [Note(self._t(ex, "note.ended", n=ended))]
        if none:
            notes.append(Note(self._t(ex, "note.no_session", jids=", ".join(none)), "warn"))
        return Result(tuple(notes))

    async def _online(self) -> list[JID]:
        """The accounts with a session on any node of the cluster (this one alone: its own)."""
        return sorted((j for j in await self.ctx.router.online_accounts() if j.domain == self.ctx.domain), key=str)

    async def _registered_num(self, ex: Execution) -> Result:
        n = await self.ctx.accounts.count(self.ctx.domain)
        return Result(form=_result(Field("registeredusersnum", "text-single", "The number of registered users", values=(str(n),))))

    async def _online_num(self, ex: Execution) -> Result:
        n = len(await self._online())
        return Result(form=_result(Field("onlineusersnum", "text-single", "The number of online users", values=(str(n),))))

    async def _online_list(self, ex: Execution) -> Result:
        users = await self._online()
        limit = ex.values.get("max_items") or "none"
        if limit != "none":
            users = users[: int(limit)]
        return Result(form=_result(Field("onlineuserjids", "jid-multi", "The list of all online users", values=tuple(map(str, users)))))

    async def _announce(self, ex: Execution) -> Result:
        body = ex.values["announcement"]
        subject = ex.values.get("subject")
        sent = 0
        for session in list(self.ctx.sessions):
            if session.jid is None or session.is_closed:
                continue
            msg = stanza("message", to=str(session.jid), frm=self.ctx.domain, type="headline")
            if subject:
                sub(msg, f"{{{ns.CLIENT}}}subject", text=subject)
            sub(msg, f"{{{ns.CLIENT}}}body", text=body)
            if await self.ctx.router.deliver_to(session.jid, msg, "message"):
                sent += 1
        self.log.info("admin %s sent an announcement to %d sessions", ex.requester.bare, sent)
        return Result((Note(self._t(ex, "note.announced", n=sent)),))

    # ------------------------------------------------------------------ message of the day

    def _edit_motd_form(self, ex: Execution) -> Form:
        body = self.motd.body if self.motd is not None else None
        return SET_MOTD.with_values({"motd": body or ""})

    async def _set_motd(self, ex: Execution) -> Result:
        body = ex.values["motd"].strip("\n")
        if len(body) > MAX_MOTD_LENGTH:
            raise FormError("motd", self._t(ex, "error.motd_long", max=MAX_MOTD_LENGTH))
        self.motd = await self.repo.set(self.ctx.domain, body)
        return Result((Note(self._t(ex, "note.motd_set")),))

    async def _delete_motd(self, ex: Execution) -> Result:
        if self.motd is None or self.motd.body is None:
            return Result((Note(self._t(ex, "note.motd_none"), "warn"),))
        self.motd = await self.repo.set(self.ctx.domain, None)
        return Result((Note(self._t(ex, "note.motd_deleted")),))

    @hook(H.PRESENCE_BROADCAST, priority=100)
    async def _on_presence(self, r: Routed) -> Flow:
        """XEP-0133 §4.23: the MOTD is shown at login, once per version (first available presence)."""
        session = r.origin
        if session is None or "admin" in session.data or r.stanza.get("type") is not None:
            return Flow.CONTINUE
        motd = self.motd
        state: dict[str, Any] = {}
        session.data["admin"] = state
        if motd is not None and motd.body is not None and session.jid is not None:
            state["motd"] = self.ctx.spawn(self._show_motd(session, motd), name="admin-motd")
        return Flow.CONTINUE

    async def _show_motd(self, session: Any, motd: Motd) -> bool:
        jid = session.jid
        if await self.repo.seen(jid.local, jid.domain) >= motd.version or session.is_closed:
            return False
        msg = stanza("message", to=str(jid), frm=self.ctx.domain, type="headline")
        sub(msg, f"{{{ns.CLIENT}}}subject", text=self.tr(jid, "motd.subject"))
        sub(msg, f"{{{ns.CLIENT}}}body", text=motd.body)
        await self.ctx.router.deliver_to(jid, msg, "message")
        await self.repo.mark_seen(jid.local, jid.domain, motd.version)
        return True


    def _outcome(self, ex: Execution, verb: str, done: list[str], missing: list[str]) -> Result:
        if done:
            notes = [Note(self._t(ex, f"note.{verb}", jids=", ".join(done)), "info")]
        else:
            notes = [Note(self._t(ex, f"note.{verb}_none"), "warn")]
        if missing:
            notes.append(Note(self._t(ex, "note.no_such_account", jids=", ".join(missing)), "warn"))
        return Result(tuple(notes))
