"""extensions/mute/policy.py: the pure rules (slow mode, batches, keyword filter, what is content)."""

from __future__ import annotations

import pytest
from lxml import etree

from xmppd.jid import JID
from xmppd_extensions.mute import policy


def test_slow_interval_reads_the_room_field_within_bounds():
    assert policy.slow_interval({}, 600) == 0
    assert policy.slow_interval({policy.SLOW_FIELD: ["30"]}, 600) == 30
    assert policy.slow_interval({policy.SLOW_FIELD: ["9999"]}, 600) == 600
    for bad in ("-1", "x", "", "1.5"):
        assert policy.slow_interval({policy.SLOW_FIELD: [bad]}, 600) == 0


def test_slow_wait_rounds_up_and_ends():
    assert policy.slow_wait(None, 100.0, 30) == 0
    assert policy.slow_wait(100.0, 100.0, 0) == 0
    assert policy.slow_wait(100.0, 110.5, 30) == 20
    assert policy.slow_wait(100.0, 130.0, 30) == 0


def test_prune_said_forgets_who_no_longer_waits():
    a, b = JID.parse("a@x"), JID.parse("b@x")
    said = {a: 100.0, b: 125.0}
    policy.prune_said(said, 130.0, 30)
    assert said == {b: 125.0}


def test_batch_targets_are_distinct_and_bounded():
    a, b = JID.parse("a@x"), JID.parse("b@x")
    assert policy.batch_targets([a, b, a], 2) == [a, b]
    with pytest.raises(ValueError):
        policy.batch_targets([], 2)
    with pytest.raises(ValueError):
        policy.batch_targets([a, b, JID.parse("c@x")], 2)


def test_keyword_rule_normalises_words_action_and_minutes():
    assert policy.keyword_rule({}, 10, 60) is None
    assert policy.keyword_rule({policy.KEYWORDS_FIELD: [" ", ""]}, 10, 60) is None
    rule = policy.keyword_rule({policy.KEYWORDS_FIELD: ["Spam", "spam", "广告", "ad\nbuy now"],
                                policy.KEYWORDS_ACTION_FIELD: ["mute"], policy.KEYWORDS_MINUTES_FIELD: ["500"]}, 10, 60)
    assert rule is not None and set(rule.words) == {"spam", "广告", "ad", "buy now"}
    assert rule.words[0] == "buy now" and rule.action == "mute" and rule.minutes == 60
    odd = policy.keyword_rule({policy.KEYWORDS_FIELD: ["a", "b", "c"], policy.KEYWORDS_ACTION_FIELD: ["explode"],
                               policy.KEYWORDS_MINUTES_FIELD: ["soon"]}, 2, 60)
    assert odd is not None and len(odd.words) == 2 and odd.action == "block" and odd.minutes == 10


def test_find_and_mask_are_case_insensitive_substrings():
    words = ("buy now", "spam", "广告")
    assert policy.find_keyword("BUY NOW!", words) == "buy now"
    assert policy.find_keyword("免费广告位", words) == "广告"
    assert policy.find_keyword("hello", words) is None
    assert policy.mask("Spam, SPAM and 广告", words) == "****, **** and **"
    assert policy.mask("nothing here", words) == "nothing here"


@pytest.mark.parametrize(("xml", "content"), [
    ("<message xmlns='jabber:client'><body>hi</body></message>", True),
    ("<message xmlns='jabber:client'><active xmlns='http://jabber.org/protocol/chatstates'/><thread>t</thread></message>", False),
    ("<message xmlns='jabber:client'><no-store xmlns='urn:xmpp:hints'/><received xmlns='urn:xmpp:receipts' id='1'/></message>", False),
    ("<message xmlns='jabber:client'><x xmlns='jabber:x:oob'><url>u</url></x></message>", True),
])
def test_is_content(xml, content):
    assert policy.is_content(etree.fromstring(xml)) is content


def test_the_platform_list_strongest_hit_wins():
    entries = [("spam", "mask", 10), ("免费", "block", 10), ("刷屏", "mute", 5), ("spam now", "block", 10)]
    assert policy.platform_hit(["hello"], entries) is None
    assert policy.platform_hit(["SPAM"], entries) == ("spam", "mask", 10)
    assert policy.platform_hit(["spam NOW"], entries) == ("spam now", "block", 10)  # block beats mask
    assert policy.platform_hit(["免费", "刷屏!"], entries) == ("刷屏", "mute", 5)  # any body; mute beats block
    assert policy.normalize_keyword("  Spam ") == "spam"
