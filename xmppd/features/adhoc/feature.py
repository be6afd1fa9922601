"""XEP-0050: Ad-Hoc Commands: discovery, multi-stage sessions, actions, notes and data forms.

Commands live on the server domain or on any other JID (a service domain like ``cs.domain``,
a MUC room): ``register(command, jid=...)`` for a fixed JID, ``register_provider(domain, fn)``
for JIDs decided at run time. Access (``admin_only``, ``may_run``) is checked on every request,
not only when listing. A session belongs to the full JID that started it and expires after
``[adhoc] session_timeout`` seconds without a request.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from lxml import etree

from ... import timestamps
from ...config import Positive, PositiveInt
from ...core import hooks as H
from ...core.dispatch import IqRequest, Target
from ...core.feature import Feature, hook, iq_handler
from ...core.hooks import Flow, Routed, SessionEvent
from ...errors import Condition, StanzaError
from ...jid import JID
from ...xml import ns
from ...xml.builder import element, sub
from ...xml.forms import Form, FormError, X
from ..disco import Identity, NodeInfo
from .command import NS, Command, Execution, Note, Provider, Result, maybe_await

_CMD = f"{{{NS}}}command"
_ACTIONS = ("execute", "next", "prev", "complete", "cancel")


@dataclass(frozen=True, slots=True)
class AdhocOptions:
    # Seconds an unfinished multi-stage command is kept without a request from its requester.
    session_timeout: Positive = 600.0
    # Unfinished command sessions one account may hold at once.
    max_sessions_per_account: PositiveInt = 10


@dataclass(slots=True)
class _Session:
    execution: Execution
    owner: JID
    expires: float


def _app(name: str) -> etree._Element:
    return etree.Element(f"{{{NS}}}{name}", nsmap={None: NS})


def bad_sessionid(text: str) -> StanzaError:
    return StanzaError(Condition.BAD_REQUEST, text, app=_app("bad-sessionid"))


def bad_action(text: str) -> StanzaError:
    return StanzaError(Condition.BAD_REQUEST, text, app=_app("bad-action"))


class Adhoc(Feature):
    name = "adhoc"
    implements = ("XEP-0050", "XEP-0004")
    disco_features = (NS, ns.DATA_FORMS)
    depends = ("disco",)
    Options = AdhocOptions

    async def setup(self) -> None:
        self._commands: dict[JID, dict[str, Command]] = {}
        self._providers: dict[str, list[Provider]] = {}
        self._sessions: dict[str, _Session] = {}
        self._handlers: dict[tuple[str, Target], tuple[int, Callable[[], None]]] = {}
        self._disco = self.ctx.feature("disco")
        self.ctx.on_teardown(self._disco.add_node(NS, self._disco_list, on_accounts=False))
        self.ctx.on_teardown(self._drop_handlers)
        # Every account may run "ping" on the server (as Prosody's mod_ping offers it): the
        # simplest proof, from any client, that ad-hoc commands work end to end.
        self.ctx.on_teardown(self.register(Command("ping", "Ping", self._ping)))

    async def _ping(self, ex: Execution) -> Note:
        return Note(f"Pong\n{timestamps.seconds(datetime.now(UTC))}")

    # ================================================================== the extension API

    def register(self, command: Command, jid: JID | str | None = None) -> Callable[[], None]:
        """Offer ``command`` on ``jid`` (default: the server domain); returns the undo.

        Call it from ``setup`` and pass the undo to ``ctx.on_teardown``.
        """
        target = self._target(jid)
        cmds = self._commands.setdefault(target, {})
        if command.node in cmds:
            raise ValueError(f"command {command.node} is already registered on {target}")
        cmds[command.node] = command
        undo_disco: Callable[[], None] | None = None
        if target == JID(None, self.ctx.domain):
            undo_disco = self._disco.add_node(command.node, self._disco_command, on_accounts=False)
        undo_handler = self._need_handler(target)

        def undo() -> None:
            if cmds.get(command.node) is command:
                del cmds[command.node]
                if not cmds:
                    self._commands.pop(target, None)
            if undo_disco is not None:
                undo_disco()
            undo_handler()

        return undo

    def register_provider(self, domain: str, provider: Provider) -> Callable[[], None]:
        """Commands on any JID of ``domain`` (rooms ...), decided per (requester, target JID)."""
        providers = self._providers.setdefault(domain, [])
        providers.append(provider)
        undo_handlers = [self._need_handler(JID(None, domain)), self._need_handler(JID("x", domain))]

        def undo() -> None:
            if provider in providers:
                providers.remove(provider)
            for u in undo_handlers:
                u()

        return undo

    async def commands_for(self, requester: JID, target: JID) -> list[Command]:
        """The commands on ``target`` that ``requester`` may run, in registration order."""
        out: list[Command] = []
        for cmd in (await self._all_on(requester, target)).values():
            if await self.may_run(cmd, requester, target):
                out.append(cmd)
        return out

    async def may_run(self, command: Command, requester: JID, target: JID) -> bool:
        if command.admin_only and not self.ctx.is_admin(requester):
            return False
        if command.may_run is not None:
            return bool(await maybe_await(command.may_run(requester, target)))
        return True

    async def disco_items(self, requester: JID, target: JID) -> NodeInfo:
        """For services answering disco#items node='commands' on their own JIDs."""
        return NodeInfo(items=[(str(target), c.node, c.name) for c in await self.commands_for(requester, target)])

    async def disco_info(self, requester: JID, target: JID, node: str) -> NodeInfo | None:
        """For services answering disco#info on a command node (None: no such node for them)."""
        if node == NS:
            return NodeInfo([Identity("automation", "command-list", "Commands")], [ns.DISCO_INFO, ns.DISCO_ITEMS])
        cmd = (await self._all_on(requester, target)).get(node)
        if cmd is None or not await self.may_run(cmd, requester, target):
            return None
        return NodeInfo([Identity("automation", "command-node", cmd.name)], [NS, ns.DATA_FORMS])

    async def handle_routed(self, r: Routed) -> bool:
        """For services that route iqs themselves: answer an ad-hoc command iq; False if not one."""
        st = r.stanza
        if r.kind != "iq" or st.get("type") != "set" or len(st) == 0 or st[0].tag != _CMD:
            return False
        target = Target.HOST if r.to is None or r.to.local is None else Target.BARE
        await self.ctx.router.dispatch_iq(r, target)
        return True

    # ================================================================== wire

    @iq_handler("set", _CMD)
    async def command_iq(self, req: IqRequest) -> etree._Element:
        return await self.execute(req.from_jid, req.to.bare, req.payload)

    async def execute(self, requester: JID, target: JID, payload: etree._Element) -> etree._Element:
        """One request of XEP-0050 §3 on ``target``; returns the ``<command/>`` answer."""
        node = payload.get("node")
        if not node:
            raise StanzaError(Condition.BAD_REQUEST, "the command has no node")
        action = payload.get("action") or "execute"
        if action not in _ACTIONS:
            raise bad_action(f"unknown action {action!r}")
        cmd = (await self._all_on(requester, target)).get(node)
        if cmd is None:
            raise StanzaError(Condition.ITEM_NOT_FOUND, f"no command {node!r} on {target}")
        if not await self.may_run(cmd, requester, target):
            raise StanzaError(Condition.FORBIDDEN, f"you may not run {cmd.name!r}")
        sid = payload.get("sessionid")
        x = payload.find(X)
        if sid is None:
            return await self._start(cmd, requester, target, action, x)
        s = self._session(sid, requester, target, node)
        ex = s.execution
        if action == "cancel":
            self._sessions.pop(sid, None)
            return _reply(node, sid, "canceled")
        if action == "prev":
            if ex.stage == 0:
                raise bad_action("this is the first stage; there is no previous one")
            ex.stage -= 1
            return await self._show(ex)
        return await self._submit(ex, action, x)

    # ================================================================== sessions

    async def _start(self, cmd: Command, requester: JID, target: JID, action: str, x: etree._Element | None) -> etree._Element:
        if action not in ("execute", "next", "complete"):
            raise bad_sessionid(f"action {action!r} needs the sessionid of a running command")
        sid = format(self.ctx.rng.getrandbits(96), "024x")
        ex = Execution(cmd, requester, target, sid)
        if not cmd.stages:
            return await self._finish(ex)
        self._sweep()
        if sum(1 for s in self._sessions.values() if s.owner.bare == requester.bare) >= self.options.max_sessions_per_account:
            raise StanzaError(Condition.RESOURCE_CONSTRAINT, "too many unfinished commands; complete or cancel some")
        self._sessions[sid] = _Session(ex, requester, self.ctx.clock.monotonic() + self.options.session_timeout)
        if x is not None:  # execute with the first form already filled in
            return await self._submit(ex, action, x)
        return await self._show(ex)

    def _session(self, sid: str, requester: JID, target: JID, node: str) -> _Session:
        s = self._sessions.get(sid)
        now = self.ctx.clock.monotonic()
        if s is not None and s.expires <= now:
            del self._sessions[sid]
            s = None
        if s is None:
            raise bad_sessionid("no such command session (it expired, completed or was cancelled)")
        ex = s.execution
        if s.owner != requester or ex.target != target or ex.command.node != node:
            raise bad_sessionid("this command session belongs to someone else or another command")
        s.expires = now + self.options.session_timeout
        return s

    def _sweep(self) -> None:
        now = self.ctx.clock.monotonic()
        for sid in [k for k, s in self._sessions.items() if s.expires <= now]:
            del self._sessions[sid]

    @hook(H.SESSION_CLOSED)
    async def _on_session_closed(self, ev: SessionEvent) -> Flow:
        jid = ev.session.jid
        if self._sessions and jid is not None:
            for sid in [k for k, s in self._sessions.items() if s.owner == jid]:
                del self._sessions[sid]
        return Flow.CONTINUE

    @property
    def open_sessions(self) -> int:
        return len(self._sessions)

    # ================================================================== stages

    async def _form(self, ex: Execution) -> Form:
        src = ex.command.stages[ex.stage].form
        form = src if isinstance(src, Form) else await maybe_await(src(ex))
        if not isinstance(form, Form):
            raise TypeError(f"stage {ex.stage} of {ex.command.node} gave {type(form).__name__}, not a Form")
        return form

    async def _show(self, ex: Execution, *, form: Form | None = None, notes: tuple[Note, ...] = ()) -> etree._Element:
        if form is None:
            form = await self._form(ex)
            if ex.stage < len(ex.answers):  # came back with 'prev': show what was answered
                form = _prefill(form, ex.answers[ex.stage])
        n = len(ex.command.stages)
        allowed = ["prev"] if ex.stage > 0 else []
        allowed.append("complete" if ex.stage == n - 1 else "next")
        return _reply(ex.command.node, ex.sessionid, "executing", allowed, notes, form)

    async def _submit(self, ex: Execution, action: str, x: etree._Element | None) -> etree._Element:
        last = ex.last_stage
        if action == "execute":
            action = "complete" if last else "next"
        if action == "next" and last:
            raise bad_action("this is the last stage: complete it")
        if action == "complete" and not last:
            raise bad_action("there are more stages: use next")
        form = await self._form(ex)
        if x is None:
            return await self._show(ex, form=form, notes=(Note("Fill in the form and submit it.", "error"),))
        submitted = Form.from_element(x)
        if submitted.type == "cancel":
            self._sessions.pop(ex.sessionid, None)
            return _reply(ex.command.node, ex.sessionid, "canceled")
        try:
            values = form.validate(submitted)
            check = ex.command.stages[ex.stage].check
            if check is not None:
                await maybe_await(check(ex, values))
        except FormError as err:
            return await self._show(ex, form=_with_error(form, submitted, err), notes=(Note(err.text, "error"),))
        del ex.answers[ex.stage :]
        ex.answers.append(values)
        ex.values = {k: v for a in ex.answers for k, v in a.items()}
        if action == "next":
            ex.stage += 1
            return await self._show(ex)
        try:
            return await self._finish(ex)
        except FormError as err:  # the handler found a problem with the last answers
            return await self._show(ex, form=_with_error(form, submitted, err), notes=(Note(err.text, "error"),))

    async def _finish(self, ex: Execution) -> etree._Element:
        try:
            result = Result.of(await ex.command.handler(ex))
        except FormError as err:
            if ex.command.stages:
                raise
            result = Result((Note(err.text, "error"),))
        except BaseException:
            self._sessions.pop(ex.sessionid, None)
            raise
        self._sessions.pop(ex.sessionid, None)
        return _reply(ex.command.node, ex.sessionid, "completed", None, result.notes, result.form)

    # ================================================================== lookup and disco

    def _target(self, jid: JID | str | None) -> JID:
        if jid is None:
            return JID(None, self.ctx.domain)
        j = JID.parse(jid) if isinstance(jid, str) else jid
        return j.bare

    async def _all_on(self, requester: JID, target: JID) -> dict[str, Command]:
        target = target.bare
        cmds = dict(self._commands.get(target, {}))
        for provider in self._providers.get(target.domain, ()):
            for cmd in await maybe_await(provider(requester, target)):
                cmds.setdefault(cmd.node, cmd)
        return cmds

    def _need_handler(self, target: JID) -> Callable[[], None]:
        """Iq handlers for commands on JIDs other than the server domain, counted per use."""
        kind = Target.HOST if target.local is None else Target.BARE
        key = (target.domain, kind)
        if key == (self.ctx.domain, Target.HOST):
            return lambda: None  # declared with @iq_handler
        count, remove = self._handlers.get(key, (0, None))  # type: ignore[arg-type]
        if remove is None:
            remove = self.ctx.add_iq_handler("set", _CMD, self.command_iq, target=kind, domain=target.domain)
        self._handlers[key] = (count + 1, remove)
        done = False

        def release() -> None:
            nonlocal done
            if done:
                return
            done = True
            n, rm = self._handlers[key]
            if n <= 1:
                del self._handlers[key]
                rm()
            else:
                self._handlers[key] = (n - 1, rm)

        return release

    def _drop_handlers(self) -> None:
        for _n, remove in self._handlers.values():
            remove()
        self._handlers.clear()

    async def _disco_list(self, requester: JID, node: str) -> NodeInfo:
        # The disco feature asks one handler for both info and items of the node.
        info = await self.disco_items(requester, JID(None, self.ctx.domain))
        info.identities = [Identity("automation", "command-list", "Commands")]
        info.features = [ns.DISCO_INFO, ns.DISCO_ITEMS]
        return info

    async def _disco_command(self, requester: JID, node: str) -> NodeInfo | None:
        return await self.disco_info(requester, JID(None, self.ctx.domain), node)


