// The socket under xmpp.js, chosen by the app: the browser's WebSocket, Node's (the `ws`
// package, or the global WebSocket of Node 22+), or uniapp's uni.connectSocket (./uni.ts).
// xmpp.js's WebSocket transport calls `new WebSocket(url, ["xmpp"])` on the global; the SDK
// replaces that one call with the factory, so nothing global is touched.
import ConnectionWebSocket from "@xmpp/websocket/lib/Connection.js";
import Socket, { isSecure } from "@xmpp/websocket/lib/Socket.js";

/** What xmpp.js needs of a socket: the W3C WebSocket's events, send and close. */
export interface WebSocketLike {
  send(data: string): void;
  close(code?: number, reason?: string): void;
  addEventListener(type: "open" | "message" | "close" | "error", listener: (event: any) => void): void;
  removeEventListener(type: "open" | "message" | "close" | "error", listener: (event: any) => void): void;
}

export type WebSocketFactory = (url: string, protocols: string[]) => WebSocketLike;

export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike;

/** A factory from a WebSocket class: `ws`'s in Node 20, else the global one (browsers, H5). */
export function webSocket(Ctor?: WebSocketConstructor): WebSocketFactory {
  return (url, protocols) => {
    const C = Ctor ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (!C) throw new Error("no WebSocket here: pass one (in Node 20: transport: webSocket(WebSocket) from the ws package)");
    return new C(url, protocols);
  };
}

/** An xmpp.js transport class that opens its sockets with `factory`. */
export function transportFor(factory: WebSocketFactory): unknown {
  class FactorySocket extends Socket {
    override connect(url: string): void {
      this.url = url;
      this.secure = isSecure(url);
      this._attachSocket(factory(url, ["xmpp"]));
    }
  }
  class Transport extends (ConnectionWebSocket as unknown as new (...a: unknown[]) => object) {}
  (Transport.prototype as { Socket: unknown }).Socket = FactorySocket;
  return Transport;
}
