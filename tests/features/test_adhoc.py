"""XEP-0050 ad-hoc commands over the wire with slixmpp's xep_0050/xep_0004 client plugins:
discovery, multi-stage sessions, actions, notes, typed forms, access control, expiry, and
commands on another JID (a service domain with per-target commands)."""
from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from lxml import etree
from slixmpp.exceptions import IqError

from xmppd.app import Server
from xmppd.core.feature import Feature
from xmppd.core.hooks import Routed
from xmppd.core.loader import discover
from xmppd.features.adhoc import NS, Command, Execution, Field, Form, FormError, Note, Option, Result, Stage
from xmppd.jid import JID
from xmppd.xml import ns
from xmppd.xml.builder import element, iq_result, sub

from ..helpers import add_user, make_config, running_server, slix, slix_close

PLUGINS = ("xep_0030", "xep_0004", "xep_0050")
SVC = "svc.localhost"
ECHO = "urn:test:echo"
WIZARD = "urn:test:wizard"
SCOPED = "urn:test:scoped"
NOW = "urn:test:now"
MUTE = "urn:test:mute"

ECHO_FORM = Form(
    "form",
    "Echo",
    ("Every field type.",),
    (
        Field("FORM_TYPE", "hidden", values=("urn:test:echo-form",)),
        Field(None, "fixed", values=("Section",)),
        Field("name", "text-single", "Name", required=True),
        Field("secret", "text-private", "Secret"),
        Field("bio", "text-multi", "Bio"),
        Field("agree", "boolean", "Agree", values=("0",)),
        Field("colour", "list-single", "Colour", options=(Option("red"), Option("blue"))),
        Field("tags", "list-multi", "Tags", options=(Option("a"), Option("b"))),
        Field("owner", "jid-single", "Owner"),
        Field("members", "jid-multi", "Members"),
        Field("age", "text-single", "Age", validate=lambda v: None if v.isdigit() else (_ for _ in ()).throw(ValueError("digits only"))),
    ),
)


async def _echo(ex: Execution) -> Result:
    v = ex.values
    out = Form(
        "result",
        fields=(
            Field("name", "text-single", values=(v["name"],)),
            Field("agree", "boolean", values=("1" if v["agree"] else "0",)),
            Field("members", "jid-multi", values=tuple(str(j) for j in v["members"])),
            Field("summary", "text-single", values=(repr(sorted((k, str(x)) for k, x in v.items())),)),
        ),
    )
    return Result((Note("echoed", "warn"),), out)


def _pick_form(ex: Execution) -> Form:
    # The second stage depends on the first answer.
    name = ex.values["name"]
    return Form("form", f"Hello {name}", fields=(Field("size", "list-single", "Size", required=True, options=(Option("s"), Option(f"{name}-xl"))),))


def _check_size(ex: Execution, values: dict[str, Any]) -> None:
    if values["size"] == "s" and ex.values.get("name") == "tiny":
        raise FormError("size", "tiny wants a big size")


async def _wizard(ex: Execution) -> Result:
    if not ex.values["confirm"]:
        raise FormError("confirm", "you must confirm")
    ex.data.setdefault("runs", 0)
    return Result((Note(f"{ex.values['name']} ordered {ex.values['size']}"),))


async def _now(ex: Execution) -> str:
    return f"it is now, {ex.requester.bare} on {ex.target}"


