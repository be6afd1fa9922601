"""xmppd/xml/attrs.py: integer and JID attributes read once, with standard, localised errors."""
import pytest
from lxml import etree

from xmppd.errors import Condition, StanzaError
from xmppd.i18n import LocalisedError
from xmppd.jid import JID
from xmppd.xml.attrs import int_attr, jid_attr


def el(**attrs: str) -> etree._Element:
    return etree.Element("x", attrs)


def test_int_attr_default_required_and_bounds():
    assert int_attr(el(), "n") is None
    assert int_attr(el(), "n", 7) == 7
    assert int_attr(el(n="42"), "n", 7) == 42
    assert int_attr(el(n="-3"), "n", low=-5) == -3
    with pytest.raises(StanzaError) as info:
        int_attr(el(), "n", required=True)
    assert info.value.condition is Condition.BAD_REQUEST and "'n'" in info.value.text
    with pytest.raises(StanzaError) as info:
        int_attr(el(n="9"), "n", low=1, high=5)
    assert info.value.text == "n must be between 1 and 5"


@pytest.mark.parametrize("raw", ["", "x", "1.5", " 1", "+1", "1_000", "٣", "9" * 19])
def test_int_attr_refuses_what_is_not_a_plain_integer(raw):
    with pytest.raises(StanzaError) as info:
        int_attr(el(n=raw), "n")
    assert info.value.condition is Condition.BAD_REQUEST


def test_jid_attr_variants():
    assert jid_attr(el(), "to") is None
    assert jid_attr(el(to="a@b/r"), "to") == JID.parse("a@b")
    assert jid_attr(el(to="a@b/r"), "to", bare=False) == JID.parse("a@b/r")
    assert jid_attr(el(to="b"), "to") == JID.parse("b")
    with pytest.raises(StanzaError) as info:
        jid_attr(el(), "to", required=True)
    assert info.value.condition is Condition.BAD_REQUEST
    with pytest.raises(StanzaError) as info:
        jid_attr(el(to="b"), "to", account=True)
    assert info.value.condition is Condition.BAD_REQUEST
    with pytest.raises(StanzaError) as info:
        jid_attr(el(to="a@@b"), "to")
    assert info.value.condition is Condition.JID_MALFORMED


def test_errors_speak_the_requesters_language():
    with pytest.raises(LocalisedError) as info:
        int_attr(el(score="9"), "score", low=1, high=5)
    assert info.value.for_lang("zh").text == "score 必须在 1 到 5 之间"
