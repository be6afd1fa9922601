// Stanzas of standard XMPP the SDK sends and reads: chat messages with receipts (XEP-0184),
// chat markers (XEP-0333) and origin ids (XEP-0359), presence, roster (RFC 6121), MUC join
// (XEP-0045) and archive pages (XEP-0313 with XEP-0059 RSM).
import { NS } from "./ns.js";
import { type FileInfo, parseFile } from "./upload.js";
import { attrs, childNS, type Element, positive, ProtocolError, xml } from "./xml.js";

export type MessageType = "chat" | "groupchat" | "normal" | "headline";
export type MarkerKind = "received" | "displayed" | "acknowledged";

export function bare(jid: string): string {
  const slash = jid.indexOf("/");
  return slash < 0 ? jid : jid.slice(0, slash);
}

export function resourceOf(jid: string): string | undefined {
  const slash = jid.indexOf("/");
  return slash < 0 ? undefined : jid.slice(slash + 1);
}

export interface OutgoingMessage {
  to: string;
  body: string;
  type?: "chat" | "groupchat";
  /** the stanza id; also sent as origin-id, the de-duplication key of a retried send */
  id: string;
  /** ask for a delivery receipt (XEP-0184; not in rooms) */
  receipt?: boolean;
  /** allow read markers (XEP-0333) */
  markable?: boolean;
  thread?: string;
}

export function chatMessage(m: OutgoingMessage): Element {
  const type = m.type ?? "chat";
  return xml(
    "message",
    { to: m.to, type, id: m.id },
    xml("body", {}, m.body),
    m.thread ? xml("thread", {}, m.thread) : null,
    xml("origin-id", { xmlns: NS.sid, id: m.id }),
    m.receipt ?? type === "chat" ? xml("request", { xmlns: NS.receipts }) : null,
    m.markable ?? true ? xml("markable", { xmlns: NS.markers }) : null,
  );
}

/** XEP-0184 receipt for message `id`. */
export function receiptMessage(to: string, id: string): Element {
  return xml("message", { to, id: `rcpt-${id}` }, xml("received", { xmlns: NS.receipts, id }));
}

/** XEP-0333 marker for message `id` (in rooms `id` is the room's stanza-id). */
export function markerMessage(to: string, id: string, kind: MarkerKind = "displayed", type: MessageType = "chat"): Element {
  return xml("message", { to, type, id: `mark-${kind}-${id}` }, xml(kind, { xmlns: NS.markers, id }), xml("store", { xmlns: NS.hints }));
}

export interface ChatMessage {
  id?: string;
  from: string;
  to?: string;
  type: MessageType;
  body?: string;
  thread?: string;
  /** the archive's id (XEP-0359 stanza-id by our account, or by the room) */
  stanzaId?: string;
  /** the sender's id (XEP-0359 origin-id) */
  originId?: string;
  /** in a room: the sender's nick */
  nick?: string;
  /** when the server delayed it (offline storage, room history, archive) */
  delay?: Date;
  /** XEP-0308: this message corrects the message with this id */
  replaces?: string;
  /** XEP-0424: this message retracts the message with this id (its body is only a fallback) */
  retracts?: string;
  /** XEP-0280: a copy of a message our other device sent, or received */
  carbon?: "sent" | "received";
  /** a file (XEP-0066 OOB / XEP-0447): its URL (also the body), name, size, type, thumbnail */
  file?: FileInfo;
  receiptRequested: boolean;
  markable: boolean;
  stanza: Element;
}

/**
 * A message as the SDK shows it. `archiveBy` is whose stanza-id counts: our bare JID for
 * one-to-one messages, the room's bare JID for groupchat (XEP-0359 §4: only ids `by` the entity
 * we trust are unique).
 */
