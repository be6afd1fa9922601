"""Pre-chat forms (docs/customer-service.md §4.1) through the wire with slixmpp: an admin defines
the form, a visitor fetches it (XEP-0004) and submits it with ``<join/>`` (a plain form built
with slixmpp's xep_0004), required fields are checked, the topic sets the skills that route the
chat, and the agent sees the answers in the offer, the assignment and the history; a plain
message still opens a chat when the form is optional; with nobody there the answers go into the
ticket; an admin sets the form with the queue ad-hoc command (JSON); a standard client fills it
in through the prechat ad-hoc command."""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest
from lxml import etree
from slixmpp.exceptions import IqError

from xmppd_extensions.customer_service.protocol import NS
from xmppd_extensions.customer_service.slixmpp_plugin import prechat_definition

from .conftest import Client, Site, assert_valid
from .test_adhoc_wire import NODE, command, notes
from .test_routing_wire import agents_online, open_chat, users

XD = "{jabber:x:data}"
FIELDS = [
    {"var": "name", "type": "text-single", "label": "Your name", "required": True},
    {"var": "contact", "type": "text-single", "label": "E-mail or phone"},
    {"var": "topic", "type": "list-single", "label": "Topic", "required": True, "options": [
        {"value": "billing", "label": "Billing", "skills": "billing"},
        {"value": "tech", "label": "Technical problem", "skills": "tech"},
    ]},
    {"var": "question", "type": "text-multi", "label": "Your question"},
]


def submit(visitor: Client, **values: str | list[str]) -> object:
    """A plain XEP-0004 submit form made with slixmpp's xep_0004."""
    form = visitor.xmpp.plugin["xep_0004"].make_form(ftype="submit")
    form.add_field(var="FORM_TYPE", ftype="hidden", value="urn:xmppd:cs:0#prechat")
    for var, value in values.items():
        form.add_field(var=var, value=value)
    return form


async def test_form_fetched_checked_routed_by_topic_and_shown_to_the_agent(site: Site) -> None:
    await users(site, "ann", "bob", "vera", "walt")
    admin = await site.queue_with("help", {}, offer_timeout=30)
    help_ = site.queue("help")
    await admin.cs.put_queue(site.domain, "help", prechat=prechat_definition(FIELDS, required=True))
    await admin.cs.set_member(help_, "ann@localhost", "agent", "Ann", skills="billing")
    await admin.cs.set_member(help_, "bob@localhost", "agent", "Bob", skills="tech")
    listed = (await admin.cs.queues(site.domain)).find(f"{{{NS}}}queue/{{{NS}}}prechat")
    assert listed.get("required") == "true" and [f.get("var") for f in listed] == ["name", "contact", "topic", "question"]
    ann, bob = await agents_online(site, "help", ["ann", "bob"])

    vera = await site.client("vera")
    vera.xmpp.register_plugin("xep_0004")
    vera.xmpp.register_plugin("xep_0030")
    info = await vera.xmpp.plugin["xep_0030"].get_info(jid=help_)
    assert "urn:xmppd:cs:0#prechat" in info["disco_info"]["features"]  # the queue asks a form
    got = await vera.cs.prechat(help_)
    assert got.get("required") == "true"
    x = got.find(f"{XD}x")
    assert x.get("type") == "form"
    fields = {f.get("var"): f for f in x.findall(f"{XD}field")}
    assert fields["topic"].get("type") == "list-single" and fields["name"].find(f"{XD}required") is not None
    assert [o.findtext(f"{XD}value") for o in fields["topic"].findall(f"{XD}option")] == ["billing", "tech"]

    # A required field left out, an option not offered, a field not asked: refused with a text.
    with pytest.raises(IqError) as err:
        await vera.cs.join(help_, submit(vera, topic="tech"))
    assert err.value.condition == "not-acceptable" and "Your name is required" in err.value.text
    with pytest.raises(IqError) as err:
        await vera.cs.join(help_, submit(vera, name="Vera", topic="refunds"))
    assert err.value.condition == "not-acceptable" and "refunds" in err.value.text
    with pytest.raises(IqError) as err:
        await vera.cs.join(help_, submit(vera, name="Vera", topic="tech", shoe_size="42"))
    assert err.value.condition == "bad-request" and "shoe_size" in err.value.text
    # The form is required here: a plain message does not start a chat.
    vera.say(help_, "hello?")
    bounced = await vera.next(lambda m: m.get("type") == "error")
    assert "pre-chat form" in bounced.findtext(".//{urn:ietf:params:xml:ns:xmpp-stanzas}text")

    joined = await vera.cs.join(help_, submit(vera, name="Vera", contact="vera@example.com", topic="tech",
                                               question=["The app crashes", "at login"]))
    sid = joined.get("session")
    assert sid and (await vera.cs_event("welcome")).get("session") == sid
    # Technical problem needs the skill tech: Bob is offered it, never Ann (round-robin starts at Ann).
    offer = await bob.cs_event("offer", session=sid)
    answers = {a.get("var"): (a.get("label"), a.text) for a in offer.find(f"{{{NS}}}answers")}
    assert answers == {"name": ("Your name", "Vera"), "contact": ("E-mail or phone", "vera@example.com"),
                       "topic": ("Topic", "Technical problem"), "question": ("Your question", "The app crashes\nat login")}
    assert "Topic: Technical problem" in offer.get("_body")
    await bob.cs.accept(f"s-{sid}@{site.domain}")
    assigned = await bob.cs_event("assigned", session=sid)
    assert assigned.find(f"{{{NS}}}answers") is not None and "Your name: Vera" in assigned.get("_body")
    assert not [m for m in ann.messages if m.find(f"{{{NS}}}offer") is not None]
    with pytest.raises(IqError) as err:
        await vera.cs.join(help_, submit(vera, name="Vera", topic="tech"))
    assert err.value.condition == "conflict"

    # Stored with the chat: in the history (the agent's view after the chat) and the transcript.
    history = await admin.cs.history(help_, visitor="vera@localhost")
    kept = history.find(f"{{{NS}}}session/{{{NS}}}answers")
    assert [a.text for a in kept] == ["Vera", "vera@example.com", "Technical problem", "The app crashes\nat login"]
    queues = await admin.cs.queues(site.domain)
    assert_valid([offer, assigned, *(etree.fromstring(ET.tostring(e)) for e in (got, history, queues, joined))])

    # Billing goes to Ann; the form may also come with the first message (XEP-0004 in a message).
    walt = await site.client("walt")
    walt.xmpp.register_plugin("xep_0004")
    msg = walt.xmpp.make_message(mto=help_, mbody="my invoice is wrong", mtype="chat")
    msg.append(submit(walt, name="Walt", topic="billing"))
    msg.send()
    sid2 = (await walt.cs_event("welcome")).get("session")
    offered = await ann.cs_event("offer", session=sid2)
    assert [a.text for a in offered.find(f"{{{NS}}}answers")] == ["Walt", "Billing"]


