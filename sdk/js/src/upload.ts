// HTTP file upload (XEP-0363): find the upload service through disco, ask it for a slot, PUT the
// file. Offered only when the server announces urn:xmpp:http:upload:0 on a disco item.
import { NS } from "./ns.js";
import { attrs, type Element, ProtocolError, xml } from "./xml.js";

export function discoItemsRequest(to: string, node?: string): Element {
  return xml("iq", { type: "get", to }, xml("query", { xmlns: NS.discoItems, ...attrs({ node }) }));
}

export function discoInfoRequest(to: string, node?: string): Element {
  return xml("iq", { type: "get", to }, xml("query", { xmlns: NS.discoInfo, ...attrs({ node }) }));
}

export interface DiscoInfo {
  identities: { category: string; type: string; name?: string }[];
  features: string[];
  /** extended information forms (XEP-0128) by FORM_TYPE: their fields' first values */
  forms: Record<string, Record<string, string>>;
}

export function parseDiscoInfo(iq: Element): DiscoInfo {
  const q = iq.getChild("query", NS.discoInfo);
  if (!q) throw new ProtocolError("disco#info answer without <query/>");
  const forms: DiscoInfo["forms"] = {};
  for (const x of q.getChildren("x", NS.dataForms)) {
    const fields: Record<string, string> = {};
    for (const f of x.getChildren("field")) if (f.attrs.var) fields[f.attrs.var] = f.getChildText("value") ?? "";
    if (fields.FORM_TYPE) forms[fields.FORM_TYPE] = fields;
  }
  return {
    identities: q.getChildren("identity").map((i) => ({ category: i.attrs.category ?? "", type: i.attrs.type ?? "", ...(i.attrs.name ? { name: i.attrs.name } : {}) })),
    features: q.getChildren("feature").map((f) => f.attrs.var ?? ""),
    forms,
  };
}

export function parseDiscoItems(iq: Element): { jid: string; node?: string; name?: string }[] {
  const q = iq.getChild("query", NS.discoItems);
  if (!q) throw new ProtocolError("disco#items answer without <query/>");
  return q.getChildren("item").map((i) => ({ jid: i.attrs.jid ?? "", ...attrs({ node: i.attrs.node, name: i.attrs.name }) }));
}

export interface UploadService {
  jid: string;
  /** the largest file it takes, in bytes, when it says */
  maxSize?: number;
}

/** The upload service among disco#info answers, by feature. */
export function findUploadService(infos: { jid: string; info: DiscoInfo }[]): UploadService | undefined {
  for (const { jid, info } of infos) {
    if (!info.features.includes(NS.upload)) continue;
    const max = info.forms[NS.upload]?.["max-file-size"];
    return { jid, ...(max && /^\d+$/.test(max) ? { maxSize: Number(max) } : {}) };
  }
  return undefined;
}

export function slotRequest(service: string, file: { filename: string; size: number; contentType?: string }): Element {
  if (!Number.isSafeInteger(file.size) || file.size < 1) throw new RangeError(`size must be a positive integer, not ${file.size}`);
  if (!file.filename) throw new RangeError("a file name is required");
  return xml("iq", { type: "get", to: service }, xml("request", { xmlns: NS.upload, filename: file.filename, size: String(file.size), ...attrs({ "content-type": file.contentType }) }));
}

export interface Slot {
  put: string;
  get: string;
  /** headers the PUT must carry (Authorization, Cookie, Expires only: §4) */
  headers: Record<string, string>;
}

const ALLOWED_HEADERS = new Set(["authorization", "cookie", "expires"]);

export function parseSlot(iq: Element): Slot {
  const slot = iq.getChild("slot", NS.upload);
  const put = slot?.getChild("put");
  const get = slot?.getChild("get");
  if (!put?.attrs.url || !get?.attrs.url) throw new ProtocolError("upload slot without put/get URLs");
  const headers: Record<string, string> = {};
  for (const h of put.getChildren("header")) {
    const name = h.attrs.name ?? "";
    if (ALLOWED_HEADERS.has(name.toLowerCase())) headers[name] = h.text().replace(/[\r\n]/g, "");
  }
  return { put: put.attrs.url, get: get.attrs.url, headers };
}

/** The server offers no file upload (no disco item with urn:xmpp:http:upload:0). */
export class UploadNotOfferedError extends Error {
  override name = "UploadNotOfferedError";
  constructor(readonly domain: string) {
    super(`${domain} offers no HTTP file upload (XEP-0363)`);
  }
}

/** The upload service refuses a file this large. */
export class FileTooLargeError extends Error {
  override name = "FileTooLargeError";
  constructor(readonly size: number, readonly maxSize: number) {
    super(`the file has ${size} bytes; the server takes at most ${maxSize}`);
  }
}
