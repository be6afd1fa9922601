"""RFC 6121 Appendix A: the presence subscription state machine, as pure functions.

A contact's subscription state, as seen from the owner of a roster, is the pair of RFC 6121
§3's directions plus the two pending flags:

* ``sub``: ``none``, ``to`` (the owner receives the contact's presence), ``from`` (the contact
  receives the owner's presence) or ``both``;
* ``pending_out``: the owner asked to subscribe and the contact has not answered (``ask``);
* ``pending_in``: the contact asked to subscribe and the owner has not answered;
* ``approved``: the owner pre-approved a request from the contact (RFC 6121 §3.4).

:func:`outbound` answers "the owner sent a subscription stanza of type T to the contact"
(Appendix A.2) and :func:`inbound` "a subscription stanza of type T from the contact arrived
for the owner" (Appendix A.3). Both return an :class:`Outcome`: the new state and what the
server does with the stanza. Nothing here performs I/O, so the tables are tested exhaustively
(``tests/features/test_subscription_states.py``).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Final

SUBSCRIPTION_TYPES: Final = ("subscribe", "subscribed", "unsubscribe", "unsubscribed")
SUBSCRIPTIONS: Final = ("none", "to", "from", "both")


@dataclass(frozen=True, slots=True)
class SubState:
    sub: str = "none"
    pending_out: bool = False
    pending_in: bool = False
    approved: bool = False

    @property
    def has_to(self) -> bool:
        return self.sub in ("to", "both")

    @property
    def has_from(self) -> bool:
        return self.sub in ("from", "both")

    @property
    def name(self) -> str:
        """The state's name in RFC 6121 Appendix A ("None + Pending Out", "Both" ...)."""
        base = self.sub.capitalize()
        if self.pending_out and self.pending_in:
            return f"{base} + Pending Out+In"
        if self.pending_out:
            return f"{base} + Pending Out"
        if self.pending_in:
            return f"{base} + Pending In"
        return base


def _state(name: str) -> SubState:
    sub, _, pending = name.partition(" + ")
    return SubState(sub.lower(), pending_out="Out" in pending, pending_in="In" in pending)


#: The nine states of Appendix A (pre-approval aside).
STATES: Final = tuple(
    _state(n)
    for n in (
        "None",
        "None + Pending Out",
        "None + Pending In",
        "None + Pending Out+In",
        "To",
        "To + Pending In",
        "From",
        "From + Pending Out",
        "Both",
    )
)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What processing one subscription stanza does."""

    state: SubState
    changed: bool  # the subscription state (sub, pending flags or pre-approval) changed
    route: bool = False  # outbound: forward the stanza to the contact (from the owner's bare JID)
    deliver: bool = False  # inbound: deliver to the owner's available resources (or keep it)
    auto_reply: str | None = None  # inbound: answer the contact with this type on the owner's behalf
    send_presence: bool = False  # send the owner's current presence to the contact
    send_unavailable: bool = False  # send unavailable from the owner's available resources


def _with(old: SubState, **kw: object) -> SubState:
    return replace(old, **kw)  # type: ignore[arg-type]


def outbound(old: SubState, typ: str) -> Outcome:
    """RFC 6121 Appendix A.2 (and §3.4 pre-approval): the owner sent ``typ`` to the contact."""
    if typ == "subscribe":
        # A.2.1: None -> None + Pending Out, From -> From + Pending Out, None + Pending In ->
        # None + Pending Out+In; every other state is unchanged. §3.1.2: always routed.
        new = old if old.has_to else _with(old, pending_out=True)
        return Outcome(new, new != old, route=True)
    if typ == "unsubscribe":
        # A.2.2: the 'to' direction and any pending-out request go. §3.3.2: always routed.
        new = _with(old, sub=_drop_to(old.sub), pending_out=False)
        return Outcome(new, new != old, route=True)
    if typ == "subscribed":
        # A.2.3: approving a pending request adds 'from'; without one it is a pre-approval
        # (§3.4.1), which is noted and not routed. Already 'from': nothing to do.
        if old.has_from:
            return Outcome(old, False)
        if old.pending_in:
            new = _with(old, sub=_add_from(old.sub), pending_in=False, approved=False)
            return Outcome(new, True, route=True, send_presence=True)
        new = _with(old, approved=True)
        return Outcome(new, new != old)
    if typ == "unsubscribed":
        # A.2.4: denying a pending request or cancelling the contact's subscription; also
        # cancels a pre-approval (§3.4.1). Routed only when there was something to cancel.
        if old.has_from or old.pending_in:
            new = _with(old, sub=_drop_from(old.sub), pending_in=False, approved=False)
            return Outcome(new, True, route=True, send_unavailable=old.has_from)
        new = _with(old, approved=False)
        return Outcome(new, new != old)
    raise ValueError(f"not a subscription type: {typ!r}")


def inbound(old: SubState, typ: str) -> Outcome:
    """RFC 6121 Appendix A.3 (and §3.4 pre-approval): ``typ`` from the contact arrived."""
    if typ == "subscribe":
        # §3.1.3: already 'from': answer subscribed on the owner's behalf, don't deliver.
        if old.has_from:
            return Outcome(old, False, auto_reply="subscribed")
        if old.approved:
            # §3.4.2: pre-approved: the subscription is granted at once.
            new = _with(old, sub=_add_from(old.sub), pending_in=False, approved=False)
            return Outcome(new, True, auto_reply="subscribed", send_presence=True)
        # A.3.1: -> + Pending In; a duplicate request changes nothing but is delivered again.
        new = _with(old, pending_in=True)
        return Outcome(new, new != old, deliver=True)
    if typ == "unsubscribe":
        # A.3.2: the contact no longer wants the owner's presence: 'from' and pending-in go.
        if old.has_from or old.pending_in:
            new = _with(old, sub=_drop_from(old.sub), pending_in=False)
            return Outcome(new, True, deliver=True, send_unavailable=old.has_from)
        return Outcome(old, False)
    if typ == "subscribed":
        # A.3.3: only an answer to the owner's pending request counts.
        if old.pending_out and not old.has_to:
            new = _with(old, sub=_add_to(old.sub), pending_out=False)
            return Outcome(new, True, deliver=True)
        return Outcome(old, False)
    if typ == "unsubscribed":
        # A.3.4: the contact denied the request or cancelled the owner's subscription.
        if old.has_to or old.pending_out:
            new = _with(old, sub=_drop_to(old.sub), pending_out=False)
            return Outcome(new, True, deliver=True)
        return Outcome(old, False)
    raise ValueError(f"not a subscription type: {typ!r}")


def _add_to(sub: str) -> str:
    return {"none": "to", "from": "both"}.get(sub, sub)


def _add_from(sub: str) -> str:
    return {"none": "from", "to": "both"}.get(sub, sub)


def _drop_to(sub: str) -> str:
    return {"to": "none", "both": "from"}.get(sub, sub)


def _drop_from(sub: str) -> str:
    return {"from": "none", "both": "to"}.get(sub, sub)
