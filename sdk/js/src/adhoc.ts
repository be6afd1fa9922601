// XEP-0050 ad-hoc commands: list the commands an entity offers the user (disco#items on the
// commands node), run one, answer its form. xmppd offers mute, red-packet, customer-service and
// XEP-0133 admin commands this way (docs/adhoc.md).
import { type DataForm, type FormValue, parseForm, submitForm } from "./forms.js";
import { NS } from "./ns.js";
import { attrs, type Element, ProtocolError, xml } from "./xml.js";

export interface CommandItem {
  jid: string;
  node: string;
  name?: string;
}

export function commandListRequest(to: string): Element {
  return xml("iq", { type: "get", to }, xml("query", { xmlns: NS.discoItems, node: NS.commands }));
}

export function parseCommandList(iq: Element): CommandItem[] {
  const q = iq.getChild("query", NS.discoItems);
  if (!q) throw new ProtocolError("disco#items answer without <query/>");
  return q.getChildren("item").map((i) => ({ jid: i.attrs.jid ?? "", node: i.attrs.node ?? "", ...(i.attrs.name ? { name: i.attrs.name } : {}) }));
}

export type CommandAction = "execute" | "next" | "prev" | "complete" | "cancel";

/** Run a command (`execute`), or go on in its session with a submitted form. */
export function commandRequest(
  to: string,
  node: string,
  opts: { sessionid?: string; action?: CommandAction; values?: Record<string, FormValue | undefined>; formType?: string; lang?: string } = {},
): Element {
  return xml(
    "iq",
    { type: "set", to, ...attrs({ "xml:lang": opts.lang }) },
    xml(
      "command",
      { xmlns: NS.commands, node, ...attrs({ sessionid: opts.sessionid, action: opts.action ?? "execute" }) },
      opts.values ? submitForm(opts.values, opts.formType) : null,
    ),
  );
}

export interface Note {
  type: "info" | "warn" | "error";
  text: string;
}

export interface CommandResult {
  node: string;
  sessionid?: string;
  status: "executing" | "completed" | "canceled";
  notes: Note[];
  /** the form to fill (status executing) or the result form (completed) */
  form?: DataForm;
  /** the actions the command allows next */
  actions: string[];
}

export function parseCommandResult(iq: Element): CommandResult {
  const c = iq.getChild("command", NS.commands);
  if (!c) throw new ProtocolError("ad-hoc answer without <command/>");
  const result: CommandResult = {
    node: c.attrs.node ?? "",
    status: (c.attrs.status ?? "completed") as CommandResult["status"],
    notes: c.getChildren("note").map((n) => ({ type: (n.attrs.type ?? "info") as Note["type"], text: n.text() })),
    actions: c.getChild("actions")?.getChildElements().map((a) => a.getName()) ?? [],
  };
  if (c.attrs.sessionid) result.sessionid = c.attrs.sessionid;
  const form = parseForm(c);
  if (form) result.form = form;
  return result;
}

/** A command that ended with an error note (a refused form): the notes' text. */
export class CommandError extends Error {
  override name = "CommandError";
  constructor(readonly result: CommandResult) {
    super(result.notes.filter((n) => n.type === "error").map((n) => n.text).join("; ") || "the command was refused");
  }
}
