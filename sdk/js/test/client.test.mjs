import { test } from "node:test";
import assert from "node:assert/strict";
import { XmppdClient, Deduplicator, parseXml, MutedError, tokenCredentials } from "../dist/index.js";

// A client that never connects: stanzas go straight into dispatch(), as xmpp.js would hand them.
function offlineClient() {
  const c = new XmppdClient({ service: "ws://127.0.0.1:1/xmpp-websocket", domain: "example.com", username: "alice", password: "x", transport: () => { throw new Error("no network in unit tests"); } });
  c.jid = "alice@example.com/web";
  const events = [];
  for (const e of ["message", "receipt", "marker", "redpacket", "redpacketGrabbed", "cs", "muteNotice", "messageError", "subscriptionRequest"]) c.on(e, (p) => events.push([e, p]));
  const sent = [];
  c.send = async (el) => void sent.push(el);
  return { c, events, sent };
}

test("importing and creating a client opens no socket", () => {
  const { c } = offlineClient();
  assert.equal(c.xmpp.status, "offline");
});

test("a message re-sent after resumption (same stanza-id) is shown once", () => {
  const { c, events } = offlineClient();
  const xml = `<message from='bob@example.com/p' to='alice@example.com/web' type='chat' id='m1'><body>hi</body><stanza-id xmlns='urn:xmpp:sid:0' by='alice@example.com' id='S1'/></message>`;
  c.dispatch(parseXml(xml));
  c.dispatch(parseXml(xml));
  assert.deepEqual(events.filter(([e]) => e === "message").map(([, m]) => m.body), ["hi"]);
});

test("a retried send (same origin-id, new stanza-id) is shown once; another sender's same id is not a duplicate", () => {
  const { c, events } = offlineClient();
  const msg = (from, sid) => parseXml(`<message from='${from}' type='chat'><body>x</body><origin-id xmlns='urn:xmpp:sid:0' id='o1'/><stanza-id xmlns='urn:xmpp:sid:0' by='alice@example.com' id='${sid}'/></message>`);
  c.dispatch(msg("bob@example.com/p", "S1"));
  c.dispatch(msg("bob@example.com/other", "S2"));
  c.dispatch(msg("carol@example.com/p", "S3"));
  assert.deepEqual(events.filter(([e]) => e === "message").map(([, m]) => m.from), ["bob@example.com/p", "carol@example.com/p"]);
});

test("room messages are keyed by the room's stanza-id, not one forged by the sender", () => {
  const { c, events } = offlineClient();
  const msg = (sid) => parseXml(`<message from='r@c/bob' type='groupchat'><body>x</body><stanza-id xmlns='urn:xmpp:sid:0' by='alice@example.com' id='FORGED'/><stanza-id xmlns='urn:xmpp:sid:0' by='r@c' id='${sid}'/></message>`);
  c.dispatch(msg("R1"));
  c.dispatch(msg("R2"));
  c.dispatch(msg("R1"));
  assert.deepEqual(events.filter(([e]) => e === "message").map(([, m]) => m.stanzaId), ["R1", "R2"]);
});

test("a red packet posted twice (a retried send) is one redpacket event", () => {
  const { c, events } = offlineClient();
  const rp = `<message type='groupchat' from='r@c' id='rp-ab'><body>[红包]</body><redpacket xmlns='urn:xmppd:redpacket:0' id='ab' sender='bob@example.com' kind='lucky' count='2' greeting='hi' expires='2025-01-02T12:00:00Z'/><stanza-id xmlns='urn:xmpp:sid:0' by='r@c' id='X1'/></message>`;
  c.dispatch(parseXml(rp));
  c.dispatch(parseXml(rp));
  assert.deepEqual(events.map(([e]) => e), ["redpacket"]);
});

test("a muted room message comes back as a messageError carrying a MutedError", () => {
  const { c, events } = offlineClient();
  c.dispatch(parseXml(`<message type='error' from='r@c' id='m9'><error type='auth'><forbidden xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/><text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>You are muted</text><muted xmlns='urn:xmppd:mute:0' room='r@c' by='bob@example.com'/></error></message>`));
  const [[name, e]] = events;
  assert.equal(name, "messageError");
  assert.equal(e.id, "m9");
  assert.ok(e.error instanceof MutedError);
  assert.equal(e.error.text, "You are muted");
  assert.equal(e.error.until, undefined);
});

