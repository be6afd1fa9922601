"""Red packets (urn:xmppd:redpacket:0): every user's XEP-0050 ad-hoc commands.

``#my-wallet`` (balance and the newest page of the ledger) and ``#send`` (send a red packet)
on the server domain, for the requester's own account only (docs/redpacket.md §2.6). ``#send``
is the ``<send/>`` iq's second door: both call :meth:`RedPacket.send_packet`, so every rule
(limits, balance, the speech gate, membership, exclusive-to-self, client-id idempotency) and
the packet message are the same. Amounts are typed in display units (``12.34``). Texts come
from ``locale/`` in the requesting session's language (xmppd/i18n.py).
"""

from __future__ import annotations

from datetime import UTC
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xmppd.errors import StanzaError
from xmppd.features.adhoc import Command, Execution, Field, Form, FormError, Note, Option, Result
from xmppd.jid import JID

from .commands import NS, parse_amount

if TYPE_CHECKING:
    from .models import LedgerEntry
    from .service import RedPacketService

MY_WALLET, SEND, PAYMENT = f"{NS}#my-wallet", f"{NS}#send", f"{NS}#payment"
PAYMENT_FORM_TYPE = f"{NS}#payment"
SEND_FORM_TYPE = f"{NS}#send"
HISTORY_PAGE = 20  # ledger entries the wallet command shows (at most [redpacket] page_max)


