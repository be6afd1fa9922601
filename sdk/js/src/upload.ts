// HTTP file upload (XEP-0363): find the upload service through disco, ask it for a slot, PUT the
// file. Offered only when the server announces urn:xmpp:http:upload:0 on a disco item. A file is
// then sent in a message as Conversations does (XEP-0066 out-of-band data, the URL as the body)
// with its metadata (XEP-0446 inside XEP-0447 stateless file sharing: name, size, media type and
// the XEP-0264 thumbnail the server made), and parsed back on receipt as `message.file`.
import { XmppError } from "./errors.js";
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

/** A XEP-0264 thumbnail: a smaller image of the file at `uri`. */
export interface Thumbnail {
  uri: string;
  /** its media type, e.g. image/jpeg */
  type?: string;
  width?: number;
  height?: number;
}

export interface Slot {
  put: string;
  get: string;
  /** headers the PUT must carry (Authorization, Cookie, Expires only: §4) */
  headers: Record<string, string>;
  /** xmppd: where the server puts the image's thumbnail once the PUT is done (images only) */
  thumbnail?: Thumbnail;
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
  const thumb = slot!.getChild("thumbnail", NS.thumbs);
  const thumbnail = thumb && parseThumbnail(thumb);
  return { put: put.attrs.url, get: get.attrs.url, headers, ...(thumbnail ? { thumbnail } : {}) };
}

function dimension(v: string | undefined): number | undefined {
  return v && /^\d{1,6}$/.test(v) && Number(v) > 0 ? Number(v) : undefined;
}

/** Only http(s) URLs (and data: images for thumbnails): a file URL is shown and opened by apps. */
export function safeUrl(url: string | undefined | null, allowDataImage = false): string | undefined {
  if (!url) return undefined;
  const u = url.trim();
  if (/^https?:\/\/[^\s]+$/i.test(u)) return u;
  if (allowDataImage && /^data:image\/(png|jpeg|gif|webp);base64,[A-Za-z0-9+/=]+$/.test(u)) return u;
  return undefined;
}

function parseThumbnail(el: Element): Thumbnail | undefined {
  const uri = safeUrl(el.attrs.uri, true);
  if (!uri) return undefined;
  const width = dimension(el.attrs.width);
  const height = dimension(el.attrs.height);
  return { uri, ...attrs({ type: el.attrs["media-type"] }), ...(width ? { width } : {}), ...(height ? { height } : {}) };
}

// --- sending and receiving files ----------------------------------------------------------

/** A file as a message carries it (and as `upload.file()` resolves). */
export interface FileInfo {
  /** where to GET it */
  url: string;
  name: string;
  /** bytes, when the sender said */
  size?: number;
  /** its media type, when the sender said (or guessed from the name's extension) */
  type?: string;
  width?: number;
  height?: number;
  /** a description (XEP-0066 <desc/>) */
  desc?: string;
  thumbnail?: Thumbnail;
}

export interface OutgoingFile {
  to: string;
  file: FileInfo;
  type?: "chat" | "groupchat";
  /** the stanza id; also sent as origin-id */
  id: string;
  receipt?: boolean;
}

/**
 * A message with a file: the URL as the body and in XEP-0066 <x xmlns='jabber:x:oob'/> (what
 * Conversations, Gajim, Dino, Monal and Converse.js show as a file), plus XEP-0447 file sharing
 * with the XEP-0446 metadata and the XEP-0264 thumbnail for clients that read them.
 */
