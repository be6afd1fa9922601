// Group and platform mute, urn:xmppd:mute:0 (docs/mute.md, schemas/mute-0.xsd). Member mutes go
// to the room's bare JID, platform mutes and the audit log to the server domain.
import { NS } from "./ns.js";
import { attrs, type Element, optBool, optInt, positive, ProtocolError, req, xml } from "./xml.js";

export type Target = { nick: string; jid?: never } | { jid: string; nick?: never };

const reason = (r?: string) => (r !== undefined ? xml("reason", {}, r) : null);

function target(t: Target): Record<string, string> {
  if (("nick" in t && t.nick !== undefined) === ("jid" in t && t.jid !== undefined)) throw new RangeError("name the member by nick or by jid, not both");
  return attrs({ nick: t.nick, jid: t.jid });
}

/** Mute a member of room `to` (or, to the server domain, an account on the whole platform). */
export function muteRequest(to: string, t: Target & { seconds?: number; reason?: string }): Element {
  positive("seconds", t.seconds);
  return xml("iq", { type: "set", to }, xml("mute", { xmlns: NS.mute, ...target(t), ...attrs({ seconds: t.seconds }) }, reason(t.reason)));
}
export function unmuteRequest(to: string, t: Target): Element {
  return xml("iq", { type: "set", to }, xml("unmute", { xmlns: NS.mute, ...target(t) }));
}
export function muteAllRequest(room: string, why?: string): Element {
  return xml("iq", { type: "set", to: room }, xml("mute-all", { xmlns: NS.mute }, reason(why)));
}
export function unmuteAllRequest(room: string): Element {
  return xml("iq", { type: "set", to: room }, xml("unmute-all", { xmlns: NS.mute }));
}
export function listRequest(to: string): Element {
  return xml("iq", { type: "get", to }, xml("list", { xmlns: NS.mute }));
}
export function statusRequest(to: string, about?: Partial<Target>): Element {
  return xml("iq", { type: "get", to }, xml("status", { xmlns: NS.mute, ...attrs({ jid: about?.jid, nick: about?.nick }) }));
}
export function auditRequest(server: string, opts: { room?: string; jid?: string; scope?: "room" | "platform"; max?: number; before?: number } = {}): Element {
  positive("max", opts.max);
  positive("before", opts.before);
  return xml("iq", { type: "get", to: server }, xml("audit", { xmlns: NS.mute, ...attrs(opts) }));
}

const date = (v?: string) => (v ? new Date(v) : undefined);

function clean<T extends object>(o: T): T {
  for (const k of Object.keys(o) as (keyof T)[]) if (o[k] === undefined) delete o[k];
  return o;
}

export interface MuteItem {
  jid: string;
  nick?: string;
  by?: string;
  since?: Date;
  until?: Date;
  remaining?: number;
  source?: "mute" | "voice";
  reason?: string;
}
function item(el: Element): MuteItem {
  return clean({
    jid: req(el, "jid"), nick: el.attrs.nick, by: el.attrs.by, since: date(el.attrs.since), until: date(el.attrs.until),
    remaining: optInt(el, "remaining"), source: el.attrs.source as MuteItem["source"], reason: el.getChildText("reason") ?? undefined,
  });
}
/** The result of a mute request: the mute as stored. */
export function parseMuteResult(iq: Element): MuteItem {
  const el = iq.is("item", NS.mute) ? iq : iq.getChild("item", NS.mute);
  if (!el) throw new ProtocolError("mute result without <item/>");
  return item(el);
}

export interface AllMuted {
  by?: string;
  since?: Date;
  until?: Date;
  remaining?: number;
  reason?: string;
}
function all(el: Element): AllMuted {
  return clean({ by: el.attrs.by, since: date(el.attrs.since), until: date(el.attrs.until), remaining: optInt(el, "remaining"), reason: el.getChildText("reason") ?? undefined });
}
export function parseList(iq: Element): { all?: AllMuted; items: MuteItem[] } {
  const el = iq.is("list", NS.mute) ? iq : iq.getChild("list", NS.mute);
  if (!el) throw new ProtocolError("expected <list/>");
  const a = el.getChild("all");
  return clean({ all: a ? all(a) : undefined, items: el.getChildren("item").map(item) });
}

export interface MuteStatus {
  muted: boolean;
  room?: AllMuted;
  all?: AllMuted;
  platform?: AllMuted;
}
export function parseStatus(iq: Element): MuteStatus {
  const el = iq.is("status", NS.mute) ? iq : iq.getChild("status", NS.mute);
  if (!el) throw new ProtocolError("expected <status/>");
  const r = el.getChild("room");
  const a = el.getChild("all");
  const p = el.getChild("platform");
  return clean({ muted: optBool(el, "muted") ?? false, room: r ? all(r) : undefined, all: a ? all(a) : undefined, platform: p ? all(p) : undefined });
}

export interface AuditEntry {
  id: number;
  at: Date;
  actor: string;
  action: MuteAction;
  room?: string;
  scope?: "room" | "platform";
  target?: string;
  seconds?: number;
  until?: Date;
  reason?: string;
}
export function parseAudit(iq: Element): { entries: AuditEntry[]; more: boolean } {
  const el = iq.is("audit", NS.mute) ? iq : iq.getChild("audit", NS.mute);
  if (!el) throw new ProtocolError("expected <audit/>");
  return {
    more: optBool(el, "more") ?? false,
    entries: el.getChildren("entry").map((e) =>
      clean({
        id: Number(req(e, "id")), at: new Date(req(e, "at")), actor: req(e, "actor"), action: req(e, "action") as MuteAction,
        room: e.attrs.room, scope: e.attrs.scope as AuditEntry["scope"], target: e.attrs.target, seconds: optInt(e, "seconds"),
        until: date(e.attrs.until), reason: e.getChildText("reason") ?? undefined,
      }),
    ),
  };
}

export type MuteAction = "mute" | "unmute" | "expire" | "mute-all" | "unmute-all";

export interface MuteNotice {
  action: MuteAction;
  /** the room (a groupchat notice), or the server (a platform headline) */
  from: string;
  scope: "room" | "platform";
  nick?: string;
  jid?: string;
  actorNick?: string;
  actor?: string;
  seconds?: number;
  until?: Date;
  reason?: string;
  /** the readable text the server wrote beside it */
  body?: string;
}
export function parseMuteNotice(stanza: Element): MuteNotice | undefined {
  const el = stanza.getChild("notice", NS.mute);
  if (!el) return undefined;
  return clean({
    action: req(el, "action") as MuteAction, from: (stanza.attrs.from ?? "").split("/")[0]!,
    scope: (el.attrs.scope ?? "room") as "room" | "platform", nick: el.attrs.nick, jid: el.attrs.jid,
    actorNick: el.attrs["actor-nick"], actor: el.attrs.actor, seconds: optInt(el, "seconds"), until: date(el.attrs.until),
    reason: el.getChildText("reason") ?? undefined, body: stanza.getChildText("body") ?? undefined,
  });
}
