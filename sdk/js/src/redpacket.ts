// Red packets, urn:xmppd:redpacket:0 (docs/redpacket.md, schemas/redpacket-0.xsd). Amounts are
// integers of the currency's minor unit (fen). Requests are iqs to the server domain.
import { NS } from "./ns.js";
import { attrs, type Element, optBool, optInt, positive, ProtocolError, req, reqInt, xml } from "./xml.js";

export type RedPacketKind = "lucky" | "equal" | "exclusive";

export interface SendRedPacket {
  /** a contact (one share) or a room the sender is in */
  to: string;
  kind: RedPacketKind;
  /** lucky and exclusive: the whole amount */
  total?: number;
  /** equal: the amount of one share */
  each?: number;
  /** shares (1 for a contact or an exclusive packet) */
  count?: number;
  greeting?: string;
  /** exclusive: the only room member who may open it */
  exclusive?: string;
  /** makes a retry safe: the same id always answers with the first packet (1–64 characters) */
  clientId: string;
}

function q(type: "get" | "set", to: string | undefined, child: Element): Element {
  return xml("iq", attrs({ type, to }), child);
}

export function sendRequest(s: SendRedPacket, to?: string): Element {
  if (!s.clientId || s.clientId.length > 64) throw new RangeError("clientId must have 1 to 64 characters");
  positive("total", s.total);
  positive("each", s.each);
  positive("count", s.count);
  let kind: "lucky" | "equal" = "lucky";
  let count = s.count;
  if (s.kind === "equal") {
    if (s.each === undefined) throw new RangeError("an equal packet needs `each`");
    kind = "equal";
  } else {
    if (s.total === undefined) throw new RangeError(`a ${s.kind} packet needs \`total\``);
    if (s.kind === "exclusive") {
      if (!s.exclusive) throw new RangeError("an exclusive packet needs `exclusive` (the member's JID)");
      count = 1;
    }
  }
  const a = attrs({
    kind,
    total: kind === "lucky" ? s.total : undefined,
    each: kind === "equal" ? s.each : undefined,
    count,
    to: s.to,
    exclusive: s.kind === "exclusive" ? s.exclusive : undefined,
    "client-id": s.clientId,
  });
  return q("set", to, xml("send", { xmlns: NS.redpacket, ...a }, s.greeting !== undefined ? xml("greeting", {}, s.greeting) : null));
}

export const openRequest = (id: string, to?: string) => q("set", to, xml("open", { xmlns: NS.redpacket, id }));
export const balanceRequest = (to?: string) => q("get", to, xml("balance", { xmlns: NS.redpacket }));
export const packetRequest = (id: string, to?: string) => q("get", to, xml("packet", { xmlns: NS.redpacket, id }));

export function historyRequest(opts: { max?: number; before?: number } = {}, to?: string): Element {
  positive("max", opts.max);
  positive("before", opts.before);
  return q("get", to, xml("history", { xmlns: NS.redpacket, ...attrs({ max: opts.max, before: opts.before }) }));
}

export function recordsRequest(opts: { type: "sent" | "received"; max?: number; before?: number }, to?: string): Element {
  positive("max", opts.max);
  positive("before", opts.before);
  return q("get", to, xml("records", { xmlns: NS.redpacket, ...attrs({ type: opts.type, max: opts.max, before: opts.before }) }));
}

function payload(iq: Element, name: string): Element {
  const el = iq.is(name, NS.redpacket) ? iq : iq.getChild(name, NS.redpacket);
  if (!el) throw new ProtocolError(`expected <${name} xmlns='${NS.redpacket}'/>`);
  return el;
}

export interface Sent {
  id: string;
  balance: number;
  total: number;
  expires: Date;
  /** the answer to a retry: the first packet, nothing debited again */
  retry: boolean;
}
export function parseSent(iq: Element): Sent {
  const el = payload(iq, "sent");
  return { id: req(el, "id"), balance: reqInt(el, "balance"), total: reqInt(el, "total"), expires: new Date(req(el, "expires")), retry: optBool(el, "retry") ?? false };
}

export interface Opened {
  id: string;
  amount: number;
  balance: number;
  remaining: number;
}
export function parseOpened(iq: Element): Opened {
  const el = payload(iq, "opened");
  return { id: req(el, "id"), amount: reqInt(el, "amount"), balance: reqInt(el, "balance"), remaining: reqInt(el, "remaining") };
}

export interface Balance {
  amount: number;
  currency: string;
  precision: number;
}
export function parseBalance(iq: Element): Balance {
  const el = payload(iq, "balance");
  return { amount: reqInt(el, "amount"), currency: req(el, "currency"), precision: reqInt(el, "precision") };
}

