// Room administration (XEP-0045 §8–10: roles, affiliations, configuration, destruction) and
// MUC/Sub (ejabberd's urn:xmpp:mucsub:0, which xmppd speaks): members who are not joined get the
// room's events wrapped in pubsub#event messages, kept offline for them when they are away.
import { bare } from "./core.js";
import { type DataForm, type FormValue, parseForm, submitForm } from "./forms.js";
import { NS } from "./ns.js";
import { attrs, type Element, ProtocolError, xml } from "./xml.js";

export type Role = "moderator" | "participant" | "visitor" | "none";
export type Affiliation = "owner" | "admin" | "member" | "outcast" | "none";

const admin = (room: string, type: "get" | "set", ...items: Element[]) =>
  xml("iq", { type, to: bare(room) }, xml("query", { xmlns: NS.mucAdmin }, ...items));

/** Set an occupant's role by nick; role "none" kicks them (§8.2). */
export function roleRequest(room: string, nick: string, role: Role, reason?: string): Element {
  return admin(room, "set", xml("item", { nick, role }, reason ? xml("reason", {}, reason) : null));
}

/** Set a user's affiliation by bare JID; "outcast" bans them (§9.1), "none" lifts it. */
export function affiliationRequest(room: string, jid: string, affiliation: Affiliation, reason?: string): Element {
  return admin(room, "set", xml("item", { jid: bare(jid), affiliation }, reason ? xml("reason", {}, reason) : null));
}

/** The list of users with `affiliation` (members, admins, owners, the ban list). */
export function affiliationListRequest(room: string, affiliation: Affiliation): Element {
  return admin(room, "get", xml("item", { affiliation }));
}

export interface AffiliationItem {
  jid: string;
  affiliation: Affiliation;
  nick?: string;
  reason?: string;
}

export function parseAffiliationList(iq: Element): AffiliationItem[] {
  const q = iq.getChild("query", NS.mucAdmin);
  if (!q) throw new ProtocolError("muc#admin answer without <query/>");
  return q.getChildren("item").map((i) => {
    const item: AffiliationItem = { jid: i.attrs.jid ?? "", affiliation: (i.attrs.affiliation ?? "none") as Affiliation };
    if (i.attrs.nick) item.nick = i.attrs.nick;
    const reason = i.getChildText("reason");
    if (reason) item.reason = reason;
    return item;
  });
}

/** The room's configuration form (owners, §10.2). */
export function configRequest(room: string): Element {
  return xml("iq", { type: "get", to: bare(room) }, xml("query", { xmlns: NS.mucOwner }));
}

export function parseConfig(iq: Element): DataForm {
  const form = parseForm(iq.getChild("query", NS.mucOwner));
  if (!form) throw new ProtocolError("muc#owner answer without a form");
  return form;
}

/** Submit configuration values, e.g. `{ "muc#roomconfig_roomname": "Party", "muc#roomconfig_membersonly": true }`. */
export function configureRequest(room: string, values: Record<string, FormValue | undefined>): Element {
  return xml("iq", { type: "set", to: bare(room) }, xml("query", { xmlns: NS.mucOwner }, submitForm(values, "http://jabber.org/protocol/muc#roomconfig")));
}

export function destroyRequest(room: string, reason?: string): Element {
  return xml("iq", { type: "set", to: bare(room) }, xml("query", { xmlns: NS.mucOwner }, xml("destroy", {}, reason ? xml("reason", {}, reason) : null)));
}

/** An invitation through the room (mediated, §7.8.2). */
export function inviteMessage(room: string, jid: string, reason?: string): Element {
  return xml("message", { to: bare(room) }, xml("x", { xmlns: NS.mucUser }, xml("invite", { to: bare(jid) }, reason ? xml("reason", {}, reason) : null)));
}

// --- MUC/Sub -------------------------------------------------------------------------------

export const MUCSUB_NODES = {
  messages: "urn:xmpp:mucsub:nodes:messages",
  presence: "urn:xmpp:mucsub:nodes:presence",
  subject: "urn:xmpp:mucsub:nodes:subject",
  affiliations: "urn:xmpp:mucsub:nodes:affiliations",
  config: "urn:xmpp:mucsub:nodes:config",
  participants: "urn:xmpp:mucsub:nodes:participants",
  subscribers: "urn:xmpp:mucsub:nodes:subscribers",
  system: "urn:xmpp:mucsub:nodes:system",
} as const;
export type MucSubNode = keyof typeof MUCSUB_NODES;

/** Subscribe (as `nick`) to a room's events without joining; default: messages and subject. */
export function subscribeRequest(room: string, nick: string, nodes: MucSubNode[] = ["messages", "subject"], opts: { jid?: string; password?: string } = {}): Element {
  if (nodes.length === 0) throw new RangeError("subscribe to at least one node");
  return xml(
    "iq",
    { type: "set", to: bare(room) },
    xml("subscribe", { xmlns: NS.mucsub, nick, ...attrs({ jid: opts.jid, password: opts.password }) }, ...nodes.map((n) => xml("event", { node: MUCSUB_NODES[n] }))),
  );
}

export function unsubscribeRequest(room: string, jid?: string): Element {
  return xml("iq", { type: "set", to: bare(room) }, xml("unsubscribe", { xmlns: NS.mucsub, ...attrs({ jid }) }));
}

/** To the MUC service: the rooms we are subscribed to. To a room (moderators): its subscribers. */
export function subscriptionsRequest(to: string): Element {
  return xml("iq", { type: "get", to }, xml("subscriptions", { xmlns: NS.mucsub }));
}

export interface RoomSubscription {
  /** the room (from the service) or the subscriber (from a room) */
  jid: string;
  nick?: string;
  nodes: string[];
}

export function parseSubscriptions(iq: Element): RoomSubscription[] {
  const s = iq.getChild("subscriptions", NS.mucsub);
  if (!s) throw new ProtocolError("MUC/Sub answer without <subscriptions/>");
  return s.getChildren("subscription").map((e) => ({
    jid: e.attrs.jid ?? "",
    ...(e.attrs.nick ? { nick: e.attrs.nick } : {}),
    nodes: e.getChildren("event").map((ev) => ev.attrs.node ?? ""),
  }));
}

export function parseSubscribed(iq: Element): { nick?: string; nodes: string[] } {
  const s = iq.getChild("subscribe", NS.mucsub);
  if (!s) throw new ProtocolError("MUC/Sub answer without <subscribe/>");
  return { ...(s.attrs.nick ? { nick: s.attrs.nick } : {}), nodes: s.getChildren("event").map((ev) => ev.attrs.node ?? "") };
}

export interface RoomEvent {
  room: string;
  node: string;
  itemId?: string;
  /** the stanza the room wrapped (a groupchat message, a presence, a subject change…) */
  inner: Element;
}

/** A MUC/Sub event message (pubsub#event from a room), or undefined. */
export function parseRoomEvent(stanza: Element): RoomEvent | undefined {
  const items = stanza.getChild("event", NS.pubsubEvent)?.getChild("items");
  const node = items?.attrs.node;
  if (!node || !node.startsWith("urn:xmpp:mucsub:nodes:")) return undefined;
  const item = items!.getChild("item");
  const inner = item?.getChildElements()[0];
  if (!inner) throw new ProtocolError(`MUC/Sub event on ${node} without a stanza`);
  return { room: bare(stanza.attrs.from ?? ""), node, ...(item!.attrs.id ? { itemId: item!.attrs.id } : {}), inner };
}
