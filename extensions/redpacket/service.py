"""The typed view of the red-packet feature that its ad-hoc commands (operators' and users') and
its REST API (``api``, ``payments_api``) get: what they may read and call, so none of them imports
``feature`` and ``feature`` imports each once."""
from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from lxml import etree

from xmppd.jid import JID

from .models import Packet, RedPacketRepository, SendResult

if TYPE_CHECKING:
    from xmppd.core.feature import FeatureContext

    from .payments import PaymentRepository


class RedPacketService(Protocol):
    ctx: "FeatureContext"
    log: logging.Logger
    options: Any  # feature.RedPacketOptions
    repo: RedPacketRepository
    payments: "PaymentRepository | None"

    def now(self) -> datetime: ...
    def amount_text(self, amount: int) -> str: ...
    def details_element(self, packet: Packet, shares: list[Any]) -> etree._Element: ...
    async def refund(self, packet_id: str, *, force: bool = False) -> int | None: ...
    async def send_packet(self, sender: JID, *, to: JID, kind: str, count: int, total: int, client_id: str,
                          greeting: str | None = None, exclusive: JID | None = None, lang: str | None = None,
                          transfer: bool = False) -> SendResult: ...


__all__ = ["RedPacketService"]
