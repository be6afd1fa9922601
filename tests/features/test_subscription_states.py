"""RFC 6121 Appendix A: the subscription state machine, every state x every stanza type.

The expected tables below are RFC 6121 Appendix A.2 (outbound) and A.3 (inbound) written out
state by state; ``xmppd.features.roster.states`` must agree with them in all 72 cells, plus the
pre-approval rules of §3.4.
"""
from __future__ import annotations

import pytest

from xmppd.features.roster.states import STATES, SubState, inbound, outbound

N, NO, NI, NOI = "None", "None + Pending Out", "None + Pending In", "None + Pending Out+In"
T, TI, F, FO, B = "To", "To + Pending In", "From", "From + Pending Out", "Both"
ALL = (N, NO, NI, NOI, T, TI, F, FO, B)

# A.2.1-A.2.4: state -> state after the user's server processes the outbound stanza.
OUTBOUND = {
    "subscribe": {N: NO, NO: NO, NI: NOI, NOI: NOI, T: T, TI: TI, F: FO, FO: FO, B: B},
    "unsubscribe": {N: N, NO: N, NI: NI, NOI: NI, T: N, TI: NI, F: F, FO: F, B: F},
    "subscribed": {N: N, NO: NO, NI: F, NOI: FO, T: T, TI: B, F: F, FO: FO, B: B},
    "unsubscribed": {N: N, NO: NO, NI: N, NOI: NO, T: T, TI: T, F: N, FO: NO, B: T},
}
# A.3.1-A.3.4: state -> state after the contact's server processes the inbound stanza.
INBOUND = {
    "subscribe": {N: NI, NO: NOI, NI: NI, NOI: NOI, T: TI, TI: TI, F: F, FO: FO, B: B},
    "unsubscribe": {N: N, NO: NO, NI: N, NOI: NO, T: T, TI: T, F: N, FO: NO, B: T},
    "subscribed": {N: N, NO: T, NI: NI, NOI: TI, T: T, TI: TI, F: F, FO: B, B: B},
    "unsubscribed": {N: N, NO: N, NI: NI, NOI: NI, T: N, TI: NI, F: F, FO: F, B: F},
}


def by_name(name: str) -> SubState:
    (found,) = [s for s in STATES if s.name == name]
    return found


def test_the_nine_states_have_the_rfc_names():
    assert sorted(s.name for s in STATES) == sorted(ALL)


@pytest.mark.parametrize("typ", list(OUTBOUND))
@pytest.mark.parametrize("name", ALL)
def test_outbound_table(name, typ):
    oc = outbound(by_name(name), typ)
    assert oc.state.name == OUTBOUND[typ][name]
    if typ != "subscribed":  # pre-approval aside, "changed" means a new state
        assert oc.changed == (OUTBOUND[typ][name] != name)


@pytest.mark.parametrize("typ", list(INBOUND))
@pytest.mark.parametrize("name", ALL)
def test_inbound_table(name, typ):
    oc = inbound(by_name(name), typ)
    assert oc.state.name == INBOUND[typ][name]
    assert oc.changed == (INBOUND[typ][name] != name)


@pytest.mark.parametrize("name", ALL)
def test_outbound_subscribe_and_unsubscribe_are_always_routed(name):
    assert outbound(by_name(name), "subscribe").route
    assert outbound(by_name(name), "unsubscribe").route


@pytest.mark.parametrize("name", ALL)
def test_outbound_subscribed_is_routed_only_when_it_approves_a_request(name):
    oc = outbound(by_name(name), "subscribed")
    approves = name in (NI, NOI, TI)
    assert oc.route == approves
    assert oc.send_presence == approves  # §3.1.5: the new subscriber gets current presence
    # §3.4.1: without a pending request and without 'from', it is a pre-approval
    assert oc.state.approved == (name in (N, NO, T))


@pytest.mark.parametrize("name", ALL)
def test_outbound_unsubscribed_routes_and_sends_unavailable_when_cancelling(name):
    oc = outbound(by_name(name), "unsubscribed")
    assert oc.route == (name in (NI, NOI, TI, F, FO, B))
    assert oc.send_unavailable == (name in (F, FO, B))  # §3.2.2


@pytest.mark.parametrize("name", ALL)
def test_inbound_subscribe_is_delivered_unless_already_granted(name):
    oc = inbound(by_name(name), "subscribe")
    granted = name in (F, FO, B)
    assert oc.deliver == (not granted)
    assert oc.auto_reply == ("subscribed" if granted else None)  # §3.1.3


@pytest.mark.parametrize("typ", ["subscribed", "unsubscribe", "unsubscribed"])
@pytest.mark.parametrize("name", ALL)
def test_inbound_stanzas_that_change_nothing_are_not_delivered(name, typ):
    oc = inbound(by_name(name), typ)
    assert oc.deliver == (INBOUND[typ][name] != name)


@pytest.mark.parametrize("name", ALL)
def test_inbound_unsubscribe_sends_unavailable_to_a_former_subscriber(name):
    assert inbound(by_name(name), "unsubscribe").send_unavailable == (name in (F, FO, B))


@pytest.mark.parametrize("name", [N, NO, T])
def test_pre_approved_request_is_granted_at_once(name):
    pre = outbound(by_name(name), "subscribed").state
    assert pre.approved
    oc = inbound(pre, "subscribe")
    assert oc.state.has_from and not oc.state.approved and not oc.state.pending_in
    assert oc.auto_reply == "subscribed" and not oc.deliver and oc.send_presence
    assert oc.state.name == {N: F, NO: FO, T: B}[name]


@pytest.mark.parametrize("name", [N, NO, T])
def test_outbound_unsubscribed_cancels_a_pre_approval_without_routing(name):
    pre = outbound(by_name(name), "subscribed").state
    oc = outbound(pre, "unsubscribed")
    assert not oc.state.approved and oc.changed and not oc.route
    assert oc.state.name == name


def test_unknown_type_is_refused():
    with pytest.raises(ValueError):
        outbound(SubState(), "probe")
    with pytest.raises(ValueError):
        inbound(SubState(), "available")
