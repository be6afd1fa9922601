// Integration scenarios of @xmppd/sdk against a real xmppd, run by tests/interop/test_sdk_js.py.
// Usage: node scenarios.mjs <scenario> <ws-url> <domain> <password>
// The package is imported by its own name, so this runs the BUILT SDK through its `exports`.
// Prints JSON lines: facts the test checks, then {"event": "done"}; {"event": "error"} on failure.
import { WebSocket } from "ws";
import { createHash } from "node:crypto";
import { connect, webSocket, uniSocket, uniPut, xml, upload, MutedError, XmppError, NS, CommandError, UploadNotOfferedError, FileTooLargeError, UploadQuotaError, UploadHttpError } from "@xmppd/sdk";
import { makePng } from "../png.mjs";

const [scenario, service, domain, password] = process.argv.slice(2);
const emit = (event, fields = {}) => process.stdout.write(JSON.stringify({ event, ...fields }) + "\n");
setTimeout(() => {
  emit("error", { message: "watchdog: scenario still running after 60 s" });
  process.exit(3);
}, 60_000).unref();

const clients = [];
async function login(username, extra = {}) {
  const c = await connect({ service, domain, username, password, resource: "sdk", transport: webSocket(WebSocket), ...extra });
  clients.push(c);
  c.on("error", (err) => emit("client-error", { who: username, message: String(err?.message ?? err) }));
  // SDK_TRACE=1: every stanza in and out on stderr (the test prints stderr when a scenario fails)
  if (process.env.SDK_TRACE) {
    c.xmpp.on("element", (el) => process.stderr.write(`${username} <- ${el}\n`));
    c.xmpp.on("send", (el) => process.stderr.write(`${username} -> ${el}\n`));
  }
  return c;
}