class AdhocTest(Feature):
    """Commands as an extension registers them, and a service domain with per-room commands."""

    name = "adhoc_test"
    depends = ("adhoc",)

    async def setup(self) -> None:
        adhoc = self.ctx.feature("adhoc")
        self.muted: list[tuple[str, str, str]] = []
        for cmd in (
            Command(ECHO, "Echo", _echo, form=ECHO_FORM),
            Command(
                WIZARD,
                "Wizard",
                _wizard,
                stages=(
                    Stage(Form("form", "Who", fields=(Field("name", "text-single", "Name", required=True),))),
                    Stage(_pick_form, check=_check_size),
                    Stage(Form("form", "Sure?", fields=(Field("confirm", "boolean", "Confirm"),))),
                ),
            ),
            Command(SCOPED, "Alice only", _now, may_run=lambda requester, target: requester.local == "alice"),
            Command(NOW, "What time", _now),
        ):
            self.ctx.on_teardown(adhoc.register(cmd))
        self.ctx.add_service(SVC, self)
        self.ctx.on_teardown(adhoc.register(Command(NOW, "Service time", _now), jid=SVC))
        self.ctx.on_teardown(adhoc.register_provider(SVC, self._room_commands))

    def _room_commands(self, requester: JID, target: JID) -> list[Command]:
        if target.local != "room1":
            return []

        async def is_moderator(req: JID, tgt: JID) -> bool:
            await asyncio.sleep(0)  # an awaitable role check
            return req.local == "mod"

        async def mute(ex: Execution) -> str:
            self.muted.append((str(ex.requester.bare), str(ex.target), str(ex.values["who"])))
            return f"muted {ex.values['who']}"

        form = Form("form", fields=(Field("who", "jid-single", "Member", required=True),))
        return [Command(MUTE, "Mute a member", mute, form=form, may_run=is_moderator)]

    async def receive(self, r: Routed) -> None:
        adhoc = self.ctx.feature("adhoc")
        if await adhoc.handle_routed(r):
            return
        st = r.stanza
        if r.kind == "iq" and st.get("type") == "get" and len(st) and st[0].tag == f"{{{ns.DISCO_ITEMS}}}query":
            info = await adhoc.disco_items(r.from_jid, r.to)
            q = element(f"{{{ns.DISCO_ITEMS}}}query", {"node": NS}, default_ns=ns.DISCO_ITEMS)
            for jid, node, name in info.items:
                sub(q, f"{{{ns.DISCO_ITEMS}}}item", {"jid": jid, "node": node, "name": name})
            reply = iq_result(st, q)
            reply.set("to", str(r.from_jid))
            await self.ctx.send(reply)


@contextlib.asynccontextmanager
async def adhoc_server(tmp_path: Path, *overrides: str) -> AsyncIterator[Server]:
    server = Server(make_config(tmp_path, *overrides), feature_classes={**discover(), "adhoc_test": AdhocTest})
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    async with adhoc_server(tmp_path, 'server.admins=["admin@localhost"]') as srv:
        yield srv


async def client(server: Server, name: str) -> Any:
    return await slix(server, await add_user(server, name), plugins=PLUGINS)


def form_of(c: Any, **values: Any) -> Any:
    f = c.plugin["xep_0004"].make_form(ftype="submit")
    for var, value in values.items():
        f.add_field(var=var.replace("_", "-") if var == "password_verify" else var, value=value)
    return f


def cmd_of(iq: Any) -> etree._Element:
    el = etree.fromstring(str(iq).encode())
    return el.find(f"{{{NS}}}command")


def notes(cmd: etree._Element) -> list[tuple[str, str]]:
    return [(n.get("type"), n.text) for n in cmd.findall(f"{{{NS}}}note")]


def actions(cmd: etree._Element) -> tuple[str | None, list[str]]:
    a = cmd.find(f"{{{NS}}}actions")
    if a is None:
        return None, []
    return a.get("execute"), [etree.QName(c).localname for c in a]


def xform(cmd: etree._Element) -> Form:
    return Form.from_element(cmd.find(f"{{{ns.DATA_FORMS}}}x"))


def app_condition(err: IqError) -> list[str]:
    el = next(e for e in etree.fromstring(str(err.iq).encode()) if etree.QName(e).localname == "error")
    return [etree.QName(c).localname for c in el]


async def run(c: Any, node: str, *, jid: str = "localhost", **kw: Any) -> etree._Element:
    return cmd_of(await c.plugin["xep_0050"].send_command(jid, node, **kw))


# ------------------------------------------------------------------------------ discovery


async def test_disco_lists_only_the_commands_the_requester_may_run(server):
    alice, bob = await client(server, "alice"), await client(server, "bob")
    try:
        a = await alice.plugin["xep_0050"].get_commands(jid="localhost")
        b = await bob.plugin["xep_0050"].get_commands(jid="localhost")
        a_nodes = {i[1] for i in a["disco_items"]["items"]}
        b_nodes = {i[1] for i in b["disco_items"]["items"]}
        assert {ECHO, WIZARD, SCOPED, NOW} <= a_nodes
        assert SCOPED not in b_nodes and {ECHO, WIZARD, NOW} <= b_nodes
        assert not any(n.startswith("http://jabber.org/protocol/admin") for n in a_nodes)
        info = await alice.plugin["xep_0030"].get_info(jid="localhost", node=ECHO)
        assert (("automation", "command-node", None, "Echo")) in info["disco_info"]["identities"]
        assert {NS, ns.DATA_FORMS} <= set(info["disco_info"]["features"])
        with pytest.raises(IqError) as e:
            await bob.plugin["xep_0030"].get_info(jid="localhost", node=SCOPED)
        assert e.value.condition == "item-not-found"
        listing = await alice.plugin["xep_0030"].get_info(jid="localhost", node=NS)
        assert ("automation", "command-list", None, "Commands") in listing["disco_info"]["identities"]
        server_info = await alice.plugin["xep_0030"].get_info(jid="localhost")
        assert NS in server_info["disco_info"]["features"]
        # commands of the server are not offered on an account's JID
        with pytest.raises(IqError) as e:
            await alice.plugin["xep_0030"].get_items(jid="alice@localhost", node=NS)
        assert e.value.condition == "item-not-found"
    finally:
        await slix_close(alice)
        await slix_close(bob)


