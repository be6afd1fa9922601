"""Red packets (urn:xmppd:redpacket:0, docs/redpacket.md): wallets, sending, grabbing, refunds.

The server is the only author of packet messages and notices: clients ask it with iqs to the
server domain (send, open, balance, history, packet details, records), and every
``<redpacket/>``, ``<grabbed/>``, ``<finished/>`` or ``<refunded/>`` a client puts in its own
message is stripped before routing. Money rules live in :mod:`.policy` and :mod:`.sql`; the split in
:mod:`.split`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

from lxml import etree

from xmppd.config import AtLeast, AtMost, Positive, PositiveInt
from xmppd.core import hooks as H
from xmppd.core.dispatch import IqRequest
from xmppd.core.feature import Feature, hook, iq_handler
from xmppd.core.hooks import AccountEvent, Flow
from xmppd.core.server_owned import owned_namespace
from xmppd.errors import Condition, StanzaError
from xmppd.features.muc.directory import RoomDirectory
from xmppd.i18n import Catalog, chain
from xmppd.jid import JID
from xmppd.webhooks import events as E
from xmppd.xml import ns
from xmppd.xml.attrs import int_attr, jid_attr
from xmppd.xml.builder import element, stanza, sub

from . import split, wire
from .commands import RedPacketCommands
from .models import (
    DECLINED,
    KINDS,
    SYSTEM_WALLET,
    AllGone,
    AlreadyGrabbed,
    ClientIdReused,
    DailyLimitExceeded,
    GrabResult,
    InsufficientFunds,
    NewPacket,
    Packet,
    PacketExpired,
    PacketNotFound,
    RecipientGone,
    RedPacketRepository,
    RefundResult,
    SendResult,
    Share,
)
from .payments import PaymentRepository
from .payments_api import operations as payment_operations
from .sql import SqlRedPacketRepository, delete_account_txn
from .user_commands import UserCommands
from .wire import NS, SendRefused, app_error, bad_request, q, timestamp

_UNITS = 10**12 - 1  # the largest amount an attribute may name, in minor units

log = logging.getLogger(__name__)

MIGRATIONS = str(Path(__file__).resolve().parent / "migrations")


#: Packets whose unchanging fields are kept in memory for opens (the oldest go first).
CARDS_KEPT = 10000


@dataclass(frozen=True, slots=True)
class RedPacketOptions:
    currency: str = "CNY"  # ISO 4217 code shown to clients
    precision: Annotated[int, AtLeast(0), AtMost(4)] = 2  # digits of the minor unit (2: amounts are fen)
    max_amount: PositiveInt = 20000  # largest packet total, in minor units
    max_count: PositiveInt = 100  # most shares in one packet
    max_greeting: PositiveInt = 64  # longest greeting, in characters
    default_greeting: str = "恭喜发财，大吉大利"
    expiry: Positive = 86400.0  # seconds until the unclaimed remainder is refunded
    sweep_interval: Positive = 60.0  # longest pause of the expiry sweeper, seconds
    page_max: PositiveInt = 100  # most entries in one history or records page
    transfer_expiry: Positive = 86400.0  # seconds a 转账 transfer waits to be accepted, then it returns to the sender
    contacts_only: bool = True  # 1:1 packets only to contacts with a mutual subscription (roster 'both')
    daily_count: Annotated[int, AtLeast(1), AtMost(100000)] = 100  # most packets one sender sends per UTC day
    daily_amount: Annotated[int, AtLeast(1), AtMost(10**12)] = 100000  # most minor units one sender puts in packets per UTC day


def _local_recipient(jid: JID | None, domain: str) -> str | None:
    """The local account a packet is addressed to, which must exist when it is written."""
    return str(jid.bare) if jid is not None and jid.local is not None and jid.domain == domain else None


def _lang(req: IqRequest, default: str = "en") -> str:
    lang = req.payload.get(ns.XML_LANG) or req.stanza.get(ns.XML_LANG) or default
    return lang[:35]


@functools.cache
def _catalog() -> Catalog:
    return Catalog.load(Path(__file__).parent / "locale")


def _text(lang: str, key: str, /, **fields: object) -> str:
    """Text ``key`` of the red-packet catalogue (``locale/<lang>.toml``, xmppd/i18n.py) in ``lang``."""
    return _catalog().template(chain(lang), key)[1].format(**fields)


class RedPacket(Feature):
    name = "redpacket"
    implements = ()
    disco_features = (NS,)
    depends = ("disco", "adhoc")
    Options = RedPacketOptions
    migrations = MIGRATIONS
    server_owned = owned_namespace(NS)  # in messages and presence, anything of ours is the server's

    def __init__(self, ctx: Any, options: RedPacketOptions) -> None:
        super().__init__(ctx, options)
        self.repo: RedPacketRepository = None  # type: ignore[assignment]
        self.payments: PaymentRepository | None = None
        self.rooms: RoomDirectory | None = None
        self._wake = asyncio.Event()
        self.sent_notices = 0
        self._cards: dict[str, Packet] = {}  # packet id -> packet as sent (see _card)
        # What this node did since it started, for /metrics: (count, amount in minor units).
        self.totals: dict[str, list[int]] = {"sent": [0, 0], "grabbed": [0, 0], "refunded": [0, 0]}

    async def setup(self) -> None:
        self.repo = SqlRedPacketRepository(self.ctx.db, self.ctx.outbox)
        # Payment hooks (docs/webhooks.md): requests the app confirms, only with webhooks on --
        # the app learns of a request from its payment.requested event and answers signed.
        hooks = self.ctx.config.webhooks
        if hooks.url and hooks.secret and self.ctx.outbox.wants(E.PAYMENT_REQUESTED):
            self.payments = PaymentRepository(self.ctx.db, self.ctx.outbox)
        # The sweeper finds every due packet in storage, so after a restart it picks up where
        # the last process stopped; several processes may sweep: a refund happens once.
        self.ctx.spawn(self._sweeper(), name="redpacket-sweeper")
        adhoc = self.ctx.feature("adhoc")
        for command in RedPacketCommands(self).commands():  # the operators' commands, admins only
            self.ctx.on_teardown(adhoc.register(command))
        for command in UserCommands(self).commands():  # every user's own wallet and sending
            self.ctx.on_teardown(adhoc.register(command))
        from .api import operations

        self.ctx.add_api(operations(self))  # /api/v1/wallets, /api/v1/redpackets (docs/api.md)
        self.ctx.add_api(payment_operations(self))  # /api/v1/payments: the app confirms (docs/webhooks.md)
        self.ctx.add_metrics(self._metrics)

    def use_rooms(self, rooms: RoomDirectory | None) -> None:
        """Plug another group-chat directory in (default: the MUC feature's, when loaded)."""
        self.rooms = rooms

    def _rooms(self) -> RoomDirectory | None:
        if self.rooms is not None:
            return self.rooms
        if self.ctx.has_feature("muc"):
            self.rooms = self.ctx.feature("muc").directory  # the typed view MUC publishes
        return self.rooms

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.ctx.clock.now(), UTC)

    def _count(self, what: str, amount: int) -> None:
        t = self.totals[what]
        t[0] += 1
        t[1] += amount

    def _metrics(self) -> list[Any]:
        from prometheus_client.core import CounterMetricFamily

        packets = CounterMetricFamily("xmppd_redpackets", "Red packets sent, shares grabbed and packets refunded on this node", labels=["event"])
        amounts = CounterMetricFamily("xmppd_redpacket_amount", "Money in those events, minor units", labels=["event"])
        for what, (n, amount) in self.totals.items():
            packets.add_metric([what], n)
            amounts.add_metric([what], amount)
        return [packets, amounts]

    # ------------------------------------------------------------------ send

    @iq_handler("set", q("send"))
    async def send(self, req: IqRequest) -> etree._Element:
        """The protocol's door: read the request's attributes, then :meth:`send_packet`."""
        p = req.payload
        kind = p.get("kind", "lucky")
        if kind not in KINDS:
            raise bad_request(f"kind is 'lucky' or 'equal', not {kind!r}")
        count = int_attr(p, "count", 1, high=_UNITS)
        if kind == "equal":
            if p.get("total") is not None:
                raise bad_request("an equal packet gives 'each' (the amount of one share), not 'total'")
            total = int_attr(p, "each", required=True, high=_UNITS) * count
        else:
            if p.get("each") is not None:
                raise bad_request("a lucky packet gives 'total', not 'each'")
            total = int_attr(p, "total", required=True, high=_UNITS)
        to = jid_attr(p, "to")
        if to is None:
            raise bad_request("'to' (a contact's or a room's JID) is required")
        result = await self.send_packet(
            req.from_jid.bare, to=to, kind=kind, count=count, total=total, client_id=p.get("client-id") or "",
            greeting=p.findtext(q("greeting")), exclusive=jid_attr(p, "exclusive"),
            lang=_lang(req, self.ctx.languages.of(req.from_jid)),
        )
        packet = result.packet
        out = element(q("sent"), {"id": packet.id, "balance": str(result.balance), "total": str(packet.total),
                                  "expires": timestamp(packet.expires_at)}, default_ns=NS)
        if not result.created:
            out.set("retry", "true")
        return out

    async def send_packet(self, sender: JID, *, to: JID, kind: str, count: int, total: int, client_id: str,
                          greeting: str | None = None, exclusive: JID | None = None, lang: str | None = None,
                          transfer: bool = False) -> SendResult:
        """Send a red packet on ``sender``'s behalf: every rule of sending, for every door (the
        ``<send/>`` iq, the ``#send`` ad-hoc command). ``total`` is in minor units (an equal
        packet's total divides evenly into its ``count`` shares); refusals raise
        :class:`SendRefused` (a ``StanzaError`` naming the field at fault) or the speech gate's
        ``StanzaError``, before any money moves."""
        o = self.options
        sender = sender.bare
        if kind not in KINDS:
            raise SendRefused("kind", Condition.BAD_REQUEST, f"kind is 'lucky' or 'equal', not {kind!r}")
        if not 1 <= count <= o.max_count:
            raise SendRefused("count", Condition.NOT_ACCEPTABLE, f"a packet has 1 to {o.max_count} shares", "limit-exceeded")
        if total < 1 or total < count:
            raise SendRefused("amount", Condition.NOT_ACCEPTABLE, "every share is at least one minor unit", "limit-exceeded")
        if total > o.max_amount:
            raise SendRefused("amount", Condition.NOT_ACCEPTABLE, f"a packet holds at most {o.max_amount} minor units",
                              "limit-exceeded")
        if kind == "equal" and total % count:
            raise SendRefused("amount", Condition.BAD_REQUEST, f"an equal packet's total divides evenly into its {count} shares")
        if not 1 <= len(client_id) <= 64:
            raise SendRefused(None, Condition.BAD_REQUEST, "'client-id' (1 to 64 characters) is required: it makes retries safe")
        greeting = (greeting or "").strip() or ("" if transfer else o.default_greeting)  # a transfer's note may be empty
        if len(greeting) > o.max_greeting:
            raise SendRefused("greeting", Condition.NOT_ACCEPTABLE, f"the greeting is longer than {o.max_greeting} characters",
                              "limit-exceeded")
        to = to.bare
        exclusive = exclusive.bare if exclusive is not None else None
        lang = (lang or self.ctx.languages.of(sender))[:35]  # None: the sender's language (xmppd/i18n.py)
        is_room = await self._check_target(sender, to, count, exclusive)
        if transfer and is_room:
            raise SendRefused("to", Condition.BAD_REQUEST, "a transfer goes to one contact, not to a room")
        # The speech gate, before any money moves: a packet says the greeting on the sender's behalf.
        await self._may_speak(sender, to, is_room, greeting, lang)
        shares = split.equal(total // count, count) if kind == "equal" else split.lucky(total, count, self.ctx.rng)
        now = self.now()
        new = NewPacket(
            id=format(self.ctx.rng.getrandbits(80), "020x"), sender=str(sender), kind=kind, greeting=greeting,
            target=str(to), is_room=is_room, exclusive_to=str(exclusive) if exclusive else None, client_id=client_id,
            lang=lang, created_at=now, expires_at=now + timedelta(seconds=o.transfer_expiry if transfer else o.expiry),
            shares=tuple(shares), transfer=transfer,
            recipient=_local_recipient(to if not is_room else exclusive, self.ctx.domain),
            day_start=now.replace(hour=0, minute=0, second=0, microsecond=0),
            daily_count=o.daily_count, daily_amount=o.daily_amount,
        )
        try:
            result = await self.repo.send(new)
        except InsufficientFunds as exc:
            raise SendRefused("amount", Condition.NOT_ALLOWED, f"your balance is {exc.balance}, the packet needs {exc.needed}",
                              "insufficient-funds", balance=str(exc.balance)) from None
        except ClientIdReused:
            raise SendRefused(None, Condition.CONFLICT, "this client-id was used for a different packet",
                              "client-id-reused") from None
        except DailyLimitExceeded as exc:
            raise SendRefused("amount", Condition.NOT_ACCEPTABLE,
                              f"today you sent {exc.count} packets of {self.amount_text(exc.amount)}; the daily limits are "
                              f"{exc.limit_count} packets and {self.amount_text(exc.limit_amount)}",
                              "daily-limit", count=str(exc.count), amount=str(exc.amount)) from None
        except RecipientGone as exc:  # deleted since _check_target: nothing was debited
            raise SendRefused("to", Condition.ITEM_NOT_FOUND, f"{exc.jid} does not exist") from None
        packet = result.packet
        self._keep(packet)
        if result.created:
            self._count("sent", packet.total)
            # Only the send that made the packet posts it: a retry (same client-id) answers with
            # the first result and posts nothing, so a room or contact sees each packet once.
            await self._announce(packet)
            self._wake.set()
        return result

    async def _check_target(self, sender: JID, to: JID, count: int, exclusive: JID | None) -> bool:
        """Who may receive: an existing contact (one share) or a room the sender is in."""
        if to.domain == self.ctx.domain and to.local is not None:
            if to == sender:
                raise SendRefused("to", Condition.BAD_REQUEST, "you cannot send a red packet to yourself")
            if count != 1:
                raise SendRefused("count", Condition.BAD_REQUEST, "a red packet to one person has exactly one share")
            if exclusive is not None:
                raise SendRefused("exclusive", Condition.BAD_REQUEST, "'exclusive' is for room packets")
            if await self.ctx.accounts.get(to.local, to.domain) is None:
                raise SendRefused("to", Condition.ITEM_NOT_FOUND, f"{to} does not exist")
            if self.options.contacts_only and not await self._mutual_contacts(sender, to):
                raise SendRefused("to", Condition.FORBIDDEN, f"{to} is not your contact (both must share presence)",
                                  "not-a-contact")
            return False
        rooms = self._rooms()
        if rooms is not None and rooms.is_room(to):
            if not await rooms.is_member(to, sender):
                raise SendRefused("to", Condition.FORBIDDEN, "you are not a member of this room", "forbidden")
            if exclusive is not None:
                if count != 1:
                    raise SendRefused("count", Condition.BAD_REQUEST, "an exclusive packet has exactly one share")
                if exclusive == sender:
                    raise SendRefused("exclusive", Condition.BAD_REQUEST, "an exclusive packet is for another member, not for yourself")
                if not await rooms.is_member(to, exclusive):
                    raise SendRefused("exclusive", Condition.ITEM_NOT_FOUND, f"{exclusive} is not a member of this room")
            return True
        raise SendRefused("to", Condition.ITEM_NOT_FOUND, f"{to} is neither an account nor a room here")

    async def _mutual_contacts(self, sender: JID, to: JID) -> bool:
        """``redpacket.contacts_only``: the sender's roster item for ``to`` has a mutual
        subscription (RFC 6121 'both'; the server keeps both sides' items in step)."""
        if not self.ctx.has_feature("roster"):
            return False
        item = await self.ctx.feature("roster").item(sender, to)
        return item is not None and item.subscription == "both"

    async def _may_speak(self, sender: JID, to: JID, is_room: bool, greeting: str, lang: str) -> None:
        """The same gate the sender's own message would pass: the room's (mute, visitors) or the
        one-to-one one (platform mute); a refusal is the error that message would get."""
        probe = stanza("message", to=str(to), frm=str(sender), type="groupchat" if is_room else "chat")
        body = sub(probe, f"{{{ns.CLIENT}}}body", text=greeting)
        body.set(ns.XML_LANG, lang)
        if is_room:
            rooms = self._rooms()
            assert rooms is not None  # _check_target found the room through it
            await rooms.may_post(to, sender, probe, feature="redpacket")
        else:
            await self.ctx.router.may_speak(H.Speech(sender, to, probe, feature="redpacket"))

    def _packet_message(self, packet: Packet) -> etree._Element:
        name = JID.parse(packet.sender).local or packet.sender
        if packet.transfer:
            text = _text(packet.lang, "packet.transfer", name=name, amount=self.amount_text(packet.total), note=packet.greeting)
        else:
            text = _text(packet.lang, "packet.room" if packet.is_room else "packet.chat", name=name, greeting=packet.greeting)
        return wire.packet_message(packet, text)

    async def _announce(self, packet: Packet) -> None:
        msg = self._packet_message(packet)
        if packet.is_room:
            rooms = self._rooms()
            if rooms is not None:
                await rooms.post(JID.parse(packet.target), msg)
        else:
            # The sender's copy goes into the sender's archive (their other devices and a new one
            # see the card); the recipient's is archived, or stored offline, as any chat message.
            if self.ctx.has_feature("mam"):
                await self.ctx.feature("mam").archive_sent(JID.parse(packet.sender), msg)
            await self.ctx.send(msg)

    async def _notice(self, to: str, child: etree._Element, text: str, lang: str) -> None:
        msg = wire.notice(to, self.ctx.domain, child, text, lang)
        self.sent_notices += 1
        await self.ctx.send(msg)

    # ------------------------------------------------------------------ open (grab)

    @iq_handler("set", q("open"))
    async def open(self, req: IqRequest) -> etree._Element:
        packet_id = req.payload.get("id") or ""
        if not packet_id or len(packet_id) > 32:
            raise bad_request("'id' names the red packet to open")
        who = req.from_jid.bare
        packet = await self._card(packet_id)
        if packet is None:
            raise StanzaError(Condition.ITEM_NOT_FOUND, "no such red packet")
        if packet.transfer:
            raise bad_request("this is a transfer: its recipient accepts it (<accept/>)")
        await self._check_grab(packet, who)
        got = await self._grab(packet, who)
        self._count("grabbed", got.amount)
        name = who.local or str(who)
        amount = self.amount_text(got.amount)
        await self._notice(
            packet.sender,
            element(q("grabbed"), {"id": packet.id, "by": str(who), "amount": str(got.amount),
                                   "remaining": str(got.remaining_count)}, default_ns=NS),
            _text(packet.lang, "notice.grabbed", name=name, amount=amount),
            packet.lang,
        )
        if got.remaining_count == 0:
            await self._finished(packet, got.best_luck)
        out = element(q("opened"), {"id": packet.id, "amount": str(got.amount), "balance": str(got.balance),
                                    "remaining": str(got.remaining_count)}, default_ns=NS)
        return out

    @iq_handler("set", q("send-transfer"))
    async def transfer(self, req: IqRequest) -> etree._Element:
        """转账: one amount to one contact, who accepts it (<accept/>) or, after
        ``transfer_expiry``, it returns to the sender. Every rule of a one-to-one packet holds
        (contacts only, limits, daily limits, the speech gate, client-id retries)."""
        p = req.payload
        to = jid_attr(p, "to")
        if to is None:
            raise bad_request("'to' (a contact's JID) is required")
        result = await self.send_packet(
            req.from_jid.bare, to=to, kind="equal", count=1, total=int_attr(p, "amount", required=True, high=_UNITS),
            client_id=p.get("client-id") or "", greeting=p.findtext(q("note")),
            lang=_lang(req, self.ctx.languages.of(req.from_jid)), transfer=True,
        )
        packet = result.packet
        if not packet.transfer:
            raise SendRefused(None, Condition.CONFLICT, "this client-id was used for a red packet", "client-id-reused")
        out = element(q("transferred"), {"id": packet.id, "balance": str(result.balance), "amount": str(packet.total),
                                         "expires": timestamp(packet.expires_at)}, default_ns=NS)
        if not result.created:
            out.set("retry", "true")
        return out

    @iq_handler("set", q("accept"))
    async def accept(self, req: IqRequest) -> etree._Element:
        """The recipient takes a transfer: its one share, in one transaction (the grab)."""
        packet = await self._transfer_for(req, "accept")
        who = req.from_jid.bare
        try:
            got = await self.repo.grab(packet.id, str(who), self.now())
        except (AlreadyGrabbed, PacketExpired):
            raise await self._transfer_refusal(packet) from None
        except (AllGone, PacketNotFound):
            raise StanzaError(Condition.ITEM_NOT_FOUND, "no such transfer") from None
        self._count("grabbed", got.amount)
        await self._tell_sender(packet, "accepted", who, got.amount)
        return element(q("accepted"), {"id": packet.id, "amount": str(got.amount), "balance": str(got.balance)},
                       default_ns=NS)

    @iq_handler("set", q("decline"))
    async def decline(self, req: IqRequest) -> etree._Element:
        """The recipient refuses a transfer: the money goes back to the sender at once, through the
        refund (one transaction, after the packet row lock a grab takes: an accept racing it
        moves the money to one side, once), and the sender is told ``<declined id by amount/>``."""
        packet = await self._transfer_for(req, "decline")
        who = req.from_jid.bare
        result = await self.repo.refund(packet.id, self.now(), declined=True)
        if result is None:
            raise await self._transfer_refusal(packet)
        self._count("refunded", result.amount)
        await self._tell_sender(packet, "declined", who, result.amount)
        return element(q("declined"), {"id": packet.id, "amount": str(result.amount)}, default_ns=NS)

    async def _tell_sender(self, packet: Packet, what: str, who: JID, amount: int) -> None:
        """The transfer's sender is told its recipient ``accepted`` or ``declined`` it (stored,
        attached to the transfer's message)."""
        await self._notice(
            packet.sender,
            element(q(what), {"id": packet.id, "by": str(who), "amount": str(amount)}, default_ns=NS),
            _text(packet.lang, f"notice.{what}", name=who.local or str(who), amount=self.amount_text(amount)),
            packet.lang,
        )

    async def _transfer_for(self, req: IqRequest, verb: str) -> Packet:
        """The transfer an <accept/> or <decline/> names, if the requester is its recipient."""
        packet_id = req.payload.get("id") or ""
        if not packet_id or len(packet_id) > 32:
            raise bad_request(f"'id' names the transfer to {verb}")
        packet = await self._card(packet_id)
        if packet is None or not packet.transfer:
            raise StanzaError(Condition.ITEM_NOT_FOUND, "no such transfer")
        if str(req.from_jid.bare) != packet.target:
            raise app_error(Condition.FORBIDDEN, "forbidden", "this transfer is for someone else")
        return packet

    async def _transfer_refusal(self, packet: Packet) -> StanzaError:
        """Why a transfer can no longer be accepted or declined: accepted (``<already-grabbed/>``),
        declined (``<transfer-declined/>``) or returned on expiry (``<expired/>``)."""
        now = await self.repo.get_packet(packet.id)
        if now is not None and now.status == DECLINED:
            return app_error(Condition.NOT_ALLOWED, "transfer-declined", "this transfer was declined")
        if now is not None and now.remaining_count == 0:
            taken = [s for s in await self.repo.shares(packet.id) if s.grabbed_by is not None]
            if taken and taken[0].grabbed_at is not None:
                return app_error(Condition.CONFLICT, "already-grabbed", "this transfer was accepted",
                                 amount=str(taken[0].amount), at=timestamp(taken[0].grabbed_at))
        return app_error(Condition.NOT_ALLOWED, "expired", "this transfer has expired")

    async def _grab(self, packet: Packet, who: JID) -> GrabResult:
        """Take ``who``'s share of ``packet`` (the repository's one grab), refusals as the protocol says them."""
        packet_id = packet.id
        try:
            return await self.repo.grab(packet_id, str(who), self.now())
        except AlreadyGrabbed as exc:
            raise app_error(Condition.CONFLICT, "already-grabbed", "you already opened this red packet",
                       amount=str(exc.amount), at=timestamp(exc.grabbed_at)) from None
        except AllGone:
            raise app_error(Condition.NOT_ALLOWED, "all-gone", "every share has been taken") from None
        except PacketExpired:
            raise app_error(Condition.NOT_ALLOWED, "expired", "this red packet has expired") from None
        except PacketNotFound:
            raise StanzaError(Condition.ITEM_NOT_FOUND, "no such red packet") from None

    async def _card(self, packet_id: str) -> Packet | None:
        """The packet as sent, for who-may-open checks and notices: only its fields that never
        change (sender, target, room, exclusive, language) may be read from it. Kept in memory,
        so an open costs no read beyond the grab itself."""
        packet = self._cards.get(packet_id)
        if packet is None:
            packet = await self.repo.get_packet(packet_id)
            if packet is not None:
                self._keep(packet)
        return packet

    def _keep(self, packet: Packet) -> None:
        if len(self._cards) >= CARDS_KEPT:
            self._cards.pop(next(iter(self._cards)))  # the oldest
        self._cards[packet.id] = packet

    async def _check_grab(self, packet: Packet, who: JID) -> None:
        if packet.is_room:
            rooms = self._rooms()
            if rooms is None or not await rooms.is_member(JID.parse(packet.target), who):
                raise app_error(Condition.FORBIDDEN, "forbidden", "only members of the room can open this red packet")
            if packet.exclusive_to is not None and str(who) != packet.exclusive_to:
                raise app_error(Condition.FORBIDDEN, "forbidden", "this red packet is for someone else")
        elif str(who) != packet.target:
            raise app_error(Condition.FORBIDDEN, "forbidden", "this red packet is for someone else")

    async def _finished(self, packet: Packet, best: Share | None) -> None:
        """The last share is taken. A lucky packet of two shares or more names its best luck
        (largest share, ties: earliest grab); equal and single-share packets have none
        (``best`` is None: the repository fixes none, see :func:`.policy.has_best_luck`)."""
        attrs = {"id": packet.id}
        if best is not None and best.grabbed_by:
            attrs.update({"best-luck": best.grabbed_by, "amount": str(best.amount)})
            name = JID.parse(best.grabbed_by).local or best.grabbed_by
            text = _text(packet.lang, "notice.finished", name=name, amount=self.amount_text(best.amount))
        else:
            text = _text(packet.lang, "notice.finished_all")
        child = element(q("finished"), attrs, default_ns=NS)
        await self._notice(packet.sender, child, text, packet.lang)
        rooms = self._rooms()
        if packet.is_room and rooms is not None:
            await rooms.post(JID.parse(packet.target), wire.room_notice(packet, child, text))

    def amount_text(self, amount: int) -> str:
        p = self.options.precision
        if p == 0:
            return f"{amount} {self.options.currency}"
        return f"{amount // 10**p}.{amount % 10**p:0{p}d} {self.options.currency}"

    # ------------------------------------------------------------------ reading

    @iq_handler("get", q("balance"))
    async def balance(self, req: IqRequest) -> etree._Element:
        amount = await self.repo.balance(str(req.from_jid.bare))
        return element(q("balance"), {"amount": str(amount), "currency": self.options.currency,
                                      "precision": str(self.options.precision)}, default_ns=NS)

    def _page(self, p: etree._Element) -> tuple[int, int | None]:
        limit = int_attr(p, "max", 20, high=_UNITS)
        if not 1 <= limit <= self.options.page_max:
            raise bad_request(f"'max' is 1 to {self.options.page_max}")
        before = int_attr(p, "before", 0, high=_UNITS) or None
        return limit, before

    @iq_handler("get", q("history"))
    async def history(self, req: IqRequest) -> etree._Element:
        limit, before = self._page(req.payload)
        entries, more = await self.repo.history(str(req.from_jid.bare), limit=limit, before=before)
        out = element(q("history"), {"more": "true" if more else "false"}, default_ns=NS)
        for e in entries:
            attrs = {"id": str(e.id), "kind": e.kind.replace("_", "-"), "amount": str(e.amount),
                     "balance": str(e.balance_after), "at": timestamp(e.created_at)}
            if e.packet_id:
                attrs["packet"] = e.packet_id
            if e.reason:
                attrs["reason"] = e.reason
            sub(out, q("entry"), attrs)
        return out

    @iq_handler("get", q("records"))
    async def records(self, req: IqRequest) -> etree._Element:
        which = req.payload.get("type", "received")
        if which not in ("sent", "received"):
            raise bad_request("records type is 'sent' or 'received'")
        kind = "send_debit" if which == "sent" else "grab_credit"
        limit, before = self._page(req.payload)
        owner = str(req.from_jid.bare)
        entries, more = await self.repo.history(owner, limit=limit, before=before, kinds=(kind,))
        total, count = await self.repo.totals(owner, kind)
        out = element(q("records"), {"type": which, "total": str(total), "count": str(count),
                                     "more": "true" if more else "false"}, default_ns=NS)
        for e in entries:
            sub(out, q("record"), {"id": str(e.id), "packet": e.packet_id or "", "amount": str(abs(e.amount)),
                                   "at": timestamp(e.created_at)})
        return out

    @iq_handler("get", q("packet"))
    async def details(self, req: IqRequest) -> etree._Element:
        packet_id = req.payload.get("id") or ""
        packet = await self.repo.get_packet(packet_id) if packet_id else None
        if packet is None:
            raise StanzaError(Condition.ITEM_NOT_FOUND, "no such red packet")
        who = req.from_jid.bare
        shares = await self.repo.shares(packet_id)
        allowed = (
            str(who) in (packet.sender, packet.target)
            or any(s.grabbed_by == str(who) for s in shares)
            or self.ctx.is_admin(who)
            or (packet.is_room and (rooms := self._rooms()) is not None and await rooms.is_member(JID.parse(packet.target), who))
        )
        if not allowed:
            raise app_error(Condition.FORBIDDEN, "forbidden", "you may not see this red packet")
        return self.details_element(packet, shares)

    def details_element(self, packet: Packet, shares: list[Any]) -> etree._Element:
        return wire.details(packet, shares, self.options.currency)

    # ------------------------------------------------------------------ expiry

    async def _sweeper(self) -> None:
        while True:
            delay = self.options.sweep_interval
            try:
                await self.sweep()
                nxt = await self.repo.next_expiry()
                if nxt is not None:
                    delay = min(delay, max(0.0, (nxt - self.now()).total_seconds()) + 0.01)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("red packet sweep failed; retrying in %ss", delay)
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), delay)
            except TimeoutError:
                pass

    async def sweep(self) -> int:
        """Refund every expired packet's remainder (exactly once); returns how many."""
        done = 0
        while True:
            due = await self.repo.due_refunds(self.now())
            if not due:
                return done
            for packet_id in due:
                if await self.refund(packet_id):
                    done += 1

    async def refund(self, packet_id: str, *, force: bool = False) -> int | None:
        result = await self.repo.refund(packet_id, self.now(), force=force)
        if result is None:
            return None
        self._count("refunded", result.amount)
        packet = await self.repo.get_packet(packet_id)
        assert packet is not None
        sender = JID.parse(result.sender)
        if sender.local and await self.ctx.accounts.get(sender.local, sender.domain) is None:
            # The sender's account is gone: the refund must not wait for a namesake.
            await self.repo.transfer_out(result.sender, SYSTEM_WALLET, f"account {result.sender} deleted", self.now())
            return result.amount
        money = self.amount_text(result.amount)
        await self._notice(
            result.sender,
            element(q("refunded"), {"id": packet_id, "amount": str(result.amount)}, default_ns=NS),
            _text(packet.lang, "notice.transfer_returned" if packet.transfer else "notice.refunded", amount=money),
            packet.lang,
        )
        return result.amount

    # ------------------------------------------------------------------ accounts

    @classmethod
    async def delete_account_txn(cls, conn: Any, deletion: Any) -> list[RefundResult]:
        """In the transaction deleting the account: packets addressed to it go back to their
        senders, its own open packets and its balance to the system wallet, its records to a
        tombstone (see :func:`.sql.delete_account_txn`): never lost, never inherited."""
        return await delete_account_txn(conn, deletion.jid, deletion.account.id, deletion.now, deletion.outbox)

    @hook(H.ACCOUNT_DELETED)
    async def on_account_deleted(self, event: AccountEvent) -> Flow:
        """After the commit: the senders of refunded packets are told, as for an expiry."""
        for result in event.settled.get(self.name) or ():
            packet = await self.repo.get_packet(result.packet_id)
            if packet is None:
                continue
            await self._notice(
                result.sender,
                element(q("refunded"), {"id": result.packet_id, "amount": str(result.amount)}, default_ns=NS),
                _text(packet.lang, "notice.recipient_deleted", amount=self.amount_text(result.amount)),
                packet.lang,
            )
        return Flow.CONTINUE

    # ------------------------------------------------------------------ xmppctl

    @classmethod
    def register_cli(cls, subparsers: Any) -> None:
        from .cli import register

        register(subparsers)
