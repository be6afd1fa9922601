// The demo's one store: the SDK client (kept out of Vue's reactivity) and what the screens show.
// Every screen reads `state` and calls the functions below; the SDK's events fill `state`.
import { reactive } from "vue";
import { XmppdClient, MutedError, XmppError, core, uniSocket, uniPut, FileTooLargeError, UploadQuotaError, UploadHttpError, UploadNotOfferedError } from "@xmppd/sdk";

const { bare } = core;

export const state = reactive({
  me: "", // bare JID
  jid: "",
  domain: "",
  online: false,
  /** conversations by JID: { jid, kind: chat|room|cs|session, title, messages: [], unread } */
  chats: {},
  /** the conversation on screen (its messages are read as they come) */
  open: "",
  /** rooms: nick, mute status; by room JID */
  rooms: {},
  /** red packets by id: announce, opened amount, details */
  packets: {},
  /** customer service, visitor side by queue JID: { session, position, agent, closed, rated } */
  service: {},
  /** agent side: offers and sessions by session JID */
  offers: [],
  sessions: {},
  available: false,
  lastError: "",
});

let client;
export const sdk = () => client;

/** Where the server is: ?ws=…&domain=… on the page URL, else this host's port 5280. */
export function serverConfig() {
  const q = new URLSearchParams(typeof location !== "undefined" ? location.search : "");
  const host = typeof location !== "undefined" ? location.hostname : "localhost";
  return {
    service: q.get("ws") || `ws://${host}:5280/xmpp-websocket`,
    domain: q.get("domain") || host,
  };
}

function chat(jid, kind = "chat", title) {
  if (!state.chats[jid]) state.chats[jid] = { jid, kind, title: title || jid.split("@")[0], messages: [], unread: 0, last: 0 };
  return state.chats[jid];
}

function push(jid, kind, msg) {
  const c = chat(jid, kind);
  if (msg.id && c.messages.some((m) => m.id === msg.id)) return;
  // in time order: room history and offline storage hand over older messages late
  const m = { at: Date.now(), ...msg };
  let i = c.messages.length;
  while (i > 0 && c.messages[i - 1].at > m.at) i--;
  c.messages.splice(i, 0, m);
  c.last = Date.now();
  if (!msg.mine && state.open !== jid && !msg.system) c.unread++;
}

export function openChat(jid) {
  state.open = jid;
  if (state.chats[jid]) state.chats[jid].unread = 0;
}

export function chatList() {
  return Object.values(state.chats).sort((a, b) => b.last - a.last);
}

function describe(err) {
  if (err instanceof XmppError) return err.text || err.condition;
  return String(err?.message ?? err);
}

export async function login({ username, password, service, domain }) {
  const cfg = serverConfig();
  // the App build has no browser WebSocket: uni.connectSocket carries the stream there
  // #ifdef APP-PLUS
  const transport = uniSocket(uni);
  // and no fetch: file uploads are PUT by uni.request (uni.uploadFile only POSTs forms)
  const httpPut = uniPut(uni);
  // #endif
  // #ifndef APP-PLUS
  const transport = undefined;
  const httpPut = undefined;
  // #endif
  const c = new XmppdClient({
    service: service || cfg.service,
    domain: domain || cfg.domain,
    username,
    password,
    resource: `demo-${Math.random().toString(36).slice(2, 8)}`,
    // the server's own texts (welcome, place in line, mute notices, refusals) in Chinese
    lang: "zh",
    ...(transport ? { transport } : {}),
    ...(httpPut ? { httpPut } : {}),
  });
  // the events are wired before the login: what offline storage hands over right after it counts
  wire(c);
  await c.start();
  client = c;
  state.jid = client.jid;
  state.me = bare(client.jid);
  state.domain = client.domain;
  state.online = true;
  // rooms we are a member of (MUC/Sub): in the list even before we join them on this device
  for (const sub of await client.rooms.subscriptions().catch(() => [])) {
    state.rooms[sub.jid] = { ...(state.rooms[sub.jid] || {}), nick: sub.nick || state.me.split("@")[0], joined: false };
    chat(sub.jid, "room");
  }
  return client;
}

/** Log out: the stream is closed properly, so the server knows we are gone (and the rooms we
 *  are a member of keep our messages in offline storage) instead of waiting to resume us. */