export function parseMessage(stanza: Element, archiveBy?: string): ChatMessage {
  if (!stanza.is("message")) throw new ProtocolError(`not a message: <${stanza.name}/>`);
  const from = stanza.attrs.from ?? "";
  const type = (stanza.attrs.type ?? "normal") as MessageType;
  const by = type === "groupchat" ? bare(from) : archiveBy;
  let stanzaId: string | undefined;
  for (const sid of stanza.getChildren("stanza-id", NS.sid)) {
    if (by === undefined || sid.attrs.by === by) stanzaId = sid.attrs.id;
  }
  const delay = stanza.getChild("delay", NS.delay);
  const body = stanza.getChildText("body");
  const thread = stanza.getChildText("thread");
  const m: ChatMessage = {
    from,
    type,
    receiptRequested: !!stanza.getChild("request", NS.receipts),
    markable: !!stanza.getChild("markable", NS.markers),
    stanza,
  };
  if (stanza.attrs.id) m.id = stanza.attrs.id;
  if (stanza.attrs.to) m.to = stanza.attrs.to;
  if (body !== null) m.body = body;
  if (thread !== null) m.thread = thread;
  if (stanzaId) m.stanzaId = stanzaId;
  const origin = stanza.getChild("origin-id", NS.sid)?.attrs.id;
  if (origin) m.originId = origin;
  if (type === "groupchat") {
    const nick = resourceOf(from);
    if (nick !== undefined) m.nick = nick;
  }
  if (delay?.attrs.stamp) m.delay = new Date(delay.attrs.stamp);
  const replaces = stanza.getChild("replace", NS.correct)?.attrs.id;
  if (replaces) m.replaces = replaces;
  const retracts = stanza.getChild("retract", NS.retract)?.attrs.id;
  if (retracts) m.retracts = retracts;
  const file = parseFile(stanza);
  if (file) m.file = file;
  return m;
}

export interface Receipt {
  from: string;
  id: string;
}
export interface Marker {
  from: string;
  id: string;
  kind: MarkerKind;
}

export function parseReceipt(stanza: Element): Receipt | undefined {
  const r = stanza.getChild("received", NS.receipts);
  return r?.attrs.id ? { from: stanza.attrs.from ?? "", id: r.attrs.id } : undefined;
}

export function parseMarker(stanza: Element): Marker | undefined {
  for (const kind of ["received", "displayed", "acknowledged"] as const) {
    const el = stanza.getChild(kind, NS.markers);
    if (el?.attrs.id) return { from: stanza.attrs.from ?? "", id: el.attrs.id, kind };
  }
  return undefined;
}

// --- presence and roster -------------------------------------------------------------------

export type Show = "away" | "chat" | "dnd" | "xa";

export interface PresenceOptions {
  to?: string;
  show?: Show;
  status?: string;
  priority?: number;
}

export function presence(p: PresenceOptions = {}): Element {
  return xml(
    "presence",
    attrs({ to: p.to }),
    p.show ? xml("show", {}, p.show) : null,
    p.status ? xml("status", {}, p.status) : null,
    p.priority !== undefined ? xml("priority", {}, String(p.priority)) : null,
  );
}

export interface Presence {
  from: string;
  type: "available" | "unavailable" | "subscribe" | "subscribed" | "unsubscribe" | "unsubscribed" | "error";
  show?: Show;
  status?: string;
}

export function parsePresence(stanza: Element): Presence {
  const p: Presence = { from: stanza.attrs.from ?? "", type: (stanza.attrs.type ?? "available") as Presence["type"] };
  const show = stanza.getChildText("show");
  const status = stanza.getChildText("status");
  if (show) p.show = show as Show;
  if (status !== null) p.status = status;
  return p;
}

/** A subscription request with its message (the friend request's text, RFC 6121 §3.1.1). */
export function subscribe(to: string, message?: string): Element {
  return xml("presence", { to: bare(to), type: "subscribe" }, message ? xml("status", {}, message) : null);
}

export function subscribed(to: string): Element {
  return xml("presence", { to: bare(to), type: "subscribed" });
}

export function unsubscribed(to: string): Element {
  return xml("presence", { to: bare(to), type: "unsubscribed" });
}

export interface RosterItem {
  jid: string;
  name?: string;
  subscription: "none" | "to" | "from" | "both" | "remove";
  ask?: "subscribe";
  groups: string[];
}

export function rosterSet(item: { jid: string; name?: string; groups?: string[]; remove?: boolean }): Element {
  return xml(
    "iq",
    { type: "set" },
    xml(
      "query",
      { xmlns: NS.roster },
      xml(
        "item",
        attrs({ jid: bare(item.jid), name: item.name, subscription: item.remove ? "remove" : undefined }),
        ...(item.groups ?? []).map((g) => xml("group", {}, g)),
      ),
    ),
  );
}

export function rosterGet(): Element {
  return xml("iq", { type: "get" }, xml("query", { xmlns: NS.roster }));
}

export function parseRosterItems(query: Element): RosterItem[] {
  return query.getChildren("item").map((i) => {
    const item: RosterItem = {
      jid: i.attrs.jid ?? "",
      subscription: (i.attrs.subscription ?? "none") as RosterItem["subscription"],
      groups: i.getChildren("group").map((g) => g.text()),
    };
    if (i.attrs.name) item.name = i.attrs.name;
    if (i.attrs.ask === "subscribe") item.ask = "subscribe";
    return item;
  });
}

