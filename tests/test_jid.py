"""RFC 7622 addresses: what JID.parse refuses."""
from __future__ import annotations

import pytest

from xmppd.jid import JID, JIDError


@pytest.mark.parametrize("text", ["\x0e8a\u00b1", "a@\x10b\u00e1", "\u00e9\x0f.example"])
def test_a_non_ascii_domain_with_control_characters_is_refused(text: str) -> None:
    """Python's IDNA 2003 codec passes controls through; IDNA 2008 and XML do not (found by
    the REST API's schemathesis run: such a JID could not be written into a stanza)."""
    with pytest.raises(JIDError):
        JID.parse(text)


def test_an_internationalised_domain_still_parses() -> None:
    assert str(JID.parse("user@b\u00fccher.example")) == "user@b\u00fccher.example"
