// Types for the parts of xmpp.js 0.14 (which ships JavaScript only) and ltx that the SDK uses.
declare module "@xmpp/xml" {
  export type Attrs = Record<string, string | number | boolean | null | undefined>;
  export type Child = Element | string | number | null | undefined | false;
  export class Element {
    constructor(name: string, attrs?: Attrs);
    name: string;
    attrs: Record<string, string>;
    children: (Element | string)[];
    parent: Element | null;
    is(name: string, xmlns?: string): boolean;
    /** the local name, without a prefix */
    getName(): string;
    getNS(): string | undefined;
    getChild(name: string, xmlns?: string): Element | undefined;
    getChildren(name: string, xmlns?: string): Element[];
    getChildText(name: string, xmlns?: string): string | null;
    getChildElements(): Element[];
    getText(): string;
    text(): string;
    append(...children: Child[]): Element;
    toString(): string;
  }
  export function xml(name: string, attrs?: Attrs | null, ...children: (Child | Child[])[]): Element;
  export default xml;
}

declare module "ltx/lib/parse.js" {
  import type { Element } from "@xmpp/xml";
  export default function parse(data: string): Element;
}

declare module "@xmpp/websocket/lib/Connection.js" {
  const ConnectionWebSocket: { prototype: { Socket: unknown } } & (new (...args: unknown[]) => unknown);
  export default ConnectionWebSocket;
}

declare module "@xmpp/websocket/lib/Socket.js" {
  export default class Socket {
    url: string | null;
    secure: boolean;
    connect(url: string): void;
    _attachSocket(socket: unknown): void;
  }
  export function isSecure(url: string): boolean;
}

declare module "@xmpp/client" {
  import type { Element } from "@xmpp/xml";
  export { xml } from "@xmpp/xml";
  export interface Jid {
    toString(): string;
    bare(): Jid;
    local: string;
    domain: string;
    resource: string;
  }
  export function jid(...args: string[]): Jid;
  export interface IqCaller {
    request(el: Element, timeout?: number): Promise<Element>;
  }
  export interface StreamManagement {
    enabled: boolean;
    id: string;
    inbound: number;
    on(event: "resumed" | "fail" | "ack", listener: (stanza?: Element) => void): void;
  }
  export interface XmppClient {
    status: string;
    jid: Jid | null;
    options: Record<string, unknown>;
    transports: unknown[];
    iqCaller: IqCaller;
    streamManagement: StreamManagement;
    reconnect: { delay: number; stop(): void; start(): void; on(event: string, l: () => void): void };
    start(): Promise<Jid>;
    stop(): Promise<void>;
    disconnect(timeout?: number): Promise<void>;
    send(...el: Element[]): Promise<void>;
    on(event: "stanza", listener: (el: Element) => void): void;
    on(event: "online", listener: (jid: Jid, resumed?: boolean) => void): void;
    on(event: "error", listener: (err: Error) => void): void;
    on(event: string, listener: (...args: any[]) => void): void;
    removeAllListeners(event?: string): void;
    socket: { socket?: { close(): void } } | null;
  }
  export function client(options: Record<string, unknown>): XmppClient;
}
