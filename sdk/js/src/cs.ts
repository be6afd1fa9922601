// Customer service, urn:xmppd:cs:0 (docs/customer-service.md, schemas/cs-0.xsd). A visitor
// writes to a queue JID; an agent handles each chat from its session JID s-<id>@cs.<domain>.
import { NS } from "./ns.js";
import { attrs, type Element, optInt, positive, ProtocolError, req, reqInt, xml } from "./xml.js";

const set = (to: string, child: Element) => xml("iq", { type: "set", to }, child);

/** accept/reject an offered chat; to the component, the queue or the session JID. */
export const acceptRequest = (to: string, session?: string) => set(to, xml("accept", { xmlns: NS.cs, ...attrs({ session }) }));
export const rejectRequest = (to: string, session?: string) => set(to, xml("reject", { xmlns: NS.cs, ...attrs({ session }) }));
/** close a chat: a visitor to the queue, an agent to the session JID. */
export const closeRequest = (to: string, session?: string) => set(to, xml("close", { xmlns: NS.cs, ...attrs({ session }) }));
export const pauseRequest = (to: string) => set(to, xml("pause", { xmlns: NS.cs }));
export const resumeRequest = (to: string) => set(to, xml("resume", { xmlns: NS.cs }));

/** rate a closed chat (1–5) with an optional comment; a visitor, to the queue. */
export function rateRequest(to: string, score: number, comment?: string, session?: string): Element {
  if (!Number.isInteger(score) || score < 1 || score > 5) throw new RangeError(`score must be 1 to 5, not ${score}`);
  return set(to, xml("rate", { xmlns: NS.cs, ...attrs({ session, score }) }, comment ?? ""));
}

/** transfer a chat to another agent or queue. */
export function transferRequest(to: string, target: { agent: string } | { queue: string }, session?: string): Element {
  return set(to, xml("transfer", { xmlns: NS.cs, ...attrs({ session, ...target }) }));
}

/** An agent's availability for new chats: directed presence to a queue or the component. */
export function availability(to: string, available: boolean): Element {
  return xml("presence", { to }, available ? null : xml("show", {}, "away"));
}

export type CsEvent =
  | { kind: "welcome"; session: string; queue?: string; text: string }
  | { kind: "position"; session: string; n: number }
  | { kind: "agent"; session?: string; nick: string; jid?: string }
  | { kind: "closed"; session: string; reason: "visitor" | "agent" | "supervisor" | "idle" | "transferred" }
  | { kind: "requeued"; session?: string }
  | { kind: "ticket"; id: number }
  | { kind: "offer"; session: string; queue: string; visitor: string; timeout: number }
  | { kind: "assigned"; session: string; queue: string; visitor: string; from?: string; transcript: TranscriptLine[] }
  | { kind: "revoked"; session?: string }
  | { kind: "paused"; misses?: number };

export interface TranscriptLine {
  role: "visitor" | "agent" | "system";
  nick: string;
  at: Date;
  text: string;
}

/** The customer-service payload of a message, if any (`from` tells the queue or session JID). */
export function parseCsMessage(stanza: Element): CsEvent | undefined {
  for (const el of stanza.getChildElements()) {
    if (el.getNS() !== NS.cs) continue;
    const session = el.attrs.session;
    switch (el.getName()) {
      case "welcome":
        return { kind: "welcome", session: req(el, "session"), ...attrs({ queue: el.attrs.queue }), text: stanza.getChildText("body") ?? "" };
      case "position":
        return { kind: "position", session: req(el, "session"), n: reqInt(el, "n") };
      case "agent":
        return { kind: "agent", ...attrs({ session, jid: el.attrs.jid }), nick: req(el, "nick") };
      case "closed":
        return { kind: "closed", session: req(el, "session"), reason: req(el, "reason") as "visitor" };
      case "requeued":
        return { kind: "requeued", ...attrs({ session }) };
      case "ticket":
        return { kind: "ticket", id: reqInt(el, "id") };
      case "offer":
        return { kind: "offer", session: req(el, "session"), queue: req(el, "queue"), visitor: req(el, "visitor"), timeout: reqInt(el, "timeout") };
      case "assigned": {
        const lines = el.getChild("transcript")?.getChildren("line") ?? [];
        return {
          kind: "assigned", session: req(el, "session"), queue: req(el, "queue"), visitor: req(el, "visitor"), ...attrs({ from: el.attrs.from }),
          transcript: lines.map((l) => ({ role: req(l, "role") as TranscriptLine["role"], nick: req(l, "nick"), at: new Date(req(l, "at")), text: l.text() })),
        };
      }
      case "revoked":
        return { kind: "revoked", ...attrs({ session }) };
      case "paused": {
        const misses = optInt(el, "misses");
        return misses === undefined ? { kind: "paused" } : { kind: "paused", misses };
      }
    }
  }
  return undefined;
}

