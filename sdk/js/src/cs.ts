// Customer service, urn:xmppd:cs:0 (docs/customer-service.md, schemas/cs-0.xsd). A visitor
// writes to a queue JID; an agent handles each chat from its session JID s-<id>@cs.<domain>.
import { NS } from "./ns.js";
import { attrs, type Element, optInt, req, reqInt, xml } from "./xml.js";

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