test("notices, receipts, markers and friend requests become their events", () => {
  const { c, events } = offlineClient();
  c.dispatch(parseXml(`<message type='groupchat' from='r@c'><body>alice was muted</body><notice xmlns='urn:xmppd:mute:0' action='mute' nick='alice'/></message>`));
  c.dispatch(parseXml(`<message from='bob@example.com/p'><received xmlns='urn:xmpp:receipts' id='m1'/></message>`));
  c.dispatch(parseXml(`<message from='bob@example.com/p'><displayed xmlns='urn:xmpp:chat-markers:0' id='m1'/></message>`));
  c.dispatch(parseXml(`<message from='example.com' type='headline'><grabbed xmlns='urn:xmppd:redpacket:0' id='ab' by='b@x' amount='5' remaining='0'/></message>`));
  c.dispatch(parseXml(`<message from='support@cs.example.com' type='chat'><body>You are number 2 in line.</body><position xmlns='urn:xmppd:cs:0' session='a1' n='2'/></message>`));
  c.dispatch(parseXml(`<presence from='bob@example.com' type='subscribe'><status>hi, I'm Bob</status></presence>`));
  assert.deepEqual(events.map(([e]) => e), ["muteNotice", "receipt", "marker", "redpacketGrabbed", "cs", "subscriptionRequest"]);
  assert.deepEqual(events[4][1], { kind: "position", session: "a1", n: 2, from: "support@cs.example.com", body: "You are number 2 in line." });
  assert.deepEqual(events[5][1], { from: "bob@example.com", message: "hi, I'm Bob" });
});

test("the de-duplicator forgets the oldest keys beyond its capacity", () => {
  const d = new Deduplicator(2);
  const m = (id) => ({ from: "b@x/p", type: "chat", stanzaId: id });
  assert.equal(d.isDuplicate(m("1"), "a@x"), false);
  assert.equal(d.isDuplicate(m("2"), "a@x"), false);
  assert.equal(d.isDuplicate(m("3"), "a@x"), false);
  assert.equal(d.isDuplicate(m("3"), "a@x"), true);
  assert.equal(d.isDuplicate(m("1"), "a@x"), false);
  assert.equal(d.isDuplicate({ from: "b@x/p", type: "chat" }), false);
  assert.equal(d.isDuplicate({ from: "b@x/p", type: "chat" }), false, "no ids: never a duplicate");
});

test("a repeated message is shown once but its receipt is sent each time (the first may be lost)", () => {
  const { c, events, sent } = offlineClient();
  const xml = `<message from='bob@example.com/p' type='chat' id='m1'><body>hi</body><origin-id xmlns='urn:xmpp:sid:0' id='m1'/><request xmlns='urn:xmpp:receipts'/></message>`;
  c.dispatch(parseXml(xml));
  c.dispatch(parseXml(xml));
  assert.equal(events.filter(([e]) => e === "message").length, 1);
  assert.deepEqual(sent.map((el) => [el.attrs.to, el.getChild("received", "urn:xmpp:receipts").attrs.id]), [["bob@example.com/p", "m1"], ["bob@example.com/p", "m1"]]);
});

test("a token login uses SASL PLAIN with the token as the password, even when SCRAM is offered", async () => {
  const calls = [];
  const creds = tokenCredentials("alice", "eyJhbGciOi.token");
  await creds(async (c, m) => void calls.push([c, m]), ["SCRAM-SHA-1", "PLAIN"]);
  assert.deepEqual(calls, [[{ username: "alice", password: "eyJhbGciOi.token" }, "PLAIN"]]);
  await assert.rejects(creds(async () => {}, ["SCRAM-SHA-1"]), /needs SASL PLAIN/);
});

test("a payload that breaks its schema becomes an error event, and the next stanzas still arrive", () => {
  const { c, events } = offlineClient();
  const errors = [];
  c.on("error", (e) => errors.push(e));
  // what xmpp.js does with each stanza it parsed
  c.xmpp.emit("stanza", parseXml(`<message from='example.com' type='headline'><grabbed xmlns='urn:xmppd:redpacket:0' id='ab' by='b@x' amount='lots' remaining='0'/></message>`));
  c.xmpp.emit("stanza", parseXml(`<message from='bob@example.com/p' type='chat' id='m2'><body>still here</body></message>`));
  assert.equal(errors.length, 1);
  assert.equal(errors[0].name, "ProtocolError");
  assert.deepEqual(events.map(([e, p]) => [e, p.body]), [["message", "still here"]]);
});