/** The next `n` events of a kind, or fail naming what was missing. */
function collect(client, event, n, filter = () => true, timeout = 10_000) {
  const got = [];
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${event}: ${got.length} of ${n} within ${timeout} ms`)), timeout);
    const off = client.on(event, (p) => {
      if (!filter(p)) return;
      got.push(p);
      if (got.length === n) {
        clearTimeout(timer);
        off();
        resolve(got);
      }
    });
  });
}

const ROOM = `party@conference.${domain}`;

// uniapp's uni.connectSocket, as documented (a SocketTask with onOpen/onMessage/onClose/onError,
// send({data}), close({code, reason})), played by the ws package: what an App build gets.
function uniOverWs() {
  const calls = { connectSocket: 0, send: 0, messages: 0 };
  return {
    calls,
    connectSocket({ url, protocols, complete }) {
      calls.connectSocket++;
      const ws = new WebSocket(url, protocols);
      const task = {
        onOpen: (f) => ws.on("open", () => f({})),
        onMessage: (f) => ws.on("message", (data) => {
          // App builds may hand over an ArrayBuffer: every second frame comes as one
          const bytes = new Uint8Array(data);
          f({ data: calls.messages++ % 2 ? bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) : data.toString() });
        }),
        onClose: (f) => ws.on("close", (code, reason) => f({ code, reason: reason.toString() })),
        onError: (f) => ws.on("error", (err) => f({ errMsg: String(err.message) })),
        send: ({ data, fail }) => {
          calls.send++;
          ws.send(data, (err) => err && fail?.({ errMsg: err.message }));
        },
        close: ({ code, reason } = {}) => ws.close(code, reason),
      };
      complete?.();
      return task;
    },
  };
}

const scenarios = {
  async chat() {
    const alice = await login("alice");
    const bob = await login("bob");
    emit("online", { alice: alice.jid, bob: bob.jid });
    // friend request with a message, accepted
    const request = collect(bob, "subscriptionRequest", 1);
    const bobOnline = collect(alice, "presence", 1, (p) => p.from.startsWith(`bob@${domain}/`) && p.type === "available");
    await alice.addContact(`bob@${domain}`, { name: "Bob", message: "Hi Bob, it's Alice" });
    const [req] = await request;
    emit("friend-request", req);
    const back = collect(alice, "subscriptionRequest", 1);
    await bob.acceptContact(req.from);
    await bobOnline;
    // bob asked back (acceptContact): alice approves, and both see each other
    await alice.approveContact((await back)[0].from);
    let roster = await alice.roster();
    for (let i = 0; i < 50 && roster[0]?.subscription !== "both"; i++) {
      await new Promise((r) => setTimeout(r, 100));
      roster = await alice.roster();
    }
    emit("roster", { items: roster.map((i) => [i.jid, i.name ?? null, i.subscription]) });
    // one-to-one messages with receipts and a read marker
    const inbox = collect(bob, "message", 3);
    const receipts = collect(alice, "receipt", 3);
    const ids = [];
    for (const text of ["one", "two", "three ✓"]) ids.push(await alice.sendMessage(`bob@${domain}`, text));
    const got = await inbox;
    emit("received", { bodies: got.map((m) => m.body), originIds: got.map((m) => m.originId), stanzaIds: got.map((m) => m.stanzaId ?? null) });
    emit("receipts", { ids: (await receipts).map((r) => r.id).sort(), sent: [...ids].sort() });
    const marker = collect(alice, "marker", 1);
    await bob.markDisplayed(got[2].from, got[2].id);
    emit("marker", (await marker)[0]);
    // archive pages of 2, newest page first, until the archive is complete
    const pages = [];
    let before;
    for (;;) {
      const page = await alice.history(`bob@${domain}`, { max: 2, ...(before ? { before } : {}) });
      pages.unshift(page.messages.map((m) => m.body));
      if (page.complete || !page.first || pages.length > 10) break;
      before = page.first;
    }
    emit("history", { pages, bodies: pages.flat() });
  },

  async redpacket() {
    const alice = await login("alice");
    const bob = await login("bob");
    const carol = await login("carol");
    const created = await alice.joinRoom(ROOM, "Alice");
    await bob.joinRoom(ROOM, "Bob");
    await carol.joinRoom(ROOM, "Carol");
    emit("room", created);
    const before = await alice.redpacket.balance();
    emit("balance", before);
    const announced = Promise.all([bob, carol].map((c) => collect(c, "redpacket", 1)));
    const grabbed = collect(alice, "redpacketGrabbed", 2);
    const finished = collect(alice, "redpacketFinished", 1);
    const sent = await alice.redpacket.send({ to: ROOM, kind: "lucky", total: 300, count: 2, greeting: "恭喜发财", clientId: "sdk-r1" });
    const again = await alice.redpacket.send({ to: ROOM, kind: "lucky", total: 300, count: 2, greeting: "恭喜发财", clientId: "sdk-r1" });
    emit("sent", { id: sent.id, balance: sent.balance, total: sent.total, retry: again.retry, sameId: again.id === sent.id });
    const [[toBob], [toCarol]] = await announced;
    emit("announced", { bob: toBob.id, carol: toCarol.id, greeting: toBob.greeting, count: toBob.count, from: toBob.from });
    const opened = [await bob.redpacket.open(sent.id), await carol.redpacket.open(sent.id)];
    emit("opened", { amounts: opened.map((o) => o.amount), remaining: opened.map((o) => o.remaining) });
    try {
      await bob.redpacket.open(sent.id);
      emit("second-open", { refused: false });
    } catch (e) {
      emit("second-open", { refused: e instanceof XmppError, condition: e.condition, app: e.app?.name, amount: Number(e.app?.attrs.amount) });
    }
    emit("grabbed", { by: (await grabbed).map((g) => g.by.split("@")[0]).sort() });
    const [fin] = await finished;
    const details = await alice.redpacket.details(sent.id);
    emit("details", { status: details.status, grabs: details.grabs.map((g) => [g.by.split("@")[0], g.amount]), bestLuck: details.bestLuck, finishedBest: fin.bestLuck, total: details.total });
    const ledger = await alice.redpacket.history({ max: 5 });
    emit("ledger", { kinds: ledger.entries.map((e) => e.kind) });
  },

  async mute() {
    const alice = await login("alice");
    const bob = await login("bob");
    await alice.joinRoom(ROOM, "Alice");
    await bob.joinRoom(ROOM, "Bob");
    const notice = collect(bob, "muteNotice", 1);
    const item = await alice.mute.mute(ROOM, { nick: "Bob", seconds: 600, reason: "spam" });
    emit("muted", { jid: item.jid, remaining: item.remaining, reason: item.reason });
    const [n] = await notice;
    emit("notice", { action: n.action, nick: n.nick, seconds: n.seconds, body: n.body });
    const status = await bob.mute.status(ROOM);
    emit("status", { muted: status.muted, remaining: status.room?.remaining ?? null });
    const refused = collect(bob, "messageError", 1);
    const id = await bob.sendRoomMessage(ROOM, "can I speak?");
    const [{ id: errId, error }] = await refused;
    emit("message-refused", { sameId: errId === id, muted: error instanceof MutedError, kind: error.kind, room: error.room, condition: error.condition, type: error.type, text: error.text, reason: error.reason, until: error.until?.toISOString() ?? null });
    try {
      await bob.redpacket.send({ to: ROOM, kind: "lucky", total: 10, count: 1, clientId: "muted-1" });
      emit("packet-refused", { refused: false });
    } catch (e) {
      emit("packet-refused", { refused: true, muted: e instanceof MutedError, kind: e.kind, condition: e.condition });
    }
    await alice.mute.unmute(ROOM, { nick: "Bob" });
    const after = await bob.mute.status(ROOM);
    emit("unmuted", { muted: after.muted });
  },

  async cs() {
    const CS = `cs.${domain}`;
    const QUEUE = `support@${CS}`;
    const boss = await login("boss");
    // queue administration is not in the SDK yet: the lower-level iq() with xml() does it
    await boss.iq(xml("iq", { type: "set", to: CS }, xml("queue", { xmlns: NS.cs, name: "support", "display-name": "Support", "offer-timeout": "30" })));
    await boss.iq(xml("iq", { type: "set", to: QUEUE }, xml("member", { xmlns: NS.cs, jid: `alice@${domain}`, role: "agent", nick: "Alice" })));
    const alice = await login("alice");
    await alice.cs.setAvailable(QUEUE, true);
    // a round trip after the presence: the service has seen it before the visitor comes
    await alice.iq(xml("iq", { type: "get", to: domain }, xml("query", { xmlns: "http://jabber.org/protocol/disco#info" })));
    const vera = await login("vera");
    const veraEvents = [];
    vera.on("cs", (e) => veraEvents.push(e.kind));
    const welcome = vera.once("cs", (e) => e.kind === "welcome");
    const offer = alice.once("cs", (e) => e.kind === "offer");
    await vera.cs.start(QUEUE, "My order is late");
    const w = await welcome;
    emit("welcome", { session: w.session, from: w.from, hasText: w.body.length > 0 });
    const o = await offer;
    emit("offer", { session: o.session, from: o.from, visitor: o.visitor, timeout: o.timeout });
    const assigned = alice.once("cs", (e) => e.kind === "assigned");
    const agent = vera.once("cs", (e) => e.kind === "agent");
    await alice.cs.accept(o.from);
    const a = await assigned;
    emit("assigned", { session: a.session, visitor: a.visitor, transcript: a.transcript.map((l) => [l.role, l.text]) });
    const j = await agent;
    emit("agent", { session: j.session, nick: j.nick, jid: j.jid ?? null });
    const relayed = vera.once("message", (m) => m.from === QUEUE);
    await alice.sendMessage(o.from, "Let me check");
    emit("relayed", { body: (await relayed).body });
    const answered = alice.once("message", (m) => m.from === o.from);
    await vera.sendMessage(QUEUE, "Thanks");
    emit("answered", { body: (await answered).body });
    const closedV = vera.once("cs", (e) => e.kind === "closed");
    const closedA = alice.once("cs", (e) => e.kind === "closed");
    await vera.cs.close(QUEUE);
    emit("closed", { visitor: (await closedV).reason, agent: (await closedA).reason });
    await vera.cs.rate(QUEUE, 5, "quick and kind");
    try {
      await vera.cs.rate(QUEUE, 4);
      emit("rated-again", { refused: false });
    } catch (e) {
      emit("rated-again", { refused: e instanceof XmppError, condition: e.condition });
    }
    emit("visitor-events", { kinds: veraEvents });
  },

  async uni() {
    const uni = uniOverWs();
    const alice = await login("alice", { transport: uniSocket(uni) });
    const bob = await login("bob");
    const inbox = collect(alice, "message", 1);
    await bob.sendMessage(`alice@${domain}`, "hello uniapp");
    const [m] = await inbox;
    const reply = collect(bob, "message", 1);
    await alice.sendMessage(`bob@${domain}`, "hello from uni.connectSocket");
    emit("uni", { jid: alice.jid, got: m.body, replied: (await reply)[0].body, calls: uni.calls });
  },

  async resume() {
    const alice = await login("alice");
    const bob = await login("bob");
    const seen = [];
    bob.on("message", (m) => seen.push(m.body));
    const first = collect(bob, "message", 1);
    await alice.sendMessage(`bob@${domain}`, "before");
    await first;
    // the network goes: the TCP connection dies without a stream close
    const resumed = bob.once("resumed");
    const bobSocket = bob.xmpp.socket.socket;
    bobSocket.terminate();
    emit("dropped", { smEnabled: bob.xmpp.streamManagement.id !== "" });
    for (const text of ["during 1", "during 2"]) await alice.sendMessage(`bob@${domain}`, text);
    await resumed;
    emit("resumed", { jid: bob.jid });
    const rest = collect(bob, "message", 1, (m) => m.body === "last");
    // a retried send (an app that did not see its send complete): same id, a new archive id
    const id = await alice.sendMessage(`bob@${domain}`, "after");
    await alice.sendMessage(`bob@${domain}`, "after", { id });
    await alice.sendMessage(`bob@${domain}`, "last");
    await rest;
    emit("seen", { bodies: seen });
  },
  async csagent() {
    const CS = `cs.${domain}`;
    const QUEUE = `help@${CS}`;
    const boss = await login("boss");
    await boss.cs.putQueue({ name: "help", displayName: "Help", offerTimeout: 30 });
    for (const [name, nick] of [["alice", "Alice"], ["dan", "Dan"]]) await boss.cs.setMember(QUEUE, { jid: `${name}@${domain}`, role: "agent", nick });
    const agents = { alice: await login("alice"), dan: await login("dan") };
    for (const a of Object.values(agents)) {
      await a.cs.setAvailable(QUEUE, true);
      await a.disco.info(domain); // a round trip after the presence
    }
    const firstOffer = new Promise((resolve) => {
      for (const [name, a] of Object.entries(agents)) a.once("cs", (e) => e.kind === "offer").then((e) => resolve([name, e]));
    });
    const vera = await login("vera");
    await vera.cs.start(QUEUE, "Where is my parcel?");
    const [first, offer] = await firstOffer;
    const second = first === "alice" ? "dan" : "alice";
    // the first agent rejects: the offer moves on to the other, who accepts
    const secondOffer = agents[second].once("cs", (e) => e.kind === "offer");
    await agents[first].cs.reject(offer.from);
    const o2 = await secondOffer;
    const assigned = agents[second].once("cs", (e) => e.kind === "assigned");
    await agents[second].cs.accept(o2.from);
    await assigned;
    // and hands the chat over to the first agent
    const handedOver = agents[second].once("cs", (e) => e.kind === "closed");
    const takenOver = agents[first].once("cs", (e) => e.kind === "assigned");
    await agents[second].cs.transfer(o2.from, { agent: `${first}@${domain}` });
    const closed = await handedOver;
    const took = await takenOver;
    emit("handover", { sameSession: offer.session === o2.session && took.session === o2.session, reason: closed.reason, lines: took.transcript.map((l) => l.text) });
    // the transferring agent cannot act on the chat any more: a typed error with the server's text
    let again;
    try {
      await agents[second].cs.close(o2.from);
      again = { refused: false };
    } catch (e) {
      again = { refused: e instanceof XmppError, condition: e.condition, hasText: !!e.text };
    }
    const closedV = vera.once("cs", (e) => e.kind === "closed");
    await agents[first].cs.close(o2.from);
    emit("closed", { visitor: (await closedV).reason, again });
    const figures = await boss.cs.figures(QUEUE);
    emit("agent-calls", {
      history: (await agents[first].cs.history(QUEUE, { visitor: `vera@${domain}` })).map((x) => [x.id === o2.session, x.visitor, x.state, x.reason, x.agent === `${first}@${domain}`]),
      transcript: (await agents[first].cs.transcript(o2.session)).map((l) => [l.role, l.text]),
      figures: { waiting: figures.waiting, active: figures.active, served: figures.served, agents: figures.agents.map((a) => a.nick).sort() },
      tickets: await agents[first].cs.tickets(QUEUE),
      members: (await boss.cs.members(QUEUE)).map((m) => [m.jid, m.role, m.nick]),
      queues: (await vera.cs.queues()).map((q) => q.name),
    });
    let notAllowed;
    try {
      await vera.cs.figures(QUEUE);
    } catch (e) {
      notAllowed = { xmppError: e instanceof XmppError, condition: e.condition };
    }
    emit("visitor-figures", notAllowed ?? { refused: false });
  },

  async edits() {
    const alice = await login("alice");
    const phone = await login("alice", { resource: "phone" });
    const bob = await login("bob");
    const BOB = `bob@${domain}`;
    const got = collect(bob, "message", 1);
    const id = await alice.sendMessage(BOB, "teh meeting is at 3");
    const [m] = await got;
    const corrected = bob.once("correction");
    await alice.correctMessage(BOB, id, "the meeting is at 3");
    const c = await corrected;
    emit("correction", { replaces: c.replaces, original: m.originId, body: c.body, sameId: c.replaces === m.id });
    const retracted = bob.once("retraction");
    const noMessage = [];
    const off = bob.on("message", (x) => noMessage.push(x.body));
    await alice.retractMessage(BOB, id);
    const r = await retracted;
    off();
    emit("retraction", { retracts: r.retracts, original: id, shownAsMessage: noMessage });
    // carbons: what alice's phone sends shows on her web client as sent, to bob
    const carbon = collect(alice, "message", 1, (x) => x.carbon === "sent");
    const received = collect(alice, "message", 1, (x) => x.carbon === "received");
    await phone.sendMessage(BOB, "sent from the phone");
    const [s] = await carbon;
    // bob answers the phone's full JID: the web client gets a received carbon
    await bob.sendMessage(`alice@${domain}/phone`, "to the phone");
    const [rc] = await received;
    emit("carbons", { sent: [s.carbon, s.to, s.body], received: [rc.carbon, rc.from.split("/")[0], rc.body] });
    // corrections and retractions are in the archive: the history shows what happened
    const page = await bob.history(`alice@${domain}`, { max: 10 });
    emit("history", { replaces: page.messages.filter((x) => x.replaces).map((x) => x.replaces), retracts: page.messages.filter((x) => x.retracts).map((x) => x.retracts), id });
  },

  async rooms() {
    const alice = await login("alice");
    const bob = await login("bob");
    const ROOMJID = `admin@conference.${domain}`;
    await alice.joinRoom(ROOMJID, "Alice");
    // configuration: read the form, rename, read it back
    const form = await alice.rooms.config(ROOMJID);
    await alice.rooms.configure(ROOMJID, { "muc#roomconfig_roomname": "管理测试", "muc#roomconfig_persistentroom": true });
    const again = await alice.rooms.config(ROOMJID);
    const field = (f, v) => f.fields.find((x) => x.var === v)?.values;
    emit("config", { hasForm: form.fields.length > 3, name: field(again, "muc#roomconfig_roomname"), persistent: field(again, "muc#roomconfig_persistentroom") });
    // kick: bob is removed with status 307
    await bob.joinRoom(ROOMJID, "Bob");
    const kicked = bob.once("presence", (p) => p.type === "unavailable" && p.from === `${ROOMJID}/Bob`);
    const kickedStanza = new Promise((resolve) => bob.xmpp.on("stanza", (st) => st.is("presence") && st.attrs.type === "unavailable" && st.attrs.from === `${ROOMJID}/Bob` && resolve(st)));
    await alice.rooms.kick(ROOMJID, "Bob", "flood");
    await kicked;
    const codes = (await kickedStanza).getChild("x", NS.mucUser).getChildren("status").map((st) => st.attrs.code);
    emit("kicked", { codes });
    // a non-moderator's kick is a typed error with the server's text
    await bob.joinRoom(ROOMJID, "Bob");
    try {
      await bob.rooms.kick(ROOMJID, "Alice");
      emit("bob-kick", { refused: false });
    } catch (e) {
      emit("bob-kick", { refused: e instanceof XmppError, condition: e.condition, hasText: !!e.text });
    }
    // ban: bob is an outcast and cannot come back
    await alice.rooms.ban(ROOMJID, `bob@${domain}`, "spam");
    const outcasts = await alice.rooms.affiliations(ROOMJID, "outcast");
    let rejoin;
    try {
      await bob.joinRoom(ROOMJID, "Bob");
      rejoin = { refused: false };
    } catch (e) {
      rejoin = { refused: e instanceof XmppError, condition: e.condition };
    }
    emit("banned", { outcasts: outcasts.map((i) => [i.jid, i.affiliation]), rejoin });
    await alice.rooms.setAffiliation(ROOMJID, `bob@${domain}`, "member");
    emit("members", { members: (await alice.rooms.affiliations(ROOMJID, "member")).map((i) => i.jid) });
  },

  async mucsub() {
    const alice = await login("alice");
    let carol = await login("carol");
    const ROOMJID = `sub@conference.${domain}`;
    await alice.joinRoom(ROOMJID, "Alice");
    // carol is a member without joining: she subscribes, then goes offline
    const sub = await carol.rooms.subscribe(ROOMJID, "Carol", ["messages", "subject"]);
    const live = collect(carol, "message", 1);
    await alice.sendRoomMessage(ROOMJID, "while you are here");
    const [l] = await live;
    emit("live", { body: l.body, from: l.from, type: l.type, nodes: sub.nodes });
    emit("subscriptions", { rooms: (await carol.rooms.subscriptions()).map((s) => [s.jid, s.nick]), subscribers: (await alice.rooms.subscribers(ROOMJID)).map((s) => s.jid) });
    await carol.stop();
    await alice.sendRoomMessage(ROOMJID, "while you were away");
    await alice.rooms.subscribers(ROOMJID); // a round trip: the message was handled
    carol = await login("carol", { resource: "back" });
    const offline = await collect(carol, "message", 1, (m) => m.body === "while you were away");
    emit("offline", { body: offline[0].body, from: offline[0].from, delayed: !!offline[0].delay });
    await carol.rooms.unsubscribe(ROOMJID);
    emit("unsubscribed", { rooms: (await carol.rooms.subscriptions()).length });
  },

  async adhoc() {
    const alice = await login("alice");
    const bob = await login("bob");
    await alice.joinRoom(ROOM, "Alice");
    await bob.joinRoom(ROOM, "Bob");
    const cmds = await alice.admin.roomCommands(ROOM);
    const bobCmds = await bob.admin.roomCommands(ROOM);
    const notice = bob.once("muteNotice");
    const notes = await alice.admin.muteMember(ROOM, "Bob", 600, "spam");
    await notice;
    const status = await bob.mute.status(ROOM);
    const listed = await alice.admin.mutedMembers(ROOM);
    let wrong;
    try {
      await alice.admin.muteMember(ROOM, "nobody-here", 600);
    } catch (e) {
      wrong = { commandError: e instanceof CommandError, message: e.message };
    }
    let forbidden;
    try {
      await bob.admin.muteMember(ROOM, "Alice", 600);
    } catch (e) {
      forbidden = { xmppError: e instanceof XmppError, condition: e.condition };
    }
    const unmuted = await alice.admin.unmuteMember(ROOM, `bob@${domain}`);
    emit("adhoc", {
      nodes: cmds.map((c) => c.node), bobNodes: bobCmds.map((c) => c.node), notes, muted: status.muted, remaining: status.room?.remaining,
      listed: listed.map((r) => [r.nick?.[0], r.jid?.[0], r.reason?.[0]]), wrong, forbidden, unmuted, after: (await bob.mute.status(ROOM)).muted,
    });
    // file upload: this server offers none, said before anything is sent
    const service = await alice.upload.service();
    let slot;
    try {
      await alice.upload.slot({ filename: "photo.jpg", size: 1024, contentType: "image/jpeg" });
      slot = { refused: false };
    } catch (e) {
      slot = { notOffered: e instanceof UploadNotOfferedError, message: e.message };
    }
    emit("upload", { service: service ?? null, slot });
  },

  // XEP-0363 against the server's upload service (max_size 100000, quota 200000 in the test)
  async upload() {
    const alice = await login("alice");
    const bob = await login("bob");
    const BOB = `bob@${domain}`;
    const up = await alice.upload.service();
    const sha = (b) => createHash("sha256").update(b).digest("hex");
    const received = collect(bob, "message", 4, (m) => !!m.file && m.from.startsWith("alice@"));
    // an image from bytes (a Node Buffer): the slot names its thumbnail
    const png = makePng(320, 240);
    const image = await alice.upload.file({ filename: "照片 1.png", data: png, contentType: "image/png", width: 320, height: 240 });
    const imageId = await alice.sendFile(BOB, image);
    // and to carol, a slixmpp client (the test reads its OOB data)
    await alice.sendFile(`carol@${domain}`, image);
    // a Blob (what a browser's File is), its type taken from the Blob
    const text = await alice.upload.file({ filename: "notes.txt", data: new Blob(["hello file\n"], { type: "text/plain" }) });
    await alice.sendFile(BOB, text);
    // a ReadableStream (Node) of a given size
    const bytes = Buffer.from("streamed ".repeat(1000));
    const stream = new ReadableStream({ start(c) { c.enqueue(bytes.subarray(0, 4000)); c.enqueue(bytes.subarray(4000)); c.close(); } });
    const streamed = await alice.upload.file({ filename: "stream.bin", data: stream, size: bytes.length, contentType: "application/octet-stream" });
    await alice.sendFile(BOB, streamed);
    // the App build's PUT: uni.request (played here by fetch, as uniapp documents it)
    const uni = { request: ({ url, method, header, data, success, fail }) => fetch(url, { method, headers: header, body: data }).then(async (r) => success({ statusCode: r.status, data: await r.text() }), (e) => fail({ errMsg: e.message })) };
    const viaUni = await connect({ service, domain, username: "alice", password, resource: "app", transport: webSocket(WebSocket), httpPut: uniPut(uni) });
    clients.push(viaUni);
    const appFile = await viaUni.upload.file({ filename: "app.png", data: makePng(32, 32), contentType: "image/png" });
    await viaUni.sendFile(BOB, appFile);
    emit("sent", { service: up, image: { ...image, url: undefined }, url: image.url, text, streamed: { name: streamed.name, size: streamed.size, type: streamed.type }, appThumb: !!appFile.thumbnail });

    const got = await received;
    const get = async (url) => {
      const r = await fetch(url);
      return { status: r.status, type: r.headers.get("content-type"), bytes: Buffer.from(await r.arrayBuffer()) };
    };
    const [m1, m2, m3, m4] = got;
    const full = await get(m1.file.url);
    const thumb = await get(m1.file.thumbnail.uri);
    const txt = await get(m2.file.url);
    const str = await get(m3.file.url);
    emit("received", {
      ids: [m1.originId === imageId, m1.body === m1.file.url],
      image: { ...m1.file, url: m1.file.url === image.url, thumbnail: { ...m1.file.thumbnail, uri: m1.file.thumbnail.uri === image.thumbnail.uri } },
      fullSame: full.status === 200 && sha(full.bytes) === sha(png), fullType: full.type,
      thumb: { status: thumb.status, type: thumb.type, jpeg: thumb.bytes[0] === 0xff && thumb.bytes[1] === 0xd8 },
      text: { ...m2.file, url: undefined, got: txt.bytes.toString() },
      streamed: { name: m3.file.name, size: m3.file.size, same: sha(str.bytes) === sha(bytes) },
      app: { name: m4.file.name, thumb: !!m4.file.thumbnail },
    });
    // the archive keeps the file with the message
    const page = await bob.history(`alice@${domain}`, { max: 10 });
    emit("history", { files: page.messages.filter((m) => m.file).map((m) => m.file.name) });
    // what carol (slixmpp) sent like Conversations does, OOB only, while bob was away
    const fromCarol = (await bob.history(`carol@${domain}`, { max: 10 })).messages.filter((m) => m.file).map((m) => ({ body: m.body, file: m.file }));
    emit("oob-only", { messages: fromCarol });

    const failure = async (f) => {
      try {
        await f();
        return { refused: false };
      } catch (e) {
        return { name: e.name, message: e.message, ...(e.maxSize !== undefined ? { maxSize: e.maxSize, fromServer: !!e.cause } : {}), ...(e.status ? { status: e.status, text: e.text } : {}) };
      }
    };
    // too large: said by the service's disco form before asking, and by the server's refusal
    const early = await failure(() => alice.upload.file({ filename: "big.bin", data: new Uint8Array(100001) }));
    const server = await failure(async () => {
      try {
        await alice.iq(upload.slotRequest(up.jid, { filename: "big.bin", size: 100001 }));
      } catch (e) {
        throw upload.uploadError(e, 100001);
      }
    });
    // a slot used twice: the second PUT is refused by HTTP
    const slot = await alice.upload.slot({ filename: "once.txt", size: 4, contentType: "text/plain" });
    await alice.upload.put(slot, new TextEncoder().encode("once"), { contentType: "text/plain" });
    const twice = await failure(() => alice.upload.put(slot, new TextEncoder().encode("once"), { contentType: "text/plain" }));
    // fewer bytes than the slot said
    const slot2 = await alice.upload.slot({ filename: "short.txt", size: 10, contentType: "text/plain" });
    const short = await failure(() => alice.upload.put(slot2, new TextEncoder().encode("abc"), { contentType: "text/plain" }));
    // a PUT cancelled mid-body (AbortSignal): the server keeps nothing and the slot takes the file later
    const part = Buffer.alloc(9000, 7);
    const slot3 = await alice.upload.slot({ filename: "cancelled.bin", size: part.length });
    const abort = new AbortController();
    let pulls = 0;
    const slow = new ReadableStream({
      pull(c) {
        if (pulls++ === 0) c.enqueue(part.subarray(0, 4000));
        else abort.abort(); // the first bytes are on their way: cancel the rest
      },
    });
    const cancelled = await failure(() => alice.upload.put(slot3, slow, { size: part.length, signal: abort.signal }));
    let again;
    for (let i = 0; i < 50; i++) {
      again = await failure(() => alice.upload.put(slot3, part));
      if (again.status !== 409) break; // the server may still be closing the cancelled PUT
      await new Promise((r) => setTimeout(r, 100));
    }
    const after = await fetch(slot3.get);
    const reused = { ...again, got: sha(Buffer.from(await after.arrayBuffer())) === sha(part) };
    // the quota: open slots count too
    const quota = await failure(async () => {
      for (let i = 0; i < 5; i++) await alice.upload.slot({ filename: `q${i}.bin`, size: 90000 });
    });
    emit("failures", { early, server, twice, short, quota, cancelled, reused, instances: [early.name === FileTooLargeError.name, quota.name === UploadQuotaError.name, twice.name === UploadHttpError.name] });
  },
};

try {
  if (!scenarios[scenario]) throw new Error(`no scenario ${scenario}`);
  await scenarios[scenario]();
  await Promise.all(clients.map((c) => c.stop().catch(() => {})));
  emit("done");
  process.exit(0);
} catch (err) {
  emit("error", { message: String(err?.stack ?? err) });
  process.exit(1);
}