export async function logout() {
  const c = client;
  client = undefined;
  state.online = false;
  for (const k of Object.keys(state.chats)) delete state.chats[k];
  for (const k of Object.keys(state.rooms)) delete state.rooms[k];
  await c?.stop();
}

function wire(c) {
  c.on("offline", () => (state.online = false));
  c.on("online", () => (state.online = true));
  c.on("message", (m) => {
    if (m.type === "groupchat") {
      const room = bare(m.from);
      const mine = m.nick === state.rooms[room]?.nick;
      const key = m.originId || m.id;
      const c2 = chat(room, "room");
      const local = mine && c2.messages.find((x) => x.id === key);
      if (local) return void (local.sent = true);
      const at = m.delay ? { at: m.delay.getTime() } : {};
      if (!m.nick) return push(room, "room", { system: true, body: m.body, id: m.stanzaId, ...at });
      push(room, "room", { id: key, from: m.nick, body: m.body, mine, stanzaId: m.stanzaId, ...at, ...(m.file ? { file: m.file } : {}) });
      return;
    }
    const peer = m.carbon === "sent" ? bare(m.to) : bare(m.from);
    if (state.sessions[peer]) return push(peer, "session", { id: m.originId || m.id, from: "访客", body: m.body });
    if (state.service[peer]) return push(peer, "cs", { id: m.originId || m.id, from: "客服", body: m.body });
    push(peer, "chat", { id: m.originId || m.id, from: peer.split("@")[0], body: m.body, mine: m.carbon === "sent", ...(m.delay ? { at: m.delay.getTime() } : {}), ...(m.file ? { file: m.file } : {}) });
  });
  c.on("correction", (e) => {
    const jid = e.type === "groupchat" ? bare(e.from) : bare(e.from);
    const msg = state.chats[jid]?.messages.find((x) => x.id === e.replaces);
    if (msg) Object.assign(msg, { body: e.body, edited: true });
  });
  c.on("retraction", (e) => {
    const jid = bare(e.from);
    const msg = state.chats[jid]?.messages.find((x) => x.id === e.retracts || x.stanzaId === e.retracts);
    if (msg) Object.assign(msg, { body: "", retracted: true });
  });
  c.on("messageError", ({ id, from, error }) => {
    const jid = bare(from);
    const msg = state.chats[jid]?.messages.find((x) => x.id === id);
    if (msg) msg.failed = describe(error);
    if (error instanceof MutedError && error.room) setMuted(error.room, error.until ?? null, error.reason);
    state.lastError = describe(error);
  });
  c.on("redpacket", (p) => {
    state.packets[p.id] = { ...(state.packets[p.id] || {}), announce: p };
    const kind = p.type === "groupchat" ? "room" : "chat";
    push(p.from, kind, { id: `rp-${p.id}`, packet: p.id, from: p.sender.split("@")[0], mine: bare(p.sender) === state.me, greeting: p.greeting || "恭喜发财，大吉大利" });
  });
  // to the sender: who opened the packet, and when it is all gone, the best luck
  c.on("redpacketGrabbed", (g) => {
    const where = state.packets[g.id]?.announce?.from;
    if (where) push(where, state.chats[where]?.kind || "room", { system: true, id: `rpg-${g.id}-${g.by}`, body: `${g.by.split("@")[0]} 领取了你的红包` });
  });
  c.on("redpacketFinished", (f) => {
    const where = state.packets[f.id]?.announce?.from;
    if (where) push(where, state.chats[where]?.kind || "room", { system: true, id: `rpf-${f.id}`, body: f.bestLuck ? `红包已被领完，${f.bestLuck.split("@")[0]} 手气最佳` : "红包已被领完" });
  });
  c.on("muteNotice", (n) => {
    if (n.scope !== "room") return;
    const room = bare(n.from);
    const r = state.rooms[room];
    if (!r) return;
    push(room, "room", { system: true, body: n.body || `${n.nick} ${n.action}` });
    const aboutMe = n.nick === r.nick || (n.jid && bare(n.jid) === state.me);
    if (aboutMe && n.action === "mute") setMuted(room, n.until ?? (n.seconds ? new Date(Date.now() + n.seconds * 1000) : null), n.reason);
    if (aboutMe && n.action === "unmute") r.mutedUntil = undefined;
    if (n.action === "mute-all") r.allMuted = true;
    if (n.action === "unmute-all") r.allMuted = false;
  });
  c.on("cs", (e) => {
    if (e.kind === "offer") return void state.offers.push({ session: e.from, visitor: e.visitor, queue: e.queue });
    if (e.kind === "assigned") {
      state.sessions[e.from] = { visitor: e.visitor, queue: e.queue, closed: false };
      chat(e.from, "session", `访客 ${e.visitor.split("@")[0]}`);
      for (const line of e.transcript) push(e.from, "session", { from: line.role === "visitor" ? "访客" : line.role, body: line.text });
      return;
    }
    const s = state.sessions[e.from];
    if (s) {
      if (e.kind === "closed") s.closed = true;
      push(e.from, "session", { system: true, body: e.body || e.kind });
      return;
    }
    const v = state.service[e.from] || (state.service[e.from] = { position: 0, agent: "", closed: false, rated: 0 });
    if (e.kind === "welcome") v.session = e.session;
    if (e.kind === "position") v.position = e.n;
    if (e.kind === "agent") Object.assign(v, { agent: e.nick, position: 0 });
    if (e.kind === "closed") v.closed = true;
    if (e.body) push(e.from, "cs", { system: true, body: e.body });
  });
}