// --- rooms ---------------------------------------------------------------------------------

export function mucJoin(room: string, nick: string, opts: { password?: string; maxHistory?: number } = {}): Element {
  return xml(
    "presence",
    { to: `${bare(room)}/${nick}` },
    xml(
      "x",
      { xmlns: NS.muc },
      opts.password ? xml("password", {}, opts.password) : null,
      opts.maxHistory !== undefined ? xml("history", { maxstanzas: String(opts.maxHistory) }) : null,
    ),
  );
}

/** Accept the default configuration of a room we just created (XEP-0045 §10.1.2). */
export function instantRoom(room: string): Element {
  return xml("iq", { type: "set", to: bare(room) }, xml("query", { xmlns: NS.mucOwner }, xml("x", { xmlns: NS.dataForms, type: "submit" })));
}

export function mucLeave(room: string, nick: string): Element {
  return xml("presence", { to: `${bare(room)}/${nick}`, type: "unavailable" });
}

// --- archive pages -------------------------------------------------------------------------

export interface HistoryOptions {
  /** the page before this archive id (a page's `first`); absent: the newest page */
  before?: string;
  /** page size */
  max?: number;
}

/**
 * A XEP-0313 query for one page, newest page first (RSM `<before/>`). To a room: `to` = the
 * room and no `with`; one-to-one: to our own archive, `with` = the contact.
 */
export function mamQuery(queryid: string, opts: HistoryOptions & { to?: string; with?: string }): Element {
  positive("max", opts.max);
  const fields = [
    xml("field", { var: "FORM_TYPE", type: "hidden" }, xml("value", {}, NS.mam)),
    opts.with ? xml("field", { var: "with" }, xml("value", {}, opts.with)) : null,
  ];
  return xml(
    "iq",
    attrs({ type: "set", to: opts.to }),
    xml(
      "query",
      { xmlns: NS.mam, queryid },
      xml("x", { xmlns: NS.dataForms, type: "submit" }, ...fields),
      xml(
        "set",
        { xmlns: NS.rsm },
        xml("max", {}, String(opts.max ?? 20)),
        xml("before", {}, opts.before ?? ""),
      ),
    ),
  );
}

export interface ArchivedMessage extends ChatMessage {
  /** the archive id (RSM item id) */
  archiveId: string;
}

/** A `<result/>` message of query `queryid`, or undefined when it is not one. */
export function parseMamResult(stanza: Element, queryid: string, archiveBy?: string): ArchivedMessage | undefined {
  const result = stanza.getChild("result", NS.mam);
  if (!result || result.attrs.queryid !== queryid) return undefined;
  const forwarded = result.getChild("forwarded", NS.forward);
  const inner = forwarded?.getChild("message");
  if (!inner || !result.attrs.id) throw new ProtocolError("MAM result without a forwarded message or id");
  const m = parseMessage(inner, archiveBy) as ArchivedMessage;
  m.archiveId = result.attrs.id;
  m.stanzaId ??= result.attrs.id;
  const delay = forwarded!.getChild("delay", NS.delay);
  if (delay?.attrs.stamp) m.delay = new Date(delay.attrs.stamp);
  return m;
}

export interface HistoryPage {
  /** the page's chat messages (with a body), oldest first */
  messages: ArchivedMessage[];
  /** the page's archived signals without a body (read markers, receipts), oldest first */
  signals: ArchivedMessage[];
  /** no older messages */
  complete: boolean;
  /** archive id of the oldest message of the page: pass it as `before` for the page before */
  first?: string;
  last?: string;
  count?: number;
}

export function parseMamFin(iq: Element, messages: ArchivedMessage[]): HistoryPage {
  const fin = iq.getChild("fin", NS.mam);
  if (!fin) throw new ProtocolError("MAM answer without <fin/>");
  const set = fin.getChild("set", NS.rsm);
  const page: HistoryPage = {
    messages: messages.filter((m) => m.body !== undefined),
    signals: messages.filter((m) => m.body === undefined),
    complete: fin.attrs.complete === "true",
  };
  const first = set?.getChildText("first");
  const last = set?.getChildText("last");
  const count = set?.getChildText("count");
  if (first) page.first = first;
  if (last) page.last = last;
  if (count) page.count = Number(count);
  return page;
}

export { childNS };
