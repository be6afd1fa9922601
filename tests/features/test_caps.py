"""XEP-0115 Entity Capabilities on the server side: the server's own ver (stream feature)
checked against slixmpp's xep_0115, and the per-session cache that parses only on change."""
from __future__ import annotations

import asyncio

import pytest
from lxml import etree

from xmppd.features.caps import CAPS, NODE, CapsCache, CapsInfo, verification_string

from ..helpers import RawClient, add_user, slix, slix_close


async def _ver(server) -> str:
    caps = server.features["caps"]
    for _ in range(100):
        if caps.ver is not None:
            return caps.ver
        await asyncio.sleep(0.01)
    raise AssertionError("the server never computed its caps ver")


async def test_server_caps_match_what_slixmpp_computes_and_verifies(server):
    ver = await _ver(server)
    client = await slix(server, await add_user(server, "alice"), plugins=("xep_0030", "xep_0115"))
    try:
        info = await client.plugin["xep_0030"].get_info(jid=server.domain)
        assert client.plugin["xep_0115"].generate_verstring(info["disco_info"], "sha-1") == ver
        # slixmpp saw the stream feature, queried disco#info itself and validated the hash.
        for _ in range(100):
            if await client.plugin["xep_0115"].get_verstring(server.domain) == ver:
                break
            await asyncio.sleep(0.02)
        assert await client.plugin["xep_0115"].get_verstring(server.domain) == ver
    finally:
        await slix_close(client)


async def test_caps_stream_feature_is_offered_after_authentication_only(server):
    ver = await _ver(server)
    raw = await RawClient.connect(server)
    try:
        features = await raw.open_stream(server.domain)
        assert CAPS.encode() not in features  # before TLS and SASL: nothing to tell yet
    finally:
        raw.close()
    el = server.features["caps"]._stream_feature(True)[0]
    assert el.tag == f"{{{CAPS}}}c" and el.get("hash") == "sha-1" and el.get("node") == NODE and el.get("ver") == ver


def test_verification_string_of_xep_0115_example():
    # XEP-0115 §5.3, the complex example (identities with xml:lang, an extended form).
    info = etree.fromstring(
        """<query xmlns='http://jabber.org/protocol/disco#info' node='http://psi-im.org#q07IKJEyjvHSyhy//CH0CxmKi8w='>
          <identity xml:lang='en' category='client' name='Psi 0.11' type='pc'/>
          <identity xml:lang='el' category='client' name='Ψ 0.11' type='pc'/>
          <feature var='http://jabber.org/protocol/caps'/>
          <feature var='http://jabber.org/protocol/disco#info'/>
          <feature var='http://jabber.org/protocol/disco#items'/>
          <feature var='http://jabber.org/protocol/muc'/>
          <x xmlns='jabber:x:data' type='result'>
            <field var='FORM_TYPE' type='hidden'><value>urn:xmpp:dataforms:softwareinfo</value></field>
            <field var='ip_version'><value>ipv4</value><value>ipv6</value></field>
            <field var='os'><value>Mac</value></field>
            <field var='os_version'><value>10.5.1</value></field>
            <field var='software'><value>Psi</value></field>
            <field var='software_version'><value>0.11</value></field>
          </x>
        </query>"""
    )
    assert verification_string(info) == "q07IKJEyjvHSyhy//CH0CxmKi8w="


class _Session:
    def __init__(self) -> None:
        self.data: dict = {}


def _presence(node: str | None, ver: str | None, hash_: str = "sha-1") -> etree._Element:
    p = etree.Element("{jabber:client}presence")
    if node is not None:
        etree.SubElement(p, f"{{{CAPS}}}c", {"node": node, "ver": ver or "", "hash": hash_})
    return p


def test_cache_parses_only_when_node_or_ver_changes():
    cache = CapsCache()
    a, b = _Session(), _Session()
    p1 = _presence("https://gajim.org", "v1")
    first = cache.observe(a, p1)
    assert first == CapsInfo("https://gajim.org", "v1", "sha-1")
    for _ in range(100):
        assert cache.observe(a, _presence("https://gajim.org", "v1")) is first
    assert cache.parsed == 1
    # Another session with the same caps shares the interned record without a new parse.
    assert cache.observe(b, p1) is first and cache.parsed == 1
    second = cache.observe(a, _presence("https://gajim.org", "v2"))
    assert second.ver == "v2" and cache.parsed == 2 and CapsCache.of(a) is second
    # A presence without <c/> clears it; malformed caps are ignored.
    assert cache.observe(a, _presence(None, None)) is None and CapsCache.of(a) is None
    assert cache.observe(a, _presence("n", "")) is None


def test_learn_keeps_features_only_for_a_verified_ver():
    cache = CapsCache()
    info_xml = etree.fromstring(
        "<query xmlns='http://jabber.org/protocol/disco#info'><identity category='client' type='pc' name='Exodus 0.9.1'/>"
        "<feature var='http://jabber.org/protocol/caps'/><feature var='http://jabber.org/protocol/disco#info'/>"
        "<feature var='http://jabber.org/protocol/disco#items'/><feature var='http://jabber.org/protocol/muc'/></query>"
    )
    good = CapsInfo("http://code.google.com/p/exodus", "QgayPKawpkPSDYmwT/WM94uAlu0=", "sha-1")  # XEP-0115 §5.2
    bad = CapsInfo("http://code.google.com/p/exodus", "forged=", "sha-1")
    s = _Session()
    s.data["caps"] = good
    assert cache.supports(s, "http://jabber.org/protocol/muc") is None  # not learnt yet
    assert cache.learn(bad, info_xml) is False and cache.features(bad) is None
    assert cache.learn(good, info_xml) is True
    assert cache.supports(s, "http://jabber.org/protocol/muc") is True
    assert cache.supports(s, "urn:xmpp:mam:2") is False


@pytest.mark.parametrize("hash_name", ["sha-1", "sha-256"])
def test_unknown_or_other_hashes(hash_name):
    info = etree.fromstring("<query xmlns='http://jabber.org/protocol/disco#info'><feature var='a'/></query>")
    assert verification_string(info, hash_name) != verification_string(info, "md5")
    with pytest.raises(ValueError):
        verification_string(info, "crc32")
