// uniapp's App build has no W3C WebSocket: sockets come from uni.connectSocket, which returns a
// SocketTask (onOpen, onMessage, onClose, onError, send, close; https://uniapp.dcloud.net.cn/
// api/request/websocket.html). UniWebSocket presents a SocketTask as the WebSocket xmpp.js uses.
import type { WebSocketFactory, WebSocketLike } from "./index.js";

export interface UniSocketTask {
  onOpen(callback: (res: unknown) => void): void;
  onMessage(callback: (res: { data: string | ArrayBuffer }) => void): void;
  onClose(callback: (res: { code?: number; reason?: string }) => void): void;
  onError(callback: (res: { errMsg?: string }) => void): void;
  send(options: { data: string | ArrayBuffer; success?: () => void; fail?: (res: { errMsg?: string }) => void }): void;
  close(options?: { code?: number; reason?: string; success?: () => void; fail?: (res: { errMsg?: string }) => void }): void;
}

export interface UniLike {
  connectSocket(options: {
    url: string;
    protocols?: string[];
    header?: Record<string, string>;
    success?: () => void;
    fail?: (res: { errMsg?: string }) => void;
    complete?: () => void;
  }): UniSocketTask;
}

type Listener = (event: any) => void;
type EventName = "open" | "message" | "close" | "error";

export const CONNECTING = 0;
export const OPEN = 1;
export const CLOSING = 2;
export const CLOSED = 3;

export class UniWebSocket implements WebSocketLike {
  readyState = CONNECTING;
  readonly url: string;
  private readonly task: UniSocketTask;
  private readonly listeners: Record<EventName, Set<Listener>> = { open: new Set(), message: new Set(), close: new Set(), error: new Set() };
  private closing = false;

  constructor(uni: UniLike, url: string, protocols: string[] = []) {
    this.url = url;
    // uni.connectSocket returns its SocketTask only when a callback is given (uniapp docs)
    this.task = uni.connectSocket({
      url,
      protocols,
      complete: () => {},
      fail: (res) => this.failed(res?.errMsg ?? "connectSocket failed"),
    });
    this.task.onOpen(() => {
      this.readyState = OPEN;
      this.dispatch("open", { type: "open" });
    });
    this.task.onMessage((res) => {
      const data = typeof res.data === "string" ? res.data : new TextDecoder().decode(res.data);
      this.dispatch("message", { type: "message", data });
    });
    this.task.onError((res) => this.failed(res?.errMsg ?? "socket error"));
    this.task.onClose((res) => this.closed(res?.code ?? 1006, res?.reason ?? ""));
  }

  addEventListener(type: EventName, listener: Listener): void {
    this.listeners[type].add(listener);
  }

  removeEventListener(type: EventName, listener: Listener): void {
    this.listeners[type].delete(listener);
  }

  send(data: string): void {
    if (this.readyState !== OPEN) throw new Error("UniWebSocket: send before open or after close");
    this.task.send({ data, fail: (res) => this.failed(res?.errMsg ?? "send failed") });
  }

  close(code = 1000, reason = ""): void {
    if (this.readyState === CLOSED || this.readyState === CLOSING) return;
    this.closing = true;
    this.readyState = CLOSING;
    this.task.close({ code, reason, fail: () => this.closed(code, reason) });
  }

  private failed(message: string): void {
    this.dispatch("error", { type: "error", message });
    if (this.readyState === CONNECTING) this.closed(1006, message);
  }

  private closed(code: number, reason: string): void {
    if (this.readyState === CLOSED) return;
    this.readyState = CLOSED;
    // clean: a normal close we asked for, or the server's normal close
    this.dispatch("close", { type: "close", code, reason, wasClean: code === 1000 || (this.closing && code !== 1006) });
  }

  private dispatch(type: EventName, event: object): void {
    for (const l of [...this.listeners[type]]) l(event);
  }
}

/** A transport factory over `uni.connectSocket` (the global `uni` of a uniapp app by default). */
export function uniSocket(uni?: UniLike): WebSocketFactory {
  return (url, protocols) => {
    const u = uni ?? (globalThis as { uni?: UniLike }).uni;
    if (!u) throw new Error("uniSocket: no `uni` object (run inside a uniapp app, or pass it)");
    return new UniWebSocket(u, url, protocols);
  };
}

/** uni.request as documented (https://uniapp.dcloud.net.cn/api/request/request.html). */
export interface UniRequestLike {
  request(options: {
    url: string;
    method: "PUT";
    header: Record<string, string>;
    data: ArrayBuffer;
    dataType?: string;
    responseType?: "text" | "arraybuffer";
    success?: (res: { statusCode: number; data: unknown }) => void;
    fail?: (res: { errMsg?: string }) => void;
  }): unknown;
}

/**
 * File upload's PUT over `uni.request` for the App build (`ConnectOptions.httpPut`): there
 * uni.uploadFile can only POST multipart forms, which XEP-0363 slots do not take, while
 * uni.request PUTs an ArrayBuffer body. The App reads the chosen file into an ArrayBuffer
 * first (uni.getFileSystemManager().readFile, or plus.io), so the whole file is in memory.
 */
export function uniPut(uni?: UniRequestLike): import("../upload.js").HttpPut {
  return async ({ url, headers, body }) => {
    const u = uni ?? (globalThis as { uni?: UniRequestLike }).uni;
    if (!u) throw new Error("uniPut: no `uni` object (run inside a uniapp app, or pass it)");
    let data: ArrayBuffer;
    if (body instanceof ArrayBuffer) data = body;
    else if (ArrayBuffer.isView(body)) data = body.buffer.slice(body.byteOffset, body.byteOffset + body.byteLength) as ArrayBuffer;
    else if (typeof Blob !== "undefined" && body instanceof Blob) data = await body.arrayBuffer();
    else throw new TypeError("uniPut takes an ArrayBuffer, bytes or a Blob, not a stream");
    return new Promise((resolve, reject) => {
      u.request({
        url,
        method: "PUT",
        header: headers,
        data,
        dataType: "text",
        responseType: "text",
        success: (res) => resolve({ status: res.statusCode, text: typeof res.data === "string" ? res.data : "" }),
        fail: (res) => reject(new Error(`uni.request PUT failed: ${res?.errMsg ?? "unknown"}`)),
      });
    });
  };
}
