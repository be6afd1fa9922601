"""The [http] section (RFC 7395 listener): defaults and validation that names the key."""
from __future__ import annotations

import pytest

from xmppd.config import ConfigError, build


def test_defaults():
    h = build({}, {}).http
    assert h.tls is False and h.trusted_proxies == [] and h.cors_origins == ["*"]
    assert h.ws_ping_interval > 0 and h.ws_ping_timeout > 0
    assert h.max_message_size == 0 and h.public_url == ""
    assert h.consider_websocket_secure is False  # a remote ws:// never counts as secure by default


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ('http.trusted_proxies=["not an address"]', "http.trusted_proxies[0]"),
        ("http.ws_ping_interval=0", "http.ws_ping_interval"),
        ("http.ws_ping_timeout=-1", "http.ws_ping_timeout"),
        ("http.max_message_size=-5", "http.max_message_size"),
        ("http.public_url=https://example.com/ws", "http.public_url"),
        ("http.tls=yes", "http.tls"),
        ("http.consider_websocket_secure=yes", "http.consider_websocket_secure"),
        ("http.colour=blue", "http.colour"),
    ],
)
def test_bad_values_name_the_key(override, key):
    with pytest.raises(ConfigError, match=key.replace("[", r"\[").replace("]", r"\]")):
        build({}, {}, [override])


def test_cidr_and_addresses_are_accepted():
    h = build({}, {}, ['http.trusted_proxies=["10.0.0.0/8", "::1", "192.0.2.7"]']).http
    assert h.trusted_proxies == ["10.0.0.0/8", "::1", "192.0.2.7"]