function setMuted(room, until, reason) {
  const r = state.rooms[room] || (state.rooms[room] = { nick: "" });
  r.mutedUntil = until ? until.getTime() : Infinity;
  r.muteReason = reason || "";
}

let seq = 0;
const localId = () => `demo-${Date.now().toString(36)}-${(seq++).toString(36)}`;

export async function sendChat(to, body) {
  const id = localId();
  const kind = state.chats[to]?.kind || "chat";
  push(to, kind, { id, from: "我", body, mine: true });
  await client.sendMessage(to, body, { id });
}

// --- files ---------------------------------------------------------------------------------

function describeUpload(err) {
  if (err instanceof FileTooLargeError) return `文件太大（最大 ${(err.maxSize / 1024 / 1024).toFixed(1)} MB）`;
  if (err instanceof UploadQuotaError) return `存储空间已满：${err.text || ""}`;
  if (err instanceof UploadHttpError) return `上传失败（HTTP ${err.status}）`;
  if (err instanceof UploadNotOfferedError) return "服务器不支持发送文件";
  return describe(err);
}

/** A file from uni.chooseFile as the SDK uploads it. */
async function readPicked(f) {
  // #ifdef APP-PLUS
  // the App hands over a path: read it into an ArrayBuffer with plus.io (uniPut PUTs that)
  const data = await new Promise((resolve, reject) =>
    plus.io.resolveLocalFileSystemURL(f.path, (entry) => entry.file((file) => {
      const reader = new plus.io.FileReader();
      reader.onloadend = (e) => resolve(uni.base64ToArrayBuffer(String(e.target.result).split(",")[1]));
      reader.onerror = reject;
      reader.readAsDataURL(file);
    }, reject), reject));
  const name = f.name || f.path.slice(f.path.lastIndexOf("/") + 1);
  return { filename: name, data, contentType: f.type || undefined };
  // #endif
  // #ifndef APP-PLUS
  // H5: the File itself (a Blob); an image's size in pixels goes with it as metadata
  let dims = {};
  if (/^image\//.test(f.type) && typeof createImageBitmap === "function") {
    try {
      const bitmap = await createImageBitmap(f);
      dims = { width: bitmap.width, height: bitmap.height };
      bitmap.close();
    } catch {}
  }
  return { filename: f.name, data: f, contentType: f.type || undefined, ...dims };
  // #endif
}

/** Upload a picked file and send it (OOB + metadata + thumbnail) to a chat or a room. */
export async function sendFile(to, picked, kind = "chat") {
  const id = localId();
  const room = kind === "room";
  push(to, kind, { id, from: room ? state.rooms[to]?.nick : "我", mine: true, uploading: true, body: "", file: { name: picked.name || "file", size: picked.size, type: picked.type } });
  const msg = state.chats[to].messages.find((x) => x.id === id);
  try {
    const file = await client.upload.file(await readPicked(picked));
    Object.assign(msg, { file, body: file.url, uploading: false });
    await client.sendFile(to, file, { id, type: room ? "groupchat" : "chat" });
  } catch (err) {
    Object.assign(msg, { uploading: false, failed: describeUpload(err) });
  }
}

