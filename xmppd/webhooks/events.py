"""Webhook event names (docs/webhooks.md lists the payload of each).

A name is ``<area>.<what happened>``. ``webhooks.events`` in the configuration lists the names
(or ``<area>.*``) written to the outbox; ``[]`` writes every event. This module imports nothing
of xmppd, so that the configuration can validate names without loading storage.
"""

from __future__ import annotations

from typing import Final

ACCOUNT_CREATED: Final = "account.created"
ACCOUNT_DELETED: Final = "account.deleted"
ACCOUNT_DISABLED: Final = "account.disabled"
ACCOUNT_ENABLED: Final = "account.enabled"
REDPACKET_SENT: Final = "redpacket.sent"
REDPACKET_GRABBED: Final = "redpacket.grabbed"
REDPACKET_FINISHED: Final = "redpacket.finished"
REDPACKET_REFUNDED: Final = "redpacket.refunded"
WALLET_TOPUP: Final = "wallet.topup"
WALLET_ADJUSTED: Final = "wallet.adjusted"
PAYMENT_REQUESTED: Final = "payment.requested"
PAYMENT_CONFIRMED: Final = "payment.confirmed"
PAYMENT_REJECTED: Final = "payment.rejected"
MUTE_SET: Final = "mute.set"
MUTE_LIFTED: Final = "mute.lifted"
CS_CHAT_OPENED: Final = "cs.chat.opened"
CS_CHAT_ASSIGNED: Final = "cs.chat.assigned"
CS_CHAT_CLOSED: Final = "cs.chat.closed"
CS_CHAT_RATED: Final = "cs.chat.rated"
CS_TICKET_CREATED: Final = "cs.ticket.created"

#: Every event the server writes, in the order docs/webhooks.md documents them.
EVENTS: Final = (
    ACCOUNT_CREATED, ACCOUNT_DELETED, ACCOUNT_DISABLED, ACCOUNT_ENABLED,
    REDPACKET_SENT, REDPACKET_GRABBED, REDPACKET_FINISHED, REDPACKET_REFUNDED,
    WALLET_TOPUP, WALLET_ADJUSTED, PAYMENT_REQUESTED, PAYMENT_CONFIRMED, PAYMENT_REJECTED,
    MUTE_SET, MUTE_LIFTED,
    CS_CHAT_OPENED, CS_CHAT_ASSIGNED, CS_CHAT_CLOSED, CS_CHAT_RATED, CS_TICKET_CREATED,
)


def check_filter(patterns: list[str] | tuple[str, ...]) -> None:
    """Raise ValueError naming the first entry of ``webhooks.events`` that matches no event."""
    for i, pattern in enumerate(patterns):
        if not any(matches(pattern, e) for e in EVENTS):
            raise ValueError(f"webhooks.events[{i}] {pattern!r} names no event (known: {', '.join(EVENTS)}; or AREA.*)")


def matches(pattern: str, event: str) -> bool:
    if pattern.endswith(".*"):
        return event.startswith(pattern[:-1])
    return pattern == event


def selected(patterns: list[str] | tuple[str, ...]) -> frozenset[str]:
    """The events a ``webhooks.events`` list selects (every event for an empty list)."""
    if not patterns:
        return frozenset(EVENTS)
    return frozenset(e for e in EVENTS if any(matches(p, e) for p in patterns))