class UserCommands:
    """The commands every local account may run on its own wallet."""

    def __init__(self, feature: RedPacketService) -> None:
        self.f = feature
        self.tr = feature.ctx.translator(Path(__file__).parent / "locale")

    def commands(self) -> list[Command]:
        own = self.is_local_account
        commands = [
            Command(MY_WALLET, self.tr.text(None, "wallet.name"), self.my_wallet, may_run=own),
            Command(SEND, self.tr.text(None, "send.name"), self.send, form=self.send_form, may_run=own),
        ]
        if self.f.payments is not None:  # webhooks on: the app confirms payments (docs/webhooks.md)
            commands.append(Command(PAYMENT, self.tr.text(None, "payment.name"), self.payment, form=self.payment_form, may_run=own))
        return commands

    def is_local_account(self, requester: JID, target: JID) -> bool:
        """Wallets belong to this server's accounts: the requester is the only subject."""
        return requester.local is not None and requester.domain == self.f.ctx.domain

    def _t(self, ex: Execution, key: str, /, **fields: Any) -> str:
        return self.tr(ex.requester, key, **fields)  # the requesting session's language

    # ------------------------------------------------------------------ my wallet

    async def my_wallet(self, ex: Execution) -> Result:
        t = self._t
        owner = str(ex.requester.bare)
        money = self.f.amount_text
        balance = await self.f.repo.balance(owner)
        entries, more = await self.f.repo.history(owner, limit=min(HISTORY_PAGE, self.f.options.page_max))
        columns = ("at", "kind", "amount", "balance", "packet", "reason")
        reported = tuple(Field(c, "text-single", t(ex, "wallet.col_" + c)) for c in columns)
        items = tuple(self._row(ex, e) for e in entries)
        form = Form("result", t(ex, "wallet.title"), fields=(
            Field("FORM_TYPE", "hidden", values=(f"{NS}#wallet",)),
            Field("balance", "text-single", t(ex, "wallet.balance"), values=(money(balance),)),
        ), reported=reported, items=items)
        key = "wallet.summary_more" if more else "wallet.summary" if items else "wallet.summary_empty"
        return Result((Note(t(ex, key, balance=money(balance), n=len(items))),), form)

    def _row(self, ex: Execution, e: LedgerEntry) -> tuple[Field, ...]:
        money = self.f.amount_text
        amount = ("-" if e.amount < 0 else "+") + money(abs(e.amount))
        return (
            Field("at", values=(e.created_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),)),
            Field("kind", values=(self._t(ex, "wallet." + e.kind),)),
            Field("amount", values=(amount,)), Field("balance", values=(money(e.balance_after),)),
            Field("packet", values=(e.packet_id,) if e.packet_id else ()),
            Field("reason", values=(e.reason,) if e.reason else ()),
        )

    # ------------------------------------------------------------------ send

    def send_form(self, ex: Execution) -> Form:
        o = self.f.options

        def t(key: str, /, **fields: Any) -> str:
            return self._t(ex, "send." + key, **fields)

        def count(value: str) -> None:
            if not value.isascii() or not value.isdigit() or len(value) > 6:
                raise ValueError(t("bad_count"))

        amount = t("amount", currency=o.currency, precision=o.precision) if o.precision else t("amount_whole", currency=o.currency)
        return Form("form", t("title"), (t("instructions"),), (
            Field("FORM_TYPE", "hidden", values=(SEND_FORM_TYPE,)),
            Field("to", "jid-single", t("to"), required=True),
            Field("kind", "list-single", t("kind"), values=("lucky",), options=(
                Option("lucky", t("lucky")), Option("equal", t("equal")), Option("exclusive", t("exclusive")))),
            Field("amount", "text-single", amount, required=True),
            Field("count", "text-single", t("count"), values=("1",), required=True, validate=count),
            Field("greeting", "text-single", t("greeting", default=o.default_greeting)),
            Field("exclusive", "jid-single", t("only_for")),
        ))

    async def send(self, ex: Execution) -> Result:
        from .wire import SendRefused

        def t(key: str, /, **fields: Any) -> str:
            return self._t(ex, "send." + key, **fields)

        money = self.f.amount_text
        v = ex.values
        kind: str = v.get("kind") or "lucky"
        exclusive: JID | None = v.get("exclusive")
        if kind == "exclusive":
            if exclusive is None:
                raise FormError("exclusive", t("need_member"))
            kind = "lucky"  # one share: lucky and equal are the same
        elif exclusive is not None:
            raise FormError("exclusive", t("not_exclusive"))
        try:
            total = parse_amount(v["amount"], self.f.options.precision)
        except ValueError as exc:
            raise FormError("amount", t("bad_amount", reason=exc)) from None
        try:
            result = await self.f.send_packet(
                ex.requester.bare, to=v["to"], kind=kind, count=int(v["count"]), total=total,
                client_id=f"adhoc-{ex.sessionid}",  # one per command session: a retried complete sends once
                greeting=v.get("greeting"), exclusive=exclusive,
                lang=self.tr.lang(ex.requester),  # the requesting session's language, as the iq without xml:lang
            )
        except SendRefused as err:
            text = err.text or err.condition.value
            if err.app is not None and err.app.get("balance") is not None:  # insufficient funds, in display units
                text = t("insufficient", balance=money(int(err.app.get("balance"))), needed=money(total))
            raise FormError(err.field, text) from None
        except StanzaError as err:  # the speech gate (muted, a visitor of a moderated room), in the reader's language
            told = self.f.ctx.languages.localise(err, ex.requester)
            raise FormError(None, told.text or told.condition.value) from None
        packet = result.packet
        self.f.log.info("%s sent red packet %s by ad-hoc command", ex.requester.bare, packet.id)
        return Result((Note(t("sent_room" if packet.is_room else "sent_chat", id=packet.id, to=packet.target,
                              total=money(packet.total), count=packet.count, balance=money(result.balance))),))

    # ------------------------------------------------------------------ payment (docs/webhooks.md)

    def payment_form(self, ex: Execution) -> Form:
        o = self.f.options

        def t(key: str, /, **fields: Any) -> str:
            return self._t(ex, "payment." + key, **fields)

        amount = t("amount", currency=o.currency, precision=o.precision) if o.precision else t("amount_whole", currency=o.currency)
        return Form("form", t("title"), (t("instructions"),), (
            Field("FORM_TYPE", "hidden", values=(PAYMENT_FORM_TYPE,)),
            Field("kind", "list-single", t("kind"), values=("topup",), required=True, options=(
                Option("topup", t("topup")), Option("withdraw", t("withdraw")))),
            Field("amount", "text-single", amount, required=True),
        ))

    async def payment(self, ex: Execution) -> Result:
        from .models import InsufficientFunds

        def t(key: str, /, **fields: Any) -> str:
            return self._t(ex, "payment." + key, **fields)

        if self.f.payments is None:
            raise FormError(None, t("unavailable"))
        v = ex.values
        kind = v.get("kind") or "topup"
        if kind not in ("topup", "withdraw"):
            raise FormError("kind", t("kind"))
        try:
            amount = parse_amount(v["amount"], self.f.options.precision)
        except ValueError as exc:
            raise FormError("amount", t("bad_amount", reason=exc)) from None
        owner = str(ex.requester.bare)
        try:
            # One request per command session: a retried complete records it once.
            payment, _ = await self.f.payments.request(owner, kind, amount, f"adhoc-{ex.sessionid}"[:64], self.f.now())
        except InsufficientFunds as exc:
            raise FormError("amount", t("insufficient", balance=self.f.amount_text(exc.balance), needed=self.f.amount_text(amount))) from None
        self.f.log.info("%s asked for a %s of %d (payment %s)", owner, kind, amount, payment.id)
        return Result((Note(t("requested", id=payment.id, kind=t(kind), amount=self.f.amount_text(amount))),))
