"""Router.fan_out / deliver_to: the one door's many-recipient delivery (xmppd/core/router.py).

The same bytes whether a recipient gets the serialised-once splice or, with DELIVER hooks, the
hooked path; a bare JID reaches its available resources only; an unbound full JID gets nothing;
another domain is routed (and bounced while there is no federation), never written locally.
"""
from __future__ import annotations

import asyncio

from lxml import etree

from xmppd.core import hooks as H
from xmppd.core.dispatch import IqTable, IqTracker
from xmppd.core.hooks import Delivery, Flow, HookChains
from xmppd.core.router import Router
from xmppd.core.sessions import SessionRegistry
from xmppd.jid import JID
from xmppd.xml import ns


class _Session:
    """What the router writes to: records every stanza as bytes."""

    def __init__(self, available: bool = True) -> None:
        self.jid: JID | None = None
        self.available = available
        self.priority = 0
        self.is_closed = False
        self.out: list[bytes] = []

    def send(self, stanza: etree._Element) -> None:
        self.out.append(etree.tostring(stanza))

    def send_bytes(self, data: bytes) -> None:
        self.out.append(data)


def _router() -> tuple[Router, dict[str, _Session]]:
    registry = SessionRegistry()
    router = Router("localhost", registry, HookChains(), IqTable(), IqTracker())
    sessions = {"a1": _Session(), "a2": _Session(), "a3": _Session(available=False), "b": _Session()}
    for name, s in sessions.items():
        bare = JID("alice" if name.startswith("a") else "bob", "localhost")
        s.jid, _ = registry.bind(s, bare, name)  # type: ignore[arg-type]
    return router, sessions


def _message() -> etree._Element:
    el = etree.Element(ns.MESSAGE, {"from": "room@conference.localhost/x", "type": "groupchat"}, nsmap={None: ns.CLIENT})
    etree.SubElement(el, f"{{{ns.CLIENT}}}body").text = "a & <b>"
    return el


def _fan(router: Router, targets: list[str]) -> None:
    asyncio.run(router.fan_out(_message(), [JID.parse(t) for t in targets], "message"))


def _parsed(data: bytes) -> tuple[str | None, str | None]:
    el = etree.fromstring(data)
    return el.get("to"), el.findtext(f"{{{ns.CLIENT}}}body")


def test_fan_out_reaches_bound_full_jids_and_available_resources_of_bare_jids() -> None:
    router, s = _router()
    _fan(router, ["alice@localhost/a1", "bob@localhost", "alice@localhost/gone"])
    assert [_parsed(d) for d in s["a1"].out] == [("alice@localhost/a1", "a & <b>")]
    assert [_parsed(d) for d in s["b"].out] == [("bob@localhost", "a & <b>")]
    assert s["a2"].out == [] and s["a3"].out == []


def test_fan_out_to_a_bare_jid_skips_unavailable_resources() -> None:
    router, s = _router()
    _fan(router, ["alice@localhost"])
    assert len(s["a1"].out) == 1 and len(s["a2"].out) == 1 and s["a3"].out == []


def test_fan_out_runs_deliver_hooks_with_each_recipients_to_and_writes_the_same_bytes() -> None:
    plain, s_plain = _router()
    _fan(plain, ["alice@localhost/a1", "alice@localhost/a2", "bob@localhost/b"])
    hooked, s_hooked = _router()
    seen: list[str | None] = []

    async def veto_bob(d: Delivery) -> Flow:
        seen.append(d.stanza.get("to"))
        return Flow.STOP if d.stanza.get("to", "").startswith("bob@") else Flow.CONTINUE

    hooked.hooks.add(H.DELIVER, veto_bob)
    _fan(hooked, ["alice@localhost/a1", "alice@localhost/a2", "bob@localhost/b"])
    assert seen == ["alice@localhost/a1", "alice@localhost/a2", "bob@localhost/b"]
    assert s_hooked["a1"].out == s_plain["a1"].out and s_hooked["a2"].out == s_plain["a2"].out
    assert s_hooked["b"].out == []


def test_fan_out_of_a_prefixed_stanza_sets_to_per_recipient() -> None:
    router, s = _router()
    el = etree.Element(ns.MESSAGE, {"from": "localhost"}, nsmap={"c": ns.CLIENT})
    asyncio.run(router.fan_out(el, [JID.parse("alice@localhost/a1"), JID.parse("bob@localhost/b")], "message"))
    assert etree.fromstring(s["a1"].out[0]).get("to") == "alice@localhost/a1"
    assert etree.fromstring(s["b"].out[0]).get("to") == "bob@localhost/b"
    assert el.get("to") is None  # the caller's element is left as it was


def test_fan_out_to_another_domain_is_routed_not_written_locally() -> None:
    router, s = _router()
    el = etree.Element(ns.MESSAGE, {"from": "alice@localhost/a1", "type": "chat"}, nsmap={None: ns.CLIENT})
    asyncio.run(router.fan_out(el, [JID.parse("someone@elsewhere.example")], "message"))
    # No federation: the router bounces it to the sender's session (remote-server-not-found).
    assert len(s["a1"].out) == 1
    err = etree.fromstring(s["a1"].out[0])
    assert err.get("type") == "error" and err.find(f"{{{ns.CLIENT}}}error") is not None


def test_deliver_to_writes_to_the_bound_session_or_reports_none() -> None:
    router, s = _router()
    st = etree.Element(ns.IQ, {"type": "set", "to": "alice@localhost/a2", "id": "1"}, nsmap={None: ns.CLIENT})
    assert asyncio.run(router.deliver_to(JID.parse("alice@localhost/a2"), st, "iq")) is True
    assert asyncio.run(router.deliver_to(JID.parse("alice@localhost/nope"), st, "iq")) is False
    assert len(s["a2"].out) == 1 and s["a1"].out == []