/** What the chat list shows for a message with a file. */
export function fileLabel(file) {
  return /^image\//.test(file.type || "") ? "[图片]" : `[文件] ${file.name}`;
}

/** Correct our message `id` in a one-to-one chat (XEP-0308): the new text on both sides. */
export async function correct(to, id, body) {
  await client.correctMessage(to, id, body);
  const msg = state.chats[to]?.messages.find((x) => x.id === id);
  if (msg) Object.assign(msg, { body, edited: true });
}

/** Retract our message `id` in a one-to-one chat (XEP-0424): gone on both sides. */
export async function retract(to, id) {
  await client.retractMessage(to, id);
  const msg = state.chats[to]?.messages.find((x) => x.id === id);
  if (msg) Object.assign(msg, { body: "", retracted: true });
}

export async function joinRoom(room, nick) {
  room = bare(room);
  const r = state.rooms[room] || (state.rooms[room] = {});
  r.nick = nick;
  chat(room, "room", room.split("@")[0]);
  await client.joinRoom(room, nick);
  r.joined = true;
  // a member who gets the room's messages while away (MUC/Sub): they wait in offline storage
  await client.rooms.subscribe(room, nick).catch(() => {});
  await refreshMute(room);
}

export async function refreshMute(room) {
  const s = await client.mute.status(room);
  const r = state.rooms[room];
  const m = s.room;
  r.mutedUntil = m ? (m.until ? m.until.getTime() : m.remaining ? Date.now() + m.remaining * 1000 : Infinity) : undefined;
  r.muteReason = m?.reason || "";
  r.allMuted = !!s.all;
}

export async function sendRoom(room, body) {
  const id = localId();
  push(room, "room", { id, from: state.rooms[room]?.nick, body, mine: true });
  await client.sendRoomMessage(room, body, { id });
}

export async function sendPacket(to, { total, count, greeting }) {
  return client.redpacket.send({ to, kind: "lucky", total, count, greeting });
}

/** Open a packet (when not yet opened by us) and read its grab list. */
export async function openPacket(id) {
  const p = state.packets[id] || (state.packets[id] = {});
  try {
    const o = await client.redpacket.open(id);
    p.mine = o.amount;
  } catch (err) {
    if (!(err instanceof XmppError)) throw err;
    p.refused = err.app?.name || err.condition;
    if (err.app?.name === "already-grabbed" && err.app.attrs.amount) p.mine = Number(err.app.attrs.amount);
  }
  p.details = await client.redpacket.details(id);
  const own = p.details.grabs.find((g) => bare(g.by) === state.me);
  if (own) p.mine = own.amount;
  return p;
}

export const balance = () => client.redpacket.balance();

// --- customer service -----------------------------------------------------------------------

export async function startService(queue, text) {
  state.service[queue] = state.service[queue] || { position: 0, agent: "", closed: false, rated: 0 };
  chat(queue, "cs", "在线客服");
  push(queue, "cs", { id: localId(), from: "我", body: text, mine: true });
  await client.cs.start(queue, text);
}

export async function closeService(queue) {
  await client.cs.close(queue);
}

export async function rateService(queue, score, comment) {
  await client.cs.rate(queue, score, comment);
  state.service[queue].rated = score;
}

export async function setAvailable(queue, on) {
  await client.cs.setAvailable(queue, on);
  state.available = on;
}

export async function acceptOffer(offer) {
  await client.cs.accept(offer.session);
  state.offers.splice(state.offers.indexOf(offer), 1);
}

export async function rejectOffer(offer) {
  await client.cs.reject(offer.session);
  state.offers.splice(state.offers.indexOf(offer), 1);
}

export async function closeSession(session) {
  await client.cs.close(session);
}

// --- room admin ---------------------------------------------------------------------------

export const roomCommands = (room) => client.admin.roomCommands(room);
export const muteMember = (room, member, seconds, reason) => client.admin.muteMember(room, member, seconds, reason);
export const unmuteMember = (room, member) => client.admin.unmuteMember(room, member);
export const mutedMembers = (room) => client.admin.mutedMembers(room);

export function fen(n) {
  return (n / 100).toFixed(2);
}

export function left(until, now) {
  if (until === Infinity) return "直到解除";
  const s = Math.max(0, Math.floor((until - now) / 1000));
  return `${String(Math.floor(s / 60)).padStart(2, "0")}:${String(s % 60).padStart(2, "0")}`;
}
