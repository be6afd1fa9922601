// XmppdClient: one logged-in account. xmpp.js does the stream (SASL, bind, XEP-0198 stream
// management with resumption, reconnect); this class gives the app typed calls and events.
import { client as xmppClient, type XmppClient } from "@xmpp/client";
import * as adhoc from "./adhoc.js";
import * as core from "./core.js";
import * as cs from "./cs.js";
import * as edits from "./edits.js";
import type { FormValue } from "./forms.js";
import * as rooms from "./rooms.js";
import * as upload from "./upload.js";
import { Deduplicator } from "./dedup.js";
import { parseStanzaError, toXmppError, XmppError } from "./errors.js";
import * as mute from "./mute.js";
import { NS } from "./ns.js";
import * as rp from "./redpacket.js";
import { transportFor, webSocket, type WebSocketFactory } from "./transport/index.js";
import type { Element } from "./xml.js";

export interface ConnectOptions {
  /** the WebSocket endpoint, e.g. wss://example.com/xmpp-websocket */
  service: string;
  domain: string;
  username: string;
  /** the account's password, or: */
  password?: string;
  /** the app's login token (a JWT the server checks, sent as the SASL PLAIN password) */
  token?: string;
  resource?: string;
  lang?: string;
  /** how sockets are made; default: the global WebSocket */
  transport?: WebSocketFactory;
  /** reconnect (and resume the stream) after a dropped connection; default true */
  reconnect?: boolean;
  /** send initial presence when online; default true */
  sendPresence?: boolean;
  /** messages remembered for de-duplication; default 5000 */
  dedupCapacity?: number;
  /** ask for copies of what our other devices send and receive (XEP-0280); default true */
  carbons?: boolean;
  /** how file uploads are PUT; default fetch (uniapp App: `uniPut(uni)`) */
  httpPut?: upload.HttpPut;
}

export interface MessageError {
  /** the id of the message the server refused */
  id?: string;
  from: string;
  error: XmppError;
}

export interface Events {
  online: { jid: string };
  /** the stream was resumed after a dropped connection: nothing was lost */
  resumed: void;
  offline: void;
  reconnecting: void;
  error: Error;
  message: core.ChatMessage;
  receipt: core.Receipt;
  marker: core.Marker;
  presence: core.Presence;
  /** a friend request (RFC 6121 subscription request) with its message */
  subscriptionRequest: { from: string; message?: string };
  messageError: MessageError;
  redpacket: rp.RedPacketAnnounce;
  redpacketGrabbed: rp.Grabbed;
  redpacketFinished: rp.Finished;
  redpacketRefunded: rp.Refunded;
  /** a customer-service notification; `body` is the server's readable text beside it */
  cs: cs.CsEvent & { from: string; body?: string };
  muteNotice: mute.MuteNotice;
  /** XEP-0308: a message was corrected (replace the text of `replaces`) */
  correction: edits.Correction;
  /** XEP-0424: a message was retracted (hide `retracts`) */
  retraction: edits.Retraction;
  /** a MUC/Sub event other than a room message (those arrive as `message`) */
  roomEvent: rooms.RoomEvent;
}

type Handler<T> = (payload: T) => void;

/**
 * xmpp.js credentials for a token login: the server checks the app's token (a JWT) as the SASL
 * PLAIN password, so PLAIN is chosen even when SCRAM is offered (SCRAM would need the password).
 */
export function tokenCredentials(username: string, token: string) {
  return async (authenticate: (c: object, m: string) => Promise<void>, mechanisms: string[]) => {
    if (!mechanisms.includes("PLAIN")) throw new Error(`token login needs SASL PLAIN; the server offers ${mechanisms.join(", ")}`);
    await authenticate({ username, password: token }, "PLAIN");
  };
}

