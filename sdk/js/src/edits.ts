// Last message correction (XEP-0308), message retraction (XEP-0424, urn:xmpp:message-retract:1)
// and message carbons (XEP-0280): copies of what our other devices send and receive.
import { bare, type ChatMessage, type MessageType } from "./core.js";
import { NS } from "./ns.js";
import { type Element, ProtocolError, xml } from "./xml.js";

/**
 * Replace the body of message `replaces` (its id, as sent: our origin-id). The correction is a
 * message of its own with a new `id`.
 */
export function correctionMessage(m: { to: string; replaces: string; body: string; id: string; type?: "chat" | "groupchat" }): Element {
  return xml(
    "message",
    { to: m.to, type: m.type ?? "chat", id: m.id },
    xml("body", {}, m.body),
    xml("replace", { xmlns: NS.correct, id: m.replaces }),
    xml("origin-id", { xmlns: NS.sid, id: m.id }),
    xml("markable", { xmlns: NS.markers }),
  );
}

/**
 * Retract message `retracts`: one-to-one its origin-id, in a room the room's stanza-id. The
 * fallback body tells clients without XEP-0424 what happened; store hint: archive it.
 */
export function retractionMessage(m: { to: string; retracts: string; id: string; type?: "chat" | "groupchat"; fallback?: string }): Element {
  return xml(
    "message",
    { to: m.to, type: m.type ?? "chat", id: m.id },
    xml("retract", { xmlns: NS.retract, id: m.retracts }),
    xml("fallback", { xmlns: NS.fallback, for: NS.retract }),
    xml("body", {}, m.fallback ?? "This person attempted to retract a previous message, but it's unsupported by your client."),
    xml("store", { xmlns: NS.hints }),
  );
}

export interface Correction {
  from: string;
  type: MessageType;
  /** the id of the message replaced */
  replaces: string;
  /** the new text */
  body: string;
  message: ChatMessage;
}

export interface Retraction {
  from: string;
  type: MessageType;
  /** the id of the message retracted (origin-id, or the room's stanza-id) */
  retracts: string;
  message: ChatMessage;
}

/** The id a correction replaces, or undefined. */
export function replacedId(stanza: Element): string | undefined {
  const r = stanza.getChild("replace", NS.correct);
  if (!r) return undefined;
  if (!r.attrs.id) throw new ProtocolError("<replace/> without id");
  return r.attrs.id;
}

export function retractedId(stanza: Element): string | undefined {
  const r = stanza.getChild("retract", NS.retract);
  if (!r) return undefined;
  if (!r.attrs.id) throw new ProtocolError("<retract/> without id");
  return r.attrs.id;
}

// --- carbons -------------------------------------------------------------------------------

export const enableCarbons = () => xml("iq", { type: "set" }, xml("enable", { xmlns: NS.carbons }));
export const disableCarbons = () => xml("iq", { type: "set" }, xml("disable", { xmlns: NS.carbons }));

/** Keep one message out of carbons (XEP-0280 §6 private + no-copy hint). */
export function privateHint(): Element[] {
  return [xml("private", { xmlns: NS.carbons }), xml("no-copy", { xmlns: NS.hints })];
}

/**
 * The copy inside a carbon, with its direction, or undefined. A carbon counts only from our own
 * bare JID (XEP-0280 §11: anyone else could forge one).
 */
export function unwrapCarbon(stanza: Element, own: string | undefined): { direction: "sent" | "received"; inner: Element } | undefined {
  for (const direction of ["sent", "received"] as const) {
    const c = stanza.getChild(direction, NS.carbons);
    if (!c) continue;
    if (!own || (stanza.attrs.from ?? own) !== bare(own)) throw new ProtocolError(`a carbon from ${stanza.attrs.from}, not from our account`);
    const inner = c.getChild("forwarded", NS.forward)?.getChild("message");
    if (!inner) throw new ProtocolError("carbon without a forwarded message");
    return { direction, inner };
  }
  return undefined;
}