# ------------------------------------------------------------------------------ execution


async def test_single_stage_form_with_every_field_type(server):
    alice = await client(server, "alice")
    try:
        first = await run(alice, ECHO)
        assert first.get("status") == "executing" and first.get("sessionid")
        assert actions(first) == ("complete", ["complete"])
        asked = xform(first)
        assert asked.type == "form" and {f.type for f in asked.fields} >= {"text-single", "text-private", "text-multi", "boolean", "list-single", "list-multi", "jid-single", "jid-multi", "hidden", "fixed"}
        f = form_of(alice, name="Alice", secret="pw", bio="one\ntwo", agree=True, colour="blue", owner="alice@localhost", age="42")
        f.add_field(var="members", ftype="jid-multi", value=["bob@localhost", "carol@localhost/x"])
        f.add_field(var="tags", ftype="list-multi", value=["a", "b"])
        done = await run(alice, ECHO, action="complete", sessionid=first.get("sessionid"), payload=f)
        assert done.get("status") == "completed"
        assert notes(done) == [("warn", "echoed")]
        result = xform(done)
        assert result.type == "result"
        assert result.field("name").values == ("Alice",)
        assert result.field("agree").value() is True
        assert result.field("members").values == ("bob@localhost", "carol@localhost/x")
        summary = result.field("summary").values[0]
        assert "('bio', 'one\\ntwo')" in summary and "('tags', \"['a', 'b']\")" in summary and "('colour', 'blue')" in summary
        assert server.features["adhoc"].open_sessions == 0
    finally:
        await slix_close(alice)


@pytest.mark.parametrize(
    ("values", "var", "problem"),
    [
        ({}, "name", "Name is required"),
        ({"name": "x", "agree": "perhaps"}, "agree", "not a boolean"),
        ({"name": "x", "owner": "a@b@c"}, "owner", "not a valid JID"),
        ({"name": "x", "colour": "green"}, "colour", "not one of the options"),
        ({"name": "x", "age": "old"}, "age", "digits only"),
    ],
)
async def test_bad_value_returns_the_same_form_with_the_problem(server, values, var, problem):
    alice = await client(server, "alice")
    try:
        first = await run(alice, ECHO)
        sid = first.get("sessionid")
        again = await run(alice, ECHO, action="complete", sessionid=sid, payload=form_of(alice, **values))
        assert again.get("status") == "executing" and again.get("sessionid") == sid
        assert len(notes(again)) == 1 and notes(again)[0][0] == "error" and problem in notes(again)[0][1]
        form = xform(again)
        assert form.type == "form" and problem in (form.field(var).desc or "")
        assert actions(again) == ("complete", ["complete"])
        # the session is still usable: a good answer completes it
        done = await run(alice, ECHO, action="complete", sessionid=sid, payload=form_of(alice, name="ok"))
        assert done.get("status") == "completed"
    finally:
        await slix_close(alice)