# ====================================================================== XML


def _reply(
    node: str,
    sid: str,
    status: str,
    actions: list[str] | None = None,
    notes: Iterable[Note] = (),
    form: Form | None = None,
) -> etree._Element:
    el = element(_CMD, {"node": node, "sessionid": sid, "status": status}, default_ns=NS)
    if actions:
        a = sub(el, f"{{{NS}}}actions", {"execute": actions[-1]})
        for name in actions:
            sub(a, f"{{{NS}}}{name}")
    for note in notes:
        sub(el, f"{{{NS}}}note", {"type": note.type}, text=note.text)
    if form is not None:
        el.append(form.to_element())
    return el


def _prefill(form: Form, values: dict[str, Any]) -> Form:
    known = {f.var for f in form.fields if f.var and f.type not in ("text-private", "hidden", "fixed")}
    return form.with_values({k: v for k, v in values.items() if k in known})


def _with_error(form: Form, submitted: Form, err: FormError) -> Form:
    """The form again, with what was submitted (passwords left out) and the problem named."""
    fields = []
    for f in form.fields:
        got = submitted.field(f.var) if f.var else None
        if got is not None and f.type not in ("text-private", "hidden", "fixed"):
            f = dataclasses.replace(f, values=got.values if f.type in ("jid-multi", "list-multi", "text-multi") else got.values[:1])
        if err.var is not None and f.var == err.var:
            f = dataclasses.replace(f, desc=err.text)
        fields.append(f)
    return dataclasses.replace(form, type="form", fields=tuple(fields))
