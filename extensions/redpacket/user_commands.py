"""Red packets (urn:xmppd:redpacket:0): every user's XEP-0050 ad-hoc commands.

``#my-wallet`` (balance and the newest page of the ledger) and ``#send`` (send a red packet)
on the server domain, for the requester's own account only (docs/redpacket.md §2.6). ``#send``
is the ``<send/>`` iq's second door: both call :meth:`RedPacket.send_packet`, so every rule
(limits, balance, the speech gate, membership, exclusive-to-self, client-id idempotency) and
the packet message are the same. Amounts are typed in display units (``12.34``).
"""

from __future__ import annotations

from datetime import UTC
from typing import TYPE_CHECKING

from xmppd.errors import StanzaError
from xmppd.features.adhoc import Command, Execution, Field, Form, FormError, Note, Option, Result
from xmppd.jid import JID

from .commands import NS, parse_amount

if TYPE_CHECKING:
    from .feature import RedPacket
    from .repository import LedgerEntry

MY_WALLET, SEND = f"{NS}#my-wallet", f"{NS}#send"
SEND_FORM_TYPE = f"{NS}#send"
HISTORY_PAGE = 20  # ledger entries the wallet command shows (at most [redpacket] page_max)

_KIND_LABELS = {"topup": "top-up", "send_debit": "sent a packet", "grab_credit": "opened a packet",
                "refund": "refund", "adjust": "adjustment"}


def _count(value: str) -> None:
    if not value.isascii() or not value.isdigit() or len(value) > 6:
        raise ValueError("a whole number of shares, like 5")


class UserCommands:
    """The commands every local account may run on its own wallet."""

    def __init__(self, feature: RedPacket) -> None:
        self.f = feature
        o = feature.options
        unit = f"{o.currency}, up to {o.precision} decimals" if o.precision else f"{o.currency}, whole units"
        self.send_form = Form("form", "Send a red packet", (
            "A lucky packet splits the total at random among its shares, an equal one evenly; an exclusive "
            "packet (one share) is for one member of a room. The total leaves your wallet now; what is not "
            "opened in time comes back.",
        ), (
            Field("FORM_TYPE", "hidden", values=(SEND_FORM_TYPE,)),
            Field("to", "jid-single", "To (a contact or a room you are in)", required=True),
            Field("kind", "list-single", "Kind (empty: lucky)", values=("lucky",), options=(
                Option("lucky", "Lucky: random shares"), Option("equal", "Equal shares"),
                Option("exclusive", "Exclusive: for one room member"))),
            Field("amount", "text-single", f"Total ({unit})", required=True),
            Field("count", "text-single", "Shares (1 to a contact or for an exclusive packet)", values=("1",),
                  required=True, validate=_count),
            Field("greeting", "text-single", f"Greeting (empty: {o.default_greeting})"),
            Field("exclusive", "jid-single", "Only for (exclusive packets: the member's JID)"),
        ))

    def commands(self) -> list[Command]:
        own = self.is_local_account
        return [
            Command(MY_WALLET, "My wallet: balance and history", self.my_wallet, may_run=own),
            Command(SEND, "Send a red packet", self.send, form=self.send_form, may_run=own),
        ]

    def is_local_account(self, requester: JID, target: JID) -> bool:
        """Wallets belong to this server's accounts: the requester is the only subject."""
        return requester.local is not None and requester.domain == self.f.ctx.domain

    # ------------------------------------------------------------------ my wallet

    async def my_wallet(self, ex: Execution) -> Result:
        owner = str(ex.requester.bare)
        money = self.f._money
        balance = await self.f.repo.balance(owner)
        entries, more = await self.f.repo.history(owner, limit=min(HISTORY_PAGE, self.f.options.page_max))
        reported = (Field("at", "text-single", "When"), Field("kind", "text-single", "What"),
                    Field("amount", "text-single", "Amount"), Field("balance", "text-single", "Balance after"),
                    Field("packet", "text-single", "Red packet"), Field("reason", "text-single", "Reason"))
        items = tuple(self._row(e) for e in entries)
        form = Form("result", "My wallet", fields=(
            Field("FORM_TYPE", "hidden", values=(f"{NS}#wallet",)),
            Field("balance", "text-single", "Balance", values=(money(balance),)),
        ), reported=reported, items=items)
        text = f"Balance {money(balance)}. " + (
            f"The newest {len(items)} entries, newest first; older ones are in the app." if more
            else f"{len(items)} entries, newest first." if items else "No entries yet.")
        return Result((Note(text),), form)

    def _row(self, e: LedgerEntry) -> tuple[Field, ...]:
        money = self.f._money
        amount = ("-" if e.amount < 0 else "+") + money(abs(e.amount))
        return (
            Field("at", values=(e.created_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),)),
            Field("kind", values=(_KIND_LABELS.get(e.kind, e.kind),)),
            Field("amount", values=(amount,)), Field("balance", values=(money(e.balance_after),)),
            Field("packet", values=(e.packet_id,) if e.packet_id else ()),
            Field("reason", values=(e.reason,) if e.reason else ()),
        )

    # ------------------------------------------------------------------ send

    async def send(self, ex: Execution) -> Result:
        from .feature import SendRefused

        v = ex.values
        kind: str = v.get("kind") or "lucky"
        exclusive: JID | None = v.get("exclusive")
        if kind == "exclusive":
            if exclusive is None:
                raise FormError("exclusive", "an exclusive packet names the member it is for")
            kind = "lucky"  # one share: lucky and equal are the same
        elif exclusive is not None:
            raise FormError("exclusive", "only an exclusive packet names a member: choose the kind 'exclusive'")
        try:
            total = parse_amount(v["amount"], self.f.options.precision)
        except ValueError as exc:
            raise FormError("amount", f"Total: {exc}") from None
        try:
            result = await self.f.send_packet(
                ex.requester.bare, to=v["to"], kind=kind, count=int(v["count"]), total=total,
                client_id=f"adhoc-{ex.sessionid}",  # one per command session: a retried complete sends once
                greeting=v.get("greeting"), exclusive=exclusive,
                lang=self.f.ctx.languages.of(ex.requester),  # the requesting session's language, as the iq without xml:lang
            )
        except SendRefused as err:
            text = err.text or err.condition.value
            if err.app is not None and err.app.get("balance") is not None:  # insufficient funds, in display units
                text = f"your balance is {self.f._money(int(err.app.get('balance')))}, the packet needs {self.f._money(total)}"
            raise FormError(err.field, text) from None
        except StanzaError as err:  # the speech gate (muted, a visitor of a moderated room)
            raise FormError(None, err.text or err.condition.value) from None
        packet = result.packet
        self.f.log.info("%s sent red packet %s by ad-hoc command", ex.requester.bare, packet.id)
        where = f"the room {packet.target}" if packet.is_room else packet.target
        return Result((Note(f"Red packet {packet.id} sent to {where}: {self.f._money(packet.total)} in {packet.count} "
                            f"share(s). Your balance is {self.f._money(result.balance)}."),))
