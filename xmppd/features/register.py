"""XEP-0077: In-Band Registration: sign-up before login when ``registration.open``, and
password change and account removal for logged-in users."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from lxml import etree

from ..accounts import AccountExists, InvalidAccount, ReservedUsername
from ..core.dispatch import NO_REPLY, IqRequest, Target
from ..core.feature import Feature
from ..core.limits import SlidingCounter
from ..errors import Condition, StanzaError
from ..xml import ns
from ..xml.builder import element, error_reply, iq_result, sub
from .adhoc import Command, Execution, Field, Form, FormError, Note

if TYPE_CHECKING:
    from ..core.session import Session

_QUERY = f"{{{ns.REGISTER}}}query"
_R = f"{{{ns.REGISTER}}}"


class Register(Feature):
    name = "register"
    implements = ("XEP-0077",)
    account_disco_features = ()
    depends = ("adhoc",)  # the users' change-password command (below)

    async def setup(self) -> None:
        self._per_ip = SlidingCounter(self.ctx.config.registration.per_ip_per_hour, 3600.0)
        self.ctx.add_preauth_iq_handler(_QUERY, self._preauth)
        for target in (Target.HOST, Target.BARE):
            self.ctx.add_iq_handler("get", _QUERY, self._get_registered, target=target)
            self.ctx.add_iq_handler("set", _QUERY, self._set_registered, target=target)
        self.ctx.on_teardown(self.ctx.feature("adhoc").register(password_command(self)))

    @property
    def open(self) -> bool:
        return self.ctx.config.registration.open

    # ---------------------------------------------------------------- before login

    async def _preauth(self, session: "Session", iq: etree._Element) -> None:
        try:
            payload = await self._preauth_answer(session, iq)
        except StanzaError as err:
            session.stream.send_element(error_reply(iq, err))
            return
        session.stream.send_element(iq_result(iq, payload))

    async def _preauth_answer(self, session: "Session", iq: etree._Element) -> etree._Element | None:
        if not self.open:
            raise StanzaError(Condition.NOT_ALLOWED, "in-band registration is closed on this server")
        query = iq[0]
        if iq.get("type") == "get":
            q = element(_QUERY, default_ns=ns.REGISTER)
            sub(q, _R + "instructions", text=f"Choose a username and a password (at least {self.ctx.config.registration.min_password_length} characters).")
            sub(q, _R + "username")
            sub(q, _R + "password")
            return q
        if iq.get("type") != "set":
            raise StanzaError(Condition.BAD_REQUEST, "use get or set")
        if query.find(_R + "remove") is not None:
            raise StanzaError(Condition.NOT_AUTHORIZED, "log in to remove your account")
        username = (query.findtext(_R + "username") or "").strip()
        password = query.findtext(_R + "password") or ""
        if not username or not password:
            raise StanzaError(Condition.NOT_ACCEPTABLE, "both username and password are required")
        if self._per_ip.exceeded(session.peer):
            raise StanzaError(Condition.RESOURCE_CONSTRAINT, "too many registrations from your address; try later", type=None)
        try:
            await self.ctx.account_service.create(username, password, public=True)
        except AccountExists:
            raise StanzaError(Condition.CONFLICT, "this username is taken") from None
        except ReservedUsername as exc:  # like a taken name: the client asks for another one
            raise StanzaError(Condition.CONFLICT, str(exc)) from None
        except InvalidAccount as exc:
            raise StanzaError(Condition.NOT_ACCEPTABLE, str(exc)) from None
        self._per_ip.add(session.peer)
        self.log.info("registered %s@%s from %s", username, self.ctx.domain, session.peer)
        return None

    # ---------------------------------------------------------------- logged in

    def _own(self, req: IqRequest) -> str:
        if not req.is_self and not (req.to.local is None and req.to.domain == self.ctx.domain):
            raise StanzaError(Condition.FORBIDDEN, "you can only manage your own account")
        assert req.from_jid.local is not None
        return req.from_jid.local

    async def _get_registered(self, req: IqRequest) -> etree._Element:
        username = self._own(req)
        q = element(_QUERY, default_ns=ns.REGISTER)
        sub(q, _R + "registered")
        sub(q, _R + "username", text=username)
        sub(q, _R + "password")
        return q

    async def _set_registered(self, req: IqRequest) -> object:
        username = self._own(req)
        query = req.payload
        svc = self.ctx.account_service
        if query.find(_R + "remove") is not None:
            session = req.origin
            # XEP-0077 §3.2: the result, then the not-authorized stream error. The result goes
            # out once the deletion has committed, so the name is free when the client reads it.
            await svc.delete(username, requester=session, answer=(lambda: self.ctx.router.answer(req)) if session else None)
            self.log.info("%s removed their account", req.from_jid.bare)
            return NO_REPLY
        given = (query.findtext(_R + "username") or "").strip()
        password = query.findtext(_R + "password")
        if given and given.lower() != username:
            raise StanzaError(Condition.NOT_ALLOWED, "the username does not match your account")
        if not password:
            raise StanzaError(Condition.BAD_REQUEST, "a new password is required")
        try:
            await svc.set_password(username, password)
        except InvalidAccount as exc:
            raise StanzaError(Condition.NOT_ACCEPTABLE, str(exc)) from None
        self.log.info("%s changed their password", req.from_jid.bare)
        return None


# ---------------------------------------------------------------- ad-hoc: change my password
# XEP-0050 for clients without XEP-0077 password change; the node is Prosody's
# (mod_adhoc_account_management). The same rule as the iq: AccountService.set_password, on the
# requester's own account only. Texts: [passwd] of the core catalogue (xmppd/locale).

PASSWD_NODE = "passwd"


def password_command(feature: Register) -> Command:
    min_length = feature.ctx.config.registration.min_password_length
    tr = feature.ctx.translator(Path(__file__).parents[1] / "locale")
    domain = feature.ctx.domain

    def form(ex: Execution) -> Form:  # in the requesting session's language
        return Form("form", tr(ex.requester, "passwd.title"), (tr(ex.requester, "passwd.instructions", min=min_length),), (
            Field("FORM_TYPE", "hidden", values=(ns.REGISTER,)),
            Field("password", "text-private", tr(ex.requester, "passwd.password"), required=True),
            Field("password-verify", "text-private", tr(ex.requester, "passwd.verify"), required=True),
        ))

    async def change(ex: Execution) -> Note:
        if ex.values["password"] != ex.values["password-verify"]:
            raise FormError("password-verify", tr(ex.requester, "passwd.differ"))
        assert ex.requester.local is not None  # may_run: a local account
        try:
            await feature.ctx.account_service.set_password(ex.requester.local, ex.values["password"])
        except InvalidAccount as exc:
            raise FormError("password", str(exc)) from None
        feature.log.info("%s changed their password by ad-hoc command", ex.requester.bare)
        return Note(tr(ex.requester, "passwd.changed"))

    return Command(PASSWD_NODE, tr.text(None, "passwd.name"), change, form=form,
                   may_run=lambda requester, target: requester.local is not None and requester.domain == domain)
