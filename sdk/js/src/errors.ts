// Server errors as typed exceptions: RFC 6120 §8.3 (condition, type, text) plus the
// application-specific condition of xmppd's extensions (redpacket, mute, cs).
import { NS } from "./ns.js";
import { type Element, plainAttrs } from "./xml.js";

export type ErrorType = "auth" | "cancel" | "continue" | "modify" | "wait";

export interface AppCondition {
  /** local name, e.g. "insufficient-funds", "muted", "already-grabbed" */
  name: string;
  /** its namespace, e.g. "urn:xmppd:redpacket:0" */
  ns: string;
  attrs: Record<string, string>;
  /** the text of its <reason/> child, when it has one */
  reason?: string;
}

/** A stanza error from the server (an iq error, or a message bounced with an error). */
export class XmppError extends Error {
  override name = "XmppError";
  constructor(
    /** the defined condition, e.g. "forbidden", "item-not-found" */
    readonly condition: string,
    readonly type: ErrorType | string,
    /** the server's human-readable text, when it gave one */
    readonly text: string | undefined,
    /** the application-specific condition, when there is one */
    readonly app: AppCondition | undefined,
    /** the whole stanza that carried the error */
    readonly stanza?: Element,
  ) {
    super(text ? `${condition}: ${text}` : condition);
  }
}

export type MuteKind = "muted" | "all-muted" | "platform-muted";

/** The refusal of something said while a mute holds (docs/mute.md §7). */
export class MutedError extends XmppError {
  override name = "MutedError";
  readonly kind: MuteKind;
  /** the room (absent for a platform mute) */
  readonly room?: string;
  /** who set a member mute */
  readonly by?: string;
  /** when the mute ends; undefined: until lifted */
  readonly until?: Date;
  /** when mute-all began */
  readonly since?: Date;
  readonly reason?: string;
  constructor(condition: string, type: string, text: string | undefined, app: AppCondition, stanza?: Element) {
    super(condition, type, text, app, stanza);
    this.kind = app.name as MuteKind;
    this.room = app.attrs.room;
    this.by = app.attrs.by;
    this.until = app.attrs.until ? new Date(app.attrs.until) : undefined;
    this.since = app.attrs.since ? new Date(app.attrs.since) : undefined;
    this.reason = app.reason;
  }
}

const MUTE_KINDS = new Set(["muted", "all-muted", "platform-muted"]);

/** The <error/> of a stanza as a typed error; undefined when the stanza is not an error. */
export function parseStanzaError(stanza: Element): XmppError | undefined {
  if (stanza.attrs.type !== "error") return undefined;
  const error = stanza.getChild("error");
  if (!error) return new XmppError("undefined-condition", "cancel", undefined, undefined, stanza);
  let condition = "undefined-condition";
  let text: string | undefined;
  let app: AppCondition | undefined;
  for (const child of error.getChildElements()) {
    // namespaces by resolution, not by attribute: a server may write <ns0:muted xmlns:ns0='…'/>
    if (child.getNS() === NS.stanzas) {
      if (child.getName() === "text") text = child.text();
      else condition = child.getName();
    } else if (!app) {
      const reason = child.getChildText("reason") ?? undefined;
      app = { name: child.getName(), ns: child.getNS() ?? "", attrs: plainAttrs(child), ...(reason !== undefined ? { reason } : {}) };
    }
  }
  const type = error.attrs.type ?? "cancel";
  if (app && app.ns === NS.mute && MUTE_KINDS.has(app.name)) return new MutedError(condition, type, text, app, stanza);
  return new XmppError(condition, type, text, app, stanza);
}

/** xmpp.js rejects an iq with its own StanzaError: give the caller ours instead. */
export function toXmppError(err: unknown): unknown {
  const e = err as { element?: Element; name?: string };
  if (e && e.name === "StanzaError" && e.element) {
    // xmpp.js keeps the <error/> element; rebuild a stanza around it for parseStanzaError
    const error = e.element;
    const stanza = (error.parent as Element | null) ?? undefined;
    if (stanza && stanza.attrs.type === "error") return parseStanzaError(stanza) ?? err;
    return parseErrorElement(error) ?? err;
  }
  return err;
}

function parseErrorElement(error: Element): XmppError | undefined {
  const holder = { attrs: { type: "error" }, getChild: (n: string) => (n === "error" ? error : undefined) } as unknown as Element;
  return parseStanzaError(holder);
}
