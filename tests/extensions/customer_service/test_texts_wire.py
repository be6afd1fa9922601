"""Customer-service texts over the wire (issue 16): commands in forms every client passes through
(!close, a leading word, full-width ！), and every text in the reader's stream language (zh/en)."""
from __future__ import annotations

import asyncio

import pytest
from slixmpp.exceptions import IqError

from .conftest import Site
from .test_adhoc_wire import NODE, command, notes

pytestmark = pytest.mark.interop
BODY = "{jabber:client}body"
ERROR_TEXT = "{urn:ietf:params:xml:ns:xmpp-stanzas}text"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"


async def test_bang_and_leading_word_commands_work_beside_the_slash_form(site: Site) -> None:
    for u in ("boss", "ann", "vera", "vic"):
        await site.user(u)
    await site.queue_with("support", {"ann": "Ann"}, capacity=5)
    support = site.queue("support")
    ann = await site.client("ann")
    await ann.announce(support)

    vera = await site.client("vera")
    vera.say(support, "hello")
    welcome = await vera.cs_event("welcome")
    sid = welcome.get("session")
    assert "!close" in welcome.get("_body") and "cs close" in welcome.get("_body")  # the welcome names the forms
    await vera.cs_event("agent", session=sid)
    vera.say(support, "!close")
    assert (await vera.cs_event("closed", session=sid)).get("reason") == "visitor"
    vera.say(support, "cs rate 4 不错")  # a leading word: profanity would reject "/rate 4 不错"
    await vera.next(lambda m: (m.findtext(BODY) or "").startswith("Thank you"))
    rated = [s for s in await site.cs.repo.sessions("support", "vera@localhost") if s.id == sid]
    assert rated[0].rating == 4 and rated[0].comment == "不错"

    vic = await site.client("vic")
    vic.say(support, "hi")
    sid2 = (await vic.cs_event("welcome")).get("session")
    await vic.cs_event("agent", session=sid2)
    sjid = f"s-{sid2}@{site.domain}"
    ann.say(sjid, "CS pause")  # the leading word, any case
    await ann.next(lambda m: m.get("from") == sjid and (m.findtext(BODY) or "").startswith("Paused"))
    assert site.cs.agents["ann@localhost"].paused
    ann.say(sjid, "!resume")
    await ann.next(lambda m: m.get("from") == sjid and (m.findtext(BODY) or "").startswith("Resumed"))
    assert not site.cs.agents["ann@localhost"].paused
    vic.say(support, "cs is great")  # not a command word: plain text for the agent
    await ann.next(lambda m: m.get("from") == sjid and m.findtext(BODY) == "cs is great")
    ann.say(sjid, "！close")  # full-width, as a Chinese input method types it
    assert (await vic.cs_event("closed", session=sid2)).get("reason") == "agent"


async def test_visitor_and_agent_read_the_service_in_their_stream_language(site: Site) -> None:
    for u in ("boss", "ann", "bob", "wang", "vera"):
        await site.user(u)
    await site.queue_with("support", {"ann": "小王"}, capacity=1)
    support = site.queue("support")
    ann = await site.client("ann", lang="zh-Hans-CN")  # falls back along zh-hans -> zh
    await ann.announce(support)

    wang = await site.client("wang", lang="zh")
    wang.say(support, "我的订单还没到")
    welcome = await wang.cs_event("welcome")
    sid = welcome.get("session")
    assert "结束会话请发送 !close" in welcome.get("_body")
    assert (await wang.cs_event("agent", session=sid)).get("_body") == "小王 正在为您服务。"
    brief = await ann.cs_event("assigned", session=sid)
    assert brief.get("_body").startswith("与 wang@localhost 的会话") and "我的订单还没到" in brief.get("_body")

    vera = await site.client("vera")  # English
    vera.say(support, "where is my order?")
    sid2 = (await vera.cs_event("welcome")).get("session")
    pos = await vera.cs_event("position", session=sid2)  # one chat served: with the estimated wait
    assert pos.get("_body") == f"You are number 1 in line; the estimated wait is about {max(1, -(-int(pos.get('wait')) // 60))} min."

    ann.say(f"s-{sid}@{site.domain}", "!transfer nobody")  # an error, told in the agent's language
    failed = await ann.next(lambda m: "失败" in (m.findtext(BODY) or ""))
    assert failed.findtext(BODY) == "!transfer 失败：没有名为 'nobody' 的客服或队列"
    ann.say(f"s-{sid}@{site.domain}", "!close")
    closed = await wang.cs_event("closed", session=sid)
    assert closed.get("_body") == "客服已结束会话。发送 !rate 1-5 加评语即可评价。"
    assert "会话已结束（客服结束）" in (await ann.cs_event("closed", session=sid)).get("_body")
    assert (await vera.cs_event("agent", session=sid2)).get("_body") == "小王 is now chatting with you."

    # iq errors carry their text in the requester's language, marked with xml:lang
    with pytest.raises(IqError) as exc:
        await wang.cs.rate(support, 9)
    text = exc.value.iq.xml.find(f"{{jabber:client}}error/{ERROR_TEXT}")
    assert text.text == "score 必须在 1 到 5 之间" and text.get(XML_LANG) == "zh"
    with pytest.raises(IqError) as exc:
        await vera.cs.rate(support, 9)
    assert exc.value.iq.xml.find(f"{{jabber:client}}error/{ERROR_TEXT}").text == "score must be between 1 and 5"

    # ad-hoc commands: names, notes
    done = await command(ann, site.domain, NODE + "pause")
    assert notes(done) == ["已暂停：不再接入新会话。"]


async def test_server_default_language_serves_clients_that_name_none(tmp_path) -> None:
    from tests.helpers import slix, slix_close

    from .conftest import open_site

    async with open_site(tmp_path, "server.default_lang=zh") as site:
        for u in ("boss", "ann", "vera"):
            await site.user(u)
        await site.queue_with("support", {"ann": "Ann"})
        c = await slix(site.server, "vera@localhost", lang="")  # no xml:lang on the stream
        try:
            got = []
            c.add_event_handler("message", lambda m: got.append(m["body"]))
            c.send_presence()
            c.send_message(mto=site.queue("support"), mbody="hi", mtype="chat")
            for _ in range(100):
                if got:
                    break
                await asyncio.sleep(0.05)
            assert got and "工单 #" in got[0]  # no agent online: the ticket text, in the server's default
        finally:
            await slix_close(c)
