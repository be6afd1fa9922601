"""urn:xmppd:cs:0 for slixmpp: the client side of xmppd's customer service.

``client.register_plugin("cs", module=slixmpp_plugin)`` (or ``register_on(client)``),
then ``await client.plugin["cs"].figures("support@cs.example.com")`` and so on. Every call
returns the answer's payload as an ``xml.etree`` element (or None) and raises
``slixmpp.exceptions.IqError`` on an error. Messages carrying a cs payload also raise events:
``cs_offer``, ``cs_assigned``, ``cs_position``, ``cs_agent``, ``cs_closed``, ``cs_welcome``,
``cs_ticket``, ``cs_requeued``, ``cs_revoked``, ``cs_paused`` (each with the message).
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any, Literal

from slixmpp.plugins.base import register_plugin
from slixmpp.xmlstream.matcher import MatchXPath

from ..slixmpp_base import IqPlugin

NS = "urn:xmppd:cs:0"
EVENTS = ("offer", "assigned", "position", "agent", "closed", "welcome", "ticket", "requeued", "revoked", "paused")


def _el(name: str, attrs: dict[str, Any] | None = None, text: str | None = None) -> ET.Element:
    el = ET.Element(f"{{{NS}}}{name}", {k: str(v) for k, v in (attrs or {}).items() if v is not None})
    if text:
        el.text = text
    return el


class XmppdCustomerService(IqPlugin):
    name = "cs"
    description = "xmppd customer service (urn:xmppd:cs:0)"

    def plugin_init(self) -> None:
        for event in EVENTS:
            self.forward(f"cs_{event}", MatchXPath(f"{{{self.xmpp.default_ns}}}message/{{{NS}}}{event}"))

    @staticmethod
    def payload(msg: Any, name: str) -> ET.Element | None:
        """The cs element ``name`` of a received message."""
        return msg.xml.find(f"{{{NS}}}{name}")

    async def _iq(self, typ: Literal["get", "set"], to: str, el: ET.Element, timeout: int = 10) -> ET.Element | None:
        result = await self.ask(to, typ, el, timeout=timeout)
        return result.xml[0] if len(result.xml) else None

    # -- admins
    async def put_queue(self, service: str, name: str, *, welcome: str | None = None, offline: str | None = None,
                        prechat: ET.Element | None = None, **attrs: Any) -> None:
        """``prechat``: the pre-chat form's definition (:func:`prechat_definition`; no fields: none)."""
        el = _el("queue", {"name": name, **{k.replace("_", "-"): v for k, v in attrs.items()}})
        if welcome is not None:
            el.append(_el("welcome", text=welcome))
        if offline is not None:
            el.append(_el("offline", text=offline))
        if prechat is not None:
            el.append(prechat)
        await self._iq("set", service, el)

    async def delete_queue(self, service: str, name: str) -> None:
        await self._iq("set", service, _el("delete-queue", {"name": name}))

    async def queues(self, service: str) -> ET.Element | None:
        return await self._iq("get", service, _el("queues"))

    async def set_member(self, queue: str, jid: str, role: str = "agent", nick: str | None = None, skills: str | None = None) -> None:
        await self._iq("set", queue, _el("member", {"jid": jid, "role": role, "nick": nick, "skills": skills}))

    async def members(self, queue: str) -> ET.Element | None:
        return await self._iq("get", queue, _el("members"))

    # -- agents
    async def accept(self, to: str, session: str | None = None) -> None:
        await self._iq("set", to, _el("accept", {"session": session}))

    async def reject(self, to: str, session: str | None = None) -> None:
        await self._iq("set", to, _el("reject", {"session": session}))

    async def transfer(self, to: str, session: str | None = None, *, agent: str | None = None, queue: str | None = None) -> None:
        await self._iq("set", to, _el("transfer", {"session": session, "agent": agent, "queue": queue}))

    async def pause(self, to: str) -> None:
        await self._iq("set", to, _el("pause"))

    async def resume(self, to: str) -> None:
        await self._iq("set", to, _el("resume"))

    def announce(self, queue: str, show: str | None = None) -> None:
        """Directed presence to a queue (or the component): the agent takes work when available."""
        self.xmpp.send_presence(pto=queue, pshow=show)

    # -- agents, visitors and supervisors
    async def close(self, to: str, session: str | None = None) -> None:
        await self._iq("set", to, _el("close", {"session": session}))

    async def rate(self, to: str, score: int, comment: str = "", session: str | None = None) -> None:
        await self._iq("set", to, _el("rate", {"score": score, "session": session}, comment))

    async def figures(self, queue: str) -> ET.Element | None:
        return await self._iq("get", queue, _el("figures"))

    async def history(self, queue: str, visitor: str | None = None, max: int | None = None) -> ET.Element | None:
        return await self._iq("get", queue, _el("history", {"visitor": visitor, "max": max}))

    async def transcript(self, to: str, session: str) -> ET.Element | None:
        return await self._iq("get", to, _el("transcript", {"session": session}))

    async def tickets(self, queue: str) -> ET.Element | None:
        return await self._iq("get", queue, _el("tickets"))

    async def ticket_reply(self, queue: str, ticket: int | str, text: str) -> None:
        await self._iq("set", queue, _el("ticket-reply", {"id": ticket}, text))

    async def ticket_assign(self, queue: str, ticket: int | str, agent: str | None = None) -> None:
        await self._iq("set", queue, _el("ticket-assign", {"id": ticket, "agent": agent}))

    async def put_canned(self, queue: str, name: str, text: str, personal: bool = False) -> None:
        await self._iq("set", queue, _el("canned", {"name": name, "personal": "true" if personal else None}, text))

    async def canned_list(self, queue: str) -> ET.Element | None:
        return await self._iq("get", queue, _el("canned-list"))

    async def report(self, queue: str, frm: str | None = None, to: str | None = None) -> ET.Element | None:
        return await self._iq("get", queue, _el("report", {"from": frm, "to": to}))

    async def watch(self, to: str, session: str | None = None) -> None:
        await self._iq("set", to, _el("watch", {"session": session}))

    async def invite(self, to: str, agent: str, session: str | None = None) -> None:
        await self._iq("set", to, _el("invite", {"session": session, "agent": agent}))

    async def leave(self, to: str, session: str | None = None) -> None:
        await self._iq("set", to, _el("leave", {"session": session}))

    # -- visitors: the pre-chat form (docs §4.1)
    async def prechat(self, queue: str) -> ET.Element | None:
        """``<prechat queue required><x xmlns='jabber:x:data' type='form'/></prechat>``."""
        return await self._iq("get", queue, _el("prechat"))

    async def join(self, queue: str, form: Any = None) -> ET.Element | None:
        """Start a chat with the submitted form (an ``ET.Element`` ``<x type='submit'/>`` or a
        slixmpp ``xep_0004`` Form); ``<joined session/>`` or ``<joined ticket/>``."""
        el = _el("join")
        if form is not None:
            el.append(getattr(form, "xml", form))
        return await self._iq("set", queue, el)

    async def ticket_close(self, queue: str, ticket: int | str) -> None:
        await self._iq("set", queue, _el("ticket-close", {"id": ticket}))


def prechat_definition(fields: list[dict[str, Any]], required: bool = False) -> ET.Element:
    """``<prechat required><field var type label required><option value label skills/></field></prechat>``
    from ``[{"var": "topic", "type": "list-single", "required": True, "options": [{"value": "billing", "skills": "billing"}]}]``."""
    el = _el("prechat", {"required": "true" if required else "false"})
    for f in fields:
        fe = _el("field", {k: ("true" if v is True else v) for k, v in f.items() if k != "options" and v is not False})
        for o in f.get("options", ()):
            fe.append(_el("option", o))
        el.append(fe)
    return el


register_plugin(XmppdCustomerService)


def register_on(client: Any) -> XmppdCustomerService:
    import sys

    client.register_plugin("cs", module=sys.modules[__name__])
    return client.plugin["cs"]
