// XML helpers shared by every builder and parser: xmpp.js's element type (ltx) and typed
// attribute readers that refuse what a schema refuses instead of returning NaN.
import xmlDefault, { Element } from "@xmpp/xml";
import parse from "ltx/lib/parse.js";

export { Element };
export const xml = xmlDefault;

/** Parse one XML document (a stanza) into an element, e.g. a stored or logged stanza. */
export function parseXml(text: string): Element {
  return parse(text);
}

/** The text of a required attribute. */
export function req(el: Element, name: string): string {
  const v = el.attrs[name];
  if (v === undefined) throw new ProtocolError(`<${el.name}/> lacks ${name}`);
  return v;
}

/** An attribute as an integer (XSD integer lexical form), undefined when absent. */
export function optInt(el: Element, name: string): number | undefined {
  const v = el.attrs[name];
  if (v === undefined) return undefined;
  if (!/^[+-]?\d+$/.test(v.trim())) throw new ProtocolError(`<${el.name} ${name}='${v}'/> is not an integer`);
  return Number(v);
}

export function reqInt(el: Element, name: string): number {
  const v = optInt(el, name);
  if (v === undefined) throw new ProtocolError(`<${el.name}/> lacks ${name}`);
  return v;
}

export function optBool(el: Element, name: string): boolean | undefined {
  const v = el.attrs[name];
  if (v === undefined) return undefined;
  if (v === "true" || v === "1") return true;
  if (v === "false" || v === "0") return false;
  throw new ProtocolError(`<${el.name} ${name}='${v}'/> is not a boolean`);
}

/** Attributes without undefined values, numbers as decimal text. */
export function attrs(a: Record<string, string | number | boolean | undefined | null>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(a)) if (v !== undefined && v !== null) out[k] = String(v);
  return out;
}

/** The attributes of an element without its namespace declarations (xmlns, xmlns:prefix). */
export function plainAttrs(el: Element): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(el.attrs)) if (k !== "xmlns" && !k.startsWith("xmlns:")) out[k] = v;
  return out;
}

/** The first child element in namespace `ns`, whatever its name or prefix. */
export function childNS(el: Element, ns: string): Element | undefined {
  return el.getChildElements().find((c) => c.getNS() === ns);
}

/** A stanza from the server that does not follow the protocol. */
export class ProtocolError extends Error {
  override name = "ProtocolError";
}

export function positive(name: string, v: number | undefined): void {
  if (v !== undefined && (!Number.isSafeInteger(v) || v < 1)) throw new RangeError(`${name} must be a positive integer, not ${v}`);
}