async def test_optional_form_plain_clients_and_tickets(site: Site) -> None:
    await users(site, "ann", "vera", "walt")
    admin = await site.queue_with("help", {"ann": "Ann"})
    help_ = site.queue("help")
    # The admin sets the form with the queue's ad-hoc command on a standard client (JSON); bad JSON is refused.
    bad = await command(admin, site.domain, NODE + "queue", {"name": "help", "prechat": '{"fields": [{"var": "Name!"}]}'})
    assert bad.get("status") == "executing" and any("pre-chat form" in n for n in notes(bad))
    done = await command(admin, site.domain, NODE + "queue", {"name": "help", "prechat": json.dumps({"fields": FIELDS[:1]})})
    assert done.get("status") == "completed"
    walt = await site.client("walt")
    walt.xmpp.register_plugin("xep_0004")
    # Nobody serves: the answers are kept in the ticket.
    ticket = (await walt.cs.join(help_, submit(walt, name="Walt W."))).get("ticket")
    assert ticket and (await walt.cs_event("ticket")).get("id") == ticket
    listed = (await admin.cs.tickets(help_)).find(f"{{{NS}}}ticket")
    assert listed.get("id") == ticket and "Your name: Walt W." in listed.text

    await agents_online(site, "help", ["ann"])
    vera = await site.client("vera")
    sid = await open_chat(site, vera, "help")  # optional form: a plain client just writes
    assert (await vera.cs_event("agent", session=sid)).get("nick") == "Ann"

    # A standard client fills the form in through XEP-0050 (the queue lists the command).
    walt.xmpp.register_plugin("xep_0050")
    walt_cmds = walt.xmpp.plugin["xep_0050"]
    items = await walt_cmds.get_commands(help_)
    nodes = [i[1] for i in items["disco_items"]["items"]]
    assert "urn:xmppd:cs:0#prechat" in nodes
    first = await walt_cmds.send_command(help_, "urn:xmppd:cs:0#prechat")
    session = first["command"]["sessionid"]
    form = walt.xmpp.plugin["xep_0004"].make_form(ftype="submit")
    form.add_field(var="name", value="Walt")
    done = await walt_cmds.send_command(help_, "urn:xmppd:cs:0#prechat", sessionid=session, payload=form, action="complete")
    assert done["command"]["status"] == "completed"
    sid2 = (await walt.cs_event("welcome")).get("session")
    history = await admin.cs.history(help_, visitor="walt@localhost")
    assert [a.text for a in history.find(f"{{{NS}}}session[@id='{sid2}']/{{{NS}}}answers")] == ["Walt"]

    # The admin removes the form: asking for it is item-not-found.
    await admin.cs.put_queue(site.domain, "help", prechat=prechat_definition([]))
    with pytest.raises(IqError) as err:
        await walt.cs.prechat(help_)
    assert err.value.condition == "item-not-found"