// --- queue administration and supervision (docs/customer-service.md §5) ---------------------

const get = (to: string, child: Element) => xml("iq", { type: "get", to }, child);
const QUEUE_NAME = /^[a-z0-9][a-z0-9._-]{0,63}$/;
const STRATEGIES = new Set(["round-robin", "least-busy", "longest-idle"]);

export interface QueueSettings {
  name: string;
  displayName?: string;
  strategy?: "round-robin" | "least-busy" | "longest-idle";
  /** chats per agent */
  capacity?: number;
  /** seconds of visitor silence before an active chat closes (0: never) */
  idleTimeout?: number;
  /** seconds an agent has to accept an offer (0: assign without offering) */
  offerTimeout?: number;
  maxMisses?: number;
  hours?: string;
  welcome?: string;
  offline?: string;
}

function nonNegative(name: string, v: number | undefined): void {
  if (v !== undefined && (!Number.isSafeInteger(v) || v < 0)) throw new RangeError(`${name} must be a non-negative integer, not ${v}`);
}

/** admin, to the component: create a queue or change its settings (absent ones keep their value). */
export function queueRequest(component: string, q: QueueSettings): Element {
  if (!QUEUE_NAME.test(q.name)) throw new RangeError(`a queue name is 1-64 of a-z 0-9 . _ -, not ${JSON.stringify(q.name)}`);
  if (q.strategy !== undefined && !STRATEGIES.has(q.strategy)) throw new RangeError(`unknown strategy ${q.strategy}`);
  if (q.capacity !== undefined && (!Number.isSafeInteger(q.capacity) || q.capacity < 1)) throw new RangeError(`capacity must be a positive integer, not ${q.capacity}`);
  nonNegative("idleTimeout", q.idleTimeout);
  nonNegative("offerTimeout", q.offerTimeout);
  nonNegative("maxMisses", q.maxMisses);
  return xml(
    "iq",
    { type: "set", to: component },
    xml(
      "queue",
      {
        xmlns: NS.cs,
        ...attrs({
          name: q.name, "display-name": q.displayName, strategy: q.strategy, capacity: q.capacity,
          "idle-timeout": q.idleTimeout, "offer-timeout": q.offerTimeout, "max-misses": q.maxMisses, hours: q.hours,
        }),
      },
      q.welcome !== undefined ? xml("welcome", {}, q.welcome) : null,
      q.offline !== undefined ? xml("offline", {}, q.offline) : null,
    ),
  );
}

export function deleteQueueRequest(component: string, name: string): Element {
  if (!QUEUE_NAME.test(name)) throw new RangeError(`not a queue name: ${JSON.stringify(name)}`);
  return xml("iq", { type: "set", to: component }, xml("delete-queue", { xmlns: NS.cs, name }));
}

export const queuesRequest = (component: string) => get(component, xml("queues", { xmlns: NS.cs }));

export interface QueueInfo extends Partial<Omit<QueueSettings, "name">> {
  name: string;
  jid?: string;
}

export function parseQueues(iq: Element): QueueInfo[] {
  const el = iq.getChild("queues", NS.cs);
  if (!el) throw new ProtocolError("expected <queues/>");
  return el.getChildren("queue").map((q) => {
    const welcome = q.getChildText("welcome");
    const offline = q.getChildText("offline");
    return clean({
      name: req(q, "name"), jid: q.attrs.jid, displayName: q.attrs["display-name"], strategy: q.attrs.strategy as QueueSettings["strategy"],
      capacity: optInt(q, "capacity"), idleTimeout: optInt(q, "idle-timeout"), offerTimeout: optInt(q, "offer-timeout"),
      maxMisses: optInt(q, "max-misses"), hours: q.attrs.hours, welcome: welcome ?? undefined, offline: offline ?? undefined,
    }) as QueueInfo;
  });
}

export type MemberRole = "agent" | "supervisor" | "none";

/** admin, to the queue: make `jid` an agent or supervisor with a nick; role "none" removes. */
export function memberRequest(queue: string, m: { jid: string; role: MemberRole; nick?: string }): Element {
  if (!["agent", "supervisor", "none"].includes(m.role)) throw new RangeError(`unknown role ${m.role}`);
  return xml("iq", { type: "set", to: queue }, xml("member", { xmlns: NS.cs, ...attrs({ jid: m.jid, role: m.role, nick: m.nick }) }));
}

export const membersRequest = (queue: string) => get(queue, xml("members", { xmlns: NS.cs }));

export interface Member {
  jid: string;
  role?: MemberRole;
  nick?: string;
  status?: "available" | "away" | "paused" | "offline";
}