export function fileMessage(m: OutgoingFile): Element {
  const type = m.type ?? "chat";
  const f = m.file;
  if (!safeUrl(f.url)) throw new RangeError(`not an http(s) URL: ${f.url}`);
  const t = f.thumbnail;
  const meta = xml(
    "file",
    { xmlns: NS.fileMeta },
    f.type ? xml("media-type", {}, f.type) : null,
    xml("name", {}, f.name),
    f.size !== undefined ? xml("size", {}, String(f.size)) : null,
    f.width ? xml("width", {}, String(f.width)) : null,
    f.height ? xml("height", {}, String(f.height)) : null,
    f.desc ? xml("desc", {}, f.desc) : null,
    t ? xml("thumbnail", { xmlns: NS.thumbs, uri: t.uri, ...attrs({ "media-type": t.type, width: t.width?.toString(), height: t.height?.toString() }) }) : null,
  );
  return xml(
    "message",
    { to: m.to, type, id: m.id },
    xml("body", {}, f.url),
    xml("x", { xmlns: NS.oob }, xml("url", {}, f.url), f.desc ? xml("desc", {}, f.desc) : null),
    xml("file-sharing", { xmlns: NS.sfs, disposition: f.type && /^(image|video|audio)\//.test(f.type) ? "inline" : "attachment" },
      meta,
      xml("sources", {}, xml("url-data", { xmlns: NS.urlData, target: f.url }))),
    xml("origin-id", { xmlns: NS.sid, id: m.id }),
    m.receipt ?? type === "chat" ? xml("request", { xmlns: NS.receipts }) : null,
    xml("markable", { xmlns: NS.markers }),
  );
}

const TYPES: Record<string, string> = {
  jpg: "image/jpeg", jpeg: "image/jpeg", png: "image/png", gif: "image/gif", webp: "image/webp",
  mp4: "video/mp4", webm: "video/webm", mp3: "audio/mpeg", m4a: "audio/mp4", ogg: "audio/ogg", opus: "audio/ogg",
  pdf: "application/pdf", txt: "text/plain", zip: "application/zip",
};

/** A media type from a file name's extension (what a receiver of a bare OOB URL can know). */
export function guessType(name: string): string | undefined {
  const dot = name.lastIndexOf(".");
  return dot < 0 ? undefined : TYPES[name.slice(dot + 1).toLowerCase()];
}

function nameFromUrl(url: string): string {
  const path = url.replace(/[?#].*$/, "");
  const last = path.slice(path.lastIndexOf("/") + 1);
  try {
    return decodeURIComponent(last) || "file";
  } catch {
    return last || "file";
  }
}

/**
 * The file a message carries: XEP-0447 file sharing (with its metadata) or XEP-0066 OOB data;
 * undefined for a message without one, or whose URL is not http(s).
 */
export function parseFile(stanza: Element): FileInfo | undefined {
  const sfs = stanza.getChild("file-sharing", NS.sfs);
  const meta = sfs?.getChild("file", NS.fileMeta) ?? stanza.getChild("file", NS.fileMeta);
  const oob = stanza.getChild("x", NS.oob);
  const url = safeUrl(sfs?.getChild("sources")?.getChild("url-data", NS.urlData)?.attrs.target) ?? safeUrl(oob?.getChildText("url"));
  if (!url) return undefined;
  const name = meta?.getChildText("name")?.trim() || nameFromUrl(url);
  const size = meta?.getChildText("size");
  const type = meta?.getChildText("media-type")?.trim() || guessType(name);
  const width = dimension(meta?.getChildText("width") ?? undefined);
  const height = dimension(meta?.getChildText("height") ?? undefined);
  const desc = meta?.getChildText("desc") || oob?.getChildText("desc");
  const thumbEl = meta?.getChildren("thumbnail", NS.thumbs).find((t) => safeUrl(t.attrs.uri, true));
  const thumbnail = thumbEl && parseThumbnail(thumbEl);
  return {
    url,
    name,
    ...(size && /^\d+$/.test(size) ? { size: Number(size) } : {}),
    ...(type ? { type } : {}),
    ...(width ? { width } : {}),
    ...(height ? { height } : {}),
    ...(desc ? { desc } : {}),
    ...(thumbnail ? { thumbnail } : {}),
  };
}

// --- errors --------------------------------------------------------------------------------

/** Every upload failure: catch this one to handle them all. */
export class UploadError extends Error {
  override name = "UploadError";
}

/** The server offers no file upload (no disco item with urn:xmpp:http:upload:0). */
export class UploadNotOfferedError extends UploadError {
  override name = "UploadNotOfferedError";
  constructor(readonly domain: string) {
    super(`${domain} offers no HTTP file upload (XEP-0363)`);
  }
}

/** The upload service refuses a file this large (said in its disco form, or in its refusal). */
export class FileTooLargeError extends UploadError {
  override name = "FileTooLargeError";
  constructor(readonly size: number, readonly maxSize: number, override readonly cause?: XmppError) {
    super(`the file has ${size} bytes; the server takes at most ${maxSize}`);
  }
}

/** The user's files and open slots would pass the server's quota (resource-constraint). */
export class UploadQuotaError extends UploadError {
  override name = "UploadQuotaError";
  constructor(readonly text: string | undefined, override readonly cause: XmppError) {
    super(text || "upload quota reached");
  }
}

/** The PUT failed: the HTTP status and the server's text (409 used, 410 expired, 413, 415…). */
export class UploadHttpError extends UploadError {
  override name = "UploadHttpError";
  constructor(readonly status: number, readonly statusText: string, readonly text: string) {
    super(`upload refused: HTTP ${status}${statusText ? " " + statusText : ""}${text ? ": " + text.trim() : ""}`);
  }
}

/**
 * The slot request's refusal as a typed error: not-acceptable with <file-too-large/> a
 * FileTooLargeError carrying the server's max-file-size; resource-constraint an
 * UploadQuotaError; anything else (bad-request, forbidden…) stays the XmppError.
 */
export function uploadError(err: unknown, size: number, knownMax?: number): unknown {
  if (!(err instanceof XmppError)) return err;
  if (err.app?.ns === NS.upload && err.app.name === "file-too-large") {
    const el = err.stanza?.getChild("error")?.getChild("file-too-large", NS.upload);
    const max = el?.getChildText("max-file-size");
    const maxSize = max && /^\d+$/.test(max) ? Number(max) : knownMax;
    if (maxSize !== undefined) return new FileTooLargeError(size, maxSize, err);
  }
  if (err.condition === "resource-constraint") return new UploadQuotaError(err.text, err);
  return err;
}

// --- the PUT ------------------------------------------------------------------------------

/** What a PUT sends: the body is a Blob, bytes, or (Node) a ReadableStream of `size` bytes. */
export interface PutRequest {
  url: string;
  headers: Record<string, string>;
  body: Blob | ArrayBuffer | Uint8Array | ReadableStream<Uint8Array>;
  size: number;
  /** aborts the PUT (fetch rejects with an AbortError; the slot may be used again) */
  signal?: AbortSignal;
}

/** An HTTP PUT: resolves with the status and the response's text (errors only). */
export type HttpPut = (req: PutRequest) => Promise<{ status: number; statusText?: string; text?: string }>;

/** The PUT through fetch (browsers, Node ≥ 18, uniapp H5). */
export const fetchPut: HttpPut = async ({ url, headers, body, size, signal }) => {
  const stream = typeof ReadableStream !== "undefined" && body instanceof ReadableStream;
  // a stream has no length of its own: the server answers 411 without Content-Length (Node's
  // fetch sends the header given; browsers stream request bodies over HTTP/2 only: give them Blobs)
  const init: RequestInit & { duplex?: "half" } = { method: "PUT", body: body as BodyInit, headers: stream ? { ...headers, "Content-Length": String(size) } : headers };
  if (stream) init.duplex = "half";
  if (signal) init.signal = signal;
  const res = await fetch(url, init);
  const text = res.ok ? "" : await res.text().catch(() => "");
  return { status: res.status, statusText: res.statusText, text };
};

export function bodySize(body: PutRequest["body"], size?: number): number {
  if (typeof Blob !== "undefined" && body instanceof Blob) return body.size;
  if (body instanceof ArrayBuffer || ArrayBuffer.isView(body)) return body.byteLength;
  if (size === undefined) throw new RangeError("a stream's size must be given");
  return size;
}
