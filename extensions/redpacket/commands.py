"""Red packets (urn:xmppd:redpacket:0): the operators' XEP-0050 ad-hoc commands.

Top-up, adjustment, packet inspection, forced refund and the audit, on the server domain, for
``server.admins`` only (docs/redpacket.md §2.5). They run the same repository and feature
functions as ``xmppctl wallet``; amounts are asked in display units (``12.34``) and turned into
integer minor units by the configured precision, never through floating point.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from xmppd.features.adhoc import Command, Execution, Field, Form, FormError, Note, Result
from xmppd.jid import JID

from .models import InsufficientFunds, PacketNotFound
from .money import parse_amount

if TYPE_CHECKING:
    from .service import RedPacketService

NS = "urn:xmppd:redpacket:0"
FORM_TYPE = f"{NS}#admin"
TOPUP, ADJUST, PACKET, REFUND, AUDIT = (f"{NS}#{n}" for n in ("topup", "adjust", "packet", "refund", "audit"))
def _form(title: str, instructions: str, *fields: Field) -> Form:
    return Form("form", title, (instructions,), (Field("FORM_TYPE", "hidden", values=(FORM_TYPE,)), *fields))


_PACKET_ID = Field("packet", "text-single", "Red packet id", required=True)


class RedPacketCommands:
    """Builds the commands of one running :class:`RedPacket` feature."""

    def __init__(self, feature: RedPacketService) -> None:
        self.f = feature
        o = feature.options
        unit = f"{o.currency}, up to {o.precision} decimals" if o.precision else f"{o.currency}, whole units"
        self.topup_form = _form(
            "Top up a wallet", "Credit a user's red-packet wallet.",
            Field("accountjid", "jid-single", "Account", required=True),
            Field("amount", "text-single", f"Amount ({unit})", required=True),
            Field("reason", "text-single", "Reason (shown in the user's history)"),
        )
        self.adjust_form = _form(
            "Adjust a wallet", "Correct a wallet by a signed amount; the reason is kept in the ledger.",
            Field("accountjid", "jid-single", "Account", required=True),
            Field("amount", "text-single", f"Signed amount ({unit}), e.g. -1.50", required=True),
            Field("reason", "text-single", "Reason", required=True),
        )
        self.packet_form = _form("Inspect a red packet", "Show a packet, its shares and who took them.", _PACKET_ID)
        self.refund_form = _form(
            "Force a refund", "Refund an open packet's unclaimed remainder to its sender now.", _PACKET_ID,
        )

    def commands(self) -> list[Command]:
        def admin(node: str, name: str, handler, form=None) -> Command:  # type: ignore[no-untyped-def]
            return Command(node, name, handler, form=form, admin_only=True)

        return [
            admin(TOPUP, "Red packets: top up a wallet", self.topup, self.topup_form),
            admin(ADJUST, "Red packets: adjust a wallet", self.adjust, self.adjust_form),
            admin(PACKET, "Red packets: inspect a packet", self.inspect, self.packet_form),
            admin(REFUND, "Red packets: force a refund", self.force_refund, self.refund_form),
            admin(AUDIT, "Red packets: audit the ledger", self.audit),
        ]

    # ------------------------------------------------------------------ helpers

    async def _owner(self, ex: Execution) -> str:
        jid: JID | None = ex.values["accountjid"]
        domain = self.f.ctx.domain
        if jid is None or jid.local is None or jid.resource is not None or jid.domain != domain:
            raise FormError("accountjid", f"{jid} is not an account of {domain} (use user@{domain})")
        if await self.f.ctx.accounts.get(jid.local, jid.domain) is None:
            raise FormError("accountjid", f"there is no account {jid}")
        return str(jid.bare)

    def _amount(self, ex: Execution, *, signed: bool) -> int:
        try:
            return parse_amount(ex.values["amount"], self.f.options.precision, signed=signed)
        except ValueError as exc:
            raise FormError("amount", f"Amount: {exc}") from None

    def _signed_money(self, amount: int) -> str:
        return ("-" if amount < 0 else "+") + self.f.amount_text(abs(amount))

    async def _packet_id(self, ex: Execution) -> str:
        packet_id = ex.values["packet"].strip()
        if len(packet_id) > 32 or await self.f.repo.get_packet(packet_id) is None:
            raise FormError("packet", f"there is no red packet {packet_id!r}")
        return packet_id

    # ------------------------------------------------------------------ wallets

    async def topup(self, ex: Execution) -> Result:
        owner = await self._owner(ex)
        amount = self._amount(ex, signed=False)
        reason = (ex.values["reason"] or "").strip() or None
        entry = await self.f.repo.topup(owner, amount, self.f.now(), reason)
        self.f.log.info("admin %s topped up %s by %d (ledger entry %d)", ex.requester.bare, owner, amount, entry.id)
        return Result((Note(f"{owner}: {self._signed_money(amount)}, balance {self.f.amount_text(entry.balance_after)} "
                            f"(ledger entry {entry.id})."),))

    async def adjust(self, ex: Execution) -> Result:
        owner = await self._owner(ex)
        amount = self._amount(ex, signed=True)
        reason = ex.values["reason"].strip()
        try:
            entry = await self.f.repo.adjust(owner, amount, reason, self.f.now())
        except InsufficientFunds as exc:
            raise FormError("amount", f"{owner} has {self.f.amount_text(exc.balance)}: the balance cannot go below zero") from None
        self.f.log.info("admin %s adjusted %s by %+d: %s (ledger entry %d)", ex.requester.bare, owner, amount, reason, entry.id)
        return Result((Note(f"{owner}: {self._signed_money(amount)}, balance {self.f.amount_text(entry.balance_after)} "
                            f"(ledger entry {entry.id})."),))

    # ------------------------------------------------------------------ packets

    async def inspect(self, ex: Execution) -> Result:
        packet_id = await self._packet_id(ex)
        packet = await self.f.repo.get_packet(packet_id)
        assert packet is not None
        shares = await self.f.repo.shares(packet_id)
        details = self.f.details_element(packet, shares)  # the same facts as <packet/> (§2.3)
        money = self.f.amount_text

        def text(var: str, label: str, value: str) -> Field:
            return Field(var, "text-single", label, values=(value,))

        fields = [
            text("id", "Id", packet.id),
            Field("sender", "jid-single", "Sender", values=(packet.sender,)),
            text("to", "To", packet.target + (" (room)" if packet.is_room else "")),
            text("kind", "Kind", packet.kind),
            text("total", "Total", money(packet.total)),
            text("count", "Shares", str(packet.count)),
            text("status", "Status", packet.status),
            text("remaining", "Remaining", f"{packet.remaining_count} shares, {money(packet.remaining_amount)}"),
            text("created", "Created", details.get("created")),
            text("expires", "Expires", details.get("expires")),
            text("refunded", "Refunded", money(packet.refund_amount) if packet.refunded else "no"),
            text("best-luck", "Best luck", packet.best_luck or "-"),
            text("greeting", "Greeting", packet.greeting),
        ]
        if packet.exclusive_to:
            fields.append(Field("exclusive", "jid-single", "Only for", values=(packet.exclusive_to,)))
        reported = (Field("by", "jid-single", "Grabbed by"), Field("amount", "text-single", "Amount"),
                    Field("at", "text-single", "At"), Field("best", "boolean", "Best luck"))
        items = tuple(
            (Field("by", "jid-single", values=(g.get("by"),)), Field("amount", "text-single", values=(money(int(g.get("amount"))),)),
             Field("at", "text-single", values=(g.get("at"),)), Field("best", "boolean", values=("1" if g.get("best") else "0",)))
            for g in details.iter(f"{{{NS}}}grab")
        )
        form = Form("result", f"Red packet {packet.id}", fields=tuple(fields), reported=reported, items=items)
        taken = packet.count - packet.remaining_count
        return Result((Note(f"{packet.kind} packet from {packet.sender}: {taken} of {packet.count} shares taken, "
                            f"{money(packet.remaining_amount)} left, status {packet.status}."),), form)

    async def force_refund(self, ex: Execution) -> Result:
        packet_id = await self._packet_id(ex)
        try:
            amount = await self.f.refund(packet_id, force=True)  # notifies the sender, like expiry
        except PacketNotFound:
            raise FormError("packet", f"there is no red packet {packet_id!r}") from None
        packet = await self.f.repo.get_packet(packet_id)
        assert packet is not None
        if amount is None:
            if packet.refunded:
                return Result((Note(f"{packet_id} is already refunded ({self.f.amount_text(packet.refund_amount)} "
                                    f"went back to {packet.sender}).", "warn"),))
            return Result((Note(f"{packet_id} has nothing to refund: every share was taken.", "warn"),))
        self.f.log.info("admin %s forced the refund of %s: %d to %s", ex.requester.bare, packet_id, amount, packet.sender)
        return Result((Note(f"Refunded {self.f.amount_text(amount)} of {packet_id} to {packet.sender}."),))

    async def audit(self, ex: Execution) -> Result:
        report = await self.f.repo.audit()
        return Result((Note(str(report), "info" if report.ok else "error"),))