export function parseMembers(iq: Element): Member[] {
  const el = iq.getChild("members", NS.cs);
  if (!el) throw new ProtocolError("expected <members/>");
  return el.getChildren("member").map((m) => clean({ jid: req(m, "jid"), role: m.attrs.role as MemberRole, nick: m.attrs.nick, status: m.attrs.status as Member["status"] }) as Member);
}

export const figuresRequest = (queue: string) => get(queue, xml("figures", { xmlns: NS.cs }));

export interface Figures {
  queue?: string;
  waiting: number;
  active: number;
  served: number;
  /** seconds */
  averageWait?: number;
  agents: { jid?: string; nick: string; load?: number; capacity?: number; status?: Member["status"] }[];
}

export function parseFigures(iq: Element): Figures {
  const el = iq.is("figures", NS.cs) ? iq : iq.getChild("figures", NS.cs);
  if (!el) throw new ProtocolError("expected <figures/>");
  const wait = el.attrs["average-wait"];
  if (wait !== undefined && !/^[+-]?(\d+\.?\d*|\.\d+)$/.test(wait)) throw new ProtocolError(`average-wait='${wait}' is not a decimal`);
  return clean({
    queue: el.attrs.queue, waiting: optInt(el, "waiting") ?? 0, active: optInt(el, "active") ?? 0, served: optInt(el, "served") ?? 0,
    averageWait: wait !== undefined ? Number(wait) : undefined,
    agents: el.getChildren("agent").map((a) => clean({ jid: a.attrs.jid, nick: req(a, "nick"), load: optInt(a, "load"), capacity: optInt(a, "capacity"), status: a.attrs.status as Member["status"] })),
  }) as Figures;
}

/** agents (with `visitor`) and supervisors, to the queue: past chats, newest first. */
export function historyRequest(queue: string, opts: { visitor?: string; max?: number } = {}): Element {
  positive("max", opts.max);
  return get(queue, xml("history", { xmlns: NS.cs, ...attrs({ visitor: opts.visitor, max: opts.max }) }));
}

export interface SessionSummary {
  id: string;
  queue: string;
  visitor: string;
  state: "waiting" | "offered" | "active" | "closed";
  created: Date;
  agent?: string;
  nick?: string;
  /** seconds in line */
  wait?: number;
  closed?: Date;
  reason?: string;
  rating?: number;
  comment?: string;
}

export function parseSessions(iq: Element): SessionSummary[] {
  const el = iq.is("history", NS.cs) ? iq : iq.getChild("history", NS.cs);
  if (!el) throw new ProtocolError("expected <history/>");
  return el.getChildren("session").map((s) => clean({
    id: req(s, "id"), queue: req(s, "queue"), visitor: req(s, "visitor"), state: req(s, "state") as SessionSummary["state"], created: new Date(req(s, "created")),
    agent: s.attrs.agent, nick: s.attrs.nick, wait: s.attrs.wait !== undefined ? Number(s.attrs.wait) : undefined,
    closed: s.attrs.closed ? new Date(s.attrs.closed) : undefined, reason: s.attrs.reason, rating: optInt(s, "rating"), comment: s.getChildText("comment") ?? undefined,
  }) as SessionSummary);
}

/** the visitor, agents and supervisors, to the component: one chat's lines. */
export const transcriptRequest = (component: string, session: string) => get(component, xml("transcript", { xmlns: NS.cs, session }));

export function parseTranscript(iq: Element): TranscriptLine[] {
  const el = iq.is("transcript", NS.cs) ? iq : iq.getChild("transcript", NS.cs);
  if (!el) throw new ProtocolError("expected <transcript/>");
  return el.getChildren("line").map((l) => ({ role: req(l, "role") as TranscriptLine["role"], nick: req(l, "nick"), at: new Date(req(l, "at")), text: l.text() }));
}

export const ticketsRequest = (queue: string) => get(queue, xml("tickets", { xmlns: NS.cs }));

export interface Ticket {
  id: number;
  visitor?: string;
  created?: Date;
  text: string;
}

export function parseTickets(iq: Element): Ticket[] {
  const el = iq.is("tickets", NS.cs) ? iq : iq.getChild("tickets", NS.cs);
  if (!el) throw new ProtocolError("expected <tickets/>");
  return el.getChildren("ticket").map((t) => clean({ id: reqInt(t, "id"), visitor: t.attrs.visitor, created: t.attrs.created ? new Date(t.attrs.created) : undefined, text: t.text() }) as Ticket);
}

function clean<T extends Record<string, unknown>>(o: T): T {
  for (const k of Object.keys(o)) if (o[k] === undefined) delete o[k];
  return o;
}
