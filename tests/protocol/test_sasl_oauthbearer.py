"""OAUTHBEARER (RFC 7628) and externally verified PLAIN in the sans-I/O SASL server."""
from __future__ import annotations

import pytest

from xmppd.errors import SaslCondition, SaslFailure
from xmppd.protocol.sasl import Challenge, Failure, NeedVerification, SaslServer, Success, offered_mechanisms

DOMAIN = "example.com"


def server(mech: str = "OAUTHBEARER", tls: bool = True, **kw) -> SaslServer:
    return SaslServer(mech, domain=DOMAIN, channel_binding=None, tls=tls, fake_key=b"k" * 32, **kw)


def test_oauthbearer_initial_response_gives_the_token_and_the_authzid():
    s = server()
    step = s.start(b"n,a=alice@example.com,\x01host=example.com\x01port=5222\x01auth=Bearer abc.def.ghi\x01\x01")
    assert step == NeedVerification("alice", "abc.def.ghi")
    assert "abc.def" not in repr(step)  # the token never shows in logs of steps
    assert s.verification_result("alice") == Success("alice", None)


def test_oauthbearer_without_authzid_names_nobody():
    s = server()
    assert s.start(b"n,,\x01auth=Bearer tok\x01\x01") == NeedVerification(None, "tok")


def test_oauthbearer_error_is_a_challenge_then_failure_after_the_client_acknowledges():
    s = server()
    s.start(b"n,,\x01auth=Bearer tok\x01\x01")
    step = s.verification_result(None)
    assert isinstance(step, Challenge) and b'"status":"invalid_token"' in step.data
    step = s.respond(b"\x01")
    assert isinstance(step, Failure) and step.condition is SaslCondition.NOT_AUTHORIZED
    assert s.done


@pytest.mark.parametrize(
    "data",
    [
        b"p=tls-server-end-point,,\x01auth=Bearer t\x01\x01",  # no channel binding in OAUTHBEARER
        b"n,,auth=Bearer t\x01\x01",  # no %x01 after the gs2 header
        b"n,,\x01auth=Bearer t\x01",  # not terminated
        b"n,,\x01host=x\x01\x01",  # no auth
        b"n,,\x01auth=Basic dXNlcjpwYXNz\x01\x01",  # not a bearer token
        b"n,,\x01auth=Bearer \x01\x01",  # empty token
        b"n,b=x,\x01auth=Bearer t\x01\x01",  # not an authzid
        b"\xff\xfe",
        b"n,,\x01auth=Bearer " + b"a" * 20000 + b"\x01\x01",
    ],
)
def test_malformed_oauthbearer_is_refused(data):
    step = server().start(data)
    assert isinstance(step, Failure) and step.condition is SaslCondition.MALFORMED_REQUEST


def test_oauthbearer_authzid_of_another_domain_is_refused():
    step = server().start(b"n,a=alice@elsewhere.org,\x01auth=Bearer t\x01\x01")
    assert isinstance(step, Failure) and step.condition is SaslCondition.INVALID_AUTHZID


def test_oauthbearer_needs_tls_and_is_offered_only_when_enabled_and_over_tls():
    with pytest.raises(SaslFailure):
        server(tls=False)
    assert "OAUTHBEARER" not in offered_mechanisms(tls=True, channel_binding_available=False)
    assert "OAUTHBEARER" in offered_mechanisms(tls=True, channel_binding_available=False, oauthbearer=True)
    assert "OAUTHBEARER" not in offered_mechanisms(tls=False, channel_binding_available=False, allow_plain_without_tls=True, oauthbearer=True)


def test_scram_is_not_offered_when_the_server_cannot_check_it():
    assert offered_mechanisms(tls=True, channel_binding_available=True, scram=False) == ["PLAIN"]


def test_external_plain_hands_the_password_to_the_driver():
    s = server("PLAIN", external_plain=True)
    step = s.start(b"\0bob\0secret")
    assert step == NeedVerification("bob", "secret")
    step = s.verification_result(None, SaslCondition.TEMPORARY_AUTH_FAILURE)
    assert isinstance(step, Failure) and step.condition is SaslCondition.TEMPORARY_AUTH_FAILURE


def test_verification_result_out_of_turn_is_a_failure():
    s = server("PLAIN", external_plain=True)
    step = s.verification_result("bob")
    assert isinstance(step, Failure) and step.condition is SaslCondition.MALFORMED_REQUEST