export interface Grab {
  by: string;
  amount: number;
  at: Date;
  best: boolean;
}
export interface PacketDetails {
  id: string;
  sender?: string;
  kind?: "lucky" | "equal";
  to?: string;
  exclusive?: string;
  total?: number;
  count?: number;
  status?: "open" | "finished" | "expired";
  remainingCount?: number;
  remainingAmount?: number;
  created?: Date;
  expires?: Date;
  currency?: string;
  refunded?: number;
  bestLuck?: string;
  greeting?: string;
  grabs: Grab[];
}
export function parsePacket(iq: Element): PacketDetails {
  const el = payload(iq, "packet");
  const a = el.attrs;
  const d: PacketDetails = {
    id: req(el, "id"),
    grabs: el.getChildren("grab").map((g) => ({ by: req(g, "by"), amount: reqInt(g, "amount"), at: new Date(req(g, "at")), best: optBool(g, "best") ?? false })),
  };
  const opt = {
    sender: a.sender, kind: a.kind as PacketDetails["kind"], to: a.to, exclusive: a.exclusive,
    total: optInt(el, "total"), count: optInt(el, "count"), status: a.status as PacketDetails["status"],
    remainingCount: optInt(el, "remaining-count"), remainingAmount: optInt(el, "remaining-amount"),
    created: a.created ? new Date(a.created) : undefined, expires: a.expires ? new Date(a.expires) : undefined,
    currency: a.currency, refunded: optInt(el, "refunded"), bestLuck: a["best-luck"], greeting: el.getChildText("greeting") ?? undefined,
  };
  for (const [k, v] of Object.entries(opt)) if (v !== undefined) (d as unknown as Record<string, unknown>)[k] = v;
  return d;
}

export interface LedgerEntry {
  id: number;
  kind: "topup" | "send-debit" | "grab-credit" | "refund" | "adjust";
  amount: number;
  balance: number;
  at: Date;
  packet?: string;
  reason?: string;
}
export function parseHistory(iq: Element): { entries: LedgerEntry[]; more: boolean } {
  const el = payload(iq, "history");
  const entries = el.getChildren("entry").map((e) => {
    const entry: LedgerEntry = { id: reqInt(e, "id"), kind: req(e, "kind") as LedgerEntry["kind"], amount: reqInt(e, "amount"), balance: reqInt(e, "balance"), at: new Date(req(e, "at")) };
    if (e.attrs.packet) entry.packet = e.attrs.packet;
    if (e.attrs.reason) entry.reason = e.attrs.reason;
    return entry;
  });
  return { entries, more: optBool(el, "more") ?? false };
}

export interface Records {
  type: "sent" | "received";
  total: number;
  count: number;
  more: boolean;
  records: { id: number; packet: string; amount: number; at: Date }[];
}
export function parseRecords(iq: Element): Records {
  const el = payload(iq, "records");
  return {
    type: req(el, "type") as Records["type"],
    total: optInt(el, "total") ?? 0,
    count: optInt(el, "count") ?? 0,
    more: optBool(el, "more") ?? false,
    records: el.getChildren("record").map((r) => ({ id: reqInt(r, "id"), packet: req(r, "packet"), amount: reqInt(r, "amount"), at: new Date(req(r, "at")) })),
  };
}

// --- what the server writes into messages ---------------------------------------------------

export interface RedPacketAnnounce {
  id: string;
  sender: string;
  kind: "lucky" | "equal";
  count: number;
  each?: number;
  greeting: string;
  expires: Date;
  exclusive?: string;
  /** where it was posted: the room's or the sender's bare JID */
  from: string;
  type: string;
}
export interface Grabbed {
  id: string;
  by: string;
  amount: number;
  remaining: number;
}
export interface Finished {
  id: string;
  /** the luckiest grabber: only for lucky packets of two shares or more */
  bestLuck?: string;
  /** the best-luck share: only with bestLuck */
  amount?: number;
  /** the room it was in, or the server (a one-to-one packet's sender notice) */
  from: string;
}
export interface Refunded {
  id: string;
  amount: number;
}

export type RedPacketEvent =
  | { kind: "packet"; packet: RedPacketAnnounce }
  | { kind: "grabbed"; grabbed: Grabbed }
  | { kind: "finished"; finished: Finished }
  | { kind: "refunded"; refunded: Refunded };

/** The red-packet payload of a message from the server, if any. */
export function parseRedPacketMessage(stanza: Element): RedPacketEvent | undefined {
  const from = stanza.attrs.from ?? "";
  for (const el of stanza.getChildElements()) {
    if (el.getNS() !== NS.redpacket) continue;
    switch (el.getName()) {
      case "redpacket": {
        const p: RedPacketAnnounce = {
          id: req(el, "id"), sender: req(el, "sender"), kind: req(el, "kind") as "lucky" | "equal", count: reqInt(el, "count"),
          greeting: req(el, "greeting"), expires: new Date(req(el, "expires")), from: from.split("/")[0]!, type: stanza.attrs.type ?? "normal",
        };
        const each = optInt(el, "each");
        if (each !== undefined) p.each = each;
        if (el.attrs.exclusive) p.exclusive = el.attrs.exclusive;
        return { kind: "packet", packet: p };
      }
      case "grabbed":
        return { kind: "grabbed", grabbed: { id: req(el, "id"), by: req(el, "by"), amount: reqInt(el, "amount"), remaining: reqInt(el, "remaining") } };
      case "finished":
        // best-luck and amount exist only for lucky packets of two shares or more.
        return { kind: "finished", finished: { id: req(el, "id"), bestLuck: el.attrs["best-luck"] ?? undefined, amount: optInt(el, "amount"), from: from.split("/")[0]! } };
      case "refunded":
        return { kind: "refunded", refunded: { id: req(el, "id"), amount: reqInt(el, "amount") } };
    }
  }
  return undefined;
}