async def test_multi_stage_next_prev_complete_with_dynamic_form_and_stage_check(server):
    alice = await client(server, "alice")
    try:
        s1 = await run(alice, WIZARD)
        sid = s1.get("sessionid")
        assert actions(s1) == ("next", ["next"])
        # complete is not allowed while stages remain
        with pytest.raises(IqError) as e:
            await run(alice, WIZARD, action="complete", sessionid=sid, payload=form_of(alice, name="tiny"))
        assert e.value.condition == "bad-request" and "bad-action" in app_condition(e.value)
        s2 = await run(alice, WIZARD, action="next", sessionid=sid, payload=form_of(alice, name="tiny"))
        assert s2.get("status") == "executing" and actions(s2) == ("next", ["prev", "next"])
        assert xform(s2).title == "Hello tiny"
        assert [o.value for o in xform(s2).field("size").options] == ["s", "tiny-xl"]
        bad = await run(alice, WIZARD, action="next", sessionid=sid, payload=form_of(alice, size="s"))
        assert notes(bad) == [("error", "tiny wants a big size")]
        # back to stage 1: the earlier answer is shown again
        back = await run(alice, WIZARD, action="prev", sessionid=sid)
        assert xform(back).field("name").values == ("tiny",) and actions(back) == ("next", ["next"])
        with pytest.raises(IqError) as e:
            await run(alice, WIZARD, action="prev", sessionid=sid)
        assert "bad-action" in app_condition(e.value)
        s2 = await run(alice, WIZARD, action="execute", sessionid=sid, payload=form_of(alice, name="big"))
        assert xform(s2).title == "Hello big"
        s3 = await run(alice, WIZARD, action="next", sessionid=sid, payload=form_of(alice, size="big-xl"))
        assert actions(s3) == ("complete", ["prev", "complete"])
        # the handler refuses: the last form again, with its problem
        refused = await run(alice, WIZARD, action="complete", sessionid=sid, payload=form_of(alice, confirm=False))
        assert refused.get("status") == "executing" and notes(refused) == [("error", "you must confirm")]
        assert xform(refused).field("confirm").desc == "you must confirm"
        done = await run(alice, WIZARD, action="complete", sessionid=sid, payload=form_of(alice, confirm=True))
        assert done.get("status") == "completed" and notes(done) == [("info", "big ordered big-xl")]
        assert done.find(f"{{{NS}}}actions") is None
        with pytest.raises(IqError) as e:
            await run(alice, WIZARD, action="next", sessionid=sid, payload=form_of(alice, name="again"))
        assert e.value.condition == "bad-request" and "bad-sessionid" in app_condition(e.value)
    finally:
        await slix_close(alice)


async def test_cancel_ends_the_session(server):
    alice = await client(server, "alice")
    try:
        s1 = await run(alice, WIZARD)
        sid = s1.get("sessionid")
        await run(alice, WIZARD, action="next", sessionid=sid, payload=form_of(alice, name="x"))
        assert server.features["adhoc"].open_sessions == 1
        canceled = await run(alice, WIZARD, action="cancel", sessionid=sid)
        assert canceled.get("status") == "canceled" and canceled.get("sessionid") == sid
        assert server.features["adhoc"].open_sessions == 0
        with pytest.raises(IqError) as e:
            await run(alice, WIZARD, action="next", sessionid=sid, payload=form_of(alice, size="s"))
        assert e.value.condition == "bad-request" and "bad-sessionid" in app_condition(e.value)
    finally:
        await slix_close(alice)


async def test_a_session_belongs_to_the_full_jid_that_started_it(server):
    jid = await add_user(server, "alice")
    a1 = await slix(server, jid, plugins=PLUGINS)
    a2 = await slix(server, jid, plugins=PLUGINS)
    bob = await client(server, "bob")
    try:
        sid = (await run(a1, WIZARD)).get("sessionid")
        for other in (a2, bob):
            with pytest.raises(IqError) as e:
                await run(other, WIZARD, action="next", sessionid=sid, payload=form_of(other, name="hijack"))
            assert e.value.condition == "bad-request" and "bad-sessionid" in app_condition(e.value)
            with pytest.raises(IqError):
                await run(other, WIZARD, action="cancel", sessionid=sid)
        s2 = await run(a1, WIZARD, action="next", sessionid=sid, payload=form_of(a1, name="mine"))
        assert xform(s2).title == "Hello mine"
        # the owner's logout ends its sessions
        await slix_close(a1)
        for _ in range(100):
            if server.features["adhoc"].open_sessions == 0:
                break
            await asyncio.sleep(0.02)
        assert server.features["adhoc"].open_sessions == 0
    finally:
        await slix_close(a1)
        await slix_close(a2)
        await slix_close(bob)


async def test_sessions_expire(tmp_path):
    async with adhoc_server(tmp_path, "adhoc.session_timeout=0.3") as srv:
        alice = await client(srv, "alice")
        try:
            sid = (await run(alice, WIZARD)).get("sessionid")
            await asyncio.sleep(0.4)
            with pytest.raises(IqError) as e:
                await run(alice, WIZARD, action="next", sessionid=sid, payload=form_of(alice, name="late"))
            assert e.value.condition == "bad-request" and "bad-sessionid" in app_condition(e.value)
            assert "expired" in e.value.text
        finally:
            await slix_close(alice)


async def test_too_many_open_sessions_is_resource_constraint(tmp_path):
    async with adhoc_server(tmp_path, "adhoc.max_sessions_per_account=2") as srv:
        alice = await client(srv, "alice")
        try:
            await run(alice, WIZARD)
            await run(alice, WIZARD)
            with pytest.raises(IqError) as e:
                await run(alice, WIZARD)
            assert e.value.condition == "resource-constraint"
        finally:
            await slix_close(alice)