let counter = 0;
function newId(): string {
  const rnd = globalThis.crypto?.randomUUID?.() ?? `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
  return `sdk-${rnd}-${(counter++).toString(36)}`;
}

export class XmppdClient {
  readonly xmpp: XmppClient;
  readonly domain: string;
  jid: string | undefined;
  private readonly handlers = new Map<keyof Events, Set<Handler<any>>>();
  private readonly dedup: Deduplicator;
  private readonly pendingMam = new Map<string, { messages: core.ArchivedMessage[]; archiveBy: string | undefined }>();

  constructor(readonly options: ConnectOptions) {
    const { service, domain, username, password, token, resource, lang } = options;
    const credentials = token !== undefined ? tokenCredentials(username, token) : { username, password };
    this.xmpp = xmppClient({ service, domain, username, credentials, resource, lang });
    this.domain = domain;
    this.xmpp.transports.splice(0, this.xmpp.transports.length, transportFor(options.transport ?? webSocket()));
    if (options.reconnect === false) this.xmpp.reconnect.stop();
    this.dedup = new Deduplicator(options.dedupCapacity);
    this.xmpp.on("online", async (jid) => {
      this.jid = jid.toString();
      if (options.carbons !== false) await this.iq(edits.enableCarbons()).catch((err) => this.emit("error", err as Error));
      if (options.sendPresence !== false) await this.xmpp.send(core.presence()).catch(() => {});
      this.emit("online", { jid: this.jid });
    });
    this.xmpp.streamManagement.on("resumed", () => this.emit("resumed", undefined));
    this.xmpp.on("offline", () => this.emit("offline", undefined));
    this.xmpp.reconnect.on("reconnecting", () => this.emit("reconnecting", undefined));
    this.xmpp.on("error", (err) => this.emit("error", err));
    this.xmpp.on("stanza", (stanza) => {
      // a stanza the SDK cannot read is reported, never thrown into xmpp.js's parser
      try {
        this.dispatch(stanza);
      } catch (err) {
        this.emit("error", err as Error);
      }
    });
  }

  // --- events ------------------------------------------------------------------------------

  on<K extends keyof Events>(event: K, handler: Handler<Events[K]>): () => void {
    let set = this.handlers.get(event);
    if (!set) this.handlers.set(event, (set = new Set()));
    set.add(handler);
    return () => set!.delete(handler);
  }

  /** The next `event` that satisfies `filter`. */
  once<K extends keyof Events>(event: K, filter: (p: Events[K]) => boolean = () => true): Promise<Events[K]> {
    return new Promise((resolve) => {
      const off = this.on(event, (p) => {
        if (filter(p)) {
          off();
          resolve(p);
        }
      });
    });
  }

  private emit<K extends keyof Events>(event: K, payload: Events[K]): void {
    for (const h of [...(this.handlers.get(event) ?? [])]) {
      try {
        h(payload);
      } catch (err) {
        if (event !== "error") this.emit("error", err as Error);
      }
    }
  }

  // --- connection --------------------------------------------------------------------------

  /** Log in; resolves with the full JID once online. */
  async start(): Promise<string> {
    return (await this.xmpp.start()).toString();
  }

  async stop(): Promise<void> {
    await this.xmpp.stop();
  }

  /** Send any stanza. */
  send(stanza: Element): Promise<void> {
    return this.xmpp.send(stanza);
  }

  /** An iq request; a server error rejects with an XmppError (or MutedError). */
  async iq(request: Element, timeout?: number): Promise<Element> {
    try {
      return await this.xmpp.iqCaller.request(request, timeout);
    } catch (err) {
      throw toXmppError(err);
    }
  }

  private get own(): string | undefined {
    return this.jid ? core.bare(this.jid) : undefined;
  }

  // --- incoming ----------------------------------------------------------------------------

  /**
   * Route one incoming stanza to the events (public for tests and custom transports). Throws a
   * ProtocolError for a payload that breaks its schema; from the network that becomes an
   * `error` event and the stanza is dropped.
   */
  dispatch(stanza: Element, carbon?: "sent" | "received"): void {
    if (stanza.is("presence")) return this.onPresence(stanza);
    if (!stanza.is("message")) return;
    if (!carbon) {
      const copy = edits.unwrapCarbon(stanza, this.jid);
      if (copy) return this.dispatch(copy.inner, copy.direction);
      const event = rooms.parseRoomEvent(stanza);
      if (event) {
        // a room message to a MUC/Sub subscriber: shown like one received in the room
        if (event.node === rooms.MUCSUB_NODES.messages && event.inner.is("message")) {
          // kept offline, the wrapper carries the delay: the room message was sent then
          const delay = stanza.getChild("delay", NS.delay);
          if (delay && !event.inner.getChild("delay", NS.delay)) event.inner.append(delay);
          return this.dispatch(event.inner);
        }
        return this.emit("roomEvent", event);
      }
    }
    if (stanza.attrs.type === "error") {
      const error = parseStanzaError(stanza)!;
      return this.emit("messageError", { ...(stanza.attrs.id ? { id: stanza.attrs.id } : {}), from: stanza.attrs.from ?? "", error });
    }
    const result = stanza.getChild("result", NS.mam);
    if (result) {
      const pending = this.pendingMam.get(result.attrs.queryid ?? "");
      const m = pending && core.parseMamResult(stanza, result.attrs.queryid!, pending.archiveBy);
      if (m) pending.messages.push(m);
      return;
    }
    const receipt = core.parseReceipt(stanza);
    if (receipt) this.emit("receipt", receipt);
    const marker = core.parseMarker(stanza);
    if (marker) this.emit("marker", marker);
    const from = stanza.attrs.from ?? "";
    const packet = rp.parseRedPacketMessage(stanza);
    const csEvent = cs.parseCsMessage(stanza);
    const notice = mute.parseMuteNotice(stanza);
    const m = core.parseMessage(stanza, this.own);
    if (carbon) m.carbon = carbon;
    if (m.body === undefined && !packet) {
      // signalling without a body (receipts, markers, notices) is never shown as a message
      if (csEvent) this.emit("cs", { ...csEvent, from });
      if (notice) this.emit("muteNotice", notice);
      return;
    }
    // a receipt again for a repeated message: the sender may have missed the first one
    if (m.receiptRequested && m.id && m.type !== "groupchat" && carbon !== "sent") this.send(core.receiptMessage(from, m.id)).catch(() => {});
    if (this.dedup.isDuplicate(m, this.own)) return;
    if (packet) this.emitPacket(packet);
    if (csEvent) this.emit("cs", { ...csEvent, from, body: m.body! });
    if (notice) this.emit("muteNotice", notice);
    if (m.retracts) return this.emit("retraction", { from, type: m.type, retracts: m.retracts, message: m });
    if (m.replaces) return this.emit("correction", { from, type: m.type, replaces: m.replaces, body: m.body!, message: m });
    // a message that carries a notification is shown through that notification's event
    if (!packet && !notice && !csEvent) this.emit("message", m);
  }

  private emitPacket(e: rp.RedPacketEvent): void {
    if (e.kind === "packet") this.emit("redpacket", e.packet);
    else if (e.kind === "grabbed") this.emit("redpacketGrabbed", e.grabbed);
    else if (e.kind === "finished") this.emit("redpacketFinished", e.finished);
    else this.emit("redpacketRefunded", e.refunded);
  }

  private onPresence(stanza: Element): void {
    const p = core.parsePresence(stanza);
    if (p.type === "subscribe") {
      const message = stanza.getChildText("status");
      this.emit("subscriptionRequest", { from: core.bare(p.from), ...(message ? { message } : {}) });
    }
    this.emit("presence", p);
  }

  // --- chat --------------------------------------------------------------------------------

  /** Send a one-to-one message; resolves with its id (also its origin-id). */
  async sendMessage(to: string, body: string, opts: { id?: string; thread?: string } = {}): Promise<string> {
    const id = opts.id ?? newId();
    await this.send(core.chatMessage({ to, body, id, type: "chat", ...(opts.thread ? { thread: opts.thread } : {}) }));
    return id;
  }

  /**
   * Join a room; resolves when the room sent our own presence (status 110). A room that did not
   * exist is created and, unless `instant: false`, unlocked at once as an instant room with the
   * service's default configuration (XEP-0045 §10.1.2); the result says whether it was created.
   */
  async joinRoom(room: string, nick: string, opts: { password?: string; maxHistory?: number; instant?: boolean } = {}): Promise<{ created: boolean }> {
    const full = `${core.bare(room)}/${nick}`;
    const emitter = this.xmpp as unknown as { on(e: string, l: (st: Element) => void): void; off(e: string, l: (st: Element) => void): void };
    let onStanza: (st: Element) => void = () => {};
    const joined = new Promise<{ created: boolean }>((resolve, reject) => {
      onStanza = (st) => {
        if (!st.is("presence") || st.attrs.from !== full) return;
        const codes = new Set(st.getChild("x", NS.mucUser)?.getChildren("status").map((s) => s.attrs.code) ?? []);
        if (st.attrs.type === "error") reject(parseStanzaError(st));
        else if (codes.has("110")) resolve({ created: codes.has("201") });
        else return;
        emitter.off("stanza", onStanza);
      };
      emitter.on("stanza", onStanza);
    });
    try {
      await this.send(core.mucJoin(room, nick, opts));
    } catch (err) {
      emitter.off("stanza", onStanza);
      throw err;
    }
    const result = await joined;
    if (result.created && opts.instant !== false) await this.iq(core.instantRoom(room));
    return result;
  }

  leaveRoom(room: string, nick: string): Promise<void> {
    return this.send(core.mucLeave(room, nick));
  }

  async sendRoomMessage(room: string, body: string, opts: { id?: string } = {}): Promise<string> {
    const id = opts.id ?? newId();
    await this.send(core.chatMessage({ to: core.bare(room), body, id, type: "groupchat" }));
    return id;
  }

  /** XEP-0308: correct our message `replaces` (its id); resolves with the correction's id. */
  async correctMessage(to: string, replaces: string, body: string, opts: { type?: "chat" | "groupchat"; id?: string } = {}): Promise<string> {
    const id = opts.id ?? newId();
    const type = opts.type ?? "chat";
    await this.send(edits.correctionMessage({ to: type === "groupchat" ? core.bare(to) : to, replaces, body, id, type }));
    return id;
  }

  /** XEP-0424: retract our message (one-to-one: its id; in a room: the room's stanza-id). */
  async retractMessage(to: string, retracts: string, opts: { type?: "chat" | "groupchat"; id?: string } = {}): Promise<string> {
    const id = opts.id ?? newId();
    const type = opts.type ?? "chat";
    await this.send(edits.retractionMessage({ to: type === "groupchat" ? core.bare(to) : to, retracts, id, type }));
    return id;
  }

  /** XEP-0280 on or off for this session (on by default: `carbons` option). */
  async setCarbons(enabled: boolean): Promise<void> {
    await this.iq(enabled ? edits.enableCarbons() : edits.disableCarbons());
  }

  /** XEP-0333 read marker (in a room, `id` is the room's stanza-id). */
  markDisplayed(to: string, id: string, type: "chat" | "groupchat" = "chat"): Promise<void> {
    return this.send(core.markerMessage(type === "groupchat" ? core.bare(to) : to, id, "displayed", type));
  }

  // --- presence and roster -----------------------------------------------------------------

  setPresence(p: core.PresenceOptions = {}): Promise<void> {
    return this.send(core.presence(p));
  }

  /** Add a contact and ask to see their presence, with a message (a friend request). */
  async addContact(jid: string, opts: { name?: string; groups?: string[]; message?: string } = {}): Promise<void> {
    await this.iq(core.rosterSet({ jid, ...opts }));
    await this.send(core.subscribe(jid, opts.message));
  }

  /** Accept a friend request: approve theirs and ask for theirs back. */
  async acceptContact(jid: string): Promise<void> {
    await this.send(core.subscribed(jid));
    await this.send(core.subscribe(jid));
  }

  /** Approve a subscription request only (e.g. the contact's request back after ours was accepted). */
  approveContact(jid: string): Promise<void> {
    return this.send(core.subscribed(jid));
  }

  declineContact(jid: string): Promise<void> {
    return this.send(core.unsubscribed(jid));
  }

  async roster(): Promise<core.RosterItem[]> {
    const res = await this.iq(core.rosterGet());
    return core.parseRosterItems(res.getChild("query", NS.roster)!);
  }

  // --- history -----------------------------------------------------------------------------

  /** One page of the archive with `jid` (a contact, or a room: `room: true`), oldest first. */
  async history(jid: string, opts: core.HistoryOptions & { room?: boolean } = {}): Promise<core.HistoryPage> {
    const queryid = newId();
    const archiveBy = opts.room ? core.bare(jid) : this.own;
    const pending = { messages: [] as core.ArchivedMessage[], archiveBy };
    this.pendingMam.set(queryid, pending);
    try {
      const q = opts.room ? core.mamQuery(queryid, { ...opts, to: core.bare(jid) }) : core.mamQuery(queryid, { ...opts, with: core.bare(jid) });
      const fin = await this.iq(q);
      return core.parseMamFin(fin, pending.messages);
    } finally {
      this.pendingMam.delete(queryid);
    }
  }

  // --- extensions --------------------------------------------------------------------------

  readonly redpacket = {
    balance: async () => rp.parseBalance(await this.iq(rp.balanceRequest(this.domain))),
    /** Send a packet; pass the same clientId when retrying. */
    send: async (s: Omit<rp.SendRedPacket, "clientId"> & { clientId?: string }) =>
      rp.parseSent(await this.iq(rp.sendRequest({ ...s, clientId: s.clientId ?? newId() }, this.domain))),
    open: async (id: string) => rp.parseOpened(await this.iq(rp.openRequest(id, this.domain))),
    details: async (id: string) => rp.parsePacket(await this.iq(rp.packetRequest(id, this.domain))),
    history: async (opts: { max?: number; before?: number } = {}) => rp.parseHistory(await this.iq(rp.historyRequest(opts, this.domain))),
    records: async (opts: { type: "sent" | "received"; max?: number; before?: number }) => rp.parseRecords(await this.iq(rp.recordsRequest(opts, this.domain))),
  };

  readonly mute = {
    /** mute a member of `room` (by nick or bare JID) for `seconds` (none: until lifted) */
    mute: async (room: string, t: mute.Target & { seconds?: number; reason?: string }) => mute.parseMuteResult(await this.iq(mute.muteRequest(room, t))),
    unmute: async (room: string, t: mute.Target) => void (await this.iq(mute.unmuteRequest(room, t))),
    muteAll: async (room: string, reason?: string) => void (await this.iq(mute.muteAllRequest(room, reason))),
    unmuteAll: async (room: string) => void (await this.iq(mute.unmuteAllRequest(room))),
    list: async (room: string) => mute.parseList(await this.iq(mute.listRequest(room))),
    /** our mutes in `room` (and on the platform); moderators may ask about someone else */
    status: async (room: string, about?: Partial<mute.Target>) => mute.parseStatus(await this.iq(mute.statusRequest(room, about))),
    platformMute: async (jid: string, opts: { seconds?: number; reason?: string } = {}) => mute.parseMuteResult(await this.iq(mute.muteRequest(this.domain, { jid, ...opts }))),
    platformUnmute: async (jid: string) => void (await this.iq(mute.unmuteRequest(this.domain, { jid }))),
    audit: async (opts: Parameters<typeof mute.auditRequest>[1] = {}) => mute.parseAudit(await this.iq(mute.auditRequest(this.domain, opts))),
  };

  /** The MUC service of this server (conference.<domain>) unless told otherwise. */
  get mucService(): string {
    return `conference.${this.domain}`;
  }

  /** Room administration (XEP-0045) and MUC/Sub: rooms with members who are not joined. */
  readonly rooms = {
    kick: async (room: string, nick: string, reason?: string) => void (await this.iq(rooms.roleRequest(room, nick, "none", reason))),
    setRole: async (room: string, nick: string, role: rooms.Role, reason?: string) => void (await this.iq(rooms.roleRequest(room, nick, role, reason))),
    ban: async (room: string, jid: string, reason?: string) => void (await this.iq(rooms.affiliationRequest(room, jid, "outcast", reason))),
    setAffiliation: async (room: string, jid: string, affiliation: rooms.Affiliation, reason?: string) =>
      void (await this.iq(rooms.affiliationRequest(room, jid, affiliation, reason))),
    affiliations: async (room: string, affiliation: rooms.Affiliation) => rooms.parseAffiliationList(await this.iq(rooms.affiliationListRequest(room, affiliation))),
    config: async (room: string) => rooms.parseConfig(await this.iq(rooms.configRequest(room))),
    configure: async (room: string, values: Record<string, FormValue | undefined>) => void (await this.iq(rooms.configureRequest(room, values))),
    destroy: async (room: string, reason?: string) => void (await this.iq(rooms.destroyRequest(room, reason))),
    invite: (room: string, jid: string, reason?: string) => this.send(rooms.inviteMessage(room, jid, reason)),
    /** MUC/Sub: become a member who gets the room's messages while not joined (and offline) */
    subscribe: async (room: string, nick: string, nodes?: rooms.MucSubNode[], opts?: { jid?: string; password?: string }) =>
      rooms.parseSubscribed(await this.iq(rooms.subscribeRequest(room, nick, nodes, opts))),
    unsubscribe: async (room: string, jid?: string) => void (await this.iq(rooms.unsubscribeRequest(room, jid))),
    /** the rooms we are subscribed to (`service`: the MUC service, default conference.<domain>) */
    subscriptions: async (service?: string) => rooms.parseSubscriptions(await this.iq(rooms.subscriptionsRequest(service ?? this.mucService))),
    /** a room's subscribers (moderators) */
    subscribers: async (room: string) => rooms.parseSubscriptions(await this.iq(rooms.subscriptionsRequest(core.bare(room)))),
  };

  /** Ad-hoc commands (XEP-0050) that `to` offers us. */
  readonly commands = {
    list: async (to: string) => adhoc.parseCommandList(await this.iq(adhoc.commandListRequest(to))),
    /** one request of a command: execute, or go on in a session with values */
    execute: async (to: string, node: string, opts: Parameters<typeof adhoc.commandRequest>[2] = {}) =>
      adhoc.parseCommandResult(await this.iq(adhoc.commandRequest(to, node, { lang: this.options.lang, ...opts }))),
    /**
     * Run a command to its end: execute it and, when it shows a form, submit `values` (the
     * form's hidden FORM_TYPE is sent back). A form shown again with an error note rejects with
     * a CommandError carrying the server's text.
     */
    run: async (to: string, node: string, values: Record<string, FormValue | undefined> = {}): Promise<adhoc.CommandResult> => {
      let r = await this.commands.execute(to, node);
      if (r.status === "executing" && r.form) {
        const formType = r.form.fields.find((f) => f.var === "FORM_TYPE")?.values[0];
        r = await this.commands.execute(to, node, { action: "complete", ...(r.sessionid ? { sessionid: r.sessionid } : {}), values, ...(formType ? { formType } : {}) });
      }
      if (r.status === "executing" || r.notes.some((n) => n.type === "error")) {
        if (r.status === "executing" && r.sessionid) await this.commands.execute(to, node, { action: "cancel", sessionid: r.sessionid }).catch(() => {});
        throw new adhoc.CommandError(r);
      }
      return r;
    },
  };

  /** Service discovery (XEP-0030). */
  readonly disco = {
    info: async (to: string, node?: string) => upload.parseDiscoInfo(await this.iq(upload.discoInfoRequest(to, node))),
    items: async (to: string, node?: string) => upload.parseDiscoItems(await this.iq(upload.discoItemsRequest(to, node))),
  };

  private uploadService: Promise<upload.UploadService | undefined> | undefined;

  /** HTTP file upload (XEP-0363), when the server offers it. */
  readonly upload = {
    /** the upload service the server announces (disco items of the domain), or undefined */
    service: (): Promise<upload.UploadService | undefined> =>
      (this.uploadService ??= (async () => {
        const items = await this.disco.items(this.domain);
        const infos = [];
        for (const jid of [this.domain, ...items.map((i) => i.jid)]) {
          const info = await this.disco.info(jid).catch(() => undefined);
          if (info) infos.push({ jid, info });
        }
        return upload.findUploadService(infos);
      })().catch((err) => {
        this.uploadService = undefined;
        throw err;
      })),
    /**
     * A slot for one file. UploadNotOfferedError when the server has no upload service;
     * FileTooLargeError over the service's max-file-size (checked before asking, and from the
     * server's refusal); UploadQuotaError when the user's files would pass the quota.
     */
    slot: async (file: { filename: string; size: number; contentType?: string }): Promise<upload.Slot> => {
      const service = await this.upload.service();
      if (!service) throw new upload.UploadNotOfferedError(this.domain);
      if (service.maxSize !== undefined && file.size > service.maxSize) throw new upload.FileTooLargeError(file.size, service.maxSize);
      try {
        return upload.parseSlot(await this.iq(upload.slotRequest(service.jid, file)));
      } catch (err) {
        throw upload.uploadError(err, file.size, service.maxSize);
      }
    },
    /** PUT bytes into a slot (with its headers); UploadHttpError on any status but 200/201 */
    put: async (slot: upload.Slot, body: upload.PutRequest["body"], opts: { contentType?: string; size?: number; signal?: AbortSignal } = {}): Promise<void> => {
      const size = upload.bodySize(body, opts.size);
      const headers = { ...slot.headers, ...(opts.contentType ? { "Content-Type": opts.contentType } : {}) };
      const res = await (this.options.httpPut ?? upload.fetchPut)({ url: slot.put, headers, body, size, ...(opts.signal ? { signal: opts.signal } : {}) });
      if (res.status !== 200 && res.status !== 201) throw new upload.UploadHttpError(res.status, res.statusText ?? "", res.text ?? "");
    },
    /**
     * Upload a file: slot, then PUT. `data` is a Blob (a browser File), bytes (ArrayBuffer,
     * Uint8Array, a Node Buffer) or, in Node, a ReadableStream with its `size`. Resolves with
     * the file as a message carries it (`sendFile`): its URL, name, size, type and, for images,
     * the thumbnail the server made.
     */
    file: async (file: {
      filename: string;
      data: upload.PutRequest["body"];
      size?: number;
      contentType?: string;
      /** an image's size in pixels, when the app knows it (sent as metadata) */
      width?: number;
      height?: number;
      /** cancels the PUT */
      signal?: AbortSignal;
    }): Promise<upload.FileInfo> => {
      const size = upload.bodySize(file.data, file.size);
      const type = file.contentType || (typeof Blob !== "undefined" && file.data instanceof Blob && file.data.type) || undefined;
      const slot = await this.upload.slot({ filename: file.filename, size, ...(type ? { contentType: type } : {}) });
      await this.upload.put(slot, file.data, { size, ...(type ? { contentType: type } : {}), ...(file.signal ? { signal: file.signal } : {}) });
      return {
        url: slot.get,
        name: file.filename,
        size,
        ...(type ? { type } : {}),
        ...(file.width ? { width: file.width } : {}),
        ...(file.height ? { height: file.height } : {}),
        ...(slot.thumbnail ? { thumbnail: slot.thumbnail } : {}),
      };
    },
  };

  /**
   * Send a file (uploaded with `upload.file`, or any http(s) URL) in a message: the URL as the
   * body and XEP-0066 OOB data, with the metadata and thumbnail; resolves with the message's id.
   * `type: "groupchat"` sends to a room.
   */
  async sendFile(to: string, file: upload.FileInfo, opts: { type?: "chat" | "groupchat"; id?: string } = {}): Promise<string> {
    const id = opts.id ?? newId();
    const type = opts.type ?? "chat";
    await this.send(upload.fileMessage({ to: type === "groupchat" ? core.bare(to) : to, file, id, type }));
    return id;
  }

  readonly cs = {
    /** visitor: open a chat with a queue (its JID) by writing to it */
    start: (queue: string, text: string) => this.sendMessage(queue, text),
    /** visitor: close the chat with `queue`; agent: close the chat of session JID `to` */
    close: async (to: string, session?: string) => void (await this.iq(cs.closeRequest(to, session))),
    rate: async (queue: string, score: number, comment?: string, session?: string) => void (await this.iq(cs.rateRequest(queue, score, comment, session))),
    /** agent: in or out of rotation for a queue (or the component, all queues) */
    setAvailable: (queueOrComponent: string, available: boolean) => this.send(cs.availability(queueOrComponent, available)),
    pause: async (to: string) => void (await this.iq(cs.pauseRequest(to))),
    resume: async (to: string) => void (await this.iq(cs.resumeRequest(to))),
    accept: async (to: string, session?: string) => void (await this.iq(cs.acceptRequest(to, session))),
    reject: async (to: string, session?: string) => void (await this.iq(cs.rejectRequest(to, session))),
    transfer: async (to: string, target: { agent: string } | { queue: string }, session?: string) => void (await this.iq(cs.transferRequest(to, target, session))),
    /** agents (one visitor's) and supervisors (all): past chats of a queue, newest first */
    history: async (queue: string, opts: { visitor?: string; max?: number } = {}) => cs.parseSessions(await this.iq(cs.historyRequest(queue, opts))),
    /** the visitor, agents and supervisors: one chat's lines (`component`: cs.<domain>) */
    transcript: async (session: string, component?: string) => cs.parseTranscript(await this.iq(cs.transcriptRequest(component ?? this.csService, session))),
    /** supervisors and admins: waiting, active, served, average wait, each agent's load */
    figures: async (queue: string) => cs.parseFigures(await this.iq(cs.figuresRequest(queue))),
    /** agents and supervisors: messages left while nobody served */
    tickets: async (queue: string) => cs.parseTickets(await this.iq(cs.ticketsRequest(queue))),
    /** server admins: create or change a queue (on cs.<domain> unless `component`) */
    putQueue: async (q: cs.QueueSettings, component?: string) => void (await this.iq(cs.queueRequest(component ?? this.csService, q))),
    deleteQueue: async (name: string, component?: string) => void (await this.iq(cs.deleteQueueRequest(component ?? this.csService, name))),
    /** the queues (settings for admins and members only) */
    queues: async (component?: string) => cs.parseQueues(await this.iq(cs.queuesRequest(component ?? this.csService))),
    /** server admins: agent, supervisor, or "none" to remove */
    setMember: async (queue: string, m: { jid: string; role: cs.MemberRole; nick?: string }) => void (await this.iq(cs.memberRequest(queue, m))),
    /** supervisors and admins: the queue's members with their status */
    members: async (queue: string) => cs.parseMembers(await this.iq(cs.membersRequest(queue))),
  };

  /** The customer-service component of this server (cs.<domain>). */
  get csService(): string {
    return `cs.${this.domain}`;
  }

  /** Room moderation through the room's ad-hoc commands (what an admin screen lists and runs). */
  readonly admin = {
    /** the commands `room` offers us (moderators see mute, unmute, list; room admins mute-all) */
    roomCommands: (room: string) => this.commands.list(core.bare(room)),
    /** mute `member` (nick or JID) through the room's mute command; seconds: one of its durations */
    muteMember: async (room: string, member: string, seconds: number, reason?: string) =>
      notesOf(await this.commands.run(core.bare(room), `${NS.mute}#mute`, { member, seconds, ...(reason ? { reason } : {}) })),
    unmuteMember: async (room: string, member: string) => notesOf(await this.commands.run(core.bare(room), `${NS.mute}#unmute`, { member })),
    mutedMembers: async (room: string) => (await this.commands.run(core.bare(room), `${NS.mute}#list`)).form?.items ?? [],
  };
}

function notesOf(r: adhoc.CommandResult): string[] {
  return r.notes.map((n) => n.text);
}

/** Create a client and log in. */
export async function connect(options: ConnectOptions): Promise<XmppdClient> {
  const c = new XmppdClient(options);
  await c.start();
  return c;
}