async def test_command_without_stages_completes_at_once_and_errors_are_stanza_errors(server):
    alice, bob = await client(server, "alice"), await client(server, "bob")
    try:
        done = await run(alice, NOW)
        assert done.get("status") == "completed"
        assert notes(done) == [("info", "it is now, alice@localhost on localhost")]
        assert (await run(alice, SCOPED)).get("status") == "completed"
        with pytest.raises(IqError) as e:
            await run(bob, SCOPED)
        assert e.value.condition == "forbidden"
        with pytest.raises(IqError) as e:
            await run(alice, "urn:test:nothing")
        assert e.value.condition == "item-not-found"
        with pytest.raises(IqError) as e:
            await run(alice, NOW, action="dance")
        assert e.value.condition == "bad-request" and "bad-action" in app_condition(e.value)
        with pytest.raises(IqError) as e:
            await run(alice, WIZARD, action="cancel")  # nothing to cancel without a sessionid
        assert "bad-sessionid" in app_condition(e.value)
        with pytest.raises(IqError) as e:
            await run(alice, WIZARD, action="next", sessionid="0" * 24)
        assert "bad-sessionid" in app_condition(e.value)
    finally:
        await slix_close(alice)
        await slix_close(bob)


async def test_execute_with_the_form_already_filled_in(server):
    alice = await client(server, "alice")
    try:
        done = await run(alice, ECHO, payload=form_of(alice, name="direct"))
        assert done.get("status") == "completed" and xform(done).field("name").values == ("direct",)
    finally:
        await slix_close(alice)


# ------------------------------------------------------------------------------ other JIDs


async def test_commands_on_a_service_domain_and_per_room_roles(server):
    mod, alice = await client(server, "mod"), await client(server, "alice")
    try:
        items = await mod.plugin["xep_0050"].get_commands(jid="room1@" + SVC)
        assert [(str(i[0]), i[1], i[2]) for i in items["disco_items"]["items"]] == [("room1@" + SVC, MUTE, "Mute a member")]
        items = await alice.plugin["xep_0050"].get_commands(jid="room1@" + SVC)
        assert not items["disco_items"]["items"]
        first = await run(mod, MUTE, jid="room1@" + SVC)
        done = await run(mod, MUTE, jid="room1@" + SVC, action="complete", sessionid=first.get("sessionid"), payload=form_of(mod, who="alice@localhost"))
        assert notes(done) == [("info", "muted alice@localhost")]
        assert server.features["adhoc_test"].muted == [("mod@localhost", "room1@" + SVC, "alice@localhost")]
        # the role is checked at execute time, not only when listing
        with pytest.raises(IqError) as e:
            await run(alice, MUTE, jid="room1@" + SVC)
        assert e.value.condition == "forbidden"
        # a session on one target is not valid on another
        sid = (await run(mod, MUTE, jid="room1@" + SVC)).get("sessionid")
        with pytest.raises(IqError) as e:
            await run(mod, MUTE, jid="room2@" + SVC, action="complete", sessionid=sid, payload=form_of(mod, who="x@localhost"))
        assert e.value.condition == "item-not-found"
        # the domain itself has its own registered command
        done = await run(alice, NOW, jid=SVC)
        assert notes(done) == [("info", f"it is now, alice@localhost on {SVC}")]
    finally:
        await slix_close(mod)
        await slix_close(alice)


async def test_registration_is_undone(server):
    adhoc = server.features["adhoc"]
    undo = adhoc.register(Command("urn:test:temp", "Temporary", _now), jid="x@" + SVC)
    requester = JID.parse("alice@localhost/r")
    assert [c.node for c in await adhoc.commands_for(requester, JID.parse("x@" + SVC))] == ["urn:test:temp"]
    with pytest.raises(ValueError):
        adhoc.register(Command("urn:test:temp", "Again", _now), jid="x@" + SVC)
    undo()
    undo()  # twice is harmless
    assert await adhoc.commands_for(requester, JID.parse("x@" + SVC)) == []


async def test_every_user_can_run_the_ping_command_from_a_standard_client(tmp_path):
    """XEP-0050 ad-hoc ping on the server, as Prosody offers it: a plain (non-admin) account
    finds it in the server's command list and runs it."""
    async with running_server(tmp_path) as srv:
        alice = await slix(srv, await add_user(srv, "alice"), plugins=PLUGINS)
        try:
            listed = await alice.plugin["xep_0050"].get_commands(jid="localhost")
            assert ("localhost", "ping", "Ping") in [tuple(i) for i in listed["disco_items"]["items"]]
            done = await run(alice, "ping")
            assert done.get("status") == "completed"
            (kind, text), = notes(done)
            assert kind == "info" and text.startswith("Pong\n")
        finally:
            await slix_close(alice)
